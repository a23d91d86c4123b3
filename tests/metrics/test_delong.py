"""DeLong AUC variance, covariance, CI and tests against R pROC (aSAH, df_binary)."""
import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from her2core.metrics import (auc, ci_auc_delong, delong_cov, delong_covariance_matrix,
                              delong_test_paired, delong_test_unpaired, delong_var)
from her2core.metrics.delong import naive_delong, placements

from ._refs import VENDORED, asah, df_binary, shared

TOL = dict(rtol=0, atol=1e-9)


def test_expected_md_is_what_we_test():
    text = shared("pROC_aSAH", "EXPECTED.md").read_text(encoding="utf-8")
    for number in ("0.823678861788618", "0.00146991470882363", "2.20898359144091",
                   "0.152825378808796", "0.5261398281"):
        assert number in text


def test_asah_auc_and_variance():
    d, y = asah()
    assert_allclose(auc(y, d.wfns), 0.823678861788618, **TOL)
    assert_allclose(auc(y, d.ndka), 0.611957994579946, **TOL)
    assert_allclose(auc(y, d.s100b), 0.7313685636856369, **TOL)
    assert_allclose(delong_var(y, d.wfns), 0.00146991470882363, **TOL)
    assert_allclose(delong_var(y, d.ndka), 0.0031908105493913, **TOL)
    assert_allclose(delong_var(y, d.s100b), 0.00266868245717244, **TOL)


def test_asah_covariances():
    d, y = asah()
    assert_allclose(delong_cov(y, d.wfns, d.ndka), -0.000532967856762438, **TOL)
    assert_allclose(delong_cov(y, d.ndka, d.s100b), -0.000756164938056579, **TOL)
    assert_allclose(delong_cov(y, d.s100b, d.wfns), 0.00119615567376754, **TOL)
    aucs, s = delong_covariance_matrix(y, [d.wfns, d.ndka, d.s100b])
    assert_allclose(aucs, [0.823678861788618, 0.611957994579946, 0.7313685636856369], **TOL)
    assert_allclose(s[0, 1], -0.000532967856762438, **TOL)
    assert_allclose(np.diag(s), [0.00146991470882363, 0.0031908105493913,
                                 0.00266868245717244], **TOL)


def test_asah_ci():
    d, y = asah()
    ci = ci_auc_delong(y, d.ndka)
    assert_allclose([ci.lower, ci.auc, ci.upper],
                    [0.501244999271703, 0.611957994579946, 0.722670989888189], **TOL)
    f = (d.gender == "Female").to_numpy()
    ci = ci_auc_delong(y[f], d.ndka[f])
    assert_allclose([ci.lower, ci.auc, ci.upper], [0.5261398281, 0.6671428571, 0.8081458862],
                    atol=1e-9)


def test_asah_paired_tests():
    d, y = asah()
    t = delong_test_paired(y, d.wfns, d.s100b)
    assert_allclose([t.statistic, t.p], [2.20898359144091, 0.0271757822291882], **TOL)
    assert_allclose(t.ci_difference, [0.0104061769564846, 0.174214419249478], **TOL)
    t = delong_test_paired(y, d.wfns, d.ndka)
    assert_allclose([t.statistic, t.p], [2.79777591868904, 0.00514557970691098], **TOL)
    assert_allclose(t.ci_difference, [0.0634011709339876, 0.3600405634833566], **TOL)
    t = delong_test_paired(y, d.ndka, d.s100b)
    assert_allclose([t.statistic, t.p], [-1.39077002573558, 0.164295175223054], **TOL)
    assert_allclose(t.ci_difference, [-0.2876917446341914, 0.0488706064228094], **TOL)
    assert_allclose(delong_test_paired(y, d.wfns, d.s100b, "greater").p, 0.0135878911145941,
                    **TOL)
    assert_allclose(delong_test_paired(y, d.wfns, d.s100b, "less").p, 0.986412108885406, **TOL)


def test_asah_unpaired_tests():
    d, y = asah()
    for a, b, stat, p in [("wfns", "s100b", 1.43490640926908, 0.152825378808796),
                          ("wfns", "ndka", 3.10125096778969, 0.00220950791756457),
                          ("ndka", "s100b", -1.55995743389685, 0.120192832430845)]:
        t = delong_test_unpaired(y, d[a], y, d[b])
        assert_allclose([t.statistic, t.p], [stat, p], **TOL)


def test_df_binary_against_proc_script():
    """Values produced by tests/reference/make_proc_extra.R (pROC 1.18.0)."""
    ref = pd.read_csv(VENDORED / "proc_extra.csv")
    a, ya = asah()
    b, yb = df_binary()
    for r in ref.itertuples():
        d, y = (a, ya) if r.data == "aSAH" else (b, yb)
        ci = ci_auc_delong(y, d[r.score])
        assert_allclose([ci.auc, ci.var, ci.lower, ci.upper],
                        [r.auc, r.var_delong, r.ci_lower, r.ci_upper], rtol=0, atol=1e-12)
    tests = pd.read_csv(VENDORED / "proc_extra_tests.csv")
    t = delong_test_paired(yb, b.marker, b.cancerpredmarker)
    assert_allclose([t.statistic, t.p, t.auc_a, t.auc_b],
                    tests.loc[0, ["statistic", "p", "auc_a", "auc_b"]].astype(float), atol=1e-12)
    old = (b.age > 65).to_numpy()
    t = delong_test_unpaired(yb[old], b.marker[old], yb[~old], b.marker[~old])
    assert_allclose([t.statistic, t.p, t.df, t.auc_a, t.auc_b],
                    tests.loc[1, ["statistic", "p", "df", "auc_a", "auc_b"]].astype(float),
                    atol=1e-9)


def test_direction_greater_than():
    d, y = asah()
    ref = pd.read_csv(VENDORED / "proc_direction_gt.csv")
    assert_allclose(auc(y, d.ndka, direction=">"), ref.auc[0], atol=1e-12)
    assert_allclose(delong_var(y, d.ndka, direction=">"), ref.var_delong[0], atol=1e-12)
    # "auto" picks by medians: ndka's cases have the higher median, so "<"
    assert placements(y, d.ndka, "auto").direction == "<"
    assert placements(y, -d.ndka, "auto").direction == ">"


def test_fast_equals_naive_with_heavy_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    s = rng.integers(0, 6, 400) + y  # few distinct values: many ties
    a, v = naive_delong(y, s)
    ci = ci_auc_delong(y, s)
    assert_allclose([ci.auc, ci.var], [a, v], rtol=1e-12)


def test_degenerate_inputs():
    import pytest
    with pytest.raises(ValueError, match="at least one positive"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="missing"):
        auc([0, 1, 1], [0.1, np.nan, 0.3])
    # identical scores: AUC 0.5, paired test of a score with itself is Z = 0
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.5])
    assert auc(y, np.ones(6)) == 0.5
    t = delong_test_paired(y, s, s)
    assert t.statistic == 0.0 and t.p == 1.0
