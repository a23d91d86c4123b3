"""Assisted segmentation: known lesions on awkward grids, both polarities, 4-D phases,
boxes, bad seeds and boxes, and the CLI keeping the image's geometry exactly."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from her2core.cli import main
from her2core.imaging import Image, load_image, save_image
from her2core.imaging.segment import (SegmentationError, box_index_from_mm, seed_index_from_mm,
                                      segment_from_box, segment_from_seed, segment_lesion)

SPACING = (0.8, 0.6, 2.0)          # anisotropic, x y z mm
SHAPE = (20, 48, 56)               # z, y, x
CENTRE = (28, 24, 10)              # x, y, z voxel
RADII_MM = (9.0, 7.0, 8.0)


def _rot(axis, a):
    c, s = np.cos(a), np.sin(a)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


OBLIQUE = _rot("z", 0.4) @ _rot("x", -0.3) @ np.diag([1.0, -1.0, -1.0])


def _ellipsoid(shape=SHAPE, centre=CENTRE, spacing=SPACING, radii=RADII_MM):
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    d = (((x - centre[0]) * spacing[0] / radii[0]) ** 2 + ((y - centre[1]) * spacing[1] / radii[1]) ** 2
         + ((z - centre[2]) * spacing[2] / radii[2]) ** 2)
    return d < 1.0


def _dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _volume(truth, *, bright=True, noise=25.0, seed=0, direction=OBLIQUE, background=None):
    rng = np.random.default_rng(seed)
    base = 400.0 if background is None else background
    arr = base + (300.0 if bright else -250.0) * truth + rng.normal(0, noise, truth.shape)
    # a second, larger bright structure nearby that a plain region growing leaks into
    other = _ellipsoid(centre=(8, 8, 10), radii=(5.0, 5.0, 6.0))
    arr = arr + (300.0 if bright else -250.0) * other * 0.9
    return Image(arr.astype(np.int16), SPACING, (-40.0, 12.5, 30.0), direction.ravel(),
                 sequence="DCE", modality="MR")


@pytest.fixture(scope="module")
def truth():
    return _ellipsoid()


def test_bright_lesion_on_an_oblique_anisotropic_grid(truth):
    image = _volume(truth)
    res = segment_lesion(image, seed_index=CENTRE)
    assert res.mask.array.dtype == np.uint8 and res.mask.same_grid(image)
    assert res.polarity == "bright" and res.seed_index == CENTRE
    assert _dice(res.mask.array, truth) > 0.9
    assert not res.mask.array[_ellipsoid(centre=(8, 8, 10), radii=(5.0, 5.0, 6.0))].any()
    # size in physical units: within 15 % of the drawn ellipsoid's voxel volume
    expected = truth.sum() * np.prod(SPACING)
    assert res.size_mm == pytest.approx(expected, rel=0.15)
    # the direction cosines do not change what is segmented (indices and spacing do)
    flipped = image.replace(direction=np.eye(3).ravel())
    np.testing.assert_array_equal(segment_from_seed(flipped, CENTRE).array, res.mask.array)


def test_dark_lesion_and_fractional_seed(truth):
    image = _volume(truth, bright=False)
    res = segment_lesion(image, seed_index=(CENTRE[0] + 0.4, CENTRE[1] - 0.3, CENTRE[2]))
    assert res.polarity == "dark"
    assert _dice(res.mask.array, truth) > 0.9
    with pytest.raises(SegmentationError, match="not on a lesion-like region|no lesion-like"):
        segment_lesion(image, seed_index=CENTRE, polarity="bright")


def test_ultrasound_picture_without_spacing():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:120, :160]
    lesion = ((xx - 80) / 22.0) ** 2 + ((yy - 55) / 14.0) ** 2 < 1
    tissue = 140 + 30 * np.sin(yy / 9.0)
    speckle = rng.rayleigh(1.0, lesion.shape) / np.sqrt(np.pi / 2)
    arr = np.clip(np.where(lesion, 35.0, tissue) * speckle, 0, 255).astype(np.uint8)
    image = Image(arr, (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0), sequence="US",
                  modality="US", spacing_known=False)
    res = segment_lesion(image, seed_index=(80, 55))
    assert res.polarity == "dark" and res.size_mm is None and res.mask.spacing_known is False
    assert _dice(res.mask.array, lesion) > 0.85
    box = segment_from_box(image, ((58, 41), (102, 69)))
    assert _dice(box.array, lesion) > 0.85


def test_dce_phases_subtraction_and_rim_lesion_clicked_in_its_centre(truth):
    rng = np.random.default_rng(5)
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    d = np.sqrt(((x - CENTRE[0]) * SPACING[0] / RADII_MM[0]) ** 2
                + ((y - CENTRE[1]) * SPACING[1] / RADII_MM[1]) ** 2
                + ((z - CENTRE[2]) * SPACING[2] / RADII_MM[2]) ** 2)
    rim = truth & (d > 0.6)                      # enhancing shell, dark (necrotic) centre
    pre = 500 + 150 * np.sin(x / 4.0) * np.cos(y / 5.0) + rng.normal(0, 20, truth.shape)
    post = pre + 600 * rim + rng.normal(0, 20, truth.shape)
    phases = Image(np.stack([pre, post]).astype(np.int16), SPACING, (0.0, 0.0, 0.0),
                   OBLIQUE.ravel(), sequence="DCE_phases", modality="MR")
    res = segment_lesion(phases, seed_index=CENTRE)
    assert res.intensity == "subtraction 1-0" and res.polarity == "bright"
    assert _dice(res.mask.array, truth) > 0.85        # holes filled: the centre is included
    assert res.mask.array.ndim == 3 and res.mask.shape == SHAPE
    with pytest.raises(SegmentationError, match="lesion-like"):
        segment_lesion(phases, seed_index=CENTRE, phase=0)       # nothing enhances before contrast
    with pytest.raises(SegmentationError, match="phase 7 does not exist"):
        segment_lesion(phases, seed_index=CENTRE, phase=7)


def test_box_on_one_slice_gives_a_3d_mask_and_3d_box(truth):
    image = _volume(truth, seed=1)
    z = CENTRE[2]
    ys, xs = np.nonzero(truth[z])
    one_slice = segment_from_box(image, ((xs.min(), ys.min(), z), (xs.max(), ys.max(), z)))
    assert np.count_nonzero(one_slice.array.any(axis=(1, 2))) >= 5
    assert _dice(one_slice.array, truth) > 0.88
    zz, yy, xx = np.nonzero(truth)
    box3 = segment_from_box(image, ((xx.max(), yy.min(), zz.max()), (xx.min(), yy.max(), zz.min())))
    assert _dice(box3.array, truth) > 0.88


def test_a_box_drawn_with_a_margin_still_gives_the_lesion(truth):
    # a reader drags the box around the lesion with some room: 30 % of its size per side
    # (the former box-IoU preference pulled such a box out to its edges, Dice ~0.5)
    image = _volume(truth, seed=2)
    z = CENTRE[2]
    ys, xs = np.nonzero(truth[z])
    mx, my = 0.3 * (xs.max() - xs.min() + 1), 0.3 * (ys.max() - ys.min() + 1)
    loose = segment_from_box(image, ((round(xs.min() - mx), round(ys.min() - my), z),
                                     (round(xs.max() + mx), round(ys.max() + my), z)))
    assert _dice(loose.array, truth) > 0.88
    assert loose.array.sum() < 1.3 * truth.sum()
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:120, :160]
    lesion = ((xx - 80) / 22.0) ** 2 + ((yy - 55) / 14.0) ** 2 < 1
    speckle = rng.rayleigh(1.0, lesion.shape) / np.sqrt(np.pi / 2)
    arr = np.clip(np.where(lesion, 35.0, 140 + 30 * np.sin(yy / 9.0)) * speckle, 0, 255)
    us = Image(arr.astype(np.uint8), (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0),
               sequence="US", modality="US", spacing_known=False)
    box = segment_from_box(us, ((45, 33), (115, 77)))       # lesion 58-102 x 41-69
    assert _dice(box.array, lesion) > 0.85


def test_millimetre_seed_and_box_conversion_on_an_oblique_grid(truth):
    image = _volume(truth)
    pt = image.index_to_physical(CENTRE)
    assert seed_index_from_mm(image, pt) == CENTRE
    assert seed_index_from_mm(image, image.index_to_physical((27.6, 24.4, 9.7))) == CENTRE
    lo, hi = box_index_from_mm(image, image.index_to_physical((30, 10, 12)),
                               image.index_to_physical((20, 30, 8)))
    assert lo == (20, 10, 8) and hi == (30, 30, 12)


@pytest.mark.parametrize("kwargs, message", [
    ({"seed_index": (-1, 5, 5)}, "outside the image"),
    ({"seed_index": (56, 5, 5)}, "outside the image"),
    ({"seed_index": (1, 2)}, "needs 3 finite indices"),
    ({"box_index": ((10, 10, 5), (10, 30, 5))}, "no volume"),
    ({"box_index": ((100, 100, 50), (120, 120, 60))}, "outside the image"),
    ({"seed_index": (50, 44, 2)}, "lesion-like"),
])
def test_bad_seeds_and_boxes_get_one_clear_message(truth, kwargs, message):
    image = _volume(truth)
    with pytest.raises(SegmentationError, match=message):
        segment_lesion(image, **kwargs)


def test_uniform_and_pure_noise_regions_are_refused():
    flat = Image(np.full((8, 30, 30), 100, np.int16), (1, 1, 1), (0, 0, 0), np.eye(3).ravel())
    with pytest.raises(SegmentationError, match="uniform"):
        segment_from_seed(flat, (15, 15, 4))
    noise = flat.with_array(np.random.default_rng(0).normal(100, 10, (8, 30, 30)).astype(np.float32))
    with pytest.raises(SegmentationError, match="lesion-like"):
        segment_from_seed(noise, (15, 15, 4))


def test_cli_writes_the_mask_with_the_image_geometry_exactly(tmp_path, truth, capsys):
    image = _volume(truth)
    path = save_image(image, tmp_path / "DCE.nii.gz")
    ref = load_image(path)                         # the geometry as stored
    pt = ",".join(f"{v:.6f}" for v in ref.index_to_physical(CENTRE))
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", "--image", str(path), "--seed-mm", pt, "--out", str(out)]) == 0
    assert "bright lesion" in capsys.readouterr().out
    a, b = sitk.ReadImage(str(path)), sitk.ReadImage(str(out))
    assert a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing()
    assert a.GetOrigin() == b.GetOrigin() and a.GetDirection() == b.GetDirection()
    assert _dice(sitk.GetArrayFromImage(b), truth) > 0.9
    assert main(["segment", "--image", str(path), "--seed-index", "500,1,1", "--out",
                 str(tmp_path / "x.nii.gz")]) == 2
    assert "outside the image" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()
    assert main(["segment", "--image", str(path), "--box-mm", "1,2,3", "--out", str(out)]) == 2
    assert "needs 6" in capsys.readouterr().err


def test_demo_cohort_cases_are_found_from_their_centre():
    """Three demo cases (DCE subtraction): the seeded mask matches the drawn one."""
    from pathlib import Path

    from scipy import ndimage as ndi
    root = Path(__file__).resolve().parents[2] / "assets" / "demo_cohort" / "cases"
    for cid in ("syn-0000", "syn-0001", "syn-0002"):
        phases = load_image(root / cid / "DCE_phases.nii.gz", sequence="DCE_phases")
        mask = load_image(root / cid / "mask.nii.gz").array > 0
        dt = ndi.distance_transform_edt(mask, sampling=phases.spacing[::-1])
        z, y, x = np.unravel_index(np.argmax(dt), dt.shape)
        assert _dice(segment_from_seed(phases, (x, y, z)).array, mask) > 0.95, cid
