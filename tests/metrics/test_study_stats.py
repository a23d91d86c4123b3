"""Table 1 tests, odds ratios, calibrate, val.prob, NRI / IDI against R
(tests/reference/make_study_stats.R) and hand-computed cases."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy.special import expit

from her2core.metrics import calibrate as C
from her2core.metrics import odds as O
from her2core.metrics import reclassification as RC
from her2core.metrics import table1 as T
from her2core.metrics.calibration import logistic_fit
from tests.metrics._refs import VENDORED, asah

TOL = dict(rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def ref():
    d = pd.read_csv(VENDORED / "study_stats_tests.csv")
    return {(r.test, r.what): float(r.value) for r in d.itertuples()}


@pytest.fixture(scope="module")
def data():
    d, y = asah()
    d = d.assign(poor=y)
    return d


def test_single_tests_match_r(ref, data):
    pos, neg = data[data.poor == 1], data[data.poor == 0]
    t, df, p = T.welch_t_test(pos.age, neg.age)
    assert_allclose([t, df, p], [ref["t.test age", "t"], ref["t.test age", "df"],
                                 ref["t.test age", "p"]], **TOL)
    for v in ("s100b", "ndka"):
        w, p, how = T.wilcoxon_rank_sum(pos[v], neg[v])
        assert how.startswith("normal")
        assert_allclose([w, p], [ref[f"wilcox.test {v}", "W"], ref[f"wilcox.test {v}", "p"]], **TOL)
    s = pd.read_csv(VENDORED / "study_stats_samples.csv")
    x, y = s.value[s["sample"] == "x"], s.value[s["sample"] == "y"]
    w, p, how = T.wilcoxon_rank_sum(x, y)
    assert how == "exact"
    assert_allclose([w, p], [ref["wilcox.test exact", "W"], ref["wilcox.test exact", "p"]], **TOL)
    assert_allclose(T.shapiro_p(x), ref["shapiro.test x", "p"], rtol=1e-5)
    assert_allclose(T.shapiro_p(pos.age), ref["shapiro.test age pos", "p"], rtol=1e-5)
    g = pd.crosstab(data.gender, data.poor).to_numpy()
    x2, _, p, _ = T.chisq_test(g)
    assert_allclose([x2, p], [ref["chisq.test gender", "X2"], ref["chisq.test gender", "p"]], **TOL)
    wf = pd.crosstab(data.wfns, data.poor).to_numpy()
    x2, df, p, _ = T.chisq_test(wf)
    assert df == 4
    assert_allclose([x2, p], [ref["chisq.test wfns", "X2"], ref["chisq.test wfns", "p"]], **TOL)
    assert_allclose(T.fisher_exact_kx2(wf)[0], ref["fisher.test wfns", "p"], **TOL)
    assert_allclose(T.fisher_exact_kx2(g)[0], ref["fisher.test gender", "p"], **TOL)
    adj = T.p_adjust_bh([0.01, 0.04, 0.03, np.nan, 0.5, 0.002, 0.2])
    want = [ref["p.adjust BH", f"p{i}"] for i in range(1, 8)]
    assert_allclose(adj, want, equal_nan=True, **TOL)


def test_table1_matches_r_decisions(data):
    want = pd.read_csv(VENDORED / "study_stats_table1.csv").set_index("variable")
    d = data.assign(set=np.where(np.arange(len(data)) < 0, "x", "training"))
    tab = T.table1(d, "poor", sets="set", variables=["age", "s100b", "ndka", "gender", "wfns"],
                   continuous=["wfns_never"])
    f = tab.to_frame().set_index("variable")
    assert list(f.columns[:2]) == ["set", "kind"] and (f["set"] == "training").all()
    for v in want.index:
        assert f.loc[v, "test"] == want.loc[v, "test"], v
    assert_allclose(f.loc[want.index, "p"], want["p"], **TOL)
    assert_allclose(f.loc[want.index, "p_fdr"], want["p_fdr"], **TOL)
    # summaries: age is normal in both classes -> mean (SD); s100b median [IQR]
    a = data.age[data.poor == 1]
    assert f.loc["age", "summary_pos"] == f"{a.mean():.1f} ({a.std():.1f})"
    q = np.quantile(data.s100b[data.poor == 0], [0.25, 0.5, 0.75])
    assert f.loc["s100b", "summary_neg"] == f"{q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}]"
    lv = tab.levels_frame()
    g = lv[(lv.variable == "gender") & (lv.level == "Male")].iloc[0]
    assert g.n_pos == int(((data.gender == "Male") & (data.poor == 1)).sum())


def test_table1_single_level_and_one_class_sets(data):
    d = data.assign(const="x", set=np.where(data.poor == 1, "external", "training"))
    d.loc[d.index[:60], "set"] = "training"
    d.loc[d.set == "external", "poor"] = 1
    tab = T.table1(d, "poor", sets="set", variables=["const", "age"])
    f = tab.to_frame()
    c = f[(f.variable == "const") & (f.set == "training")].iloc[0]
    assert np.isnan(c.p) and "single level" in c.note
    ext = f[f.set == "external"]
    assert ext.p.isna().all()
    assert any("only positive" in n for n in tab.notes)
    # the age row of the training set still has its test
    assert np.isfinite(f[(f.variable == "age") & (f.set == "training")].p.iloc[0])


def test_odds_ratios_match_lrm(data):
    want = pd.read_csv(VENDORED / "study_stats_lrm.csv")
    d = data.assign(wfns_f=data.wfns.astype(int))
    tab = O.odds_ratio_table(d, d.poor, ["age", "s100b", "ndka", "gender", "wfns_f"],
                             categorical=["wfns_f"])
    f = tab.to_frame().set_index("term")
    rmap = {"age": "age", "s100b": "s100b", "ndka": "ndka", "gender=Male": "gender=Male vs Female"}
    rmap.update({f"wfns_f={k}": f"wfns_f={k} vs 1" for k in range(2, 6)})
    for model, col in (("multi", "multi"),) + tuple((f"uni {v}", "uni") for v in
                                                    ("age", "s100b", "ndka", "gender", "wfns_f")):
        w = want[want.model == model]
        for r in w.itertuples():
            if r.term == "Intercept":
                continue
            t = rmap[r.term]
            assert_allclose(np.log(f.loc[t, f"{col}_or"]), r.coef, rtol=1e-6, err_msg=t)
            assert_allclose(f.loc[t, f"{col}_p"], r.p, rtol=1e-5, atol=1e-12, err_msg=t)
            lo = np.exp(r.coef - 1.959963984540054 * r.se)
            assert_allclose(f.loc[t, f"{col}_lower"], lo, rtol=1e-6, err_msg=t)
    assert tab.multivariable_n == len(d)


def test_odds_ratio_single_level_row():
    d = pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6], "k": ["x"] * 6})
    tab = O.odds_ratio_table(d, [0, 1, 0, 1, 1, 0], ["a", "k"])
    k = tab.to_frame().set_index("variable").loc["k"]
    assert np.isnan(k.uni_or) and "single level" in k.note
    assert tab.multivariable_predictors == ["a"]


def test_val_prob_matches_r():
    probs = pd.read_csv(VENDORED / "study_stats_probs.csv")
    want = pd.read_csv(VENDORED / "study_stats_valprob.csv")
    for name in ("p_new", "p_mis"):
        got = C.val_prob(probs.poor, probs[name]).as_r()
        for r in want[want.p == name].itertuples():
            if r.stat == "D:p":  # NA in rms 6.5 (see calibrate.py)
                continue
            assert_allclose(got[r.stat], float(r.value), rtol=1e-6, atol=1e-7,
                            err_msg=f"{name} {r.stat}")


def _lrm_fit(cols):
    def fit(X, y):
        Z = np.column_stack([np.ones(len(X)), X[cols].to_numpy(float)])
        b = logistic_fit(y, Z, tol=1e-14).coef
        return lambda Xn: expit(np.column_stack([np.ones(len(Xn)), Xn[cols].to_numpy(float)]) @ b)
    return fit


def test_calibrate_matches_rms_with_the_same_resamples(ref, data):
    want = pd.read_csv(VENDORED / "study_stats_calibrate.csv")
    idx = pd.read_csv(VENDORED / "study_stats_calibrate_indices.csv").to_numpy() - 1
    d = data.assign(male=(data.gender == "Male").astype(float))
    res = C.calibrate_boot(_lrm_fit(["age", "s100b", "ndka", "male"]), d, d.poor, indices=idx)
    assert_allclose(res.predy, want.predy, **TOL)
    assert_allclose(res.apparent, want.calibrated_orig, rtol=1e-6, atol=1e-8)
    assert_allclose(res.corrected, want.calibrated_corrected, rtol=1e-6, atol=1e-8)
    assert_allclose(res.n_used, want.n)
    assert_allclose(res.mean_absolute_error, ref["calibrate", "mean_absolute_error"], rtol=1e-6)
    assert_allclose(res.mean_squared_error, ref["calibrate", "mean_squared_error"], rtol=1e-6)
    assert_allclose(res.quantile90_absolute_error, ref["calibrate", "quantile90_absolute_error"],
                    rtol=1e-6)


def test_improveprob_continuous_nri_and_idi(ref):
    probs = pd.read_csv(VENDORED / "study_stats_probs.csv")
    r = RC.reclassification(probs.poor, probs.p_ref, probs.p_new, cutoffs=(0.2, 0.5))
    n, i = r.continuous, r.idi
    assert_allclose([n.nri, n.se, n.z, n.nri_events, n.se_events, n.nri_nonevents, n.se_nonevents],
                    [ref["improveProb", k] for k in ("nri", "se.nri", "z.nri", "nri.ev",
                                                     "se.nri.ev", "nri.ne", "se.nri.ne")], **TOL)
    assert_allclose([i.idi, i.se, i.z, i.mean_change_events, -i.mean_change_nonevents],
                    [ref["improveProb", k] for k in ("idi", "se.idi", "z.idi", "improveSens",
                                                     "improveSpec")], **TOL)


def test_categorical_nri_hand_computed():
    # 5 events, 5 non-events, cut-offs 0.2 / 0.5 (categories low / mid / high)
    y = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    ref = [0.1, 0.3, 0.3, 0.6, 0.1, 0.1, 0.3, 0.6, 0.6, 0.1]
    new = [0.3, 0.6, 0.2, 0.4, 0.15, 0.1, 0.1, 0.3, 0.7, 0.5]
    # events: low->mid up, mid->high up, mid->mid (0.2 is mid), high->mid down, low->low
    # non-events: low->low, mid->low down, high->mid down, high->high, low->high up
    r = RC.nri_categorical(y, ref, new, (0.2, 0.5))
    assert (r.up_events, r.down_events, r.up_nonevents, r.down_nonevents) == (2, 1, 1, 2)
    assert_allclose(r.nri_events, 1 / 5)
    assert_allclose(r.nri_nonevents, 1 / 5)
    assert_allclose(r.nri, 0.4)
    v_e = 3 / 25 - 1 / 125
    assert_allclose(r.se, np.sqrt(2 * v_e))
    assert r.table_events == [[1, 1, 0], [0, 1, 1], [0, 1, 0]]
    assert r.table_nonevents == [[1, 0, 1], [1, 0, 0], [0, 1, 1]]
    i = RC.idi(y, ref, new)
    d = np.subtract(new, ref)
    assert_allclose(i.idi, d[:5].mean() - d[5:].mean())
    assert_allclose(i.se, np.sqrt(d[:5].var(ddof=1) / 5 + d[5:].var(ddof=1) / 5))
    assert_allclose(i.discrimination_slope_new - i.discrimination_slope_ref, i.idi)
