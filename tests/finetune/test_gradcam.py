"""Grad-CAM of fine-tuned networks, placed back on the source image grid."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from her2core.cohort import read_cohort
from her2core.explain.gradcam import compute_cam, gradcam_3d, leftover_hooks
from her2core.explain.placement import place_map
from her2core.finetune import FineTunedEnsemble, finetune
from her2core.finetune.data import load_case_image
from her2core.imaging import ops

from .conftest import WHERE, dce_settings


def _same_grid(a, b):
    assert a.array.shape == b.array.shape
    assert_allclose(a.spacing, b.spacing, atol=1e-9)
    assert_allclose(a.origin, b.origin, atol=1e-9)
    assert_allclose(a.direction, b.direction, atol=1e-12)


def _covered(crop, reference):
    """Source voxels the network input covers (a map of ones placed on the grid)."""
    shape = crop.shape[1:] if crop.ndim == 3 and crop.shape[0] == 1 else crop.shape
    return place_map(np.ones(shape, np.float32), crop, reference).array > 0


def _check(ens, image, mask, margin, slice_index=None):
    res = ens.gradcam({ens.sequence: image}, {ens.sequence: mask})
    _same_grid(res.map_image, image)
    assert res.map_image.sequence == "gradcam"
    assert np.isfinite(res.cam).all() and res.cam.min() >= 0 and res.cam.max() <= 1
    assert len(res.per_fold) == 2
    for net in ens.networks:
        assert leftover_hooks(net) == []
    # the map lies within the region the network saw, and that region holds the ROI
    cov = _covered(res.input.crop, image)
    assert not np.any(res.map_image.array[~cov])
    roi = mask.array > 0
    if slice_index is None:
        assert cov[roi].all()
    else:
        assert np.flatnonzero(cov.reshape(cov.shape[0], -1).any(1)).tolist() == [slice_index]
        assert cov[slice_index][roi[slice_index]].all()
    # the region is the ROI box grown by the margin (clipped), as in training
    start, stop = ops.roi_bbox(mask, margin_px=margin)
    box = np.zeros_like(cov)
    box[tuple(slice(a, b) for a, b in zip(start[::-1], stop[::-1]))] = True
    if slice_index is None:
        assert cov[box].all()
    else:
        assert cov[slice_index][box[slice_index]].all()
    # the logit is the ensemble's prediction of the case
    assert_allclose(res.logit, ens.predict_images({ens.sequence: image}, {ens.sequence: mask}),
                    atol=1e-5)
    return res


def test_us_map_on_the_ultrasound_grid(us_run, ft_cohort):
    ens = FineTunedEnsemble.load(us_run)
    coh = read_cohort(ft_cohort)
    image, mask = load_case_image(coh.files("syn-0001"), "US")
    res = _check(ens, image, mask, margin=8)
    # what the lead's code does by hand with her2core.explain: the same map
    ci = ens.cam_input({"US": image}, {"US": mask})
    assert tuple(ci.x.shape) == (1, 3, 32, 32)
    cam0 = compute_cam(ens.networks[0], ci.x, "gradcam")
    assert_allclose(cam0, res.per_fold[0], atol=1e-6)
    placed = place_map(np.mean([compute_cam(n, ci.x) for n in ens.networks], axis=0),
                       ci.crop, ci.reference)
    assert_allclose(placed.array, res.map_image.array, atol=1e-6)


def test_dce_volume_map_on_the_dce_grid(dce_run, ft_cohort):
    out, _, _ = dce_run
    ens = FineTunedEnsemble.load(out)
    coh = read_cohort(ft_cohort)
    image, mask = load_case_image(coh.files("syn-0003"), "DCE")
    res = _check(ens, image, mask, margin=(4, 4, 0))
    assert tuple(res.input.x.shape) == (1, 1, 16, 16, 16) and res.cam.shape == (16, 16, 16)
    assert_allclose(gradcam_3d(ens.networks[1], res.input.x), res.per_fold[1], atol=1e-6)


@pytest.mark.slow
def test_2d_network_on_mri_maps_its_slice(ft_cohort, tmp_path):
    out = tmp_path / "dce2d"
    finetune(ft_cohort, dce_settings(arch="resnet18", size=32, epochs=1, slice_mode="25d"), out,
             where=WHERE)
    ens = FineTunedEnsemble.load(out)
    coh = read_cohort(ft_cohort)
    image, mask = load_case_image(coh.files("syn-0005"), "DCE")
    ci = ens.case_input(image, mask)
    assert ci.x.shape == (3, 32, 32) and ci.slice_index == ops.largest_roi_slice(mask)
    _check(ens, image, mask, margin=(4, 4, 0), slice_index=ci.slice_index)
