"""Tumour masks: load, check against the reference image, binarise.

Modelled on pyradiomics ``imageoperations.checkMask``: a mask is used only when

1. it has the reference image's dimensionality,
2. it holds a label (one, or the one chosen with ``label=``),
3. it lies on the reference grid (size, spacing, origin, direction within
   tolerance) -- or, when ``resample=True``, its ROI lies inside the reference
   image and it is resampled nearest-neighbour onto the reference grid (with a
   logged warning),
4. the ROI is not trivially small (``min_voxels``).

Failures raise ``GeometryError`` (grid mismatch without ``resample``) or
``MaskError`` (empty, several labels, unknown label, outside the image, too
small, not a label map), naming the case and the file. The result is always a
binary uint8 :class:`Image` on the reference grid.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from her2core.errors import GeometryError, Her2Error, MaskError

from .image import DIRECTION_ATOL, ORIGIN_ATOL, SPACING_RTOL, Image
from .io import DEFAULT_MAX_VOXELS, load_image

log = logging.getLogger(__name__)

#: Smallest ROI accepted by default (voxels for 3-D, pixels for 2-D).
DEFAULT_MIN_VOXELS = 10
DEFAULT_MIN_PIXELS = 10


def load_mask(path: str | os.PathLike, reference: Image, label: int | None = None,
              resample: bool = False, *, min_voxels: int | None = None,
              case_id: str | None = None, sequence: str = "mask",
              spacing_rtol: float = SPACING_RTOL, origin_atol: float = ORIGIN_ATOL,
              direction_atol: float = DIRECTION_ATOL,
              max_voxels: int = DEFAULT_MAX_VOXELS) -> Image:
    """Load a mask file and :func:`check_mask` it against ``reference``.

    Any image format of :func:`her2core.imaging.io.load_image` works; a PNG mask
    with 0 / 255 is a binary mask (label 255). A mask file without physical
    spacing (PNG, ...) of the reference's size is taken to be on its pixel grid.

    Returns:
        binary uint8 Image (1 inside the ROI) on the reference's spatial grid.
    """
    path = Path(path)
    mask = load_image(path, sequence=sequence, modality="SEG", expected_ndim=reference.ndim,
                      max_voxels=max_voxels, case_id=case_id)
    return check_mask(mask, reference, label=label, resample=resample, min_voxels=min_voxels,
                      case_id=case_id, spacing_rtol=spacing_rtol, origin_atol=origin_atol,
                      direction_atol=direction_atol)


def mask_labels(mask: Image | np.ndarray) -> dict[int, int]:
    """Non-zero labels of a label map and their voxel counts.

    Raises MaskError when values are not integers (a probability map or a
    linearly interpolated mask).
    """
    arr = mask.array if isinstance(mask, Image) else np.asarray(mask)
    values = _integer_labels(arr, getattr(mask, "source", None))
    labels, counts = np.unique(values[values != 0], return_counts=True)
    return {int(lab): int(n) for lab, n in zip(labels, counts)}


def check_mask(mask: Image, reference: Image, label: int | None = None, *,
               resample: bool = False, min_voxels: int | None = None,
               case_id: str | None = None, spacing_rtol: float = SPACING_RTOL,
               origin_atol: float = ORIGIN_ATOL,
               direction_atol: float = DIRECTION_ATOL) -> Image:
    """Check a mask against its reference image; return it binary on the reference grid.

    Args:
        mask: label map (any integer-valued dtype; bool allowed).
        reference: the image the ROI belongs to (a 4-D phases image: its 3-D grid).
        label: the label that is the ROI; required when the mask holds several.
        resample: when the grids differ, resample nearest-neighbour onto the
            reference grid (with a warning) instead of raising GeometryError.
        min_voxels: smallest ROI (default 10 voxels in 3-D, 10 pixels in 2-D),
            counted on the reference grid.
        case_id: named in errors.
        spacing_rtol, origin_atol, direction_atol: grid tolerances (relative
            spacing, mm, direction cosines).

    Raises:
        GeometryError: different dimensionality, or a different grid without
            ``resample``.
        MaskError: empty, several labels without ``label``, ``label`` absent,
            not a label map, ROI outside the reference, ROI too small.
    """
    try:
        return _check_mask(mask, reference, label, resample, min_voxels, spacing_rtol,
                           origin_atol, direction_atol)
    except Her2Error as err:
        raise err.with_context(case_id=case_id, file=mask.source)


# ------------------------------------------------------------ internals
def _integer_labels(arr: np.ndarray, source: str | None) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return arr
    rounded = np.round(arr)
    off = np.abs(arr - rounded)
    if not np.all(np.isfinite(arr)) or np.any(off > 1e-3):
        example = arr[np.isfinite(arr) & (off > 1e-3)]
        shown = f" (e.g. {float(example.flat[0]):.4g})" if example.size else ""
        raise MaskError(f"mask holds non-integer values{shown}: it is not a label map",
                        file=source,
                        hint="threshold a probability map, or give the original label map "
                             "(masks must never be interpolated linearly)")
    return rounded.astype(np.int64)


def _check_mask(mask: Image, reference: Image, label: int | None, resample: bool,
                min_voxels: int | None, spacing_rtol: float, origin_atol: float,
                direction_atol: float) -> Image:
    ref = reference.spatial_template() if reference.is_phases else reference
    if mask.is_phases:
        raise GeometryError(f"mask is 4-D {mask.array.shape}; a mask must be {ref.ndim}-D",
                            hint="give one label map for all phases")
    if mask.ndim != ref.ndim:
        raise GeometryError(f"mask is {mask.ndim}-D but its reference image is {ref.ndim}-D",
                            hint="give the mask drawn on this image")
    if min_voxels is None:
        min_voxels = DEFAULT_MIN_VOXELS if ref.ndim == 3 else DEFAULT_MIN_PIXELS
    unit = "voxels" if ref.ndim == 3 else "pixels"

    # 2. labels
    labels = mask_labels(mask)
    if not labels:
        raise MaskError("mask is empty (no non-zero voxel)",
                        hint="draw the tumour ROI, or check that the right file was given")
    if label is None:
        if len(labels) > 1:
            raise MaskError(f"mask holds {len(labels)} labels: {_fmt_labels(labels, unit)}",
                            hint="choose the tumour label with label=")
        label = next(iter(labels))
    elif int(label) not in labels:
        raise MaskError(f"label {label} is not in the mask; labels present: "
                        f"{_fmt_labels(labels, unit)}", hint="choose one of the labels present")
    label = int(label)
    binary = (_integer_labels(mask.array, mask.source) == label).astype(np.uint8)

    # A mask file without physical geometry (PNG) of the reference's size lies on
    # the reference's pixel grid by construction.
    if (not mask.spacing_known or not ref.spacing_known) and mask.size == ref.size:
        mask = mask.replace(spacing=ref.spacing, origin=ref.origin, direction=ref.direction,
                            spacing_known=ref.spacing_known)

    # 3. geometry
    diffs = ref.grid_differences(mask, spacing_rtol=spacing_rtol, origin_atol=origin_atol,
                                 direction_atol=direction_atol)
    resampled = False
    if diffs:
        if not ref.spacing_known or not mask.spacing_known:
            diffs.append("one of them has no physical spacing (e.g. PNG), so only an identical "
                         "pixel grid can be matched")
            raise GeometryError("mask grid differs from the image's: " + "; ".join(diffs),
                                hint="give a mask of the same pixel size as the image")
        if not resample:
            raise GeometryError(
                "mask grid differs from the image's (mask vs image): " + "; ".join(diffs),
                hint="pass resample=True to resample the mask nearest-neighbour onto the "
                     "image grid, or give the mask drawn on this image")
        _check_inside(mask.with_array(binary), ref)
        log.warning("mask %s: grid differs from its image (%s); resampled nearest-neighbour "
                    "onto the image grid", Path(mask.source).name if mask.source else "<array>",
                    "; ".join(diffs))
        out = sitk.Resample(mask.with_array(binary).to_sitk(), ref.to_sitk(),
                            sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        binary = sitk.GetArrayFromImage(out).astype(np.uint8)
        resampled = True

    # 4. size
    n = int(np.count_nonzero(binary))
    if n < min_voxels:
        where = " after resampling onto the image grid" if resampled else ""
        raise MaskError(f"ROI (label {label}) has {n} {unit}{where}, fewer than the minimum "
                        f"of {min_voxels}", hint="check the mask, or lower min_voxels")
    return Image(binary, ref.spacing, ref.origin, ref.direction, sequence=mask.sequence or "mask",
                 modality="SEG", source=mask.source, spacing_known=ref.spacing_known,
                 meta={"label": label, "n_voxels": n, "resampled": resampled})


def _fmt_labels(labels: dict[int, int], unit: str) -> str:
    return ", ".join(f"{lab} ({n} {unit})" for lab, n in labels.items())


def _check_inside(binary: Image, ref: Image, tol: float = 1e-3) -> None:
    """The physical bounding box of the ROI (voxel centres) must lie inside ``ref``."""
    idx = np.argwhere(binary.array > 0)[:, ::-1]  # (x, y[, z])
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    d = binary.ndim
    corners = np.array(np.meshgrid(*[[lo[i], hi[i]] for i in range(d)], indexing="ij"))
    corners = corners.reshape(d, -1).T
    points = binary.index_to_physical(corners)
    ref_idx = ref.physical_to_index(points)
    size = np.asarray(ref.size, dtype=float)
    outside = np.any((ref_idx < -0.5 - tol) | (ref_idx > size - 0.5 + tol), axis=1)
    if np.any(outside):
        box_lo, box_hi = points.min(axis=0), points.max(axis=0)
        ext = ref.voxel_corners()
        raise MaskError(
            f"ROI lies (partly) outside the image: ROI box {_fmt(box_lo)}..{_fmt(box_hi)} mm, "
            f"image box {_fmt(ext.min(axis=0))}..{_fmt(ext.max(axis=0))} mm",
            hint="the mask belongs to another image or its geometry is wrong")


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
