"""MRMC analysis against published analyses of the Van Dyke (1993) data.

Expected values and their sources: tests/reference/mrmc/EXPECTED.md. The published
outputs report treatment 1 - treatment 2; ours is test (2) - reference (1), so
differences and CI bounds change sign.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.metrics import auc as auc_of, delong_covariance_matrix
from her2core.reader_study import mrmc

REF = Path(__file__).resolve().parents[1] / "reference" / "mrmc"


@pytest.fixture(scope="module")
def vandyke():
    df = pd.read_csv(REF / "vandyke.csv")
    return mrmc.ratings_cube(df)


@pytest.fixture(scope="module")
def jk(vandyke):
    cube, truth, trs, rds, _ = vandyke
    return mrmc.or_analysis(cube, truth, cov_method="jackknife", treatments=trs, readers=rds)


@pytest.fixture(scope="module")
def dl(vandyke):
    cube, truth, trs, rds, _ = vandyke
    return mrmc.or_analysis(cube, truth, cov_method="delong", treatments=trs, readers=rds)


def test_data_shape(vandyke):
    cube, truth, trs, rds, cases = vandyke
    assert cube.shape == (2, 5, 114)
    assert (truth == 0).sum() == 69 and (truth == 1).sum() == 45
    assert set(np.unique(cube)) <= {1, 2, 3, 4, 5}


def test_reader_aucs_iowa(jk):
    # OR-DBM MRMC 2.51 TREATMENT x READER AUC ESTIMATES (8 decimals)
    assert_allclose(jk.auc[0], [0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066], atol=5e-9)
    assert_allclose(jk.auc[1], [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169], atol=5e-9)
    assert_allclose(jk.auc_mean, [0.89703704, 0.94083736], atol=5e-9)


def test_jackknife_components(jk):
    # MRMCaov fixed-reader jackknife output (10 significant digits) and Iowa (8 decimals)
    assert_allclose([jk.var_r, jk.var_tr, jk.var_error, jk.cov1, jk.cov2, jk.cov3],
                    [0.0015349993, 0.0002004025, 0.0008022883, 0.0003466137,
                     0.0003440748, 0.0002390284], rtol=2e-7)
    assert_allclose([jk.ms_t, jk.ms_r, jk.ms_tr], [0.00479617, 0.00383620, 0.00055103], atol=5e-9)
    assert_allclose([jk.ms_t, jk.ms_tr], [0.004796171, 0.0005510306], rtol=2e-7)


def test_jackknife_rrrc(jk):
    r = jk.rrrc
    # RJafroc dataset02 OR RRRC p (9 digits); F and df2 from MRMCaov's published components
    assert_allclose(r.p_value, 0.051665686, rtol=1e-7)
    den = 0.0005510306 + 5 * (0.0003440748 - 0.0002390284)
    assert_allclose(r.value, 0.004796171 / den, rtol=1e-6)
    assert_allclose(r.df2, den ** 2 / (0.0005510306 ** 2 / 4), rtol=1e-6)
    # Iowa OR-DBM MRMC 2.51, rounded as printed
    assert_allclose([r.value, r.df2], [4.46, 15.26], atol=5e-3)
    assert_allclose(r.p_value, 0.0517, atol=5e-5)
    assert r.df1 == 1
    assert_allclose(r.difference, 0.04380032, atol=5e-9)
    assert_allclose([r.std_err, r.ci_lower, r.ci_upper], [0.02075, -0.00036, 0.08796], atol=5e-6)
    s = jk.single_treatment
    assert_allclose([s[0]["rrrc"]["std_err"], s[1]["rrrc"]["std_err"]], [0.03317360, 0.02156637], atol=5e-9)
    assert_allclose([s[0]["rrrc"]["df"], s[1]["rrrc"]["df"]], [12.74, 12.71], atol=5e-3)


def test_jackknife_frrc_rrfc(jk):
    f = jk.frrc
    assert_allclose([f.value, f.p_value, f.std_err], [5.475953, 0.01927984, 0.01871748], rtol=2e-7)
    assert_allclose([f.ci_lower, f.ci_upper], [0.00711473, 0.08048591], atol=5e-9)
    assert_allclose([p["std_err"] for p in jk.per_reader],
                    [0.02551213, 0.02630183, 0.03120965, 0.01729129, 0.04405746], atol=5e-9)
    assert_allclose([p["p_value"] for p in jk.per_reader],
                    [0.26933885, 0.07683102, 0.56683414, 0.12901715, 0.02300099], atol=5e-9)
    # single-treatment CIs, fixed readers (Iowa 2c) and fixed cases (Iowa 3c)
    s = jk.single_treatment
    assert_allclose([s[0]["frrc"]["std_err"], s[1]["frrc"]["std_err"]], [0.02428971, 0.01677632], atol=5e-9)
    assert_allclose([s[0]["rrfc"]["std_err"], s[1]["rrfc"]["std_err"]], [0.02482994, 0.01615303], atol=5e-9)
    assert_allclose(s[0]["rrfc"]["ci"], [0.82809808, 0.96597599], atol=5e-9)
    assert_allclose([s[0]["var_error"], s[0]["cov2"], s[1]["var_error"], s[1]["cov2"]],
                    [0.00101410, 0.00048396, 0.00059047, 0.00020419], atol=5e-9)
    c = jk.rrfc
    assert_allclose([c.value, c.df1, c.df2, c.p_value, c.std_err],
                    [8.704, 1, 4, 0.04195875, 0.01484629], rtol=2e-7)
    assert_allclose([c.ci_lower, c.ci_upper], [0.00258042, 0.08502022], atol=5e-9)


def test_delong_rrrc_mrmcaov(dl):
    assert_allclose([dl.var_error, dl.cov1, dl.cov2, dl.cov3, dl.var_r, dl.var_tr],
                    [0.0007921325, 0.0003420090, 0.0003395265, 0.0002358497,
                     0.0015364254, 0.0002045840], rtol=2e-7)
    r = dl.rrrc
    assert_allclose([r.value, r.df2, r.p_value], [4.484854, 15.06611, 0.05123303], rtol=2e-7)
    assert_allclose(r.std_err, 0.0206825, atol=5e-9)  # R prints 0.02068250 as 0.0206825
    assert_allclose([r.ci_lower, r.ci_upper], [-0.0002665519, 0.0878671960], atol=5e-11)
    s = dl.single_treatment
    assert_allclose([s[0]["rrrc"]["std_err"], s[0]["rrrc"]["df"], s[1]["rrrc"]["std_err"], s[1]["rrrc"]["df"]],
                    [0.03307642, 12.59597, 0.02150464, 12.56530], rtol=5e-7)


def test_jackknife_matches_brute_force():
    rng = np.random.default_rng(3)
    truth = np.array([0] * 7 + [1] * 5)
    ratings = rng.integers(1, 6, size=(3, 12)).astype(float) + truth
    auc, cov = mrmc.auc_covariance(truth, ratings, "jackknife")
    loo = np.array([[auc_of(np.delete(truth, k), np.delete(ratings[m], k))
                     for k in range(12)] for m in range(3)])
    dev = loo - loo.mean(axis=1, keepdims=True)
    assert_allclose(cov, 11 / 12 * dev @ dev.T, rtol=1e-12)
    assert_allclose(auc, [auc_of(truth, r) for r in ratings])
    # the DeLong covariance is her2core.metrics' (pROC's), the one DeLong stack
    _, cov_d = mrmc.auc_covariance(truth, ratings, "delong")
    assert_allclose(cov_d, delong_covariance_matrix(truth, list(ratings))[1], rtol=1e-12)


def test_jackknife_with_missing_ratings_keeps_the_full_auc_for_unread_cases():
    rng = np.random.default_rng(4)
    truth = np.array([0] * 7 + [1] * 5)
    ratings = rng.integers(1, 6, size=(2, 12)).astype(float) + truth
    ratings[1, [0, 8]] = np.nan
    auc, cov = mrmc.auc_covariance(truth, ratings, "jackknife")
    keep = np.isfinite(ratings[1])
    a1 = auc_of(truth[keep], ratings[1, keep])
    loo = np.array([auc_of(np.delete(truth[keep], j), np.delete(ratings[1, keep], j))
                    for j in range(10)])
    full = np.full(12, a1)
    full[keep] = loo
    dev = full - full.mean()
    assert_allclose(auc[1], a1)
    assert_allclose(cov[1, 1], 11 / 12 * dev @ dev, rtol=1e-12)
    with pytest.raises(ValueError, match="jackknife"):
        mrmc.auc_covariance(truth, ratings, "delong")


def test_confidence_to_rating_orders_calls():
    r = mrmc.confidence_to_rating([True, True, False, False], [0, 100, 0, 100])
    assert_allclose(r, [50, 100, 50, 0])
    with pytest.raises(ValueError):
        mrmc.confidence_to_rating([True], [101])


def test_binary_metrics_counts():
    bm = mrmc.binary_metrics([1, 1, 1, 0, 0], [True, True, False, False, True])
    assert (bm["sensitivity"].k, bm["sensitivity"].n) == (2, 3)
    assert (bm["specificity"].k, bm["specificity"].n) == (1, 2)
    assert_allclose([bm["accuracy"].estimate, bm["ppv"].estimate, bm["npv"].estimate], [0.6, 2 / 3, 0.5])


def test_analyze_reads_on_vandyke():
    df = pd.read_csv(REF / "vandyke.csv")
    reads = pd.DataFrame({
        "reader": df["reader"].astype(str), "arm": np.where(df["treatment"] == 1, "unaided", "aided"),
        "case": df["case"], "truth": df["truth"], "rating": df["rating"].astype(float),
        "call_positive": df["rating"] >= 3, "confidence": 50.0,
    })
    info = [{"name": str(i), "level": "senior" if i <= 2 else "junior"} for i in range(1, 6)]
    out = mrmc.analyze_reads(reads, readers_info=info)
    assert_allclose(out["mrmc"]["jackknife"]["rrrc"]["p_value"], 0.051665686, rtol=1e-7)
    assert_allclose(out["mrmc"]["delong"]["rrrc"]["value"], 4.484854, rtol=2e-7)
    d = {x["reader"]: x["auc"] for x in out["aided_minus_unaided"]}
    assert_allclose(d["5"], 0.92995169 - 0.82979066, atol=1e-8)
    assert set(out["groups"]) == {"junior", "senior"}
    assert_allclose(out["groups"]["senior"]["arms"]["aided"]["mean_auc"], (0.94782609 + 0.90531401) / 2, atol=1e-8)
    assert "error" not in out["groups"]["junior"]["mrmc"]
