"""Metrics at a threshold and their CIs (Wilson / Clopper-Pearson against R)."""
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.metrics import (clopper_pearson_ci, threshold_metrics, wilson_ci,
                              youden_metrics)

from ._refs import VENDORED, asah, df_binary


def test_proportion_cis_match_r():
    """R prop.test(correct=FALSE)$conf.int (Wilson) and binom.test (Clopper-Pearson)."""
    ref = pd.read_csv(VENDORED / "proc_extra.csv")
    for r in ref.itertuples():
        assert_allclose(wilson_ci(r.tp, r.tp + r.fn), [r.sens_wilson_lower, r.sens_wilson_upper],
                        atol=1e-12)
        assert_allclose(clopper_pearson_ci(r.tp, r.tp + r.fn), [r.sens_cp_lower, r.sens_cp_upper],
                        atol=1e-12)
    assert clopper_pearson_ci(0, 10)[0] == 0.0 and clopper_pearson_ci(10, 10)[1] == 1.0
    assert np.isnan(wilson_ci(0, 0)[0])


def test_youden_metrics_asah_s100b():
    d, y = asah()
    m = youden_metrics(y, d.s100b, n_boot=500, seed=3)
    # pROC coords(best, youden): threshold 0.205, tp 26 fp 14 tn 58 fn 15
    assert_allclose(m.threshold, 0.205, atol=1e-12)
    assert (m.tp, m.fp, m.tn, m.fn) == (26, 14, 58, 15)
    assert_allclose(m.sensitivity.value, 26 / 41)
    assert_allclose(m.specificity.value, 58 / 72)
    assert_allclose(m.ppv.value, 26 / 40)
    assert_allclose(m.npv.value, 58 / 73)
    assert_allclose(m.accuracy.value, 84 / 113)
    assert_allclose(m.f1.value, 2 * 26 / (2 * 26 + 14 + 15))
    assert_allclose([m.sensitivity.lower, m.sensitivity.upper], wilson_ci(26, 41))
    assert m.f1.lower < m.f1.value < m.f1.upper
    assert m.chosen_by == "youden"
    again = youden_metrics(y, d.s100b, n_boot=500, seed=3)
    assert (again.f1.lower, again.f1.upper) == (m.f1.lower, m.f1.upper)


def test_user_threshold_rule_is_greater_equal():
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.5, 0.5, 0.9, 0.2, 0.3])
    m = threshold_metrics(y, s, 0.5, n_boot=200)
    assert (m.tp, m.fp, m.tn, m.fn) == (2, 1, 2, 1)
    m = threshold_metrics(y, s, 0.5, direction=">", n_boot=200)  # s <= 0.5 positive
    assert (m.tp, m.fp, m.tn, m.fn) == (2, 3, 0, 1)
    cp = threshold_metrics(y, s, 0.5, ci_method="clopper-pearson", n_boot=200)
    assert_allclose([cp.sensitivity.lower, cp.sensitivity.upper], clopper_pearson_ci(2, 3))
    with pytest.raises(ValueError, match="ci_method"):
        threshold_metrics(y, s, 0.5, ci_method="wald")


def test_flat_has_json_shape():
    b, y = df_binary()
    f = threshold_metrics(y, b.cancerpredmarker, 0.25, n_boot=200).flat()
    for k in ("threshold", "sensitivity", "specificity", "ppv", "npv", "accuracy", "f1"):
        assert k in f
    # dcurves counts at 0.25 for cancerpredmarker: NB 0.064 = tp/n - fp/n * 1/3
    n = len(y)
    assert_allclose(f["tp"] / n - f["fp"] / n / 3, 0.064, atol=1e-12)


def test_f1_binomial_bootstrap_agrees_with_index_resampling():
    from her2core.metrics import bootstrap_statistic_ci

    d, y = asah()
    m = threshold_metrics(y, d.s100b, 0.205, n_boot=2000, seed=1)

    def f1(yy, ss):
        pred = ss >= 0.205
        tp = np.sum(pred & (yy == 1))
        return 2 * tp / (2 * tp + np.sum(pred & (yy == 0)) + np.sum(~pred & (yy == 1)))

    est, lo, hi, n_ok = bootstrap_statistic_ci(y, d.s100b.to_numpy(), f1, n_boot=2000, seed=2)
    assert n_ok == 2000
    assert_allclose(est, m.f1.value)
    assert_allclose([m.f1.lower, m.f1.upper], [lo, hi], atol=0.025)


def test_youden_with_reversed_direction():
    """direction ">" (lower = positive): same cut as negating the score."""
    d, y = asah()
    a = youden_metrics(y, d.ndka, direction=">", n_boot=100)
    b = youden_metrics(y, -d.ndka, n_boot=100)
    assert_allclose(a.threshold, -b.threshold)
    assert (a.tp, a.fp, a.tn, a.fn) == (b.tp, b.fp, b.tn, b.fn)
    assert a.rule == "score <= threshold is positive"
