"""DCE kinetics inside the ROI (her2core.imaging.kinetics): curve type and early
enhancement rate on hand-made phase curves with known answers."""
from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from her2core.errors import Her2Error
from her2core.imaging import Image
from her2core.imaging.kinetics import (case_kinetics, cohort_kinetics, read_phase_times,
                                       roi_kinetics, time_intensity_curve)


def test_curve_types_by_phase_index():
    # pre 100, first post-contrast 200 (EER 1.0), last phase +20 % / +5 % / -25 % of 200
    pers = time_intensity_curve([100, 200, 220, 240])
    assert pers.curve == "persistent" and pers.time_source == "phase index"
    assert pers.initial_phase == 1 and pers.delayed_phase == 3
    assert_allclose(pers.eer, 1.0)
    assert_allclose(pers.delayed_change, 0.2)
    assert pers.initial_rate == "medium"          # 100 % is the top of "medium"
    plat = time_intensity_curve([100, 200, 215, 210])
    assert plat.curve == "plateau" and _close(plat.delayed_change, 0.05)
    wash = time_intensity_curve([100, 200, 170, 150])
    assert wash.curve == "washout"
    assert_allclose(wash.delayed_change, -0.25)
    # exactly at the +-10 % threshold: still plateau
    assert time_intensity_curve([100, 200, 220]).curve == "plateau"
    assert time_intensity_curve([100, 200, 180]).curve == "plateau"
    assert time_intensity_curve([100, 140, 150]).initial_rate == "slow"
    assert time_intensity_curve([100, 260, 250]).initial_rate == "fast"


def _close(a, b):
    return abs(a - b) < 1e-12


def test_phase_times_pick_the_peak_within_two_minutes():
    # phases at 0, 60, 120, 240, 360 s: the initial phase is 60 and 120 s; its peak is at 60 s
    kc = time_intensity_curve([100, 190, 180, 170, 160], [0, 60, 120, 240, 360])
    assert kc.time_source.startswith("phase times")
    assert kc.initial_phase == 1 and kc.delayed_phase == 4
    assert_allclose(kc.eer, 0.9)
    assert_allclose(kc.delayed_change, (160 - 190) / 190)
    assert kc.curve == "washout"
    # by index the same curve would compare phase 1 with the last phase too
    assert time_intensity_curve([100, 190, 180, 170, 160]).curve == "washout"
    # a rise continuing inside the first 2 min: SI_post is the 120 s value
    kc = time_intensity_curve([100, 150, 200, 205], [10, 70, 130, 310])   # origin at phase 0
    assert kc.initial_phase == 2 and kc.times_s == [0, 60, 120, 300]
    assert_allclose(kc.eer, 1.0)
    assert kc.curve == "plateau"
    # first post-contrast phase later than 2 min: it is the initial phase
    kc = time_intensity_curve([100, 200, 150], [0, 150, 300])
    assert kc.initial_phase == 1 and kc.curve == "washout"
    # no delayed phase after the initial window: EER only
    kc = time_intensity_curve([100, 160, 180], [0, 60, 110])
    assert kc.curve is None and kc.delayed_phase is None and _close(kc.eer, 0.8)


def test_bad_curves_are_refused():
    with pytest.raises(ValueError, match="pre-contrast"):
        time_intensity_curve([0, 10, 20])
    with pytest.raises(ValueError, match="at least one"):
        time_intensity_curve([100])
    with pytest.raises(ValueError, match="increasing"):
        time_intensity_curve([100, 200, 210], [0, 90, 90])
    with pytest.raises(ValueError, match="3 phase times for 4"):
        time_intensity_curve([1, 2, 3, 4], [0, 1, 2])


def _phases_image(curve_inside, curve_outside=None, shape=(4, 6, 6)):
    """4-D image: the ROI (a 2 x 2 x 2 block) follows ``curve_inside``, the rest ``outside``."""
    t = len(curve_inside)
    arr = np.empty((t,) + shape, np.float32)
    outside = curve_outside or [50.0] * t
    roi = np.zeros(shape, np.uint8)
    roi[1:3, 2:4, 2:4] = 1
    for k in range(t):
        arr[k] = outside[k]
        arr[k][roi > 0] = curve_inside[k]
    sp, org, d = (0.8, 0.8, 2.0), (-10.0, 5.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)
    return Image(arr, sp, org, d, sequence="DCE_phases"), Image(roi, sp, org, d, sequence="mask")


def test_roi_mean_curve_on_an_image_and_a_mask_on_another_grid():
    phases, mask = _phases_image([400, 800, 700, 600], [50, 60, 70, 80])
    kc = roi_kinetics(phases, mask)
    assert kc.n_voxels == 8 and kc.signal == [400, 800, 700, 600]
    assert kc.curve == "washout" and _close(kc.eer, 1.0)
    # the same ROI drawn on a 2x finer grid (same physical box) is resampled onto the phases
    fine = np.zeros((8, 12, 12), np.uint8)
    fine[2:6, 4:8, 4:8] = 1
    org = tuple(o - s / 4 for o, s in zip(mask.origin, mask.spacing))
    fmask = Image(fine, tuple(s / 2 for s in mask.spacing), org, mask.direction, sequence="mask")
    kc2 = roi_kinetics(phases, fmask)
    assert kc2.curve == "washout" and _close(kc2.eer, 1.0) and kc2.n_voxels == 8
    empty = mask.with_array(np.zeros_like(mask.array))
    with pytest.raises(Her2Error, match="no voxel"):
        roi_kinetics(phases, empty)


def _case(tmp_path, cid, curve, times=None, with_mask=True):
    import SimpleITK as sitk
    phases, mask = _phases_image(curve)
    d = tmp_path / "cases" / cid
    d.mkdir(parents=True)
    sitk.WriteImage(phases.to_sitk(), str(d / "DCE_phases.nii.gz"))
    sitk.WriteImage(phases.phase(1).to_sitk(), str(d / "DCE.nii.gz"))
    if with_mask:
        sitk.WriteImage(mask.to_sitk(), str(d / "mask.nii.gz"))
    if times is not None:
        (d / "DCE_phases.json").write_text(json.dumps({"phase_times_s": times}))


def test_cohort_cases_use_their_sidecar_times_and_missing_cases_stay_missing(tmp_path):
    from her2core.cohort import read_cohort, validate_cohort
    # K1 by phase index: phase 1 (300) vs last (330): +10 % -> plateau, EER 2.0
    _case(tmp_path, "K1", [100, 300, 320, 330])
    # K2 with times 0, 60, 120, 300 s: SI_post = max(300, 320) = 320 (EER 2.2), last 330 -> plateau
    _case(tmp_path, "K2", [100, 300, 320, 330], [0, 60, 120, 300])
    # K3: times but the peak is late: 0, 90, 180, 360 -> initial = phase 1 = 150, last 300: persistent
    _case(tmp_path, "K3", [100, 150, 250, 300], [0, 90, 180, 360])
    (tmp_path / "cases" / "K4").mkdir()                    # no DCE_phases
    (tmp_path / "cohort.csv").write_text("case_id,her2\nK1,1\nK2,0\nK3,1\nK4,0\n")
    coh = read_cohort(tmp_path)
    df, errors = cohort_kinetics(coh)
    assert errors == []
    assert df.loc["K1", "dce_curve"] == "plateau" and _close(df.loc["K1", "dce_eer"], 2.0)
    assert df.loc["K1", "dce_time_source"] == "phase index"
    assert df.loc["K2", "dce_curve"] == "plateau" and _close(df.loc["K2", "dce_eer"], 2.2)
    assert df.loc["K2", "dce_time_source"].startswith("phase times")
    assert df.loc["K3", "dce_curve"] == "persistent" and _close(df.loc["K3", "dce_eer"], 0.5)
    assert np.isnan(df.loc["K4", "dce_eer"]) and df.loc["K4", "dce_curve"] != df.loc["K4", "dce_curve"]
    assert case_kinetics(coh.files("K2")).initial_phase == 2
    # a sidecar with the wrong number of times: one clear problem naming case and file
    (tmp_path / "cases" / "K1" / "DCE_phases.json").write_text('{"phase_times_s": [0, 90]}')
    rep = validate_cohort(tmp_path)
    probs = [str(p) for c in rep.cases for p in c.problems if "DCE_phases.json" in str(p)]
    assert probs == ["case K1, file cases/K1/DCE_phases.json: phase_times_s has 2 time(s) but "
                     "DCE_phases holds 4 phases"]
    with pytest.raises(Her2Error, match="strictly increasing"):
        p = tmp_path / "bad.json"
        p.write_text('{"phase_times_s": [0, 90, 60]}')
        read_phase_times(p)
