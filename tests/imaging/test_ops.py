"""Resampling, registration, normalisation, cropping and pasting, morphology, slices."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from numpy.testing import assert_allclose, assert_array_equal
from scipy import ndimage

from her2core.errors import GeometryError, MaskError
from her2core.imaging import Image, ops

A = np.array([0.8, -1.3, 0.45])   # f(p) = A . p + B: linear interpolation reproduces it
B = 7.0


def linear_image(size, spacing, origin, direction, dtype=np.float64):
    img = Image(np.zeros(tuple(size[::-1]), dtype), spacing, origin, np.asarray(direction).ravel())
    zz, yy, xx = np.indices(img.shape)
    idx = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])
    values = img.index_to_physical(idx) @ A + B
    return img.with_array(values.reshape(img.shape).astype(dtype))


def voxel_points(img: Image):
    zz, yy, xx = np.indices(img.shape)
    idx = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])
    return idx, img.index_to_physical(idx)


def inside_hull(img: Image, points, tol=1e-6):
    """Points whose continuous index in img lies within its voxel-centre box."""
    c = img.physical_to_index(points)
    return np.all((c >= -tol) & (c <= np.asarray(img.size) - 1 + tol), axis=1)


@pytest.fixture
def image(vol):
    return linear_image(vol.SIZE, vol.SPACING, vol.ORIGIN, vol.DIR_FLIP)


@pytest.fixture
def mask(image):
    arr = np.zeros(image.shape, np.uint8)
    arr[1:4, 2:5, 1:4] = 1
    return image.with_array(arr, sequence="mask", modality="SEG")


def test_resample_to_spacing_linear(image):
    out = ops.resample_to_spacing(image, (0.35, 0.45, 1.25))
    assert out.array.shape == (10, 12, 14) and out.array.dtype == np.float64
    assert out.spacing == (0.35, 0.45, 1.25)
    assert_allclose(out.origin, image.origin) and assert_allclose(out.direction, image.direction)
    idx, pts = voxel_points(out)
    ok = inside_hull(image, pts)
    assert ok.sum() > 900
    assert_allclose(out.array.ravel()[ok], pts[ok] @ A + B, atol=1e-6)
    default = ops.resample_to_spacing(image)
    assert default.spacing == (0.5, 0.5, 3.0) and default.array.shape == (4, 11, 10)
    as_int = ops.resample_to_spacing(image.with_array(image.array.astype(np.int16)))
    assert as_int.array.dtype == np.float32


def test_resample_mask_nearest(mask):
    coarse = ops.resample_to_spacing(mask, (1.4, 1.8, 5.0))
    assert coarse.array.dtype == np.uint8 and coarse.array.shape == (2, 3, 4)
    assert_array_equal(coarse.array, mask.array[0:4:2, 0:6:2, 0:7:2])
    with pytest.raises(ValueError, match="nearest-neighbour only"):
        ops.resample_to_spacing(mask, (1, 1, 1), interpolator="linear")


def test_resample_phases_and_2d(image):
    phases = image.with_array(np.stack([image.array, 2 * image.array]))
    out = ops.resample_to_spacing(phases, (0.35, 0.45, 1.25))
    one = ops.resample_to_spacing(image, (0.35, 0.45, 1.25))
    assert out.array.shape == (2, *one.array.shape)
    assert_allclose(out.array[1], 2 * one.array, atol=1e-9)
    flat = Image(np.arange(20.0).reshape(4, 5), (0.2, 0.2), (0, 0), (1, 0, 0, 1))
    assert ops.resample_to_spacing(flat, (0.1, 0.1, 3.0)).array.shape == (8, 10)


def test_resample_to_reference_by_physical_coordinates(image, vol):
    # another sequence on a rotated, coarser, shifted grid, same physical function
    rot = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]) @ vol.DIR_DICOM
    t2 = linear_image((9, 8, 4), (0.6, 0.8, 3.1), np.add(vol.ORIGIN, (-2.0, 1.0, -1.0)), rot)
    out = ops.resample_to_reference(t2, image, default_value=-1000)
    assert out.same_grid(image) and out.array.shape == image.shape
    idx, pts = voxel_points(image)
    ok = inside_hull(t2, pts)
    assert 20 < ok.sum() < ok.size
    assert_allclose(out.array.ravel()[ok], pts[ok] @ A + B, atol=1e-6)
    outside = ~np.all((t2.physical_to_index(pts) >= -0.5) &
                      (t2.physical_to_index(pts) <= np.asarray(t2.size) - 0.5), axis=1)
    assert np.all(out.array.ravel()[outside] == -1000)
    case = ops.resample_case({"DCE": image, "T2": t2}, "DCE")
    assert case["DCE"] is image and case["T2"].same_grid(image)


def test_register_rigid_recovers_known_motion():
    size, spacing = (32, 32, 16), (1.0, 1.0, 2.0)
    z, y, x = np.indices(size[::-1]).astype(float)
    x, y, z = x * spacing[0], y * spacing[1], z * spacing[2]
    arr = np.zeros(size[::-1])
    for (cx, cy, cz, s, a) in [(12, 14, 14, 4, 100), (22, 10, 18, 3, 60), (16, 22, 10, 5, 40)]:
        arr += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s * s))
    fixed = Image(arr.astype(np.float32), spacing, (-10.0, 5.0, 20.0), np.eye(3).ravel())
    truth = sitk.Euler3DTransform()
    truth.SetCenter(fixed.index_to_physical(np.asarray(size) / 2 - 0.5).tolist())
    truth.SetRotation(0.04, -0.03, 0.06)
    truth.SetTranslation((2.0, -1.5, 1.0))
    # moving = fixed seen through the inverse motion, so the answer is `truth`
    moving = ops.resample_to_reference(fixed, fixed, transform=truth.GetInverse())
    out, tx = ops.register_rigid(moving, fixed, seed=1)
    pts = fixed.index_to_physical([[8, 8, 4], [24, 20, 12], [16, 16, 8]])
    for p in pts:
        assert_allclose(tx.TransformPoint(p.tolist()), truth.TransformPoint(p.tolist()), atol=0.3)
    core = (slice(3, 13), slice(6, 26), slice(6, 26))
    err_before = np.abs(moving.array[core] - fixed.array[core]).mean()
    err_after = np.abs(out.array[core] - fixed.array[core]).mean()
    assert err_after < 0.2 * err_before


def test_zscore(image, mask):
    whole = ops.zscore(image)
    assert whole.array.dtype == np.float32
    assert_allclose([whole.array.mean(), whole.array.std()], [0, 1], atol=1e-5)
    roi = ops.zscore(image, mask)
    sel = mask.array > 0
    assert_allclose([roi.array[sel].mean(), roi.array[sel].std()], [0, 1], atol=1e-5)
    assert roi.meta["zscore_mean"] == pytest.approx(image.array[sel].mean())
    assert roi.meta["zscore_std"] == pytest.approx(image.array[sel].std())
    with pytest.raises(GeometryError, match="origin"):
        ops.zscore(image, mask.replace(origin=(0, 0, 0)))


def test_crop_to_roi_preserves_physical_points(image, mask):
    crop = ops.crop_to_roi(image, mask, margin_px=1)
    # ROI z 1:4, y 2:5, x 1:4 -> with 1 voxel: z 0:5, y 1:6, x 0:5
    assert_array_equal(crop.array, image.array[0:5, 1:6, 0:5])
    assert crop.meta["crop_start"] == (0, 1, 0) and crop.meta["crop_stop"] == (5, 6, 5)
    for i in [(0, 0, 0), (4, 4, 4), (2, 3, 1)]:
        assert_allclose(crop.index_to_physical(i), image.index_to_physical(np.add(i, (0, 1, 0))))
    _, pts = voxel_points(crop)
    assert_allclose(crop.array.ravel(), pts @ A + B, atol=1e-9)
    # margin in mm: ceil(1.0 / (0.7, 0.9, 2.5)) = (2, 2, 1) voxels
    mm = ops.crop_to_roi(image, mask, margin_mm=1.0)
    assert mm.meta["crop_start"] == (0, 0, 0) and mm.meta["crop_stop"] == (6, 6, 5)
    tight = ops.crop_to_roi(image, mask)
    assert tight.array.shape == (3, 3, 3)
    assert ops.crop_to_roi(image, mask, margin_px=50).array.shape == image.shape
    with pytest.raises(ValueError, match="not both"):
        ops.crop_to_roi(image, mask, margin_mm=1, margin_px=1)
    with pytest.raises(MaskError, match="empty"):
        ops.crop_to_roi(image, mask.with_array(np.zeros_like(mask.array)))


def test_crop_paste_round_trip_exact(image, mask):
    crop = ops.crop_to_roi(image, mask, margin_px=(1, 0, 1))
    back = ops.paste_into(image, crop, fill=-5)
    assert back.same_grid(image) and back.array.dtype == image.array.dtype
    (z0, y0, x0), (z1, y1, x1) = crop.meta["crop_start"][::-1], crop.meta["crop_stop"][::-1]
    expected = np.full(image.shape, -5.0)
    expected[z0:z1, y0:y1, x0:x1] = image.array[z0:z1, y0:y1, x0:x1]
    assert_array_equal(back.array, expected)
    mcrop = ops.crop_to_roi(mask, mask)
    assert_array_equal(ops.paste_into(image, mcrop).array, mask.array)
    whole = ops.crop_to_roi(image, mask, margin_px=100)
    assert_array_equal(ops.paste_into(image, whole).array, image.array)
    # a 4-D phases crop goes back phase by phase
    phases = image.with_array(np.stack([image.array, -image.array]))
    pc = ops.crop_to_roi(phases, mask, margin_px=1)
    assert pc.array.shape == (2, 5, 5, 5)
    pb = ops.paste_into(phases, pc)
    assert_array_equal(pb.array[1, 0:5, 1:6, 0:5], -image.array[0:5, 1:6, 0:5])


def test_resize_and_paste_a_map_by_physical_coordinates(image, mask):
    # a Grad-CAM-like map computed at network resolution (8 x 8 x 8) on the crop
    crop = ops.crop_to_roi(image, mask, margin_px=1)
    net = ops.resize(crop, (8, 8, 8))
    assert net.array.shape == (8, 8, 8)
    # the outer edges of the grid do not move
    assert_allclose(np.sort(net.voxel_corners(), axis=0), np.sort(crop.voxel_corners(), axis=0),
                    atol=1e-9)
    _, pts = voxel_points(net)
    ok = inside_hull(crop, pts)
    assert_allclose(net.array.ravel()[ok], pts[ok] @ A + B, atol=1e-6)
    back = ops.paste_into(image, net, fill=np.nan)
    idx, pts = voxel_points(image)
    # net's outermost voxels lie beyond the crop's voxel centres (clamped there), so
    # compare where the interpolation only uses net voxels 1..6
    c = net.physical_to_index(pts)
    ok = np.all((c >= 1 - 1e-9) & (c <= 6 + 1e-9), axis=1)
    assert ok.sum() >= 20
    assert np.all(np.isnan(back.array.ravel()[~inside_hull(net, pts, tol=0.5)]))
    assert_allclose(back.array.ravel()[ok], pts[ok] @ A + B, atol=1e-6)


def test_paper_crops_2d():
    us = Image(np.arange(60 * 80, dtype=np.float32).reshape(60, 80), (0.1, 0.1), (0, 0),
               (1, 0, 0, 1))
    m = np.zeros((60, 80), np.uint8)
    m[20:30, 30:45] = 1
    mask = us.with_array(m, modality="SEG")
    p003 = ops.crop_to_roi(us, mask, margin_px=10)     # bounding box + 10 px
    assert p003.array.shape == (30, 35)
    assert_array_equal(p003.array, us.array[10:40, 20:55])
    assert p003.origin == pytest.approx((2.0, 1.0))
    p001 = ops.crop_to_roi(us, mask, margin_px=50)     # 50 px expansion, clipped
    assert p001.array.shape == (60, 80)
    dil = ops.dilate_mask(mask, 5)
    assert ops.roi_bbox(dil) == ops.roi_bbox(mask, margin_px=5)
    assert_array_equal(ops.paste_into(us, p003, fill=0).array[10:40, 20:55], p003.array)


def test_dilate_erode_match_ball(mask):
    rng = np.random.default_rng(7)
    big = Image((rng.random((9, 11, 13)) > 0.93).astype(np.uint8), (0.7, 0.9, 2.5), (0, 0, 0),
                np.eye(3).ravel())
    r = np.array([2, 1, 1])  # x, y, z
    zz, yy, xx = np.indices((2 * r[2] + 1, 2 * r[1] + 1, 2 * r[0] + 1)) - r[::-1, None, None, None]
    ball = (xx / (r[0] + .5)) ** 2 + (yy / (r[1] + .5)) ** 2 + (zz / (r[2] + .5)) ** 2 <= 1
    d = ops.dilate_mask(big, tuple(r))
    assert d.array.dtype == np.uint8 and d.same_grid(big)
    assert_array_equal(d.array, ndimage.binary_dilation(big.array, ball).astype(np.uint8))
    e = ops.erode_mask(d, tuple(r))
    assert_array_equal(e.array, ndimage.binary_erosion(d.array, ball, border_value=1))
    point = mask.with_array(np.zeros(mask.shape, np.uint8))
    point.array[2, 3, 3] = 1
    assert ops.dilate_mask(point, 1).array.sum() == 19   # 3x3x3 ball of radius 1.5
    assert_array_equal(ops.erode_mask(ops.dilate_mask(point, 1), 1).array, point.array)
    assert_array_equal(ops.dilate_mask(mask, 0).array, mask.array)


def test_largest_roi_slice_and_stack_25d(image):
    m = np.zeros(image.shape, np.uint8)
    for z, n in enumerate([0, 3, 9, 9, 2]):
        m[z].flat[:n] = 1
    mask = image.with_array(m, modality="SEG")
    assert ops.largest_roi_slice(mask) == 2
    with pytest.raises(MaskError, match="empty"):
        ops.largest_roi_slice(np.zeros((3, 4, 4)))
    layered = image.with_array(np.broadcast_to(np.arange(5.0)[:, None, None], image.shape).copy())
    s = ops.stack_25d(layered, mask, k=3)
    assert s.shape == (3, 6, 7)
    assert_array_equal(s[:, 0, 0], [1, 2, 3])
    assert_array_equal(ops.stack_25d(layered, k=5, index=0)[:, 0, 0], [0, 0, 0, 1, 2])
    assert_array_equal(ops.stack_25d(layered, k=5, index=4)[:, 0, 0], [2, 3, 4, 4, 4])
    assert_array_equal(ops.stack_25d(layered, k=1, index=3)[:, 0, 0], [3])
    with pytest.raises(IndexError):
        ops.stack_25d(layered, k=3, index=5)
