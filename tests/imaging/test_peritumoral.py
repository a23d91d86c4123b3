"""Peritumoral ring: thickness in mm along every axis of an anisotropic, oblique grid;
the feature-region option of FeatureConfig applied where a case's masks are prepared."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from her2core.errors import GeometryError, Her2Error, MaskError
from her2core.features import FeatureConfig
from her2core.imaging import Image
from her2core.imaging.ops import feature_region, peritumoral_ring

SPACING = (0.5, 1.0, 2.5)          # x, y, z mm


def _point_mask(shape=(9, 21, 31), centre=(4, 10, 15), spacing=SPACING, direction=None):
    arr = np.zeros(shape, np.uint8)
    arr[centre] = 1
    d = np.eye(3).ravel() if direction is None else np.asarray(direction).ravel()
    return Image(arr, spacing, (3.0, -2.0, 7.5), d, sequence="mask", modality="SEG")


def _expected_ring(shape, centre, spacing, radius_xyz):
    """Brute force: voxels whose centre lies within the ellipsoid of radii radius (mm)."""
    out = np.zeros(shape, bool)
    for z, y, x in itertools.product(*map(range, shape)):
        d = np.array([x - centre[2], y - centre[1], z - centre[0]]) * spacing / radius_xyz
        out[z, y, x] = d @ d <= 1.0
    out[centre] = False
    return out


@pytest.mark.parametrize("mm", [2.5, (1.0, 2.0, 5.0)])
def test_ring_thickness_is_in_millimetres_per_axis(mm):
    m = _point_mask()
    ring = peritumoral_ring(m, mm)
    expected = _expected_ring(m.shape, (4, 10, 15), np.array(SPACING),
                              np.broadcast_to(np.asarray(mm, float), (3,)))
    assert ring.array.dtype == np.uint8
    np.testing.assert_array_equal(ring.array.astype(bool), expected)
    # 2.5 mm is 5 voxels along x, 2 along y (2.5 voxels), 1 along z
    if mm == 2.5:
        assert ring.array[4, 10, 15 + 5] == 1 and ring.array[4, 10, 15 + 6] == 0
        assert ring.array[4, 12, 15] == 1 and ring.array[4, 13, 15] == 0
        assert ring.array[5, 10, 15] == 1 and ring.array[6, 10, 15] == 0
    assert ring.same_grid(m) and ring.array[4, 10, 15] == 0


def test_direction_does_not_change_the_ring_and_union_holds_the_tumour(vol):
    straight = peritumoral_ring(_point_mask(), 2.5)
    oblique_mask = _point_mask(direction=vol.DIR_FLIP)
    oblique = peritumoral_ring(oblique_mask, 2.5)
    np.testing.assert_array_equal(straight.array, oblique.array)
    assert oblique.direction == oblique_mask.direction
    both = feature_region(oblique_mask, "tumour+peritumoral", mm=2.5)
    np.testing.assert_array_equal(both.array, oblique.array | oblique_mask.array)
    assert feature_region(oblique_mask, "tumour") is oblique_mask


def test_ring_is_clipped_at_the_border():
    m = _point_mask(centre=(0, 0, 0))
    ring = peritumoral_ring(m, 2.5)
    expected = _expected_ring(m.shape, (0, 0, 0), np.array(SPACING), np.full(3, 2.5))
    np.testing.assert_array_equal(ring.array.astype(bool), expected)
    assert int(ring.array.sum()) == int(expected.sum()) > 0


def test_pictures_without_spacing_need_pixels_and_empty_masks_are_refused():
    arr = np.zeros((20, 30), np.uint8)
    arr[10, 15] = 1
    png = Image(arr, (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0), spacing_known=False)
    with pytest.raises(GeometryError, match="physical pixel spacing"):
        peritumoral_ring(png, 5.0)
    ring = feature_region(png, "peritumoral", mm=5.0, px=3)
    yy, xx = np.mgrid[:20, :30]
    expected = ((yy - 10) ** 2 + (xx - 15) ** 2 <= 9) & ~((yy == 10) & (xx == 15))
    np.testing.assert_array_equal(ring.array.astype(bool), expected)
    with pytest.raises(MaskError, match="empty"):
        peritumoral_ring(png.with_array(np.zeros_like(arr)), px=2)


def test_feature_config_region_fields():
    cfg = FeatureConfig(region="peritumoral", peritumoral_mm=[2, 2, 4])
    assert FeatureConfig.from_json(cfg.to_json()).peritumoral_mm == [2.0, 2.0, 4.0]
    assert cfg.feature_settings()["region"] == "peritumoral"
    # the default region leaves the cache-key settings as they were before the option
    assert "region" not in FeatureConfig().feature_settings()
    for bad in ({"region": "ring"}, {"peritumoral_mm": 0}, {"peritumoral_mm": [1, 2, 3, 4]},
                {"peritumoral_px": -1}):
        with pytest.raises(Her2Error, match="feature settings"):
            FeatureConfig(**bad)


def test_load_case_gives_the_ring_on_every_sequence_grid(tiny_cohort_ro):
    from her2core.cohort import read_cohort
    from her2core.features import extract as X
    cohort = read_cohort(tiny_cohort_ro)
    cid = cohort.case_ids[0]
    base = dict(sequences=["T2", "DCE"], backbones={"DCE": ["resnet18"]},
                default_weights="random-init")
    images, tumour = X.load_case(cohort.files(cid), FeatureConfig(**base))
    _, ring = X.load_case(cohort.files(cid), FeatureConfig(**base, region="peritumoral",
                                                           peritumoral_mm=4.0))
    for seq in ("T2", "DCE"):
        expected = peritumoral_ring(tumour[seq], 4.0)
        np.testing.assert_array_equal(ring[seq].array, expected.array)
        assert ring[seq].same_grid(images[seq])
        assert not np.any(ring[seq].array & tumour[seq].array)
