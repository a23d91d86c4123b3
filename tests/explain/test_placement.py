"""Maps go back into the source image's grid by physical coordinates."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from her2core.explain.placement import crop_box_image, place_map, resized_geometry, save_map
from her2core.imaging.image import Image


def _oblique_reference():
    """Anisotropic, non-identity direction (rotated about z and flipped), odd origin."""
    a = np.deg2rad(30)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, -1.0]])
    arr = np.random.default_rng(0).normal(size=(7, 40, 50)).astype(np.float32)  # (z, y, x)
    return Image(arr, (0.7, 1.3, 3.5), (-12.5, 40.25, 7.0), tuple(d.ravel()), sequence="DCE",
                 modality="MR")


def test_resized_geometry_keeps_the_physical_extent():
    ref = _oblique_reference()
    crop = crop_box_image(ref, (10, 5, 3), (20, 16, 1))
    g = resized_geometry(crop, (64, 80))            # rows (y), cols (x)
    assert g.size == (80, 64, 1)
    assert_allclose(g.spacing, (0.7 * 20 / 80, 1.3 * 16 / 64, 3.5))
    # outer pixel edges coincide (align_corners=False)
    assert_allclose(np.sort(g.voxel_corners(), axis=0), np.sort(crop.voxel_corners(), axis=0),
                    atol=1e-9)


def test_hot_spot_stays_at_its_physical_point(tmp_path):
    ref = _oblique_reference()
    z = 3
    start, size = (10, 5, z), (24, 24, 1)           # crop may come from a padded square
    crop = crop_box_image(ref, start, size)
    grid = resized_geometry(crop, (96, 96))
    # a physical point inside the crop, on the slice: source index (21.0, 17.0, z)
    p = ref.index_to_physical((21.0, 17.0, z))
    ci = grid.physical_to_index(p)                  # where it is on the network input
    yy, xx = np.mgrid[:96, :96]
    cam = np.exp(-((xx - ci[0]) ** 2 + (yy - ci[1]) ** 2) / (2 * 2.0 ** 2)).astype(np.float32)
    placed = place_map(cam, crop, ref)
    assert placed.same_grid(ref)
    assert placed.array.shape == ref.array.shape
    # every voxel off the slice is empty; the maximum is at the source voxel of p
    assert placed.array[np.arange(7) != z].max() == 0
    kz, ky, kx = np.unravel_index(np.argmax(placed.array), placed.array.shape)
    assert (kx, ky, kz) == (21, 17, z)
    # the weighted centroid is the physical point (sub-voxel)
    w = placed.array[z]
    jy, jx = np.mgrid[: w.shape[0], : w.shape[1]]
    cen = ref.index_to_physical((np.sum(w * jx) / w.sum(), np.sum(w * jy) / w.sum(), z))
    assert np.linalg.norm(cen - p) < 0.3

    # written to NIfTI and read back: same grid as the image, voxel for voxel
    from her2core.imaging.io import load_image
    path = save_map(placed, tmp_path / "map.nii.gz")
    back = load_image(path, expected_ndim=3)
    assert back.size == ref.size
    assert_allclose(back.spacing, ref.spacing, rtol=1e-6)
    assert_allclose(back.origin, ref.origin, atol=1e-4)
    assert_allclose(back.direction, ref.direction, atol=1e-6)
    assert_allclose(back.array, placed.array, atol=1e-6)
    assert_allclose(back.index_to_physical((kx, ky, kz)), ref.index_to_physical((21, 17, z)),
                    atol=1e-4)
    # the same through the nibabel writer that labels the file (random-init note)
    import nibabel as nib
    path2 = save_map(placed, tmp_path / "map2.nii.gz", description="RANDOM-INIT weights")
    assert nib.load(str(path2)).header["descrip"].tobytes().startswith(b"RANDOM-INIT")
    back2 = load_image(path2, expected_ndim=3)
    assert back2.same_grid(ref)
    assert_allclose(back2.array, placed.array, atol=1e-6)


def test_2d_ultrasound_map_covers_exactly_the_crop():
    ref = Image(np.zeros((60, 80), np.float32), (0.1, 0.1), (5.0, -3.0), (1, 0, 0, 1),
                sequence="US", modality="US")
    crop = crop_box_image(ref, (30, 10), (20, 20))
    placed = place_map(np.ones((224, 224), np.float32), crop, ref)
    expected = np.zeros((60, 80))
    expected[10:30, 30:50] = 1
    assert_allclose(placed.array, expected)


def test_crop_reaching_outside_is_clipped():
    ref = Image(np.zeros((20, 20), np.float32), (1.0, 1.0), (0.0, 0.0), (1, 0, 0, 1))
    crop = crop_box_image(ref, (-4, -4), (10, 10))   # padded square at the corner
    placed = place_map(np.ones((32, 32), np.float32), crop, ref)
    assert placed.array[:6, :6].min() == 1 and placed.array.sum() == 36


def test_rejects_a_thick_3d_crop():
    ref = _oblique_reference()
    with pytest.raises(ValueError, match="single slice"):
        place_map(np.ones((8, 8)), crop_box_image(ref, (0, 0, 0), (8, 8, 2)), ref)


def test_3d_map_of_a_resized_volume_goes_back_by_physical_point():
    ref = _oblique_reference()
    crop = crop_box_image(ref, (8, 4, 1), (30, 26, 5))     # a volume crop
    grid = resized_geometry(crop, (16, 16, 16))
    p = ref.index_to_physical((20.0, 14.0, 3.0))
    ci = grid.physical_to_index(p)
    zz, yy, xx = np.mgrid[:16, :16, :16]
    cam = np.exp(-((xx - ci[0]) ** 2 + (yy - ci[1]) ** 2 + (zz - ci[2]) ** 2) / 2.0)
    placed = place_map(cam.astype(np.float32), crop, ref)
    assert placed.same_grid(ref)
    kz, ky, kx = np.unravel_index(np.argmax(placed.array), placed.array.shape)
    assert (kx, ky, kz) == (20, 14, 3)
    # nothing outside the crop box
    mask = np.zeros(ref.shape, bool)
    mask[1:6, 4:30, 8:38] = True
    assert placed.array[~mask].max() == 0


class _IdentityBackbone:
    """Stands in for a 2-D backbone: input size = the padded crop, no normalisation."""

    def __init__(self, size):
        self.spatial_size = (size, size)

    def prepare(self, t):
        return t


def _non_square_roi_case():
    """3-D image, oblique direction, odd origin; ROI bbox 32 rows x 40 cols (largest on z=6)."""
    from types import SimpleNamespace
    a = np.deg2rad(25)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, -1.0]])
    zz, yy, xx = np.mgrid[:12, :70, :90]
    arr = (xx + 100.0 * yy + 7000.0 * zz).astype(np.float32)   # every voxel tells where it is
    img = Image(arr, (0.75, 0.9, 1.5), (-60.3, 12.7, 33.0), tuple(d.ravel()), sequence="DCE",
                modality="MR")
    m = np.zeros(arr.shape, np.uint8)
    m[6, 20:52, 30:70] = 1              # largest slice: rows 20-51, cols 30-69
    m[4:9, 30:40, 40:60] = 1            # smaller on z 4-8, inside the same box
    mask = img.replace(array=m, sequence="mask")
    cfg = SimpleNamespace(slice_mode="largest", margin_px=10, square=True,
                          intensity_percentiles=(0.0, 100.0))
    return img, mask, cfg


def test_case_crop_is_the_padded_square_centred_on_the_roi():
    """ROI box + 10 px = rows 10-61 (52), cols 20-79 (60); padded symmetrically to 60 x 60:
    rows 6-65, cols 20-79 on z = 6. A map covering the whole network input fills exactly
    that box, whose centre (row 35.5, col 49.5) is the ROI box's centre."""
    from her2core.explain.case import cam_input_2d
    img, mask, cfg = _non_square_roi_case()
    x, crop, z = cam_input_2d(_IdentityBackbone(60), img, mask, cfg)
    assert z == 6 and tuple(x.shape) == (1, 1, 60, 60)
    assert crop.size == (60, 60, 1)
    assert_allclose(img.physical_to_index(crop.origin), (20, 6, 6), atol=1e-9)
    placed = place_map(np.ones((64, 64), np.float32), crop, img)
    expected = np.zeros(img.shape, np.float32)
    expected[6, 6:66, 20:80] = 1
    assert_allclose(placed.array, expected)
    s = np.argwhere(placed.array > 0)
    roi = np.argwhere(np.asarray(mask.array) > 0)
    assert_allclose((s[:, 1].min() + s[:, 1].max()) / 2, (roi[:, 1].min() + roi[:, 1].max()) / 2)
    assert_allclose((s[:, 2].min() + s[:, 2].max()) / 2, (roi[:, 2].min() + roi[:, 2].max()) / 2)


def test_case_network_input_goes_back_onto_its_own_voxels():
    """The network input itself, placed back, equals the (scaled) source voxels it was cut
    from: rows / cols are not swapped or flipped, the 4 + 4 padding rows sit outside the ROI
    box; and a map positive only on the input's lower-left 48 x 48 of 64 (one positive cell
    of a 2 x 2 layer4 grid, upsampled bilinearly) lands on rows 21-65, cols 20-64: a 45 x 45
    part of the 60 x 60 box, flush with its bottom and left edges."""
    from her2core.explain.case import cam_input_2d
    img, mask, cfg = _non_square_roi_case()
    x, crop, z = cam_input_2d(_IdentityBackbone(60), img, mask, cfg)
    net = np.asarray(x[0, 0], dtype=np.float32)
    assert net[:4].max() == 0 and net[56:].max() == 0           # symmetric square padding
    placed = place_map(net, crop, img)
    assert_allclose(placed.array[6, 6:66, 20:80], net, atol=1e-6)
    src = np.asarray(img.array)[6, 10:62, 20:80]
    # _scale01 over the crop (z 3-9, rows 10-61, cols 20-79) is affine: recover it
    lo, hi = np.asarray(img.array)[3:10, 10:62, 20:80].min(), np.asarray(img.array)[3:10, 10:62, 20:80].max()
    assert_allclose(placed.array[6, 10:62, 20:80], (src - lo) / (hi - lo), atol=1e-6)
    corner = np.zeros((64, 64), np.float32)
    corner[16:, :48] = 1.0
    s = np.argwhere(place_map(corner, crop, img).array > 0)
    assert (s[:, 1].min(), s[:, 1].max(), s[:, 2].min(), s[:, 2].max()) == (21, 65, 20, 64)
