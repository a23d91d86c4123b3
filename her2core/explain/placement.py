"""Put a CAM computed on the network input back into the source image, by physical coordinates.

The network saw a crop of the source image (one slice of a 3-D volume, or a 2-D
ultrasound picture), possibly padded to a square, resized to the backbone's
input size. The map lives on that resized grid. Here:

1. :func:`crop_box_image` describes the crop as an :class:`Image` on the source
   grid (a 3-D crop of one slice keeps its full 3-D geometry: a single-slice
   volume whose physical position is the slice's);
2. :func:`resized_geometry` gives the geometry of the crop resized to the map's
   shape: same physical extent (pixel *edges* coincide, the ``align_corners=False``
   convention of torch / OpenCV resizing), spacing scaled by old/new size, origin
   moved to the centre of the new first pixel, same direction;
3. :func:`place_map` resamples the map onto the source grid: every source voxel's
   centre is mapped to a continuous index of the resized map (bilinear within the
   slice; a source voxel belongs to the slice plane when it lies within half the
   slice thickness), zero elsewhere.

The result is an :class:`Image` with exactly the source's size, spacing, origin and
direction, ready for NIfTI (:func:`save_map`) or overlays.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from her2core.imaging.image import Image

log = logging.getLogger(__name__)

__all__ = ["crop_box_image", "resized_geometry", "place_map", "save_map"]


def crop_box_image(reference: Image, start: Sequence[int], size: Sequence[int],
                   array: np.ndarray | None = None) -> Image:
    """The crop ``reference[start : start + size]`` as an Image with its geometry.

    ``start`` and ``size`` are in index order (x, y[, z]); they may reach outside
    the image (a crop padded to a square). For a 3-D reference a 2-D crop of one
    axial slice is ``size = (w, h, 1)``. The array is zeros unless given.
    """
    start = np.asarray(start, dtype=float)
    size = tuple(int(s) for s in size)
    if len(start) != reference.ndim or len(size) != reference.ndim:
        raise ValueError(f"crop start/size must have {reference.ndim} entries (x, y[, z])")
    origin = reference.index_to_physical(start)
    shape = tuple(reversed(size))
    arr = np.zeros(shape, dtype=np.float32) if array is None else np.asarray(array).reshape(shape)
    return Image(arr, reference.spacing, tuple(origin), reference.direction,
                 sequence=reference.sequence, modality=reference.modality, source=reference.source)


def resized_geometry(crop: Image, new_shape: Sequence[int]) -> Image:
    """Geometry of ``crop`` resized to ``new_shape`` (numpy order).

    ``new_shape`` is (rows, cols) for an in-plane resize (a 3-D single-slice crop
    keeps its slice axis) or the full (z, y, x) shape for a volume. The physical
    extent is kept (``align_corners=False``): new spacing = old spacing * old
    size / new size; the first new voxel's centre sits at old continuous index
    ``0.5 * factor - 0.5``. The returned Image holds zeros of the new shape.
    """
    new_np = [int(v) for v in new_shape]
    size = list(crop.size)
    if len(new_np) == crop.ndim:
        new_size = list(reversed(new_np))
    elif len(new_np) == 2:
        new_size = list(size)
        new_size[0], new_size[1] = new_np[1], new_np[0]
    else:
        raise ValueError(f"new shape {tuple(new_np)} does not fit a {crop.ndim}-D crop")
    factor = np.asarray(size, float) / np.asarray(new_size, float)
    spacing = np.asarray(crop.spacing) * factor
    first_centre = 0.5 * factor - 0.5
    origin = crop.index_to_physical(first_centre)
    shape = tuple(reversed(new_size))
    return Image(np.zeros(shape, np.float32), tuple(spacing), tuple(origin), crop.direction,
                 sequence=crop.sequence, modality=crop.modality, source=crop.source)


def place_map(cam: np.ndarray, crop: Image, reference: Image, *, fill: float = 0.0) -> Image:
    """Resample ``cam`` - computed on ``crop`` resized to ``cam.shape`` - onto ``reference``.

    Args:
        cam: the map on the network input grid: 2-D (rows, cols) for a 2-D
            network, or 3-D (z, y, x) for a volume network.
        crop: the crop the network input was made from, as an Image on the
            reference's physical grid (see :func:`crop_box_image`): 2-D for a
            2-D reference; for a 3-D reference a single-slice 3-D crop (2-D
            map) or any 3-D crop (3-D map).
        reference: the source image; the result has its exact grid.

    Returns:
        float32 Image on ``reference``'s grid (``sequence="gradcam"``). Linear
        interpolation within the map; source voxels outside it get ``fill``.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if crop.ndim != reference.ndim:
        raise ValueError(f"crop is {crop.ndim}-D but the reference is {reference.ndim}-D")
    if cam.ndim == 2 and crop.ndim == 3 and crop.shape[0] != 1:
        raise ValueError(f"a 2-D map needs a crop with a single slice, got shape {crop.shape}")
    if cam.ndim not in (2, 3) or cam.ndim > crop.ndim:
        raise ValueError(f"map of shape {cam.shape} does not fit a {crop.ndim}-D crop")
    grid = resized_geometry(crop, cam.shape)
    out = np.full(reference.shape, fill, dtype=np.float32)
    # bounding box of the map in reference indices (only those voxels are sampled)
    corners = grid.voxel_corners()
    ref_idx = reference.physical_to_index(corners)
    lo = np.maximum(np.floor(ref_idx.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(ref_idx.max(axis=0)).astype(int) + 1, np.asarray(reference.size) - 1)
    template = reference.spatial_template()
    if np.any(hi < lo):
        log.warning("the map lies outside the reference image; nothing placed")
        return template.with_array(out, sequence="gradcam", modality=None)
    axes = [np.arange(lo[d], hi[d] + 1) for d in range(reference.ndim)]
    mesh = np.meshgrid(*axes, indexing="ij")                 # index order (x, y[, z])
    idx = np.stack([m.ravel() for m in mesh], axis=1).astype(float)
    pts = reference.index_to_physical(idx)
    c = grid.physical_to_index(pts)                          # continuous (x, y[, z]) in the map grid
    n = np.asarray(grid.size, float)
    inside = np.all((c >= -0.5 - 1e-6) & (c <= n - 0.5 + 1e-6), axis=1)
    # linear within the map; points in the half-voxel border take the edge value;
    # a single-slice map is a plane: source voxels within half its thickness
    coords = [np.clip(c[:, d], 0, n[d] - 1) for d in range(cam.ndim)]
    vals = ndimage.map_coordinates(cam, coords[::-1], order=1, mode="nearest")
    vals = np.where(inside, vals, fill).astype(np.float32)
    vox = tuple(idx[inside, d].astype(int) for d in reversed(range(reference.ndim)))
    out[vox] = vals[inside]
    return template.with_array(out, sequence="gradcam", modality=None)


def save_map(image: Image, path: str | Path, description: str | None = None) -> Path:
    """Write a placed map (NIfTI / NRRD / MHA by suffix) with its geometry.

    ``description`` (NIfTI only) goes into the header's 80-byte ``descrip`` field,
    e.g. that the map was made with random-init weights.
    """
    from her2core.imaging.io import save_image
    path = Path(path)
    name = path.name.lower()
    if description and (name.endswith(".nii") or name.endswith(".nii.gz")):
        import nibabel as nib

        from her2core.imaging.io import to_nibabel
        path.parent.mkdir(parents=True, exist_ok=True)
        nii = to_nibabel(image)
        nii.header["descrip"] = description.encode("ascii", "replace")[:79]
        nib.save(nii, str(path))
        return path
    return save_image(image, path)
