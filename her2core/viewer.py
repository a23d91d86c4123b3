"""Pure numpy / plotly helpers behind the app's image viewer and ROI editor.

No streamlit here: the pages call these functions and place their output.

Orientation
-----------
Every volume is shown in one *canonical* orientation derived from its
direction matrix, so that a flipped (RAS-stored) or in-plane rotated scan looks
like any other: the canonical array is numpy ``(z, y, x)`` with physical LPS
axes increasing along it (x towards patient Left, y towards Posterior, z
towards Superior). Views follow the radiological convention:

* axial: rows anterior (top) -> posterior, columns patient right (screen left)
  -> left;
* coronal: rows superior (top) -> inferior, columns right -> left;
* sagittal: rows superior (top) -> inferior, columns anterior -> posterior.

Oblique directions are snapped to the nearest axis permutation (the display is
then approximate; geometry written back to disk is exact because masks are
mapped back to the image's own array order with :meth:`Canonical.from_canonical`).

ROI editing
-----------
:class:`MaskEditor` keeps a canonical boolean mask, an undo stack, and applies
lasso polygons / boxes (add or subtract) on one slice, copies a slice to its
neighbours, and interpolates between two drawn slices (shape-based, signed
distance, never linear on labels).
"""
from __future__ import annotations

import base64
import functools
import itertools
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

VIEWS = ("axial", "coronal", "sagittal")

__all__ = [
    "VIEWS", "Canonical", "HeatVolume", "canonical", "window_presets", "apply_window", "compose_rgb",
    "polygon_to_mask", "box_to_mask", "interpolate_mask", "MaskEditor", "slice_figure",
    "rgb_to_png_bytes", "mask_to_nifti_bytes", "heat_colormap", "axis_labels",
    "crop_for_zoom", "view_title", "view_labels", "geometry_caption", "window_step",
    "index_ranges", "roi_caption", "HEADER_PRESET",
]

#: name of the window preset read from the DICOM header (WindowCenter / WindowWidth)
HEADER_PRESET = "DICOM header"
#: name of the window preset centred on the ROI's intensities
LESION_PRESET = "Lesion (ROI 1-99 %)"


# --------------------------------------------------------------------------- orientation
@dataclass
class Canonical:
    """A volume in canonical LPS display orientation and the way back.

    Attributes:
        array: canonical array, numpy (z, y, x) with L, P, S increasing.
        spacing: canonical voxel size (x, y, z) in mm.
        order: numpy-axis permutation applied to the original array.
        flips: canonical numpy axes that were reversed after the permutation.
        original_shape: spatial shape of the original array (numpy order).
        is_2d: the source was a 2-D image (then z has one slice).
        oblique: the direction was not a pure axis permutation (snapped).
        header_window: (width, level) from the DICOM header's WindowWidth /
            WindowCenter (first value), or None.
        slice_thickness: SliceThickness (mm) from the DICOM header, or None.
        spacing_known: False when the file had no physical pixel size (PNG, JPG).
        integer: the voxel values are integers (the manual window steps by 1).
    """
    array: np.ndarray
    spacing: tuple[float, float, float]
    order: tuple[int, int, int]
    flips: tuple[int, ...]
    original_shape: tuple[int, ...]
    is_2d: bool = False
    oblique: bool = False
    header_window: tuple[float, float] | None = None
    slice_thickness: float | None = None
    spacing_known: bool = True
    integer: bool = False
    _stats: dict | None = field(default=None, init=False, repr=False, compare=False)
    _roi_memo: tuple | None = field(default=None, init=False, repr=False, compare=False)

    # -- window / level
    def window_presets(self, mask: "np.ndarray | MaskEditor | None" = None
                       ) -> dict[str, tuple[float, float]]:
        """:func:`window_presets` of this volume, its percentiles computed once.

        A slice change then costs nothing here (at 448 x 448 x 100 the volume's
        percentiles take a second); only the "Lesion" preset follows ``mask``. Given
        the :class:`MaskEditor` itself, that preset is computed once per change of the
        ROI (from the voxels of its bounding box), not on every call.
        """
        if self._stats is None:
            self._stats = volume_stats(self.array)
        if isinstance(mask, MaskEditor):
            ed = mask
            if self._roi_memo is None or self._roi_memo[0] != ed.token:
                box = ed.bbox()
                pre = None
                if box is not None:
                    sub = self.array[box]
                    pre = window_presets(sub, ed.mask[box], stats=self._stats).get(LESION_PRESET)
                self._roi_memo = (ed.token, pre)
            presets = window_presets(self.array, None, stats=self._stats)
            if self._roi_memo[1] is not None:
                presets[LESION_PRESET] = self._roi_memo[1]
        else:
            presets = window_presets(self.array, mask, stats=self._stats)
        if self.header_window is not None:
            w, c = self.header_window
            presets = {f"{HEADER_PRESET} (C {_num(c)} / W {_num(w)})": (w, c), **presets}
        return presets

    def value_range(self) -> tuple[float, float]:
        """Finite (min, max) of the volume (computed once, shared with the presets)."""
        if self._stats is None:
            self._stats = volume_stats(self.array)
        if self._stats["empty"]:
            return (0.0, 1.0)
        return (self._stats["min"], self._stats["max"])

    # -- conversions for arrays on the same grid (masks, heat maps)
    def to_canonical(self, arr: np.ndarray) -> np.ndarray:
        """Original-order array (same spatial grid) -> canonical order (a contiguous copy)."""
        return np.ascontiguousarray(self.canonical_view(arr))

    def canonical_view(self, arr: np.ndarray) -> np.ndarray:
        """:meth:`to_canonical` without the copy: a (strided) view of ``arr`` in canonical
        order, for reading a slice or two of a large array (a heat map) on every rerun."""
        a = np.asarray(arr)
        if a.shape != tuple(self.original_shape):
            raise ValueError(f"array shape {a.shape} is not the image grid {self.original_shape}")
        if self.is_2d:
            a = a[None]
        a = np.transpose(a, self.order)
        for ax in self.flips:
            a = np.flip(a, axis=ax)
        return a

    def heat(self, arr: np.ndarray) -> "HeatVolume":
        """A heat map on this image's grid, shown scaled to 0..1 by its maximum (no copy)."""
        a = np.asarray(arr)
        hi = float(np.nanmax(a)) if a.size else 0.0
        return HeatVolume(self.canonical_view(a), hi)

    def from_canonical(self, arr: np.ndarray) -> np.ndarray:
        """Canonical-order array -> the original image's array order."""
        a = np.asarray(arr)
        if a.shape != self.array.shape:
            raise ValueError(f"array shape {a.shape} is not the canonical grid {self.array.shape}")
        for ax in self.flips:
            a = np.flip(a, axis=ax)
        a = np.transpose(a, np.argsort(self.order))
        if self.is_2d:
            a = a[0]
        return np.ascontiguousarray(a)

    # -- slicing
    def n_slices(self, view: str) -> int:
        return self.array.shape[_view_axis(view)]

    def get_slice(self, view: str, index: int, arr: np.ndarray | None = None) -> np.ndarray:
        """2-D display slice (rows top->bottom, columns left->right on screen)."""
        a = self.array if arr is None else arr
        return get_slice(a, view, index)

    def pixel_size(self, view: str) -> tuple[float, float]:
        """(column width, row height) in mm of a displayed slice."""
        sx, sy, sz = self.spacing
        return {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}[_check_view(view)]

    def display_to_canonical(self, view: str, index: int, row: float, col: float
                             ) -> tuple[int, int, int]:
        """Canonical (z, y, x) voxel under pixel (row, col) of display slice ``index``."""
        nz = self.array.shape[0]
        r, c = int(round(float(row))), int(round(float(col)))
        if view == "axial":
            zyx = (int(index), r, c)
        elif view == "coronal":
            zyx = (nz - 1 - r, int(index), c)
        else:
            zyx = (nz - 1 - r, c, int(index))
        _check_view(view)
        for a, (v, n) in enumerate(zip(zyx, self.array.shape)):
            if not 0 <= v < n:
                raise IndexError(f"pixel (row {r}, column {c}) is outside the {view} slice")
        return zyx

    def canonical_to_index(self, zyx) -> tuple[int, ...]:
        """Canonical (z, y, x) voxel -> the image's own voxel index in (x, y[, z]) order
        (SimpleITK's, as :mod:`her2core.imaging.segment` takes seeds)."""
        c = [int(v) for v in zyx]
        for ax in self.flips:
            c[ax] = self.array.shape[ax] - 1 - c[ax]
        orig = [0, 0, 0]
        for a in range(3):
            orig[self.order[a]] = c[a]
        if self.is_2d:
            return (orig[2], orig[1])
        return (orig[2], orig[1], orig[0])

    def slice_position_mm(self, view: str, index: int) -> float:
        """Distance (mm) of the slice from the first one along its axis."""
        sx, sy, sz = self.spacing
        return float(index) * {"axial": sz, "coronal": sy, "sagittal": sx}[_check_view(view)]


@dataclass
class HeatVolume:
    """A heat map in canonical order (a view of its own array) and the maximum it is
    divided by for display: a slice costs a slice, not a float copy of the volume."""
    array: np.ndarray
    scale: float

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def get_slice(self, view: str, index: int) -> np.ndarray:
        """Display slice in 0..1 (float64), as the whole map divided by its maximum."""
        sl = np.asarray(get_slice(self.array, view, index), float)
        return sl / self.scale if self.scale > 0 else sl

    def peak_slice(self, view: str = "axial") -> int:
        """Index of the slice holding the map's maximum."""
        ax = _view_axis(view)
        other = tuple(i for i in range(3) if i != ax)
        return int(np.argmax(np.max(self.array, axis=other)))


def _check_view(view: str) -> str:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
    return view


def _view_axis(view: str) -> int:
    return {"axial": 0, "coronal": 1, "sagittal": 2}[_check_view(view)]


def get_slice(arr: np.ndarray, view: str, index: int) -> np.ndarray:
    """Display slice of a canonical (z, y, x) array; see module docstring."""
    ax = _view_axis(view)
    n = arr.shape[ax]
    if not 0 <= index < n:
        raise IndexError(f"{view} slice {index} outside 0..{n - 1}")
    if view == "axial":
        return arr[index]
    if view == "coronal":
        return arr[::-1, index, :]
    return arr[::-1, :, index]


def put_slice(arr: np.ndarray, view: str, index: int, sl: np.ndarray) -> None:
    """Write a display slice back into a canonical array (in place)."""
    ax = _view_axis(view)
    if view == "axial":
        target_shape = arr[index].shape
    elif view == "coronal":
        target_shape = arr[:, index, :].shape
    else:
        target_shape = arr[:, :, index].shape
    if sl.shape != target_shape:
        raise ValueError(f"slice shape {sl.shape} does not fit {view} slice {target_shape}")
    if not 0 <= index < arr.shape[ax]:
        raise IndexError(f"{view} slice {index} outside 0..{arr.shape[ax] - 1}")
    if view == "axial":
        arr[index] = sl
    elif view == "coronal":
        arr[:, index, :] = sl[::-1]
    else:
        arr[:, :, index] = sl[::-1]


def axis_labels(view: str) -> dict[str, str]:
    """Anatomical letters at the four screen edges of a view."""
    return {"axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
            "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
            "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"}}[_check_view(view)]


def view_labels(can: Canonical, view: str) -> dict[str, str] | None:
    """Anatomical letters of a displayed view, or None for a 2-D picture (an ultrasound
    image has no patient axes: R/L/A/P letters on it would be invented)."""
    return None if can.is_2d else axis_labels(view)


def view_title(can: Canonical, sequence: str, view: str, index: int) -> str:
    """Title of a displayed slice: "US image" for a 2-D picture, else
    "DCE - axial slice 60 (0-119)" (the slider's numbering)."""
    if can.is_2d:
        return f"{sequence} image"
    return f"{sequence} - {view} slice {int(index)} (0-{can.n_slices(view) - 1})"


def _num(v: float, digits: int = 4) -> str:
    """A readable number: 0.7, 3, 1653, 0.0123 (no 0.7000000000000001)."""
    v = float(v)
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.{digits}g}"


def geometry_caption(can: Canonical, view: str = "axial") -> str:
    """Pixel size (and slice thickness / spacing in 3-D) of a displayed view, in mm."""
    cw, rh = can.pixel_size("axial" if can.is_2d else view)
    if not can.spacing_known:
        return (f"{can.array.shape[2]} x {can.array.shape[1]} pixels; pixel size unknown "
                "(the file carries no calibration: lengths are in pixels)")
    rows, cols = can.get_slice("axial" if can.is_2d else view, 0).shape
    text = f"{cols} x {rows} pixels of {_num(cw, 3)} x {_num(rh, 3)} mm"
    if can.is_2d:
        return text
    sx, sy, sz = can.spacing
    step = {"axial": sz, "coronal": sy, "sagittal": sx}[_check_view(view)]
    text += f"; {can.n_slices(view)} slices {_num(step, 3)} mm apart"
    if can.slice_thickness is not None:
        text += f", slice thickness {_num(can.slice_thickness, 3)} mm"
    return text


def window_step(can_or_range, integer: bool | None = None) -> float:
    """Step of the manual window / level sliders: 1 for integer images, else about a
    two-hundredth of the value range rounded to 1, 2 or 5 x 10^k."""
    if isinstance(can_or_range, Canonical):
        lo, hi = can_or_range.value_range()
        integer = can_or_range.integer if integer is None else integer
    else:
        lo, hi = (float(v) for v in can_or_range)
    span = float(hi - lo)
    if integer:
        return 1.0
    if not np.isfinite(span) or span <= 0:
        return 0.01
    raw = span / 200.0
    k = np.floor(np.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * 10 ** k:
            return float(m * 10 ** k)
    return float(10 ** (k + 1))  # pragma: no cover


def index_ranges(indices) -> str:
    """Sorted slice indices as runs, numbered as the slider: [0, 1, 2, 5] -> "0-2, 5"."""
    idx = sorted({int(i) for i in indices})
    if not idx:
        return "none"
    runs, start, prev = [], idx[0], idx[0]
    for i in idx[1:]:
        if i == prev + 1:
            prev = i
            continue
        runs.append((start, prev))
        start = prev = i
    runs.append((start, prev))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def roi_caption(can: Canonical, mask: np.ndarray, sequence: str, view: str = "axial",
                source: str | None = None) -> str:
    """One readable line about an ROI: voxels, volume (mL) or area (mm^2), slices.

    ``mask``: a canonical array, or the :class:`MaskEditor` holding it (its counts are
    then reused from the last change instead of scanning the volume again)."""
    ed = mask if isinstance(mask, MaskEditor) else MaskEditor(np.asarray(mask, bool))
    n = ed.voxels
    sx, sy, sz = can.spacing
    if can.is_2d:
        size = f"{n} pixels" + (f" ({n * sx * sy:.1f} mm\u00b2)" if can.spacing_known else "")
        text = f"ROI on {sequence}: {size}"
    else:
        drawn = ed.drawn_slices(view)
        text = (f"ROI on {sequence}: {n} voxels ({n * sx * sy * sz / 1000.0:.2f} mL), on "
                f"{len(drawn)} {view} slice{'s' if len(drawn) != 1 else ''} ({index_ranges(drawn)})"
                if drawn else f"ROI on {sequence}: {n} voxels")
    if source:
        text += f"; source: {source}"
    return text


def canonical(image, phase: int = 0) -> Canonical:
    """Canonical display volume of a her2core Image (2-D, 3-D, or one phase of 4-D).

    Works on anything with ``array``, ``spacing``, ``direction`` (the Image contract).
    """
    arr = np.asarray(image.array)
    if arr.ndim == 4:
        if not 0 <= phase < arr.shape[0]:
            raise IndexError(f"phase {phase} outside 0..{arr.shape[0] - 1}")
        arr = arr[phase]
    extra = _header_extras(image, arr)
    if arr.ndim == 2:
        sp = tuple(float(s) for s in image.spacing)[:2]
        return Canonical(np.ascontiguousarray(arr[None]), (sp[0], sp[1], 1.0), (0, 1, 2), (),
                         arr.shape, is_2d=True, **extra)
    if arr.ndim != 3:
        raise ValueError(f"cannot display an array of shape {arr.shape}")
    d = np.asarray(image.direction, float).reshape(3, 3)
    spacing = np.asarray(image.spacing, float)
    # index axis i (x=0, y=1, z=2) -> physical axis and sign
    phys = np.argmax(np.abs(d), axis=0)
    oblique = bool(np.abs(d).max(axis=0).min() < 1 - 1e-3)
    if len(set(phys.tolist())) != 3:  # degenerate (45 deg) - fall back to array order
        phys = np.array([0, 1, 2])
        oblique = True
    signs = np.sign(d[phys, np.arange(3)])
    signs[signs == 0] = 1
    inv = {int(q): i for i, q in enumerate(phys)}          # physical axis q -> index axis i
    # canonical numpy axis for physical q is 2 - q; source numpy axis for index i is 2 - i
    order = tuple(2 - inv[2 - a] for a in range(3))
    flips = tuple(2 - q for q in range(3) if signs[inv[q]] < 0)
    can_spacing = tuple(float(spacing[inv[q]]) for q in range(3))
    out = np.transpose(arr, order)
    for ax in flips:
        out = np.flip(out, axis=ax)
    if oblique:
        log.info("direction %s is oblique: display snapped to the nearest axes", image.direction)
    return Canonical(np.ascontiguousarray(out), can_spacing, order, flips, arr.shape,
                     is_2d=False, oblique=oblique, **extra)


def _first_number(value) -> float | None:
    """The first number of a DICOM value ("40\\400", "[40, 400]", 40.0) or None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
        return _first_number(value)
    text = str(value).strip().strip("[]").replace("\\", ",").split(",")[0].strip()
    try:
        v = float(text)
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def _header_extras(image, arr: np.ndarray) -> dict:
    """Header window, slice thickness, spacing-known and integer flags of an Image."""
    meta = getattr(image, "meta", None) or {}
    c, w = _first_number(meta.get("window_center")), _first_number(meta.get("window_width"))
    thick = _first_number(meta.get("slice_thickness"))
    if arr.dtype.kind in "iub":
        integer = True
    elif arr.size and arr.size <= 64_000_000:
        sample = np.ravel(arr)[:: max(1, arr.size // 200_000)]
        integer = bool(np.all(np.isfinite(sample)) and np.all(sample == np.round(sample)))
    else:
        integer = False
    return {"header_window": (w, c) if (c is not None and w is not None and w > 0) else None,
            "slice_thickness": thick if (thick is not None and thick > 0) else None,
            "spacing_known": bool(getattr(image, "spacing_known", True)), "integer": integer}


# --------------------------------------------------------------------------- window / level
_PRESET_PERCENTILES = (0.5, 1, 5, 20, 95, 99, 99.5)


def _percentiles(a: np.ndarray, q) -> np.ndarray:
    """np.percentile(a, q) (linear), exact; 8- and 16-bit integers by counting (fast)."""
    flat = np.ravel(a)
    if flat.dtype.kind in "iu" and flat.dtype.itemsize <= 2 and flat.size > 4096:
        # order statistics from a histogram of every possible value: no sort, no copy
        if flat.dtype.kind == "i":
            codes = flat.view(np.uint8 if flat.dtype.itemsize == 1 else np.uint16) ^ \
                (np.uint8(0x80) if flat.dtype.itemsize == 1 else np.uint16(0x8000))
            shift = -(1 << (8 * flat.dtype.itemsize - 1))
        else:
            codes, shift = flat, 0
        cum = np.cumsum(np.bincount(codes, minlength=1 << (8 * flat.dtype.itemsize)))
        h = (np.asarray(q, float) / 100.0) * (flat.size - 1)   # numpy's virtual index
        lo = np.floor(h).astype(np.int64)
        hi = np.minimum(lo + 1, flat.size - 1)
        v_lo = np.searchsorted(cum, lo, side="right").astype(np.float64) + shift
        v_hi = np.searchsorted(cum, hi, side="right").astype(np.float64) + shift
        t, d = h - lo, v_hi - v_lo
        return np.where(t >= 0.5, v_hi - d * (1 - t), v_lo + d * t)   # numpy's _lerp
    return np.percentile(np.asarray(flat, float), q)


def volume_stats(arr: np.ndarray) -> dict:
    """What :func:`window_presets` needs of a volume (finite min, max, percentiles)."""
    a = np.asarray(arr)
    if a.dtype.kind in "fc":
        finite = a if np.isfinite(a).all() else a[np.isfinite(a)]
    else:
        finite = a
    if finite.size == 0:
        return {"empty": True}
    return {"empty": False, "min": float(finite.min()), "max": float(finite.max()),
            "p": _percentiles(finite, _PRESET_PERCENTILES)}


def window_presets(arr: np.ndarray, mask: np.ndarray | None = None, *,
                   stats: dict | None = None) -> dict[str, tuple[float, float]]:
    """Named (window, level) presets computed from the data (MRI / US have no fixed units).

    "Auto" is the 1-99 percentile range; "Lesion" centres on the ROI's
    intensities when a mask is given (else 20-99.5 percentiles). ``stats``:
    :func:`volume_stats` of ``arr`` computed before (``Canonical.window_presets``
    keeps them), so that only the ROI part is computed again.
    """
    st = stats if stats is not None else volume_stats(arr)
    if st["empty"]:
        return {"Full range": (1.0, 0.5)}
    lo, hi, p = st["min"], st["max"], st["p"]

    def wl(a_, b_):
        w = max(float(b_ - a_), 1e-6)
        return (w, float(a_ + w / 2))

    presets = {
        "Auto (1-99 %)": wl(p[1], p[5]),
        "Full range": wl(lo, hi),
        "Soft tissue (5-95 %)": wl(p[2], p[4]),
        "High contrast (20-99.5 %)": wl(p[3], p[6]),
    }
    if mask is not None and np.any(mask):
        roi = np.asarray(arr)[np.asarray(mask, bool)].astype(float)
        q = np.percentile(roi, [1, 99])
        presets[LESION_PRESET] = wl(min(q[0], p[1]), q[1])
    return presets


def apply_window(sl: np.ndarray, window: float, level: float) -> np.ndarray:
    """Map intensities to uint8 grey: level - window/2 -> 0, level + window/2 -> 255."""
    w = max(float(window), 1e-6)
    lo = float(level) - w / 2
    g = (np.asarray(sl, float) - lo) / w
    return np.clip(np.rint(g * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- overlays
def heat_colormap(values: np.ndarray, name: str = "inferno") -> np.ndarray:
    """(..., 3) uint8 RGB colours of values in 0..1 (matplotlib colormap)."""
    from matplotlib import colormaps
    cmap = colormaps[name]
    rgba = cmap(np.clip(np.asarray(values, float), 0, 1))
    return np.rint(rgba[..., :3] * 255).astype(np.uint8)


def compose_rgb(grey: np.ndarray, *, mask: np.ndarray | None = None,
                mask_color: Sequence[int] = (0, 255, 120), mask_opacity: float = 0.35,
                outline: bool = True, heat: np.ndarray | None = None,
                heat_opacity: float = 0.45, heat_cmap: str = "inferno",
                heat_threshold: float = 0.05) -> np.ndarray:
    """Grey uint8 slice + optional mask fill/outline + heat map (0..1) -> RGB uint8.

    Heat is blended with alpha = heat_opacity where heat >= heat_threshold (a
    perceptually uniform colour map by default); the mask fill is blended with
    mask_opacity and its outline drawn opaque.
    """
    g = np.asarray(grey)
    if g.dtype != np.uint8:
        raise ValueError("compose_rgb expects a uint8 grey slice (use apply_window)")
    if heat is None:
        # no heat map: the grey pixels are exact in uint8; only the ROI's pixels are blended
        # (in float, as below), and its outline found in its own bounding box
        rgb = np.repeat(g[..., None], 3, axis=-1)
        if mask is not None:
            m = _slice_mask(mask, g.shape)
            box = _box2d(m)
            if box is not None:
                mb = m[box]
                sub = rgb[box]
                col = np.asarray(mask_color, float)
                a = float(mask_opacity)
                sub[mb] = np.clip(np.rint(sub[mb] * (1 - a) + col * a), 0, 255).astype(np.uint8)
                if outline:
                    edge = mb & ~ndimage.binary_erosion(mb, border_value=0)
                    sub[edge] = np.clip(np.rint(col), 0, 255).astype(np.uint8)
        return rgb
    rgb = np.repeat(g[..., None].astype(float), 3, axis=-1)
    h = np.clip(np.asarray(heat, float), 0, 1)
    if h.shape != g.shape:
        raise ValueError(f"heat map {h.shape} does not match slice {g.shape}")
    alpha = (h >= heat_threshold) * float(heat_opacity)
    rgb = rgb * (1 - alpha[..., None]) + heat_colormap(h, heat_cmap) * alpha[..., None]
    if mask is not None:
        m = _slice_mask(mask, g.shape)
        col = np.asarray(mask_color, float)
        a = float(mask_opacity)
        rgb[m] = rgb[m] * (1 - a) + col * a
        if outline:
            edge = m & ~ndimage.binary_erosion(m, border_value=0)
            rgb[edge] = col
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _slice_mask(mask, shape) -> np.ndarray:
    m = np.asarray(mask, bool)
    if m.shape != tuple(shape):
        raise ValueError(f"mask {m.shape} does not match slice {tuple(shape)}")
    return m


def _box2d(m: np.ndarray) -> tuple[slice, slice] | None:
    """Bounding box of a 2-D mask grown by one pixel (inside the slice), None if empty.

    The pixel of margin keeps the outline exact: an erosion with a zero border inside
    the box is the erosion of the whole slice restricted to it."""
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return (slice(max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, m.shape[0])),
            slice(max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, m.shape[1])))


def zoom_to_roi(rgb: np.ndarray, mask: np.ndarray | None, pixel_size=(1.0, 1.0), *,
                out_px: int = 320, context: float = 1.0, min_px: int = 24) -> np.ndarray:
    """The slice cropped around the ROI (its box grown by ``context`` x its size on every
    side, at least ``min_px`` pixels) and resized to ``out_px`` on its long side with the
    physical aspect ratio (``pixel_size`` = (column, row) spacing). Without an ROI the
    whole slice is resized. Nearest-neighbour, so outlines stay crisp."""
    from PIL import Image as PILImage
    img = np.asarray(rgb)
    r0, r1, c0, c1 = 0, img.shape[0], 0, img.shape[1]
    if mask is not None and np.asarray(mask).any():
        rr, cc = np.nonzero(mask)
        h, w = rr.max() - rr.min() + 1, cc.max() - cc.min() + 1
        pr, pc = max(int(context * h), (min_px - h) // 2, 2), max(int(context * w), (min_px - w) // 2, 2)
        r0, r1 = max(rr.min() - pr, 0), min(rr.max() + 1 + pr, img.shape[0])
        c0, c1 = max(cc.min() - pc, 0), min(cc.max() + 1 + pc, img.shape[1])
    crop = img[r0:r1, c0:c1]
    sx, sy = float(pixel_size[0]), float(pixel_size[1])
    hh, ww = crop.shape[0] * sy, crop.shape[1] * sx
    f = out_px / max(hh, ww)
    size = (max(1, int(round(ww * f))), max(1, int(round(hh * f))))
    return np.asarray(PILImage.fromarray(np.ascontiguousarray(crop)).resize(size, PILImage.NEAREST))


def rgb_to_png_bytes(rgb: np.ndarray) -> bytes:
    """8-bit grey (H, W) or RGB (H, W, 3) -> PNG bytes, fast.

    An RGB slice whose three channels are equal (no overlay) is written as grey
    (a third of the bytes). Rows are stored unfiltered and deflated at level 1:
    a displayed MRI slice is noisy enough that Pillow's adaptive row filters
    cost twice the time and give larger files. Decodes to exactly ``rgb``.
    """
    a = np.ascontiguousarray(rgb)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {a.dtype} {a.shape}")
    if a.ndim == 3 and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
        a = np.ascontiguousarray(a[..., 0])
    h, w = a.shape[:2]
    colour = 2 if a.ndim == 3 else 0
    rows = np.empty((h, 1 + a[0].size), np.uint8)
    rows[:, 0] = 0                                    # filter type None on every row
    rows[:, 1:] = a.reshape(h, -1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
            + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- drawing
def polygon_to_mask(cols: Sequence[float], rows: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside the polygon.

    Vertices are in pixel index units (column, row); pixel (r, c) has its
    centre at (c, r). Fewer than 3 vertices give an empty mask.
    """
    from matplotlib.path import Path as MplPath
    cols = np.asarray(cols, float)
    rows = np.asarray(rows, float)
    out = np.zeros(shape, dtype=bool)
    if cols.size < 3 or cols.size != rows.size:
        return out
    c0, c1 = int(max(np.floor(cols.min()), 0)), int(min(np.ceil(cols.max()), shape[1] - 1))
    r0, r1 = int(max(np.floor(rows.min()), 0)), int(min(np.ceil(rows.max()), shape[0] - 1))
    if c1 < c0 or r1 < r0:
        return out
    rr, cc = np.mgrid[r0:r1 + 1, c0:c1 + 1]
    path = MplPath(np.column_stack([cols, rows]))
    inside = path.contains_points(np.column_stack([cc.ravel(), rr.ravel()]), radius=1e-9)
    out[r0:r1 + 1, c0:c1 + 1] = inside.reshape(rr.shape)
    return out


def box_to_mask(col_range: Sequence[float], row_range: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of pixel centres inside an axis-aligned box (pixel units)."""
    c0, c1 = sorted(float(v) for v in col_range)
    r0, r1 = sorted(float(v) for v in row_range)
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    return (cc >= c0) & (cc <= c1) & (rr >= r0) & (rr <= r1)


def _signed_distance(m: np.ndarray) -> np.ndarray:
    """Negative inside, positive outside (pixel units)."""
    m = np.asarray(m, bool)
    if not m.any():
        return np.full(m.shape, np.inf)
    inside = ndimage.distance_transform_edt(m)
    outside = ndimage.distance_transform_edt(~m)
    return outside - inside


def interpolate_mask(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Shape-based interpolation between two 2-D masks at fraction t (0 -> a, 1 -> b)."""
    da, db = _signed_distance(a), _signed_distance(b)
    if np.isinf(da).all() or np.isinf(db).all():
        raise ValueError("interpolation needs an ROI on both slices")
    d = (1 - t) * da + t * db
    return d < 0


_EDITOR_IDS = itertools.count(1)


@dataclass
class MaskEditor:
    """Canonical boolean ROI with an undo stack (bounded).

    All operations act on display slices (view, index) and are undoable. Change the
    mask through these methods (or :meth:`set_mask`): what a page asks on every rerun
    (voxel count, drawn slices, bounding box) is computed once per change, not once per
    slice move (at 448 x 448 x 100 each question scans 20 M voxels).
    """
    mask: np.ndarray
    max_history: int = 30
    history: list = field(default_factory=list)
    version: int = field(default=0, compare=False)
    uid: int = field(default_factory=lambda: next(_EDITOR_IDS), init=False, compare=False)
    _facts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def empty(cls, shape: tuple[int, int, int]) -> "MaskEditor":
        return cls(np.zeros(shape, dtype=bool))

    def _push(self) -> None:
        self.history.append(np.packbits(self.mask))
        if len(self.history) > self.max_history:
            del self.history[0]
        self.version += 1

    def _fact(self, name, compute):
        """``compute()`` memoised for the mask as it is now (its version and array)."""
        key = (self.version, id(self.mask))
        if self._facts.get("key") != key:
            self._facts = {"key": key}
        if name not in self._facts:
            self._facts[name] = compute()
        return self._facts[name]

    @property
    def token(self) -> tuple[int, int]:
        """Changes whenever the mask does, unique to this editor in the process (never
        reused, unlike ``id``): a key for what is derived from the ROI."""
        return (self.uid, self.version)

    def undo(self) -> bool:
        """Restore the state before the last operation; False when nothing to undo."""
        if not self.history:
            return False
        packed = self.history.pop()
        self.mask = np.unpackbits(packed, count=self.mask.size).astype(bool).reshape(self.mask.shape)
        self.version += 1
        return True

    def set_mask(self, mask: np.ndarray) -> None:
        m = np.asarray(mask, bool)
        if m.shape != self.mask.shape:
            raise ValueError(f"mask {m.shape} does not match the editor's grid {self.mask.shape}")
        self._push()
        self.mask = m.copy()

    def clear(self) -> None:
        self._push()
        self.mask = np.zeros_like(self.mask)

    def apply(self, view: str, index: int, region: np.ndarray, mode: str = "add") -> int:
        """Add (or subtract) a 2-D region on a display slice; returns voxels changed."""
        if mode not in ("add", "subtract"):
            raise ValueError(f"mode must be add or subtract, not {mode!r}")
        sl = get_slice(self.mask, view, index).copy()
        region = np.asarray(region, bool)
        new = (sl | region) if mode == "add" else (sl & ~region)
        changed = int(np.count_nonzero(new != sl))
        if changed:
            self._push()
            put_slice(self.mask, view, index, new)
        return changed

    def apply_polygon(self, view: str, index: int, cols, rows, mode: str = "add") -> int:
        shape = get_slice(self.mask, view, index).shape
        return self.apply(view, index, polygon_to_mask(cols, rows, shape), mode)

    def copy_to_neighbours(self, view: str, index: int, n: int = 1) -> int:
        """Copy slice ``index`` onto the ``n`` slices either side (union with what is there)."""
        src = get_slice(self.mask, view, index).copy()
        total = self.mask.shape[_view_axis(view)]
        self._push()
        changed = 0
        for k in range(max(index - n, 0), min(index + n, total - 1) + 1):
            if k == index:
                continue
            cur = get_slice(self.mask, view, k)
            new = cur | src
            changed += int(np.count_nonzero(new != cur))
            put_slice(self.mask, view, k, new)
        if not changed:
            self.history.pop()
        return changed

    def interpolate(self, view: str, i0: int, i1: int) -> int:
        """Fill the slices strictly between i0 and i1 by shape-based interpolation."""
        lo, hi = sorted((int(i0), int(i1)))
        a, b = get_slice(self.mask, view, lo), get_slice(self.mask, view, hi)
        if not a.any() or not b.any():
            raise ValueError(f"draw an ROI on both slice {lo} and slice {hi} before interpolating")
        self._push()
        changed = 0
        for k in range(lo + 1, hi):
            t = (k - lo) / (hi - lo)
            new = interpolate_mask(a, b, t)
            cur = get_slice(self.mask, view, k)
            changed += int(np.count_nonzero(new != cur))
            put_slice(self.mask, view, k, new)
        return changed

    def drawn_slices(self, view: str) -> list[int]:
        """Slice indices of ``view`` that hold ROI voxels."""
        ax = _view_axis(view)

        def compute():
            if ax == 0:   # one pass over the volume; the other views from its bounding box
                return np.flatnonzero(self.mask.reshape(self.mask.shape[0], -1).any(axis=1)).tolist()
            box = self.bbox()
            if box is None:
                return []
            sub = self.mask[box]
            other = tuple(i for i in range(3) if i != ax)
            return (np.flatnonzero(sub.any(axis=other)) + box[ax].start).tolist()
        return list(self._fact(("drawn", ax), compute))

    def bbox(self) -> tuple[slice, slice, slice] | None:
        """Bounding box of the ROI (canonical index slices), None when it is empty."""
        def compute():
            zs = self.drawn_slices("axial")
            if not zs:
                return None
            sub = self.mask[zs[0]:zs[-1] + 1]
            rows = np.flatnonzero(sub.any(axis=(0, 2)))
            cols = np.flatnonzero(sub.any(axis=(0, 1)))
            return (slice(zs[0], zs[-1] + 1), slice(int(rows[0]), int(rows[-1]) + 1),
                    slice(int(cols[0]), int(cols[-1]) + 1))
        return self._fact("bbox", compute)

    def middle_slice(self, view: str, default: int) -> int:
        """The middle of the slices holding the ROI in ``view`` (``default`` when it is empty)."""
        drawn = self.drawn_slices(view)
        return drawn[len(drawn) // 2] if drawn else default

    @property
    def voxels(self) -> int:
        def compute():
            box = self.bbox()
            return 0 if box is None else int(np.count_nonzero(self.mask[box]))
        return self._fact("voxels", compute)


# --------------------------------------------------------------------------- figures
def crop_for_zoom(shape: tuple[int, int], zoom: float, center: tuple[float, float] | None = None
                  ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis ranges (column range, row range) in pixel units showing 1/zoom of the slice."""
    h, w = shape
    z = max(float(zoom), 1.0)
    cr, cc = center if center is not None else ((h - 1) / 2, (w - 1) / 2)
    hh, hw = h / z / 2, w / z / 2
    cc = float(np.clip(cc, hw - 0.5, w - 0.5 - hw))
    cr = float(np.clip(cr, hh - 0.5, h - 0.5 - hh))
    return (cc - hw, cc + hw), (cr - hh, cr + hh)


def slice_figure(rgb: np.ndarray, pixel_size: tuple[float, float] = (1.0, 1.0), *,
                 title: str | None = None, labels: dict[str, str] | None = None,
                 selectable: bool = True, max_points: int = 6000, zoom: float = 1.0,
                 zoom_center: tuple[float, float] | None = None, height: int = 420,
                 dragmode: str | None = None, validate: bool = False):
    """Plotly figure of one composited slice.

    Axes are in pixel index units (column, row) so a lasso path maps directly
    to pixel coordinates; the physical aspect ratio comes from ``pixel_size``
    (column width, row height in mm). With ``selectable`` a grid of nearly
    transparent markers (at most ``max_points``) lies over the image so that
    plotly's lasso and box tools are active; only the lasso *path* is used.
    ``dragmode``: what a drag does at first ("lasso" when selectable, else "pan"); with
    "pan" a selectable figure selects the marker under a *click* (Streamlit makes a
    click select only when the drag mode is not lasso / select), which is how a seed
    point is given.
    """
    import plotly.graph_objects as go
    h, w = rgb.shape[:2]
    png = base64.b64encode(rgb_to_png_bytes(rgb)).decode("ascii")
    # built without plotly's property validation unless ``validate`` (it cost more than the
    # image at clinical size): every property is a fixed literal or a number, and
    # tests/app/test_viewer_speed_paths.py checks the JSON equals the validated figure's
    traces = [go.Image(source="data:image/png;base64," + png, x0=0, dx=1, y0=0, dy=1,
                       hoverinfo="skip", name="slice", _validate=validate)]
    if selectable:
        cc, rr = _point_grid(h, w, max_points)
        traces.append(go.Scattergl(x=cc, y=rr, mode="markers",
                                   marker=dict(size=3, opacity=0.01, color="white"),
                                   hovertemplate="col %{x}, row %{y}<extra></extra>",
                                   name="pixels", showlegend=False, _validate=validate))
    xr, yr = crop_for_zoom((h, w), zoom, zoom_center)
    aspect = pixel_size[1] / pixel_size[0]
    ann = []
    if labels:
        pos = {"top": (0.5, 1.0, "center", "bottom"), "bottom": (0.5, 0.0, "center", "top"),
               "left": (0.0, 0.5, "right", "middle"), "right": (1.0, 0.5, "left", "middle")}
        for edge, text in labels.items():
            x, y, xa, ya = pos[edge]
            ann.append(dict(x=x, y=y, xref="x domain", yref="y domain", text=f"<b>{text}</b>",
                            showarrow=False, xanchor=xa, yanchor=ya,
                            font=dict(color="#ffd166", size=13)))
    # one layout dict given to the constructor: plotly's update_* calls each run its
    # relayout machinery, which cost more than the image itself at clinical size
    layout = dict(
        xaxis=dict(range=list(xr), showgrid=False, zeroline=False, showticklabels=False,
                   constrain="domain"),
        yaxis=dict(range=[yr[1], yr[0]], showgrid=False, zeroline=False, showticklabels=False,
                   scaleanchor="x", scaleratio=aspect, constrain="domain"),
        title=dict(text=title or "", x=0.5, font=dict(size=13)),
        margin=dict(l=22, r=22, t=58 if title else 30, b=22), height=height,
        dragmode=dragmode or ("lasso" if selectable else "pan"), modebar=dict(orientation="v"),
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#000",
        newselection=dict(line=dict(color="#ffd166", width=2)))
    if ann:
        layout["annotations"] = ann
    return go.Figure(data=traces, layout=layout, _validate=validate)


@functools.lru_cache(maxsize=8)
def _point_grid(h: int, w: int, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, rows) of the selectable marker grid of an h x w slice (read-only)."""
    step = max(1, int(np.ceil(np.sqrt(h * w / max_points))))
    rr, cc = np.mgrid[0:h:step, 0:w:step]
    cc, rr = cc.ravel(), rr.ravel()
    cc.flags.writeable = False
    rr.flags.writeable = False
    return cc, rr


# --------------------------------------------------------------------------- saving
def mask_to_nifti_bytes(mask_canonical: np.ndarray, can: Canonical, reference) -> bytes:
    """Canonical mask -> NIfTI (.nii.gz) bytes on the reference image's own grid (uint8 0/1)."""
    import tempfile
    from pathlib import Path
    arr = can.from_canonical(np.asarray(mask_canonical, bool)).astype(np.uint8)
    if hasattr(reference, "spatial_template"):
        img = reference.spatial_template().with_array(arr, sequence="mask", modality="SEG")
    else:  # pragma: no cover - contract fallback
        raise TypeError("reference must be a her2core Image")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "mask.nii.gz"
        try:
            from her2core.imaging.io import save_image
            save_image(img, p)
        except ImportError:
            import SimpleITK as sitk
            sitk.WriteImage(img.to_sitk(), str(p), useCompression=True)
        return p.read_bytes()
