"""Paper 000's preprocessing (her2core.imaging.preprocess): rigid registration to DCE and
resampling to 0.5 x 0.5 x 3 mm, with the masks carried with the images."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from numpy.testing import assert_allclose

from her2core.errors import Her2Error, MaskError
from her2core.imaging import Image
from her2core.imaging import ops
from her2core.imaging.preprocess import preprocess_case, roi_source, tag_roi

SIZE, SPACING, ORIGIN = (40, 36, 12), (0.8, 0.8, 2.0), (-12.0, 4.0, 30.0)


def blobs(shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A smooth synthetic breast-like volume (three Gaussian blobs), shifted by ``shift`` mm."""
    z, y, x = np.indices(SIZE[::-1]).astype(float)
    x, y, z = x * SPACING[0], y * SPACING[1], z * SPACING[2]
    arr = np.zeros(SIZE[::-1])
    for cx, cy, cz, s, a in [(14, 12, 11, 3.5, 100), (22, 19, 13, 2.5, 60), (10, 20, 8, 4, 40)]:
        cx, cy, cz = cx + shift[0], cy + shift[1], cz + shift[2]
        arr += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s * s))
    return arr.astype(np.float32)


def image(arr, seq) -> Image:
    return Image(arr, SPACING, ORIGIN, np.eye(3).ravel(), sequence=seq, modality="MR")


def roi(center_mm) -> Image:
    """A box ROI of 7 x 7 x 3 voxels around a physical point, on the test grid."""
    probe = image(np.zeros(SIZE[::-1], np.float32), "DCE")
    i, j, k = np.round(probe.physical_to_index(center_mm)).astype(int)
    m = np.zeros(SIZE[::-1], np.uint8)
    m[k - 1:k + 2, j - 3:j + 4, i - 3:i + 4] = 1
    return Image(m, SPACING, ORIGIN, np.eye(3).ravel(), sequence="mask", modality="SEG")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_resampling_gives_the_exact_spacing_and_size_and_keeps_the_mask_on_the_grid():
    dce = image(blobs(), "DCE")
    mask = roi(np.array(ORIGIN) + [14.0, 12.0, 11.0])
    out = preprocess_case({"DCE": dce}, {"DCE": mask}, resample_mm=(0.5, 0.5, 3.0))
    img, m = out.images["DCE"], out.masks["DCE"]
    assert img.spacing == (0.5, 0.5, 3.0) and img.origin == dce.origin
    # size = round(old size x old spacing / new spacing): 40*0.8/0.5, 36*0.8/0.5, 12*2/3
    assert img.size == (64, 58, 8) and img.array.shape == (8, 58, 64)
    assert m.same_grid(img) and m.array.dtype == np.uint8 and set(np.unique(m.array)) == {0, 1}
    # nearest-neighbour mask: every voxel centre of the new grid takes the old voxel it lies in
    idx = np.argwhere(m.array > 0)[:5]
    for k, j, i in idx:
        old = np.floor(dce.physical_to_index(img.index_to_physical([i, j, k])) + 0.5).astype(int)
        assert mask.array[old[2], old[1], old[0]] == 1
    # physical ROI volume kept to within one slab of the coarser z
    vol_old = mask.array.sum() * np.prod(SPACING)
    vol_new = m.array.sum() * 0.5 * 0.5 * 3.0
    assert abs(vol_new - vol_old) <= 0.5 * vol_old
    # intensities are linear interpolations: a voxel centre shared by both grids is unchanged
    assert_allclose(img.array[0, 0, 0], dce.array[0, 0, 0], rtol=1e-5)
    assert out.steps["DCE"] == {"spacing": [0.5, 0.5, 3.0], "size": [64, 58, 8]}


def test_a_translated_copy_is_registered_back_within_a_voxel():
    shift = (2.4, -1.6, 4.0)                       # mm; T1 sees the anatomy moved by `shift`
    dce = image(blobs(), "DCE")
    t1 = image(blobs(shift) * 0.7 + 5.0, "T1")     # other contrast, same anatomy, moved
    centre = np.array(ORIGIN) + [14.0, 12.0, 11.0]
    dce_roi = roi(centre)
    masks = {"DCE": tag_roi(dce_roi, "DCE"),
             "T1": tag_roi(ops.resample_to_reference(dce_roi, t1, is_mask=True), "DCE")}
    out = preprocess_case({"DCE": dce, "T1": t1}, masks, register_to="DCE",
                          resample_mm=(0.5, 0.5, 3.0), seed=1)
    tx = out.transforms["T1"]
    # the transform maps a DCE point to the same anatomy in T1: p + shift
    for p in (centre, centre + [5.0, -3.0, 2.0]):
        assert_allclose(tx.TransformPoint(p.tolist()), p + shift, atol=min(SPACING))
    assert_allclose(out.steps["T1"]["translation_mm"], shift, atol=min(SPACING))
    # reproducible: the same case gives the same transform (seeded sampling; SimpleITK
    # would take a seed of 0 from the clock)
    again = preprocess_case({"DCE": dce, "T1": t1}, masks, register_to="DCE",
                            resample_mm=(0.5, 0.5, 3.0), seed=1)
    assert_allclose(again.transforms["T1"].GetParameters(), tx.GetParameters(), atol=1e-12)
    assert_allclose(again.images["T1"].array, out.images["T1"].array, atol=1e-6)
    grid = out.images["DCE"]
    assert grid.spacing == (0.5, 0.5, 3.0) and out.images["T1"].same_grid(grid)
    # registered T1 matches DCE's anatomy: its intensity pattern correlates far better
    before = ops.resample_to_reference(t1, grid)
    core = (slice(2, 6), slice(10, 48), slice(10, 54))      # inside both fields of view
    r_before = np.corrcoef(before.array[core].ravel(), grid.array[core].ravel())[0, 1]
    r_after = np.corrcoef(out.images["T1"].array[core].ravel(), grid.array[core].ravel())[0, 1]
    assert r_after > 0.99 and r_before < 0.9
    # DCE's ROI on T1 is DCE's ROI on the shared grid, exactly
    assert np.array_equal(out.masks["T1"].array, out.masks["DCE"].array)
    assert roi_source(out.masks["T1"], "T1") == "DCE"


def test_a_roi_drawn_on_the_moving_image_is_carried_with_it():
    shift = (2.4, -1.6, 4.0)                       # whole voxels: the drawn box is exact
    dce = image(blobs(), "DCE")
    t2 = image(blobs(shift), "T2")
    centre = np.array(ORIGIN) + [14.0, 12.0, 11.0]
    on_t2 = roi(centre + shift)                    # the reader drew the tumour on T2
    out = preprocess_case({"DCE": dce, "T2": t2}, {"DCE": roi(centre), "T2": on_t2},
                          register_to="DCE")
    # carried into DCE's frame it lands on DCE's tumour box
    assert out.masks["T2"].same_grid(dce)
    assert dice(out.masks["T2"].array, roi(centre).array) > 0.85
    assert dice(on_t2.array, roi(centre).array) < 0.3           # before: misplaced


def test_ultrasound_passes_through_and_bad_settings_are_named():
    us = Image(np.ones((20, 30), np.float32), (0.1, 0.1), (0.0, 0.0), np.eye(2).ravel(),
               sequence="US", modality="US")
    usm = Image(np.ones((20, 30), np.uint8), (0.1, 0.1), (0.0, 0.0), np.eye(2).ravel(),
                sequence="mask", modality="SEG")
    out = preprocess_case({"US": us}, {"US": usm}, resample_mm=(0.5, 0.5, 3.0),
                          register_to="DCE")
    assert out.images["US"] is us and out.masks["US"] is usm
    with pytest.raises(Her2Error, match="three numbers"):
        preprocess_case({"DCE": image(blobs(), "DCE")}, {}, resample_mm=(0.5, 3.0))
    with pytest.raises(Her2Error, match="no DCE image") as err:
        preprocess_case({"T1": image(blobs(), "T1")}, {}, register_to="DCE", case_id="c7")
    assert err.value.case_id == "c7"


def test_a_roi_lost_by_resampling_is_one_clear_error():
    dce = image(blobs(), "DCE")
    m = np.zeros(SIZE[::-1], np.uint8)
    m[5, 10, 1] = 1
    mask = Image(m, SPACING, ORIGIN, np.eye(3).ravel(), sequence="mask", modality="SEG")
    # x from 0.8 to 3 mm: the new voxel centres lie at x = 0, 3, 6 ... mm from the origin;
    # the ROI's one voxel covers 0.4-1.2 mm, which no new centre hits
    with pytest.raises(MaskError, match="empty after resampling DCE") as err:
        preprocess_case({"DCE": dce}, {"DCE": mask}, resample_mm=(3.0, 0.8, 2.0), case_id="c9")
    assert err.value.case_id == "c9"


def test_to_source_places_a_map_back_on_the_source_grid():
    shift = (2.4, -1.6, 3.0)
    dce, t1 = image(blobs(), "DCE"), image(blobs(shift), "T1")
    out = preprocess_case({"DCE": dce, "T1": t1}, {}, register_to="DCE",
                          resample_mm=(0.5, 0.5, 3.0), seed=1)
    back = out.to_source(out.images["T1"], "T1", t1)
    assert back.same_grid(t1)
    core = (slice(3, 9), slice(8, 28), slice(8, 32))
    assert np.corrcoef(back.array[core].ravel(), t1.array[core].ravel())[0, 1] > 0.99
    assert isinstance(out.transforms["DCE"], sitk.Transform)


def test_recipe_preprocessing_is_validated_and_becomes_the_feature_settings():
    from her2core.models.recipes import check_recipe, load_recipe, merge_config
    from her2core.models.workflow import feature_config_for
    r = load_recipe("000")
    cfg = feature_config_for(r, random_init=True)
    assert cfg.resample_mm == [0.5, 0.5, 3.0] and cfg.register_to == "DCE"
    assert cfg.preprocessing == {"resample_mm": [0.5, 0.5, 3.0], "register_to": "DCE"}
    # a config can switch it off
    off = merge_config(r, {"preprocessing": {}})
    assert feature_config_for(off, random_init=True).preprocessing == {}
    bad = dict(r, preprocessing={"resample": [1, 1, 1]})
    with pytest.raises(Her2Error, match="preprocessing"):
        check_recipe(bad)
    with pytest.raises(Her2Error, match="three numbers"):
        check_recipe(dict(r, preprocessing={"resample_mm": [0.5, 3.0]}))
    with pytest.raises(Her2Error, match="not among the sequences"):
        check_recipe(dict(r, features={**r["features"], "sequences": ["T1", "T2"],
                                       "backbones": {"T1": ["resnet50"]}}))
