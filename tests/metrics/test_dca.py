"""Decision curves against R dcurves (shared/reference/dcurves)."""
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.metrics import decision_curves, default_thresholds

from ._refs import VENDORED, df_binary, shared


def _check(ref: pd.DataFrame, res, variable: str):
    ref = ref[ref.threshold > 0]  # R dcurves drops threshold 0 (the tables come from dcurves' tests)
    for v, cur in (("all", res.treat_all), ("none", res.treat_none),
                   (variable, res.models[variable])):
        rr = ref[ref.variable == v]
        idx = np.searchsorted(np.round(cur.thresholds, 8), np.round(rr.threshold.to_numpy(), 8))
        assert_allclose(np.asarray(cur.thresholds)[idx], rr.threshold, atol=1e-12)
        assert_allclose(np.asarray(cur.net_benefit)[idx], rr.net_benefit, atol=1e-12)
        assert_allclose(np.asarray(cur.tp_rate)[idx], rr.tp_rate, atol=1e-12)
        assert_allclose(np.asarray(cur.fp_rate)[idx], rr.fp_rate, atol=1e-12)
        if "net_intervention_avoided" in rr:
            assert_allclose(np.asarray(cur.net_intervention_avoided, float)[idx],
                            rr.net_intervention_avoided, atol=1e-12)


@pytest.mark.parametrize("fname,variable,kw", [
    ("r_case1_results.csv", "famhistory", {}),
    ("r_dca_famhistory.csv", "famhistory", {}),
    ("r_simple_binary_dca_result_df.csv", "age", {"as_probability": ["age"]}),
    ("r_case3_results.csv", "marker", {"as_probability": ["marker"],
                                       "harm": {"marker": 0.0333}}),
])
def test_dcurves_tables(fname, variable, kw):
    ref = pd.read_csv(shared("dcurves", fname))
    b, y = df_binary()
    thr = np.unique(ref.threshold[ref.threshold > 0])
    res = decision_curves(y, {variable: b[variable]}, thresholds=thr, **kw)
    _check(ref, res, variable)


def test_dcurves_testthat_values():
    b, y = df_binary()
    res = decision_curves(y, {"cancerpredmarker": b.cancerpredmarker, "age": b.age},
                          as_probability=["age"])
    i = res.thresholds.index(0.25)
    assert_allclose(res.treat_all.net_benefit[i], -0.1466667, atol=1e-7)
    assert res.treat_none.net_benefit[i] == 0
    assert_allclose(res.models["cancerpredmarker"].net_benefit[i], 0.0640000, atol=1e-12)
    assert_allclose(res.models["age"].net_benefit[i], 0.02444444, atol=1e-8)
    fam = decision_curves(y, {"f": b.famhistory}, thresholds=[0.05, 0.1, 0.2])
    assert_allclose(fam.models["f"].net_benefit, [0.0256140, 0.0185185, 0.0016667], atol=1e-7)
    # standardised net benefit = NB / prevalence
    assert_allclose(res.models["cancerpredmarker"].standardized_net_benefit[i], 0.064 / 0.14,
                    atol=1e-12)


def test_case_control_prevalence():
    cc = pd.read_csv(VENDORED / "df_case_control.csv")
    res = decision_curves(cc.casecontrol, {"m": cc.cancerpredmarker}, thresholds=[0.25],
                          prevalence=0.15)
    assert_allclose(res.treat_all.net_benefit[0], -0.13333333, atol=1e-8)
    assert_allclose(res.models["m"].net_benefit[0], 0.01495671, atol=1e-8)
    with pytest.raises(ValueError, match="case-control"):
        decision_curves(cc.casecontrol, {"m": cc.marker}, prevalence=0.15, as_probability=["m"])


def test_thresholds_and_inputs():
    t = default_thresholds()
    assert len(t) == 99 and t[0] == 0.01 and t[-1] == 0.99
    b, y = df_binary()
    res = decision_curves(y, {"p": b.cancerpredmarker}, thresholds=[0, 0.5, 1])
    assert res.thresholds == [0.5]
    with pytest.raises(ValueError, match="probabilities"):
        decision_curves(y, {"age": b.age})
