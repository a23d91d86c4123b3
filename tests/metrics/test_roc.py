"""ROC curve, Youden point, stratified bootstrap CI and band."""
import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from her2core.metrics import (bootstrap_aucs, ci_auc_bootstrap, roc_band, roc_curve, youden)

from ._refs import VENDORED, asah, df_binary


def test_roc_curve_matches_proc_coordinates():
    d, y = asah()
    ref = pd.read_csv(VENDORED / "proc_roc_s100b.csv")
    c = roc_curve(y, d.s100b)
    assert len(c.thresholds) == len(ref)
    assert c.thresholds[0] == -np.inf and c.thresholds[-1] == np.inf
    assert_allclose(c.thresholds[1:-1], ref.threshold.to_numpy(float)[1:-1], atol=1e-12)
    assert_allclose(c.sensitivity, ref.sensitivity, atol=1e-12)
    assert_allclose(c.specificity, ref.specificity, atol=1e-12)
    d2 = c.to_dict()
    assert d2["thresholds"][0] is None and d2["thresholds"][-1] is None


def test_youden_matches_proc_coords():
    ref = pd.read_csv(VENDORED / "proc_extra.csv")
    a, ya = asah()
    b, yb = df_binary()
    for r in ref.itertuples():
        d, y = (a, ya) if r.data == "aSAH" else (b, yb)
        c = roc_curve(y, d[r.score])
        assert len(c.thresholds) == r.n_thresholds
        p = youden(c)
        assert p.n_ties == r.n_youden_ties == 1
        assert_allclose([p.threshold, p.sensitivity, p.specificity],
                        [r.youden_threshold, r.youden_sensitivity, r.youden_specificity],
                        atol=1e-12)


def test_thinned_keeps_ends():
    b, y = df_binary()
    c = roc_curve(y, b.marker)
    t = c.thinned(50)
    assert len(t.thresholds) == 50
    assert t.sensitivity[0] == 1.0 and t.sensitivity[-1] == 0.0


def test_bootstrap_ci_seeded_and_close_to_proc():
    d, y = asah()
    ci1 = ci_auc_bootstrap(y, d.s100b, n_boot=2000, seed=7)
    ci2 = ci_auc_bootstrap(y, d.s100b, n_boot=2000, seed=7)
    assert (ci1.lower, ci1.upper) == (ci2.lower, ci2.upper)
    assert_allclose(ci1.auc, 0.7313685636856369, atol=1e-12)
    ref = pd.read_csv(VENDORED / "proc_bootstrap_s100b_seed1.csv")  # pROC, set.seed(1)
    # different random streams: agreement up to Monte-Carlo error only
    assert_allclose([ci1.lower, ci1.upper], [ref.lower[0], ref.upper[0]], atol=0.02)
    # and the bootstrap SD is close to the DeLong SD
    assert_allclose(np.sqrt(ci1.var), np.sqrt(0.00266868245717244), rtol=0.1)


def test_bootstrap_aucs_equal_direct_resampling():
    """The bincount shortcut gives exactly the AUCs of explicit resamples."""
    from her2core.metrics import auc
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30, int), np.zeros(50, int)]
    s = np.round(rng.normal(size=80) + y, 1)
    fast = bootstrap_aucs(y, s, n_boot=20, seed=11)
    r = np.random.default_rng(11)
    cases, controls = s[y == 1], s[y == 0]
    ic = r.integers(0, 30, size=(20, 30))  # one chunk: all case draws, then controls
    ik = r.integers(0, 50, size=(20, 50))
    slow = [auc(np.r_[np.ones(30), np.zeros(50)], np.r_[cases[ic[b]], controls[ik[b]]])
            for b in range(20)]
    assert_allclose(fast, slow, atol=1e-12)


def test_roc_band_brackets_the_curve():
    d, y = asah()
    band = roc_band(y, d.s100b, n_boot=300, seed=1, specificities=[0.0, 0.5, 0.9, 1.0])
    assert band.sensitivity_lower[0] == 1.0
    assert all(lo <= hi for lo, hi in zip(band.sensitivity_lower, band.sensitivity_upper))
    # empirical sensitivity at specificity 0.5 lies inside the band
    c = roc_curve(y, d.s100b)
    k = np.searchsorted(c.specificity, 0.5)
    assert band.sensitivity_lower[1] <= c.sensitivity[k] <= band.sensitivity_upper[1]
