"""`Image`: an array that never travels without its geometry.

Conventions (those of SimpleITK / ITK, physical space LPS, millimetres):

* ``array`` is in numpy order: ``(z, y, x)`` for 3-D, ``(y, x)`` for 2-D and
  ``(t, z, y, x)`` for 4-D DCE phases (the geometry is then the 3-D geometry
  of every phase).
* ``spacing`` and ``origin`` are in index order ``(x, y, z)``; ``origin`` is the
  physical position of the centre of voxel ``array[0, 0, 0]``.
* ``direction`` is the row-major flattened D x D direction matrix whose columns
  are the physical directions of the index axes x, y, z.

So ``point = origin + direction @ (spacing * index)`` with ``index = (i, j, k)``
in (x, y, z) order, exactly as ``SimpleITK.Image.TransformIndexToPhysicalPoint``.
All conversions to nibabel (RAS) live in :mod:`her2core.imaging.io`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

#: Default tolerances for "same grid": relative spacing, absolute origin (mm),
#: absolute direction-cosine difference.
SPACING_RTOL = 1e-3
ORIGIN_ATOL = 1e-3
DIRECTION_ATOL = 1e-4


def _as_float_tuple(values: Sequence[float], name: str) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Image {name} must be finite, got {tuple(arr)}")
    return tuple(float(v) for v in arr)


@dataclass(eq=False)
class Image:
    """A 2-D, 3-D or 4-D (phases) image with its physical geometry.

    Attributes:
        array: voxel values, numpy order (see module docstring).
        spacing: voxel size in mm, (x, y[, z]).
        origin: physical position (LPS, mm) of the first voxel's centre.
        direction: flattened row-major D x D direction cosines.
        sequence: "T1", "T2", "DCE", "DCE_phases", "US", "mask", ... or None.
        modality: "MR", "US", "SEG" or None.
        source: the file / folder / zip it came from, or None.
        spacing_known: False when the file carried no physical spacing (PNG,
            JPG, BMP, DICOM without PixelSpacing): spacing is then (1, 1) px.
        meta: free-form non-identifying information (e.g. series UID count,
            DICOM modality); never patient identifiers.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    sequence: str | None = None
    modality: str | None = None
    source: str | None = None
    spacing_known: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim not in (2, 3, 4):
            raise ValueError(f"Image array must be 2-D, 3-D or 4-D, got shape {self.array.shape}")
        d = self.ndim
        self.spacing = _as_float_tuple(self.spacing, "spacing")
        self.origin = _as_float_tuple(self.origin, "origin")
        self.direction = _as_float_tuple(self.direction, "direction")
        if len(self.spacing) != d or len(self.origin) != d or len(self.direction) != d * d:
            raise ValueError(
                f"Image geometry does not match a {d}-D array of shape {self.array.shape}: "
                f"spacing {self.spacing}, origin {self.origin}, direction {self.direction}")
        if min(self.spacing) <= 0:
            raise ValueError(f"Image spacing must be positive, got {self.spacing}")
        dm = np.asarray(self.direction).reshape(d, d)
        if abs(abs(np.linalg.det(dm)) - 1.0) > 1e-3:
            raise ValueError(f"Image direction is not orthonormal: {self.direction}")
        if self.source is not None:
            self.source = str(self.source)

    # ------------------------------------------------------------ shape / grid
    @property
    def ndim(self) -> int:
        """Spatial dimension: 2 or 3 (a 4-D phases image is 3)."""
        return 3 if self.array.ndim == 4 else self.array.ndim

    @property
    def is_phases(self) -> bool:
        """True for a (t, z, y, x) stack of phases."""
        return self.array.ndim == 4

    @property
    def n_phases(self) -> int:
        return self.array.shape[0] if self.is_phases else 1

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial array shape in numpy order ((z, y, x) or (y, x))."""
        return tuple(self.array.shape[-self.ndim:])

    @property
    def size(self) -> tuple[int, ...]:
        """Spatial size in index order (x, y[, z]), as SimpleITK GetSize()."""
        return tuple(reversed(self.shape))

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(self.ndim, self.ndim)

    def affine(self) -> np.ndarray:
        """(D+1) x (D+1) matrix mapping (x, y[, z], 1) index -> LPS point."""
        d = self.ndim
        a = np.eye(d + 1)
        a[:d, :d] = self.direction_matrix * np.asarray(self.spacing)[None, :]
        a[:d, d] = self.origin
        return a

    def index_to_physical(self, index: Sequence[float] | np.ndarray) -> np.ndarray:
        """Index (x, y[, z] order, may be fractional; or an (N, D) array) -> LPS mm."""
        idx = np.asarray(index, dtype=float)
        pts = (idx * np.asarray(self.spacing)) @ self.direction_matrix.T + np.asarray(self.origin)
        return pts

    def physical_to_index(self, point: Sequence[float] | np.ndarray) -> np.ndarray:
        """LPS mm (or an (N, D) array) -> continuous index in (x, y[, z]) order."""
        p = np.asarray(point, dtype=float) - np.asarray(self.origin)
        return (p @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing)

    def voxel_corners(self) -> np.ndarray:
        """Physical positions of the 2**D outer corners of the voxel grid (edges, not centres)."""
        d = self.ndim
        lo = -0.5 * np.ones(d)
        hi = np.asarray(self.size, dtype=float) - 0.5
        corners = np.array(np.meshgrid(*[[lo[i], hi[i]] for i in range(d)], indexing="ij"))
        corners = corners.reshape(d, -1).T
        return self.index_to_physical(corners)

    def grid_differences(self, other: "Image", *, spacing_rtol: float = SPACING_RTOL,
                         origin_atol: float = ORIGIN_ATOL,
                         direction_atol: float = DIRECTION_ATOL) -> list[str]:
        """Human-readable list of how ``other``'s spatial grid differs from this one.

        Empty when the grids agree within tolerance.
        """
        return grid_differences(_geometry(other), _geometry(self), spacing_rtol=spacing_rtol,
                                origin_atol=origin_atol, direction_atol=direction_atol)

    def same_grid(self, other: "Image", tol: dict[str, float] | None = None) -> bool:
        """True when ``other`` shares this spatial grid within tolerance.

        ``tol`` may override ``spacing_rtol``, ``origin_atol``, ``direction_atol``.
        """
        return not self.grid_differences(other, **(tol or {}))

    # -------------------------------------------------------------- copies
    def replace(self, **changes: Any) -> "Image":
        """A copy with some fields changed (the array is not copied unless given)."""
        return dataclasses.replace(self, **changes)

    def with_array(self, array: np.ndarray, **changes: Any) -> "Image":
        """Same geometry and description, new array of the same spatial shape."""
        array = np.asarray(array)
        if array.shape[-self.ndim:] != self.shape:
            raise ValueError(f"with_array: shape {array.shape} does not match grid {self.shape}")
        changes.setdefault("meta", dict(self.meta))
        return dataclasses.replace(self, array=array, **changes)

    def phase(self, t: int) -> "Image":
        """One phase of a 4-D image as a 3-D Image (the 3-D image itself when t == 0)."""
        if not self.is_phases:
            if t != 0:
                raise IndexError(f"3-D image has a single phase, asked for {t}")
            return self
        return dataclasses.replace(self, array=self.array[t], meta=dict(self.meta),
                                   sequence=self.sequence)

    def spatial_template(self) -> "Image":
        """An empty (uint8 zeros) Image with this spatial grid (drops the phase axis)."""
        return Image(np.zeros(self.shape, dtype=np.uint8), self.spacing, self.origin,
                     self.direction, sequence=None, modality=None, source=self.source,
                     spacing_known=self.spacing_known)

    # ------------------------------------------------------------ SimpleITK
    def to_sitk(self, phase: int | None = None) -> sitk.Image:
        """SimpleITK image with this geometry.

        A 4-D image gives a 4-D SimpleITK image (time spacing 1, time origin 0)
        unless ``phase`` selects one 3-D phase.
        """
        arr = self.array
        if self.is_phases and phase is not None:
            arr = arr[phase]
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=False)
        if arr.ndim == 4:
            img.SetSpacing(self.spacing + (1.0,))
            img.SetOrigin(self.origin + (0.0,))
            d4 = np.eye(4)
            d4[:3, :3] = self.direction_matrix
            img.SetDirection(tuple(d4.ravel()))
        else:
            img.SetSpacing(self.spacing)
            img.SetOrigin(self.origin)
            img.SetDirection(self.direction)
        return img

    @classmethod
    def from_sitk(cls, img: sitk.Image, *, sequence: str | None = None,
                  modality: str | None = None, source: str | None = None,
                  spacing_known: bool = True, meta: dict[str, Any] | None = None) -> "Image":
        """Image from a scalar SimpleITK image (2-D, 3-D, or 4-D = phases)."""
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError("from_sitk needs a scalar image; collapse colour first (io.load_image does)")
        arr = sitk.GetArrayFromImage(img)
        dim = img.GetDimension()
        spacing = img.GetSpacing()
        origin = img.GetOrigin()
        direction = np.asarray(img.GetDirection()).reshape(dim, dim)
        if dim == 4:
            spacing, origin = spacing[:3], origin[:3]
            direction = direction[:3, :3]
        return cls(arr, spacing, origin, tuple(direction.ravel()), sequence=sequence,
                   modality=modality, source=source, spacing_known=spacing_known,
                   meta=dict(meta or {}))

    def __repr__(self) -> str:
        return (f"Image(shape={self.array.shape}, dtype={self.array.dtype}, "
                f"spacing={_fmt(self.spacing)}, origin={_fmt(self.origin)}, "
                f"sequence={self.sequence!r}, modality={self.modality!r}, source={self.source!r})")


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _geometry(img) -> tuple:
    """(ndim, size, spacing, origin, direction) of an Image or a SimpleITK image (spatial)."""
    if isinstance(img, Image):
        return img.ndim, tuple(img.size), tuple(img.spacing), tuple(img.origin), tuple(img.direction)
    d = img.GetDimension()
    return d, tuple(img.GetSize()), tuple(img.GetSpacing()), tuple(img.GetOrigin()), \
        tuple(img.GetDirection())


def grid_differences(other, reference, *, spacing_rtol: float = SPACING_RTOL,
                     origin_atol: float = ORIGIN_ATOL, direction_atol: float = DIRECTION_ATOL) -> list[str]:
    """How ``other``'s grid differs from ``reference``'s (Images, SimpleITK images, or their
    geometry tuples): the one grid check of the project (masks, cohort validation, viewer)."""
    nd_o, size_o, sp_o, or_o, dir_o = other if isinstance(other, tuple) else _geometry(other)
    nd_s, size_s, sp_s, or_s, dir_s = reference if isinstance(reference, tuple) else _geometry(reference)
    if nd_o != nd_s:
        return [f"dimension {nd_o}-D vs {nd_s}-D"]
    diffs: list[str] = []
    if tuple(size_o) != tuple(size_s):
        diffs.append(f"size {tuple(size_o)} vs {tuple(size_s)}")
    s_o, s_s = np.asarray(sp_o, float), np.asarray(sp_s, float)
    if np.any(np.abs(s_o - s_s) > spacing_rtol * np.abs(s_s)):
        diffs.append(f"spacing {_fmt(s_o)} vs {_fmt(s_s)} mm")
    o_o, o_s = np.asarray(or_o, float), np.asarray(or_s, float)
    if np.any(np.abs(o_o - o_s) > origin_atol):
        diffs.append(f"origin {_fmt(o_o)} vs {_fmt(o_s)} mm")
    d_o, d_s = np.asarray(dir_o, float), np.asarray(dir_s, float)
    if d_o.shape != d_s.shape or np.any(np.abs(d_o - d_s) > direction_atol):
        diffs.append(f"direction {_fmt(d_o)} vs {_fmt(d_s)}")
    return diffs
