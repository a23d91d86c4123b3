"""Nested / partially paired OR designs, model alone vs readers, sample size, kappa.

Expected values and sources: tests/reference/mrmc/EXPECTED.md (MRMCaov JSS manuscript for
the nested Van Dyke designs; RJafroc goodValues for StCadVsRad and SsPowerGivenJK).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.reader_study import agreement, mrmc, simulate

REF = Path(__file__).resolve().parents[1] / "reference" / "mrmc"


@pytest.fixture(scope="module")
def vd():
    return pd.read_csv(REF / "vandyke.csv")


def _or(df, case_col):
    d = df.assign(case=df[case_col])
    cube, truth, trs, rds, _ = mrmc.ratings_cube(d, allow_missing=True)
    return mrmc.or_analysis(cube, truth, treatments=trs, readers=rds, reference=1, test=0)


def test_cases_nested_within_readers_matches_mrmcaov(vd):
    r = _or(vd.assign(c2=vd.reader.astype(str) + "." + vd.case.astype(str)), "c2")
    assert r.design == "cases nested within readers" and r.n_cases == 570
    assert_allclose([r.var_r, r.var_tr, r.var_error, r.cov1], [1.293517e-03, 9.213005e-05,
                                                               8.079682e-04, 3.490676e-04], rtol=5e-7)
    assert r.cov2 == 0 and r.cov3 == 0
    assert_allclose([r.rrrc.value, r.rrrc.df2], [8.704, 4], rtol=5e-5)
    assert_allclose([r.rrrc.p_value, r.rrrc.std_err], [0.04195875, 0.01484629], rtol=5e-7)
    assert_allclose([r.rrrc.ci_lower, r.rrrc.ci_upper], [-0.08502022, -0.00258042], rtol=5e-7)
    s = r.single_treatment
    assert_allclose([s[0]["rrrc"]["std_err"], s[1]["rrrc"]["std_err"]], [0.02482994, 0.01615303],
                    rtol=5e-7)


def test_cases_nested_within_treatments_matches_mrmcaov(vd):
    r = _or(vd.assign(c3=vd.treatment.astype(str) + "." + vd.case.astype(str)), "c3")
    assert r.design == "cases nested within treatments"
    assert_allclose([r.var_r, r.var_tr, r.var_error, r.cov2], [1.642585e-03, 9.078969e-05,
                                                               8.058382e-04, 3.455973e-04], rtol=5e-7)
    assert r.cov1 == 0 and r.cov3 == 0
    assert_allclose([r.rrrc.denominator, r.rrrc.value, r.rrrc.df2, r.rrrc.p_value, r.rrrc.std_err],
                    [0.002279017, 2.104491, 68.42325, 0.1514363, 0.03019283], rtol=5e-7)
    s = r.single_treatment
    assert_allclose([s[0]["rrrc"]["std_err"], s[0]["rrrc"]["df"], s[1]["rrrc"]["std_err"],
                     s[1]["rrrc"]["df"]], [0.03320586, 12.79430, 0.02158730, 12.75962], rtol=5e-7)


def test_partially_paired_reduces_to_factorial_when_complete(vd):
    full = _or(vd, "case")
    d = vd[~((vd.reader == 2) & (vd.treatment == 2) & (vd.case <= 10))]
    part = _or(d, "case")
    assert full.design == "factorial" and part.design == "partially paired"
    assert part.n_ratings == len(d)
    # reader 2 / treatment 2's AUC uses its 104 cases; the others are unchanged
    assert_allclose(np.delete(np.ravel(part.auc), 1 * 5 + 1), np.delete(np.ravel(full.auc), 6))
    assert 0 < part.rrrc.p_value < 1


@pytest.fixture(scope="module")
def rj():
    d = pd.read_csv(REF / "rjafroc_expected.csv")
    return {(r.source, r.quantity): r.value for r in d.itertuples()}


def test_model_alone_vs_readers_matches_rjafroc(rj):
    d = pd.read_csv(REF / "cad_lroc_roc.csv")
    wide = d.pivot(index="case", columns="reader", values="rating")
    truth = d.groupby("case").truth.first().loc[wide.index].to_numpy()
    cad, rad = wide[1].to_numpy(float), wide.drop(columns=1).to_numpy(float).T
    for m in ("1T-RRRC", "1T-RRFC"):
        r = mrmc.standalone_vs_readers(rad, cad, truth, method=m)
        src = f"StCadVsRad {m}"
        g = lambda q: float(rj[(src, q)])  # noqa: E731
        assert_allclose(r.model_auc, g("fomCAD"), rtol=1e-9)
        assert_allclose(r.reader_auc, [g(f"fomRAD[{i}]") for i in range(1, 10)], rtol=1e-9)
        assert_allclose([r.mean_difference, r.statistic, r.df, r.p_value, r.var_r],
                        [g("avgDiffFom"), g("Tstat"), g("df"), g("pval"), g("varR")], rtol=1e-8)
        assert_allclose(r.ci_difference, [g("CIAvgDiffFom[1]"), g("CIAvgDiffFom[2]")], rtol=1e-8)
        if m == "1T-RRRC":
            assert_allclose([r.var_error, r.cov2], [g("varError"), g("cov2")], rtol=1e-8)
            assert_allclose(r.ci_mean_reader, [g("CIAvgRad[1]"), g("CIAvgRad[2]")], rtol=1e-8)


def test_power_matches_rjafroc(vd, rj):
    cube, truth, trs, rds, _ = mrmc.ratings_cube(vd)
    pilot = mrmc.or_analysis(cube, truth, treatments=trs, readers=rds)
    comps = dict(var_tr=pilot.var_tr, cov1=pilot.cov1, cov2=pilot.cov2, cov3=pilot.cov3,
                 var_error=pilot.var_error, pilot_cases=pilot.n_cases)
    for a, k in (("RRRC", 165), ("FRRC", 131), ("RRFC", 53)):
        r = mrmc.or_power(-0.043800322, 10, k, analysis=a, **comps)
        src = f"SsPowerGivenJK {a} J=10 K={k}"
        assert_allclose(r.power, float(rj[(src, f"power{a}")]), rtol=1e-8)
        assert_allclose(r.ncp, float(rj[(src, f"ncp{a}")]), rtol=1e-8)
        if a != "FRRC":
            assert_allclose(r.df2, float(rj[(src, f"df2{a}")]), rtol=1e-8)
    rows = mrmc.sample_size(-0.043800322, [10], pilot=pilot, target_power=0.8)
    # RJafroc's examples were chosen near 80 % power: K = 165 gives 0.8054
    assert rows[0]["cases"] <= 165 and rows[0]["power"] >= 0.8
    below = mrmc.or_power(-0.043800322, 10, rows[0]["cases"] - 1, **comps).power
    assert below < 0.8


def test_kappa_hand_computed():
    # 2 x 2: p_o = 0.7, p_e = 0.5 -> kappa 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    k = agreement.cohen_kappa(a, b)
    assert_allclose([k["kappa"], k["agreement"]], [0.4, 0.7])
    # Fleiss: 3 raters, 4 cases; P_i = [1, 1/3, 1/3, 1], P_bar = 2/3;
    # p_j = (6/12, 6/12), P_e = 1/2 -> kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3
    calls = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 1], [0, 0, 0]])
    f = agreement.fleiss_kappa(calls, n_boot=50)
    assert_allclose(f["kappa"], 1 / 3)
    # p_j = (8/12, 4/12), P_e = 80/144, P_i = [1, 1/3, 1/3, 1/3], P_bar = 1/2
    calls = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 1], [1, 0, 1]])
    f = agreement.fleiss_kappa(calls, n_boot=50)
    assert_allclose(f["kappa"], (0.5 - 80 / 144) / (1 - 80 / 144))


def test_simulated_study_recovers_known_truth():
    sim = simulate.simulate_study(n_readers=6, n_cases=120, auc_unaided=0.75, auc_aided=0.85,
                                  model_auc=0.85, seed=11, design="split-plot", blocks=2)
    reads = sim.reads
    # split-plot: every reader reads half the cases, both arms
    per_reader = reads.groupby("reader")["case"].nunique()
    assert (per_reader == 60).all()
    res = mrmc.analyze_reads(reads, model_scores=sim.model_scores, cov_methods=("jackknife",))
    jk = res["mrmc"]["jackknife"]
    assert jk["design"] == "partially paired" and "every rating" in jk["note"]
    diff = jk["rrrc"]["difference"]
    lo, hi = jk["rrrc"]["ci_lower"], jk["rrrc"]["ci_upper"]
    assert lo < sim.truth["auc_difference"] < hi
    assert "0 of 120 cases" in res["standalone"]["unaided"]["note"]  # needs a crossed study
    assert abs(diff - sim.truth["auc_difference"]) < 0.1
    # the DeLong method cannot use a split-plot design: it says why
    assert "error" in mrmc.analyze_reads(reads, cov_methods=("delong",))["mrmc"]["delong"]
    # HER2-low reads carry a confidence: AUCs and an MRMC analysis for that task too
    low = res["her2_low_mrmc"]["jackknife"]
    assert low["design"] == "partially paired" and 0.55 < np.mean(low["auc_mean"]) < 0.9
    assert res["reading_time"]["paired"]["median_difference"] < 0
    assert res["agreement"]["her2"]["arms"]["aided"]["n_cases"] == 0  # nobody reads every case


def test_simulated_crossed_study_model_vs_readers():
    sim = simulate.simulate_study(n_readers=5, n_cases=80, auc_unaided=0.7, auc_aided=0.8,
                                  model_auc=0.9, seed=3)
    res = mrmc.analyze_reads(sim.reads, model_scores=sim.model_scores, cov_methods=("jackknife",))
    st = res["standalone"]["unaided"]["1T-RRRC"]
    assert st["mean_difference"] < 0  # readers (0.7) below the model (0.9)
    assert st["ci_difference"][0] < sim.truth["auc_unaided"] - sim.truth["model_auc"] < st["ci_difference"][1]
    fl = res["agreement"]["her2"]["arms"]["unaided"]["fleiss"]
    assert fl["n_raters"] == 5 and 0 < fl["kappa"] < 1
