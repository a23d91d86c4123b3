"""Clinical-size synthetic cases: anatomy, phenotypes, determinism, the cache folder.

Drawn here on a coarse grid of the same field of view (336 x 336 x 150 mm) so the
tests stay fast; the full 448 x 448 x 100 size is what benchmarks/ and the app use.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk
from numpy.testing import assert_allclose, assert_array_equal
from scipy import ndimage

from her2core import synthetic
from her2core.cohort import read_cohort, validate_cohort
from her2core.synthetic import clinical_case, clinical_demo_cases

SHAPE = (96, 96, 24)
SPACING = (3.5, 3.5, 6.25)       # 336 x 336 x 150 mm, as the clinical default
KW = dict(shape=SHAPE, spacing=SPACING, us_size=96)


def _a(img):
    return sitk.GetArrayFromImage(img).astype(float)


def test_default_size_is_clinical():
    assert synthetic.CLINICAL_SHAPE == (448, 448, 100)
    assert synthetic.CLINICAL_SPACING == (0.75, 0.75, 1.5)
    assert synthetic.CLINICAL_PHASES == 6


def test_geometry_anatomy_and_determinism():
    c = clinical_case(seed=3, index=1, group="pos", **KW)
    again = clinical_case(seed=3, index=1, group="pos", **KW)
    other = clinical_case(seed=3, index=2, group="pos", **KW)
    for name in ("T1", "T2", "DCE", "DCE_phases", "mask"):
        assert_array_equal(_a(c.sitk_images[name]), _a(again.sitk_images[name]))
    assert not np.array_equal(_a(c.sitk_images["DCE"]), _a(other.sitk_images["DCE"]))
    assert_array_equal(c.us, again.us)
    assert c.row == again.row and c.us.shape == (96, 96)
    dce, t2, ph = c.sitk_images["DCE"], c.sitk_images["T2"], c.sitk_images["DCE_phases"]
    assert dce.GetSize() == SHAPE and dce.GetSpacing() == pytest.approx(SPACING)
    assert t2.GetSize() == (96, 96, 12) and t2.GetSpacing() == pytest.approx((3.5, 3.5, 12.5))
    assert t2.GetOrigin()[2] == pytest.approx(dce.GetOrigin()[2] + 6.25 / 2)   # slab centres
    assert ph.GetSize() == SHAPE + (6,)
    assert_array_equal(_a(ph)[1], _a(dce))              # DCE = first post-contrast phase
    # the FOV centre is at physical (0, 0, 0); breasts anterior (low y), air in front
    assert_allclose(dce.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in SHAPE]),
                    (0, 0, 0), atol=1e-9)
    t1 = _a(c.sitk_images["T1"])
    assert t1[:, :4, :].mean() < 60                        # air in front of the breasts
    mask = _a(c.sitk_images["mask"]) > 0
    assert mask.sum() >= 20
    zc, yc, xc = (int(v) for v in np.argwhere(mask).mean(0))
    assert yc < SHAPE[1] // 2                               # lesion in the anterior half
    assert (c.truth["mri"]["side"] == "left") == (xc > SHAPE[0] // 2)   # +x = patient left
    # fat is bright on T1 and dark on the fat-saturated DCE
    breast = t1[zc, :yc + 3, :]
    fat = breast > np.percentile(t1, 97)
    assert fat.sum() > 20 and _a(ph)[0][zc, :yc + 3, :][fat].mean() < 0.4 * breast[fat].mean()


def test_phenotypes_show_in_the_images():
    base = dict(seed=5, index=0, group="zero", irregularity=0.1, heterogeneity=0.1,
                size_mm=40, **KW)
    hi = clinical_case(rim=0.95, edema=0.95, kinetics="washout", **base)
    lo = clinical_case(rim=0.0, edema=0.0, kinetics="persistent", **base)
    m = _a(hi.sitk_images["mask"]) > 0
    assert_array_equal(m, _a(lo.sitk_images["mask"]) > 0)   # same lesion, same draws
    inner = ndimage.binary_erosion(m, iterations=1)
    shell = m & ~inner
    assert inner.sum() > 10

    def enh(c):
        ph = _a(c.sitk_images["DCE_phases"])
        return ph - ph[0]
    eh, el = enh(hi), enh(lo)
    assert eh[1][shell].mean() / eh[1][inner].mean() > 1.3 * (el[1][shell].mean() / el[1][inner].mean())
    curve_h, curve_l = eh[:, m].mean(1), el[:, m].mean(1)
    assert curve_h[-1] < 0.8 * curve_h[1:].max()            # washout
    assert curve_l[-1] > 1.3 * curve_l[1]                   # persistent
    ring = ndimage.binary_dilation(m, iterations=1) & ~m
    # T2 is on its own grid: compare the two cases there (same anatomy, same grid)
    t2h, t2l = _a(hi.sitk_images["T2"]), _a(lo.sitk_images["T2"])
    ring2 = ring[0:2 * (ring.shape[0] // 2):2] | ring[1:2 * (ring.shape[0] // 2):2]
    assert t2h[ring2].mean() > t2l[ring2].mean() + 100      # oedema halo
    small = clinical_case(**{**base, "size_mm": 12})
    assert (_a(small.sitk_images["mask"]) > 0).sum() < 0.3 * m.sum()
    assert hi.row["enhancement_curve"] == "washout" and lo.row["rim_enhancement"] == 0


def _hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_cases_generated_once_into_the_cache(tmp_path, monkeypatch):
    calls = []
    root = clinical_demo_cases(tmp_path / "c1", n=2, progress=lambda *a: calls.append(a), **KW)
    assert calls[-1][:2] == (2, 2)
    assert root.parent.name == "clinical_demo" and root.name.startswith("v1-s0-n2-96x96x24")
    stamp = json.loads((root / "stamp.json").read_text())
    assert stamp["version"] == synthetic.CLINICAL_VERSION and stamp["shape_xyz"] == [96, 96, 24]
    coh = read_cohort(root)
    assert coh.case_ids == ["clin-000", "clin-001"]
    assert list(coh.table["her2"]) == [1, 0] and list(coh.table["center"]) == ["A", "B"]
    rep = validate_cohort(root)
    assert rep.ok and len(rep.usable) == 2, rep.to_text()
    files = coh.files("clin-001")
    assert files.DCE_phases is not None and files.US is not None and files.US_mask is not None
    # same arguments: identical bytes; a second call reuses the folder without drawing
    assert _hashes(clinical_demo_cases(tmp_path / "c2", n=2, **KW)) == _hashes(root)

    def boom(**kw):
        raise AssertionError("regenerated")
    monkeypatch.setattr(synthetic, "clinical_case", boom)
    assert clinical_demo_cases(tmp_path / "c1", n=2, **KW) == root
    # a new generator version draws again (and the old folder is not used)
    monkeypatch.setattr(synthetic, "CLINICAL_VERSION", 99)
    with pytest.raises(AssertionError, match="regenerated"):
        clinical_demo_cases(tmp_path / "c1", n=2, **KW)
    assert not any(p.name.startswith(".v99") for p in root.parent.iterdir())   # temp removed


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HER2_CACHE", str(tmp_path / "env"))
    assert synthetic.default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("HER2_CACHE")
    assert synthetic.default_cache_dir().parts[-2:] == (".cache", "her2")
