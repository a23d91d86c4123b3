"""Calibration intercept / slope (R glm), Brier, Hosmer-Lemeshow, LOWESS."""
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy.special import expit

from her2core.metrics import (binned_calibration, brier_score, calibration_intercept_slope,
                              hosmer_lemeshow, logistic_fit, loess_calibration)

from ._refs import VENDORED, df_binary, shared


def _mtcars_fit():
    d = pd.read_csv(shared("hosmer_lemeshow", "mtcars.csv"))
    X = np.column_stack([np.ones(len(d)), d.wt, d.hp])
    f = logistic_fit(d.am, X)
    return d.am.to_numpy(), expit(X @ f.coef), f


def test_mtcars_glm_and_hosmer_lemeshow():
    y, p, f = _mtcars_fit()
    assert_allclose(f.coef, [18.86630, -8.08348, 0.03626], atol=5e-5)
    hl = hosmer_lemeshow(y, p, g=6)
    # R: hoslem.test(model$y, fitted(model), g = 6): X-squared = 2.3502, df = 4, p = 0.6717
    assert_allclose([hl.statistic, hl.p], [2.350166448223214, 0.6716510821159789], atol=1e-6)
    assert hl.df == 4 and hl.groups == 6
    hl = hosmer_lemeshow(y, p, g=10)
    assert_allclose([hl.statistic, hl.p], [4.951742066555549, 0.7627213479050563], atol=1e-6)
    assert hl.df == 8


def test_glm_calibration_reference():
    """Values from tests/reference/make_glm_calibration.R (base R glm)."""
    ref = pd.read_csv(VENDORED / "glm_calibration.csv")
    b, y = df_binary()
    cc = pd.read_csv(VENDORED / "df_case_control.csv")
    fitted = pd.read_csv(VENDORED / "glm_calibration_fitted.csv").fitted.to_numpy()
    sets = {"cancerpredmarker": (y, b.cancerpredmarker.to_numpy()),
            "glm_fitted": (y, fitted),
            "case_control_cancerpredmarker": (cc.casecontrol.to_numpy(),
                                              cc.cancerpredmarker.to_numpy())}
    for r in ref.itertuples():
        yy, p = sets[r.predictor]
        cal = calibration_intercept_slope(yy, p)
        # R's glm stops at deviance change 1e-8, ours at 1e-12: agree to ~1e-7
        assert_allclose([cal.intercept, cal.slope, cal.slope_model_intercept],
                        [r.intercept, r.slope, r.slope_model_intercept], atol=1e-6)
        se0 = (cal.intercept_ci[1] - cal.intercept_ci[0]) / 2 / 1.959963984540054
        se1 = (cal.slope_ci[1] - cal.slope_ci[0]) / 2 / 1.959963984540054
        assert_allclose([se0, se1], [r.intercept_se, r.slope_se], atol=1e-6)
        assert_allclose(brier_score(yy, p), r.brier, atol=1e-12)
        hl = hosmer_lemeshow(yy, p, g=r.g)
        assert_allclose(hl.statistic, r.hl_statistic, rtol=1e-9)
        assert (hl.groups, hl.df) == (r.hl_groups, r.hl_df)
        assert_allclose(hl.p, r.hl_p, atol=1e-9)


def test_hosmer_lemeshow_tied_breaks():
    # tied fitted values: the 11 type-7 quantile breaks collapse to
    # 0.2, 0.36, 0.6, 0.66, 0.9; the interval (0.6, 0.66] is empty (hoslem.test
    # would give NaN there) and is dropped: G = 3 groups, df = G - 2 = 1
    y = np.array([0, 1] * 10)
    p = np.array([0.2] * 12 + [0.6] * 4 + [0.9] * 4)
    hl = hosmer_lemeshow(y, p, g=10)
    assert hl.groups == 3 and hl.groups_requested == 10 and hl.df == 1
    assert_allclose(hl.breaks, [0.2, 0.36, 0.6, 0.66, 0.9])
    assert hl.counts == [12, 4, 4]
    o = np.array([[6, 6], [2, 2], [2, 2]])
    e = np.array([[9.6, 2.4], [1.6, 2.4], [0.4, 3.6]])
    assert_allclose(hl.statistic, np.sum((o - e) ** 2 / e))


def test_lowess_matches_r():
    b, y = df_binary()
    ref = pd.read_csv(VENDORED / "lowess_cancerpredmarker.csv")
    s = loess_calibration(y, b.cancerpredmarker, n_points=None)
    assert_allclose(s.predicted, ref.x, atol=1e-12)
    assert_allclose(s.observed, np.clip(ref.y, 0, 1), atol=1e-8)


def test_binned_calibration():
    y = np.array([0, 0, 1, 0, 1, 1, 1, 0, 1, 1])
    p = np.linspace(0.05, 0.95, 10)
    b = binned_calibration(y, p, n_bins=2)
    assert b.count == [5, 5]
    assert_allclose(b.observed, [0.4, 0.8])
    assert_allclose(b.mean_predicted, [0.25, 0.75])
    u = binned_calibration(y, p, n_bins=4, strategy="uniform")
    assert sum(u.count) == 10


def test_probabilities_checked_and_clipped():
    with pytest.raises(ValueError, match="probabilities"):
        calibration_intercept_slope([0, 1], [0.2, 1.3])
    cal = calibration_intercept_slope([0, 1, 0, 1, 1, 0], [0.0, 1.0, 0.3, 0.6, 0.4, 0.2])
    assert cal.n_clipped == 2 and np.isfinite(cal.slope)


def test_degenerate_calibration_is_flagged():
    y = np.array([0, 1] * 10)
    const = calibration_intercept_slope(y, np.full(20, 0.5))
    assert np.isnan(const.slope) and "undefined" in const.warnings[0]
    assert_allclose(const.intercept, 0.0, atol=1e-12)  # observed 50% = predicted 50%
    separated = calibration_intercept_slope(y, np.where(y == 1, 0.7, 0.3))
    assert any("separated" in w for w in separated.warnings)
    hl = hosmer_lemeshow(y, np.where(y == 1, 0.7, 0.3))
    assert hl.groups == 2 and np.isnan(hl.p) and "at least 3" in hl.note
    hl = hosmer_lemeshow(y, np.full(20, 0.4))
    assert hl.groups == 0 and np.isnan(hl.statistic) and "equal" in hl.note
