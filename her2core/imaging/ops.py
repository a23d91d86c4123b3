"""Operations on Images that keep their geometry right.

Every function takes and returns :class:`~her2core.imaging.image.Image` objects
(except the array-level helpers ``stack_25d`` and ``largest_roi_slice``), so
physical coordinates survive resampling, cropping and pasting back. Masks are
only ever resampled nearest-neighbour; images linearly (or as asked).

Indices in arguments such as ``margin_px`` or ``crop(start=...)`` follow the
SimpleITK order (x, y[, z]); array shapes are numpy order ((z,) y, x).
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from her2core.errors import GeometryError, MaskError

from .image import Image

log = logging.getLogger(__name__)

#: Default target spacing (x, y, z) in mm for MRI resampling.
DEFAULT_SPACING = (0.5, 0.5, 3.0)

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
    "lanczos": sitk.sitkLanczosWindowedSinc,
}


def _is_mask(image: Image, is_mask: bool | None) -> bool:
    if is_mask is not None:
        return is_mask
    seq = (image.sequence or "").lower()
    return image.modality == "SEG" or seq == "mask" or seq.endswith("_mask") or \
        seq.startswith("mask")


def _interpolator(image: Image, is_mask: bool | None, interpolator: str | None) -> int:
    if _is_mask(image, is_mask):
        if interpolator not in (None, "nearest"):
            raise ValueError(f"masks are resampled nearest-neighbour only, not {interpolator!r}")
        return sitk.sitkNearestNeighbor
    name = interpolator or "linear"
    if name not in _INTERPOLATORS:
        raise ValueError(f"unknown interpolator {name!r}; use one of {sorted(_INTERPOLATORS)}")
    return _INTERPOLATORS[name]


def _resample_onto(image: Image, grid: Image, interp: int, default_value: float,
                   transform: sitk.Transform | None = None) -> np.ndarray:
    """Array of ``image`` sampled on ``grid``'s spatial grid (phases one by one)."""
    ref = grid.spatial_template().to_sitk()
    tx = transform if transform is not None else sitk.Transform(image.ndim, sitk.sitkIdentity)
    out_type = sitk.sitkFloat32 if interp != sitk.sitkNearestNeighbor else sitk.sitkUnknown

    def one(phase: int | None) -> np.ndarray:
        src = image.to_sitk(phase=phase)
        if out_type == sitk.sitkFloat32 and src.GetPixelID() != sitk.sitkFloat64:
            src = sitk.Cast(src, sitk.sitkFloat32)
        res = sitk.Resample(src, ref, tx, interp, float(default_value), src.GetPixelID())
        return sitk.GetArrayFromImage(res)

    if image.is_phases:
        return np.stack([one(t) for t in range(image.n_phases)])
    return one(None)


def resample_to_spacing(image: Image, spacing: Sequence[float] = DEFAULT_SPACING, *,
                        is_mask: bool | None = None, interpolator: str | None = None,
                        default_value: float = 0.0) -> Image:
    """Resample onto a grid of the given spacing (mm, x y [z]) over the same extent.

    The first voxel centre (origin) and the direction are kept; the size is
    ``round(size * old_spacing / spacing)``. Masks (modality "SEG", sequence
    "mask", or ``is_mask=True``) use nearest neighbour and keep their dtype;
    images use linear interpolation (float32). A 2-D image uses the first two
    values of ``spacing``; a 4-D phases image is resampled phase by phase.
    """
    spacing = tuple(float(s) for s in spacing)[: image.ndim]
    if len(spacing) != image.ndim or min(spacing) <= 0:
        raise ValueError(f"spacing must be {image.ndim} positive values, got {spacing}")
    old = np.asarray(image.spacing)
    size = np.maximum(1, np.round(np.asarray(image.size) * old / np.asarray(spacing))).astype(int)
    grid = Image(np.zeros(tuple(size[::-1]), np.uint8), spacing, image.origin, image.direction)
    arr = _resample_onto(image, grid, _interpolator(image, is_mask, interpolator), default_value)
    return Image(arr, spacing, image.origin, image.direction, sequence=image.sequence,
                 modality=image.modality, source=image.source,
                 spacing_known=image.spacing_known, meta=dict(image.meta))


def resample_to_reference(image: Image, reference: Image, *, is_mask: bool | None = None,
                          interpolator: str | None = None, default_value: float = 0.0,
                          transform: sitk.Transform | None = None) -> Image:
    """Sample ``image`` on ``reference``'s grid by physical coordinates.

    ``transform`` (e.g. from :func:`register_rigid`) maps reference points to
    ``image`` points (ITK convention); default identity. Voxels of the reference
    outside ``image`` get ``default_value``.
    """
    if image.ndim != reference.ndim:
        raise GeometryError(f"cannot resample a {image.ndim}-D image onto a {reference.ndim}-D "
                            "grid", file=image.source)
    arr = _resample_onto(image, reference, _interpolator(image, is_mask, interpolator),
                         default_value, transform)
    ref = reference
    return Image(arr, ref.spacing, ref.origin, ref.direction, sequence=image.sequence,
                 modality=image.modality, source=image.source, spacing_known=ref.spacing_known,
                 meta=dict(image.meta, resampled_to=reference.source))


def resample_case(images: Mapping[str, Image], reference: str | Image,
                  **kwargs) -> dict[str, Image]:
    """Bring every image of a case onto one reference grid (by physical coordinates).

    ``reference`` is a key of ``images`` (e.g. "DCE") or an Image. Images already
    on the grid are returned unchanged.
    """
    ref = images[reference] if isinstance(reference, str) else reference
    out = {}
    for key, img in images.items():
        out[key] = img if img.same_grid(ref) else resample_to_reference(img, ref, **kwargs)
    return out


def resize(image: Image, shape: Sequence[int], *, is_mask: bool | None = None,
           interpolator: str | None = None) -> Image:
    """Resample to a given array shape (numpy order) over the same physical extent.

    The outer voxel edges stay where they are, so e.g. a 96^3 network input or
    Grad-CAM map keeps correct physical coordinates and can be put back with
    :func:`paste_into`.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != image.ndim or min(shape) < 1:
        raise ValueError(f"shape must be {image.ndim} positive sizes, got {shape}")
    old_sp = np.asarray(image.spacing)
    new_sp = old_sp * np.asarray(image.size) / np.asarray(shape[::-1])
    origin = np.asarray(image.origin) + image.direction_matrix @ ((new_sp - old_sp) / 2.0)
    grid = Image(np.zeros(shape, np.uint8), new_sp, origin, image.direction)
    arr = _resample_onto(image, grid, _interpolator(image, is_mask, interpolator), 0.0)
    return Image(arr, tuple(new_sp), tuple(origin), image.direction, sequence=image.sequence,
                 modality=image.modality, source=image.source,
                 spacing_known=image.spacing_known, meta=dict(image.meta))


def register_rigid(moving: Image, fixed: Image, *, fixed_mask: Image | None = None,
                   bins: int = 32, sampling: float = 0.25, iterations: int = 200,
                   shrink_factors: Sequence[int] = (2, 1),
                   smoothing_sigmas: Sequence[float] = (1.0, 0.0),
                   seed: int = 0) -> tuple[Image, sitk.Transform]:
    """Rigid registration of ``moving`` onto ``fixed`` (Euler, Mattes mutual information).

    Initialised by aligning the image centres, optimised with regular-step
    gradient descent on a multi-resolution pyramid; random metric sampling uses
    ``seed`` (shifted by one: SimpleITK takes 0 for "seed from the clock"), so a case
    gives the same transform on every run. For 4-D images the first phase is
    registered and the transform applied to every phase.

    Returns:
        (moving resampled linearly onto ``fixed``'s grid, the transform). The
        transform maps fixed physical points to moving physical points (ITK
        convention) and can be passed to :func:`resample_to_reference`.
    """
    dim = fixed.ndim
    if moving.ndim != dim:
        raise GeometryError(f"cannot register a {moving.ndim}-D image to a {dim}-D one",
                            file=moving.source)
    f = sitk.Cast(fixed.to_sitk(phase=0 if fixed.is_phases else None), sitk.sitkFloat32)
    m = sitk.Cast(moving.to_sitk(phase=0 if moving.is_phases else None), sitk.sitkFloat32)
    base = sitk.Euler3DTransform() if dim == 3 else sitk.Euler2DTransform()
    initial = sitk.CenteredTransformInitializer(
        f, m, base, sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    # SimpleITK reads a seed of 0 as "seed from the wall clock": shift by one
    reg.SetMetricSamplingPercentage(sampling, int(seed) + 1)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(sitk.Cast(fixed_mask.to_sitk(), sitk.sitkUInt8))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations,
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink_factors))
    reg.SetSmoothingSigmasPerLevel(list(smoothing_sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    try:
        transform = reg.Execute(f, m)
    except RuntimeError as exc:
        raise GeometryError(f"rigid registration failed: {' '.join(str(exc).split())[-200:]}",
                            file=moving.source,
                            hint="check that both images show the same anatomy") from None
    log.info("rigid registration: metric %.4f after %d iterations (%s)",
             reg.GetMetricValue(), reg.GetOptimizerIteration(),
             reg.GetOptimizerStopConditionDescription())
    out = resample_to_reference(moving, fixed, transform=transform, is_mask=False)
    return out, transform


def zscore(image: Image, mask: Image | None = None, *, eps: float = 1e-8) -> Image:
    """(x - mean) / std as float32, statistics within the ROI or over the whole image.

    A 4-D phases image is normalised with one mean and std over all phases
    (keeping relative enhancement). A constant region gives std 0: the image is
    only centred and a warning logged.
    """
    arr = image.array.astype(np.float32)
    if mask is not None:
        _require_same_grid(image, mask)
        sel = mask.array > 0
        if not sel.any():
            raise MaskError("mask is empty; cannot compute ROI statistics", file=mask.source)
        values = arr[:, sel] if image.is_phases else arr[sel]
    else:
        values = arr
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    if std <= eps:
        log.warning("z-score of %s: standard deviation %.3g; image only centred",
                    image.source or "<array>", std)
        std = 1.0
    return image.with_array(((arr - mean) / std).astype(np.float32),
                            meta=dict(image.meta, zscore_mean=mean, zscore_std=std))


# ------------------------------------------------------------ ROI
def _require_same_grid(image: Image, mask: Image) -> None:
    ref = image.spatial_template() if image.is_phases else image
    diffs = ref.grid_differences(mask)
    if diffs:
        raise GeometryError("mask is not on the image grid (mask vs image): " + "; ".join(diffs),
                            file=mask.source,
                            hint="check or resample the mask first (mask.check_mask)")


def _per_axis(value, ndim: int, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.size == 1:
        arr = np.repeat(arr, ndim)
    if arr.size != ndim or np.any(arr < 0):
        raise ValueError(f"{name} must be one or {ndim} non-negative values, got {value}")
    return arr


def roi_bbox(mask: Image, margin_mm: float | Sequence[float] | None = None,
             margin_px: int | Sequence[int] | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Bounding box of the ROI plus a margin, clipped to the image.

    Returns ``(start, stop)`` in index order (x, y[, z]), stop exclusive.
    ``margin_mm`` is converted per axis to ``ceil(mm / spacing)`` voxels.
    """
    if margin_mm is not None and margin_px is not None:
        raise ValueError("give margin_mm or margin_px, not both")
    d = mask.ndim
    lo_hi = _nonzero_box(np.asarray(mask.array) > 0)
    if lo_hi is None:
        raise MaskError("mask is empty; there is no ROI to crop to", file=mask.source)
    lo, hi = lo_hi[0][::-1], lo_hi[1][::-1]  # (x, y[, z])
    if margin_mm is not None:
        mm = _per_axis(margin_mm, d, "margin_mm")
        margin = np.ceil(mm / np.asarray(mask.spacing) - 1e-9).astype(int)
    elif margin_px is not None:
        margin = _per_axis(margin_px, d, "margin_px").astype(int)
    else:
        margin = np.zeros(d, int)
    start = np.maximum(lo - margin, 0)
    stop = np.minimum(hi + 1 + margin, np.asarray(mask.size))
    return tuple(int(v) for v in start), tuple(int(v) for v in stop)


def _nonzero_box(m: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, last) index along each numpy axis of the True voxels, or None if none.

    The same as the min / max of ``np.argwhere(m)`` without listing every ROI voxel (a
    large clinical-size ROI has millions): the first axis from one projection, the
    others inside the slab it spans."""
    if m.ndim == 0 or not m.size:
        return None
    first = np.flatnonzero(m.reshape(m.shape[0], -1).any(axis=1))
    if first.size == 0:
        return None
    lo, hi = [int(first[0])], [int(first[-1])]
    slab = m[lo[0]:hi[0] + 1]
    for ax in range(1, m.ndim):
        other = tuple(i for i in range(m.ndim) if i != ax)
        nz = np.flatnonzero(slab.any(axis=other))
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]))
    return np.asarray(lo), np.asarray(hi)


def crop(image: Image, start: Sequence[int], stop: Sequence[int]) -> Image:
    """Sub-image ``[start, stop)`` (index order x, y[, z]) with the origin moved accordingly."""
    start = np.asarray(start, dtype=int)
    stop = np.asarray(stop, dtype=int)
    size = np.asarray(image.size)
    if start.size != image.ndim or stop.size != image.ndim or np.any(start < 0) or \
            np.any(stop > size) or np.any(stop <= start):
        raise ValueError(f"crop box {tuple(start)}..{tuple(stop)} is not inside size {tuple(size)}")
    sl = tuple(slice(int(a), int(b)) for a, b in zip(start[::-1], stop[::-1]))
    arr = image.array[(slice(None),) + sl] if image.is_phases else image.array[sl]
    origin = image.index_to_physical(start)
    return image.replace(array=np.ascontiguousarray(arr), origin=tuple(origin),
                         meta=dict(image.meta, crop_start=tuple(int(v) for v in start),
                                   crop_stop=tuple(int(v) for v in stop)))


def crop_to_roi(image: Image, mask: Image, margin_mm: float | Sequence[float] | None = None,
                margin_px: int | Sequence[int] | None = None) -> Image:
    """Crop ``image`` to the ROI's bounding box plus a margin (clipped to the image).

    The crop's origin is the physical position of its first voxel, so every voxel
    keeps its physical coordinates (``paste_into`` puts it back exactly).
    Paper 001 (tumour mask expanded by 50 pixels in-plane): ``margin_px=(50, 50, 0)``
    for MRI, ``margin_px=50`` for 2-D ultrasound -- the bounding box of a mask
    dilated by N pixels is the ROI's box plus N on each side. Paper 003 (smallest
    rectangle around the ROI plus 10 pixels): ``margin_px=10`` on the 2-D slice.
    """
    _require_same_grid(image, mask)
    start, stop = roi_bbox(mask, margin_mm=margin_mm, margin_px=margin_px)
    return crop(image, start, stop)


def paste_into(reference: Image, crop_image: Image, *, fill: float = 0.0,
               interpolator: str | None = None) -> Image:
    """Put an image defined on a crop (or any sub-grid) back onto ``reference``'s grid.

    Placement is by physical coordinates. When the crop shares the reference's
    spacing and direction and starts on a reference voxel (the output of
    :func:`crop_to_roi`), values are copied exactly (dtype kept); otherwise the
    crop is resampled (linear, or nearest for masks) onto the reference grid.
    Reference voxels outside the crop get ``fill``.
    """
    ref = reference.spatial_template() if reference.is_phases else reference
    if crop_image.ndim != ref.ndim:
        raise GeometryError(f"cannot paste a {crop_image.ndim}-D image into a {ref.ndim}-D one",
                            file=crop_image.source)
    same_axes = (np.allclose(crop_image.spacing, ref.spacing, rtol=1e-5, atol=0) and
                 np.allclose(crop_image.direction, ref.direction, atol=1e-6))
    offset = ref.physical_to_index(crop_image.origin)
    if same_axes and np.allclose(offset, np.round(offset), atol=1e-3):
        off = np.round(offset).astype(int)
        dtype = crop_image.array.dtype
        if np.asarray(fill).astype(dtype) != fill:  # fill not representable: widen
            dtype = np.result_type(dtype, np.float32)
        lead = crop_image.array.shape[:-ref.ndim]
        out = np.full(lead + ref.shape, fill, dtype=dtype)
        src_lo = np.maximum(-off, 0)
        dst_lo = np.maximum(off, 0)
        n = np.minimum(np.asarray(crop_image.size) - src_lo, np.asarray(ref.size) - dst_lo)
        if np.all(n > 0):
            dst = tuple(slice(int(a), int(a + k)) for a, k in zip(dst_lo[::-1], n[::-1]))
            src = tuple(slice(int(a), int(a + k)) for a, k in zip(src_lo[::-1], n[::-1]))
            lead_sl = (slice(None),) * len(lead)
            out[lead_sl + dst] = crop_image.array[lead_sl + src]
        else:
            log.warning("paste_into: crop lies entirely outside the reference image")
    else:
        out = _resample_onto(crop_image, ref,
                             _interpolator(crop_image, None, interpolator), fill)
    return Image(out, ref.spacing, ref.origin, ref.direction, sequence=crop_image.sequence,
                 modality=crop_image.modality, source=crop_image.source,
                 spacing_known=ref.spacing_known, meta=dict(crop_image.meta))


# ------------------------------------------------------------ morphology
def _binary_morph(mask: Image, px, op) -> Image:
    radius = _per_axis(px, mask.ndim, "px")
    if np.any(radius != np.round(radius)):
        raise ValueError(f"px must be whole voxels, got {px}")
    binary = (mask.array > 0).astype(np.uint8)
    if not np.any(radius):
        return mask.with_array(binary)
    img = mask.with_array(binary).to_sitk()
    out = op(img, [int(r) for r in radius], sitk.sitkBall, 0, 1)
    return mask.with_array(sitk.GetArrayFromImage(out).astype(np.uint8))


def dilate_mask(mask: Image, px: int | Sequence[int]) -> Image:
    """Binary dilation by ``px`` voxels (one value or per axis x, y[, z]; ball kernel).

    The ITK ball of radius r holds the voxels v with sum((v / (r + 0.5))**2) <= 1.
    Used for the 50-pixel peritumoral expansion (paper 001) and the ICC
    perturbation of masks.
    """
    return _binary_morph(mask, px, lambda img, r, k, b, f: sitk.BinaryDilate(
        img, r, k, backgroundValue=b, foregroundValue=f))


def erode_mask(mask: Image, px: int | Sequence[int]) -> Image:
    """Binary erosion by ``px`` voxels (ball kernel; outside the image counts as ROI)."""
    return _binary_morph(mask, px, lambda img, r, k, b, f: sitk.BinaryErode(
        img, r, k, backgroundValue=b, foregroundValue=f))


#: Feature regions a mask can stand for (FeatureConfig.region).
REGIONS = ("tumour", "peritumoral", "tumour+peritumoral")


def peritumoral_ring(mask: Image, mm: float | Sequence[float] | None = None, *,
                     px: float | Sequence[float] | None = None,
                     include_tumour: bool = False) -> Image:
    """The shell of tissue within ``mm`` of the ROI (outside it), on the mask's grid.

    Distances are Euclidean in physical units: a voxel belongs to the ring when
    ``sum(((p - q) / r) ** 2) <= 1`` for its centre p and some ROI voxel centre q,
    with ``r`` = ``mm`` per axis (x, y[, z]; one value for all). So an anisotropic
    grid gets a ring of the same thickness in millimetres along every axis, and
    the ring is clipped at the image's border. ``px`` gives the thickness in
    voxels instead, for pictures without a physical spacing (PNG ultrasound).
    ``include_tumour`` returns ROI + ring.

    Raises MaskError for an empty mask and GeometryError for ``mm`` on an image
    whose spacing is unknown.
    """
    if (mm is None) == (px is None):
        raise ValueError("give mm or px")
    d = mask.ndim
    roi = np.asarray(mask.array) > 0
    if roi.ndim != d:
        raise ValueError(f"peritumoral_ring needs a {d}-D mask, got shape {roi.shape}")
    if not roi.any():
        raise MaskError("mask is empty; no peritumoral region", file=mask.source)
    if mm is not None:
        if not mask.spacing_known:
            raise GeometryError(
                "a peritumoral ring in mm needs a physical pixel spacing, which this image lacks",
                file=mask.source,
                hint="give the spacing when loading, or a ring in pixels (peritumoral_px)")
        radius = _per_axis(mm, d, "mm")
        unit = np.asarray(mask.spacing, dtype=float)
    else:
        radius = _per_axis(px, d, "px")
        unit = np.ones(d)
    if np.any(radius <= 0):
        raise ValueError(f"ring thickness must be positive, got {mm if mm is not None else px}")
    # distance in units of the per-axis radius: the ring is where it is <= 1
    sampling = (unit / radius)[::-1]
    dist = ndimage.distance_transform_edt(~roi, sampling=sampling)
    ring = (dist <= 1.0 + 1e-9) & ~roi
    out = ring | roi if include_tumour else ring
    return mask.with_array(out.astype(np.uint8), sequence=mask.sequence or "mask",
                           modality=mask.modality or "SEG",
                           meta={**mask.meta, "region": "tumour+peritumoral" if include_tumour
                                 else "peritumoral"})


def feature_region(mask: Image, region: str = "tumour", *, mm: float | Sequence[float] = 5.0,
                   px: float | Sequence[float] | None = None) -> Image:
    """The mask a feature is computed on: the ROI ("tumour"), the ring around it
    ("peritumoral") or both ("tumour+peritumoral"); ``px`` is used instead of ``mm``
    when the image has no physical spacing."""
    if region not in REGIONS:
        raise ValueError(f"region {region!r}: choose one of {', '.join(REGIONS)}")
    if region == "tumour":
        return mask
    use_px = px is not None and not mask.spacing_known
    if not use_px and np.size(mm) == 3 and mask.ndim == 2:
        mm = list(np.ravel(mm))[:2]                 # an (x, y, z) setting used on a 2-D image
    return peritumoral_ring(mask, None if use_px else mm, px=px if use_px else None,
                            include_tumour=(region == "tumour+peritumoral"))


# ------------------------------------------------------------ slices
def largest_roi_slice(mask: Image | np.ndarray) -> int:
    """Axial index (array axis 0, i.e. z) of the slice with the largest ROI area.

    Ties go to the lowest index. Raises MaskError for an empty mask.
    """
    arr = mask.array if isinstance(mask, Image) else np.asarray(mask)
    if arr.ndim != 3:
        raise ValueError(f"largest_roi_slice needs a 3-D mask, got shape {arr.shape}")
    areas = np.count_nonzero(arr.reshape(arr.shape[0], -1), axis=1)
    if areas.max() == 0:
        raise MaskError("mask is empty; no slice has an ROI",
                        file=getattr(mask, "source", None))
    return int(np.argmax(areas))


def stack_25d(image: Image, mask: Image | None = None, k: int = 3,
              index: int | None = None) -> np.ndarray:
    """(k, y, x) stack of the k axial slices around ``index`` (clamped at the edges).

    ``index`` defaults to the mask's largest-ROI slice. Slices run from
    ``index - k // 2`` to ``index + (k - 1) // 2``; indices beyond the volume
    repeat the edge slice.
    """
    if image.is_phases or image.ndim != 3:
        raise ValueError(f"stack_25d needs a 3-D image, got shape {image.array.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if index is None:
        if mask is None:
            raise ValueError("give a mask or an index")
        _require_same_grid(image, mask)
        index = largest_roi_slice(mask)
    nz = image.shape[0]
    if not 0 <= index < nz:
        raise IndexError(f"slice index {index} outside 0..{nz - 1}")
    idx = np.clip(np.arange(index - k // 2, index - k // 2 + k), 0, nz - 1)
    return np.ascontiguousarray(image.array[idx])


def physical_extent_mm(image: Image) -> np.ndarray:
    """Edge-to-edge size of the grid along each index axis (x, y[, z]) in mm."""
    return np.asarray(image.size) * np.asarray(image.spacing)


__all__ = [
    "DEFAULT_SPACING", "resample_to_spacing", "resample_to_reference", "resample_case",
    "resize", "register_rigid", "zscore", "roi_bbox", "crop", "crop_to_roi", "paste_into",
    "dilate_mask", "erode_mask", "largest_roi_slice", "stack_25d", "physical_extent_mm",
    "REGIONS", "peritumoral_ring", "feature_region",
]
