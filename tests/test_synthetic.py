"""Synthetic cohorts: determinism, rates from the papers, phenotypes visible in the images."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from numpy.testing import assert_allclose
from scipy import ndimage

from her2core import synthetic
from her2core.cohort import read_cohort
from her2core.synthetic import DEFAULT_CENTRES, clinical_rates, make_cohort, synth_case

SHAPE = (32, 32, 8)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_identical_files_different_seed_differs(tmp_path):
    kw = dict(n=3, centres=2, modalities="both", shape=SHAPE, us_size=48, reader2_fraction=0.5)
    a = _hashes(make_cohort(tmp_path / "a", seed=5, **kw))
    b = _hashes(make_cohort(tmp_path / "b", seed=5, **kw))
    c = _hashes(make_cohort(tmp_path / "c", seed=6, **kw))
    assert a == b
    assert "cohort.csv" in a and "cases/syn-0000/DCE_phases.nii.gz" in a
    assert "cases/syn-0001/US.png" in a and "truth.json" in a
    shared = set(a) & set(c)
    assert all(a[k] != c[k] for k in shared if k.endswith((".png", "cohort.csv"))
               and "mask" not in k)
    assert a["cohort.csv"] != c["cohort.csv"]


def test_refuses_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        make_cohort(tmp_path / "x", n=1, modalities="none")


def test_rates_mix_to_the_negative_rate():
    for sig in (0.0, 1.0, 1.5):
        pos, low, zero = (clinical_rates(g, sig) for g in ("pos", "low", "zero"))
        neg = synthetic._shift(*synthetic._BINARY["er"], sig)[0]
        mix = synthetic.LOW_FRACTION * low["er"] + (1 - synthetic.LOW_FRACTION) * zero["er"]
        assert_allclose(mix, neg, atol=1e-12)
    assert_allclose(clinical_rates("pos", 1.0)["er"], 0.46)
    assert_allclose(clinical_rates("low", 1.0)["er"] * 0.75 + clinical_rates("zero", 1.0)["er"]
                    * 0.25, 0.80)
    assert_allclose(clinical_rates("pos", 0.0)["washout"], clinical_rates("zero", 0.0)["washout"])


def test_er_rates_match_paper_002_on_400_cases(tmp_path):
    root = make_cohort(tmp_path / "c", n=400, seed=11, prevalence=0.5, modalities="none")
    t = read_cohort(root).table
    pos, neg = t[t.her2 == 1], t[t.her2 == 0]
    assert len(pos) + len(neg) == 400 and 160 < len(pos) < 240
    # paper 002 Table 1: ER+ 46 % (positives) vs 80 % (negatives)
    assert abs(pos.er.mean() - 0.46) < 0.07, pos.er.mean()
    assert abs(neg.er.mean() - 0.80) < 0.06, neg.er.mean()
    # PR 39 % vs 74 %, Ki-67 high 89 % vs 66 %
    assert abs(pos.pr.mean() - 0.39) < 0.08 and abs(neg.pr.mean() - 0.74) < 0.07
    assert abs((pos.ki67 >= 20).mean() - 0.89) < 0.06
    assert abs((neg.ki67 >= 20).mean() - 0.66) < 0.08
    # IHC coding consistent with labels
    assert set(pos.her2_ihc.astype(str)) <= {"2+", "3+"}
    assert set(neg.her2_ihc.astype(str)) <= {"0", "1+", "2+"}


def test_random_labels_break_the_link(tmp_path):
    root = make_cohort(tmp_path / "c", n=400, seed=3, prevalence=0.5, modalities="none",
                       random_labels=True)
    t = read_cohort(root).table
    diff = t[t.her2 == 0].er.mean() - t[t.her2 == 1].er.mean()
    assert abs(diff) < 0.12, diff   # linked: 0.80 - 0.46 = 0.34
    truth = json.loads((root / "truth.json").read_text(encoding="utf-8"))
    assert truth["random_labels"] is True
    latent = [c["latent_group"] == "pos" for c in truth["cases"]]
    labels = [c["label_group"] == "pos" for c in truth["cases"]]
    assert np.mean(np.array(latent) == np.array(labels)) < 0.65


def test_signal_zero_removes_clinical_signal():
    r = [clinical_rates(g, 0.0) for g in ("pos", "low", "zero")]
    for k in r[0]:
        assert_allclose([x[k] for x in r], [r[0][k]] * 3, atol=1e-12)


def _arr(img):
    return sitk.GetArrayFromImage(img).astype(float)


def test_phenotype_overrides_show_in_the_images():
    base = dict(seed=2, index=0, group="zero", shape=(48, 48, 12),
                irregularity=0.1, heterogeneity=0.1, kinetics="plateau")
    hi = synth_case(rim=0.95, edema=0.95, size_mm=30, **base)
    lo = synth_case(rim=0.0, edema=0.0, size_mm=30, **base)
    m = _arr(hi.sitk_images["mask"]) > 0
    assert_allclose(m, _arr(lo.sitk_images["mask"]) > 0)  # same shape, same seed
    inner = ndimage.binary_erosion(m, iterations=2)
    shell_in = m & ~inner
    ring = ndimage.binary_dilation(m, iterations=2) & ~m

    def rim_index(c):
        d = _arr(c.sitk_images["DCE"]) - _arr(c.sitk_images["DCE_phases"])[0]
        return d[shell_in].mean() / d[inner].mean()

    assert rim_index(hi) > 1.3 * rim_index(lo)
    t2h, t2l = _arr(hi.sitk_images["T2"]), _arr(lo.sitk_images["T2"])
    assert t2h[ring].mean() > t2l[ring].mean() + 150     # oedema halo
    assert_allclose(t2h[inner].mean(), t2l[inner].mean(), rtol=0.02)
    small = synth_case(size_mm=12, **base)
    assert (_arr(small.sitk_images["mask"]) > 0).sum() < 0.3 * m.sum()
    assert hi.row["rim_enhancement"] == 1 and lo.row["peritumoral_edema"] == 0
    assert hi.row["tumor_size_mm"] == 30.0 and small.truth["phenotype"]["size_mm"] == 12.0


@pytest.mark.parametrize("kinetics,shape", [("washout", "down"), ("persistent", "up"),
                                            ("plateau", "flat")])
def test_dce_kinetics(kinetics, shape):
    c = synth_case(seed=1, kinetics=kinetics, shape=SHAPE, size_mm=25)
    ph = _arr(c.sitk_images["DCE_phases"])
    assert ph.shape == (4, SHAPE[2], SHAPE[1], SHAPE[0])
    assert_allclose(ph[1], _arr(c.sitk_images["DCE"]))
    m = _arr(c.sitk_images["mask"]) > 0
    curve = ph[:, m].mean(1)
    early, late = curve[1] - curve[0], curve[3] - curve[0]
    ratio = late / early
    assert {"down": ratio < 0.8, "up": ratio > 1.3, "flat": 0.9 < ratio < 1.15}[shape], curve
    assert c.row["enhancement_curve"] == kinetics


def test_centres_differ_in_geometry_and_gain():
    a = synth_case(seed=4, centre="A", shape=SHAPE, size_mm=20, group="low")
    b = synth_case(seed=4, centre="B", shape=SHAPE, size_mm=20, group="low")
    c = synth_case(seed=4, centre="C", shape=SHAPE, size_mm=20, group="low")
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines
    assert [code(x.sitk_images["DCE"].GetDirection()) for x in (a, b, c)] == ["LPS", "RAS", "PRS"]
    assert_allclose(a.sitk_images["DCE"].GetSpacing(), DEFAULT_CENTRES[0].spacing)
    assert_allclose(b.sitk_images["DCE"].GetSpacing(), DEFAULT_CENTRES[1].spacing)
    # B's T2 has its own grid, the others share the DCE grid
    assert b.sitk_images["T2"].GetSize() != b.sitk_images["DCE"].GetSize()
    assert a.sitk_images["T2"].GetSize() == a.sitk_images["DCE"].GetSize()
    # masks on the DCE grid
    for x in (a, b, c):
        m, d = x.sitk_images["mask"], x.sitk_images["DCE"]
        assert m.GetSize() == d.GetSize()
        assert_allclose(m.GetOrigin(), d.GetOrigin())
        assert_allclose(m.GetDirection(), d.GetDirection())
    # scanner gain: B's background is brighter than A's
    assert np.median(_arr(b.sitk_images["T1"])) > 1.2 * np.median(_arr(a.sitk_images["T1"]))
    # the chest wall is posterior in physical space whatever the direction
    for x in (a, b):
        img = x.sitk_images["T1"]
        arr = _arr(img)
        nx, ny, nz = img.GetSize()
        post = img.TransformIndexToPhysicalPoint((nx // 2, 0, nz // 2))[1] > 0
        first_rows, last_rows = arr[:, :3].std(), arr[:, -3:].std()
        # chest wall is the flat (low-variance) region; it sits at the posterior side
        assert (first_rows < last_rows) == post


def test_ultrasound_lesion_is_hypoechoic():
    c = synth_case(seed=9, modalities="us", us_size=96, size_mm=20)
    assert c.us.shape == (96, 96) and c.us.dtype == np.uint8
    m = c.us_mask > 0
    assert set(np.unique(c.us_mask)) == {0, 255}
    assert c.us[m].mean() < 0.5 * c.us[~m].mean()
    assert not c.sitk_images


def test_synth_case_images_are_imaging_images():
    pytest.importorskip("her2core.imaging")
    c = synth_case(seed=0, modalities="both", shape=SHAPE, us_size=48, reader2=True)
    imgs = c.images
    assert set(imgs) == {"T1", "T2", "DCE", "DCE_phases", "mask", "mask_reader2", "US", "US_mask"}
    assert imgs["DCE_phases"].array.shape == (4, SHAPE[2], SHAPE[1], SHAPE[0])
    assert_allclose(imgs["DCE"].spacing, DEFAULT_CENTRES[0].spacing)
    assert imgs["US"].array.shape == (48, 48)
    r2 = imgs["mask_reader2"].array > 0
    r1 = imgs["mask"].array > 0
    dice = 2 * (r1 & r2).sum() / (r1.sum() + r2.sum())
    assert 0.6 < dice < 0.999


def test_bad_arguments():
    with pytest.raises(ValueError, match="modalities"):
        synth_case(modalities="ct")
    with pytest.raises(ValueError, match="centre"):
        synth_case(centre="Z")
    with pytest.raises(ValueError, match="group"):
        synth_case(group="maybe")


def test_truth_and_extra_columns(tmp_path):
    root = make_cohort(tmp_path / "c", n=6, seed=0, modalities="mri", shape=SHAPE)
    t = pd.read_csv(root / "cohort.csv")
    truth = json.loads((root / "truth.json").read_text(encoding="utf-8"))
    assert [c["case_id"] for c in truth["cases"]] == list(t.case_id)
    for col in ("synthetic_rim", "synthetic_edema", "synthetic_size_mm",
                "synthetic_heterogeneity", "synthetic_irregularity"):
        assert col in t
    assert_allclose(t.synthetic_rim, [c["phenotype"]["rim"] for c in truth["cases"]], atol=1e-4)
    assert list(t.center) == ["A", "B"] * 3
