"""Mask loading and checking: geometry, labels, inside, size, resampling."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
from numpy.testing import assert_array_equal

from her2core.errors import GeometryError, ImageLoadError, MaskError
from her2core.imaging import Image
from her2core.imaging.io import load_image
from her2core.imaging.mask import check_mask, load_mask, mask_labels


@pytest.fixture
def ref(tmp_path, vol):
    path = tmp_path / "DCE.nii.gz"
    sitk.WriteImage(vol.make_volume(), str(path))
    return load_image(path, sequence="DCE")


def roi_array(shape, label=1):
    arr = np.zeros(shape, np.uint8)
    arr[1:4, 2:5, 1:4] = label  # 3 x 3 x 3 = 27 voxels
    return arr


def write_like(ref: Image, arr, path, **geometry):
    img = ref.with_array(arr) if not geometry else Image(
        arr, geometry.get("spacing", ref.spacing), geometry.get("origin", ref.origin),
        geometry.get("direction", ref.direction))
    sitk.WriteImage(img.to_sitk(), str(path))
    return path


def test_mask_on_grid(tmp_path, ref):
    arr = roi_array(ref.shape, label=3)
    path = write_like(ref, arr, tmp_path / "mask.nii.gz")
    mask = load_mask(path, ref)
    assert mask.array.dtype == np.uint8 and mask.modality == "SEG"
    assert_array_equal(mask.array, (arr > 0).astype(np.uint8))
    assert mask.same_grid(ref) and mask.meta == {"label": 3, "n_voxels": 27, "resampled": False}
    # within tolerance (0.5 micrometre, relative 1e-4) counts as the same grid
    near = write_like(ref, arr, tmp_path / "near.nii.gz",
                      origin=np.add(ref.origin, 5e-4), spacing=np.multiply(ref.spacing, 1 + 1e-4))
    assert load_mask(near, ref).array.sum() == 27


def test_wrong_grid_is_geometry_error(tmp_path, ref):
    arr = roi_array(ref.shape)
    shifted = write_like(ref, arr, tmp_path / "shifted.nii.gz",
                         origin=np.add(ref.origin, (0.7, 0, 0)))
    with pytest.raises(GeometryError) as err:
        load_mask(shifted, ref, case_id="P1")
    msg = str(err.value)
    assert "case P1" in msg and "shifted.nii.gz" in msg
    assert "origin" in msg and "resample=True" in msg and "spacing" not in msg
    respaced = write_like(ref, arr, tmp_path / "respaced.nii.gz", spacing=(0.7, 0.9, 3.0))
    with pytest.raises(GeometryError, match=r"spacing \(0.7, 0.9, 3\) vs \(0.7, 0.9, 2.5\)"):
        load_mask(respaced, ref)


def test_resample_shifted_grid_gives_right_voxels(tmp_path, ref, caplog):
    # mask grid: 4 x 4 x 3 voxels, starting at reference voxel (2, 1, 1)
    start = np.array([2, 1, 1])
    origin = ref.index_to_physical(start)
    small = np.zeros((3, 4, 4), np.uint8)      # (z, y, x)
    small[0:2, 1:3, 0:3] = 1                   # 2 * 2 * 3 = 12 voxels
    path = write_like(ref, small, tmp_path / "small.nii.gz", origin=origin)
    with caplog.at_level(logging.WARNING, logger="her2core.imaging.mask"):
        mask = load_mask(path, ref, resample=True)
    assert "resampled nearest-neighbour" in caplog.text and "small.nii.gz" in caplog.text
    expected = np.zeros(ref.shape, np.uint8)
    expected[1:3, 2:4, 2:5] = 1
    assert_array_equal(mask.array, expected)
    assert mask.meta["resampled"] and mask.same_grid(ref)


def test_resample_finer_grid_is_nearest_neighbour(tmp_path, ref):
    rng = np.random.default_rng(5)
    fine = (rng.random((5, 12, 14)) > 0.5).astype(np.uint8) * 2   # label 2
    path = write_like(ref, fine, tmp_path / "fine.nrrd",
                      spacing=(0.35, 0.45, 2.5))
    mask = load_mask(path, ref, resample=True)
    assert_array_equal(mask.array, (fine[:, ::2, ::2] > 0).astype(np.uint8))
    assert set(np.unique(mask.array)) == {0, 1}


def test_empty_mask(tmp_path, ref):
    path = write_like(ref, np.zeros(ref.shape, np.uint8), tmp_path / "empty.nii.gz")
    with pytest.raises(MaskError, match="empty") as err:
        load_mask(path, ref, case_id="C2")
    assert "empty.nii.gz" in str(err.value) and "case C2" in str(err.value)


def test_multi_label_needs_choice(tmp_path, ref):
    arr = roi_array(ref.shape)
    arr[4, 0:4, 5:7] = 2  # 8 voxels
    path = write_like(ref, arr, tmp_path / "multi.nii.gz")
    with pytest.raises(MaskError) as err:
        load_mask(path, ref)
    msg = str(err.value)
    assert "multi.nii.gz" in msg and "1 (27 voxels), 2 (8 voxels)" in msg and "label=" in msg
    assert load_mask(path, ref, label=1).array.sum() == 27
    with pytest.raises(MaskError, match="too small|fewer than the minimum of 10"):
        load_mask(path, ref, label=2)
    assert load_mask(path, ref, label=2, min_voxels=8).array.sum() == 8
    with pytest.raises(MaskError, match="label 7 is not in the mask"):
        load_mask(path, ref, label=7)
    assert mask_labels(load_image(path)) == {1: 27, 2: 8}


def test_outside_image(tmp_path, ref):
    # the mask grid starts at reference voxel (5, 0, 0): its ROI reaches x = 5 + 4 > 6
    origin = ref.index_to_physical((5, 0, 0))
    path = write_like(ref, roi_array(ref.shape), tmp_path / "outside.nii.gz", origin=origin)
    with pytest.raises(MaskError, match="outside the image") as err:
        load_mask(path, ref, resample=True)
    assert "outside.nii.gz" in str(err.value)
    # without resample the grid mismatch is reported first
    with pytest.raises(GeometryError):
        load_mask(path, ref)


def test_too_small(tmp_path, ref):
    arr = np.zeros(ref.shape, np.uint8)
    arr[2, 2, 2:5] = 1
    path = write_like(ref, arr, tmp_path / "tiny.nii.gz")
    with pytest.raises(MaskError, match="has 3 voxels, fewer than the minimum of 10") as err:
        load_mask(path, ref)
    assert "tiny.nii.gz" in str(err.value)
    assert load_mask(path, ref, min_voxels=3).array.sum() == 3


def test_non_integer_mask_refused(ref):
    arr = roi_array(ref.shape).astype(np.float32) * 0.5
    with pytest.raises(MaskError, match="non-integer values"):
        check_mask(ref.with_array(arr), ref)


def test_phases_reference_and_dimension_mismatch(tmp_path, ref):
    phases = ref.with_array(np.stack([ref.array] * 3))
    mask = check_mask(ref.with_array(roi_array(ref.shape)), phases)
    assert mask.array.shape == ref.shape and mask.array.sum() == 27
    flat = Image(np.ones((6, 7), np.uint8), (0.7, 0.9), (0, 0), (1, 0, 0, 1))
    with pytest.raises(GeometryError, match="2-D but its reference image is 3-D"):
        check_mask(flat, ref)
    sitk.WriteImage(flat.to_sitk(), str(tmp_path / "flat.png"))
    with pytest.raises(ImageLoadError, match="expected a 3-D image"):
        load_mask(tmp_path / "flat.png", ref)


def test_png_mask_0_255_on_ultrasound(tmp_path):
    rng = np.random.default_rng(6)
    us_arr = rng.integers(0, 256, (20, 30)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(us_arr), str(tmp_path / "US.png"))
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 8:14] = 255
    sitk.WriteImage(sitk.GetImageFromArray(m), str(tmp_path / "US_mask.png"))
    us = load_image(tmp_path / "US.png", sequence="US")
    mask = load_mask(tmp_path / "US_mask.png", us)
    assert_array_equal(mask.array, (m > 0).astype(np.uint8))
    assert mask.meta["label"] == 255 and mask.meta["n_voxels"] == 30
    # a calibrated ultrasound image (spacing known) with a PNG mask of its size
    calibrated = us.replace(spacing=(0.08, 0.1), spacing_known=True)
    mask2 = load_mask(tmp_path / "US_mask.png", calibrated)
    assert mask2.spacing == (0.08, 0.1)
    assert_array_equal(mask2.array, mask.array)
    # a PNG mask of another size cannot be placed
    sitk.WriteImage(sitk.GetImageFromArray(m[:, :20]), str(tmp_path / "small.png"))
    with pytest.raises(GeometryError, match=r"size \(20, 20\) vs \(30, 20\)"):
        load_mask(tmp_path / "small.png", us, resample=True)
    tiny = np.zeros((20, 30), np.uint8)
    tiny[0, 0:9] = 255
    sitk.WriteImage(sitk.GetImageFromArray(tiny), str(tmp_path / "tiny.png"))
    with pytest.raises(MaskError, match="9 pixels, fewer than the minimum of 10"):
        load_mask(tmp_path / "tiny.png", us)


def test_resample_keeps_physical_location(tmp_path, ref):
    # a mask on a rotated, coarser grid: every voxel set in the result has its
    # centre inside a set voxel of the source mask (nearest neighbour in physical space)
    src_dir = np.asarray(ref.direction).reshape(3, 3)
    arr = np.zeros((4, 5, 6), np.uint8)
    arr[1:3, 1:4, 1:3] = 1
    src = Image(arr, (1.1, 1.2, 2.6), ref.index_to_physical((1, 1, 0.5)), src_dir.ravel(),
                source="src.nii.gz")
    out = check_mask(src, ref, resample=True, min_voxels=1)
    # expected: for every reference voxel, the source voxel nearest in physical space
    zz, yy, xx = np.indices(ref.shape)
    idx = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])
    src_idx = np.rint(src.physical_to_index(ref.index_to_physical(idx))).astype(int)
    inside = np.all((src_idx >= 0) & (src_idx < np.array(src.size)), axis=1)
    expected = np.zeros(idx.shape[0], np.uint8)
    s_in = src_idx[inside]
    expected[inside] = arr[s_in[:, 2], s_in[:, 1], s_in[:, 0]]
    assert_array_equal(out.array.ravel(), expected)
    assert out.array.sum() >= 5
