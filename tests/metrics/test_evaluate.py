"""`python -m her2core evaluate` end to end on reference data (aSAH, df_binary)."""
import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.cli import main

from ._refs import VENDORED, asah, df_binary, shared


@pytest.fixture
def asah_files(tmp_path):
    d, y = asah()
    ids = [f"c{r}" for r in d.rowname]
    coh = tmp_path / "cohort"
    coh.mkdir()
    her2 = y.astype(float)
    her2[3] = np.nan  # one case without a label
    pd.DataFrame({"case_id": ids, "her2": her2}).to_csv(coh / "cohort.csv", index=False,
                                                        na_rep="")
    pred = pd.DataFrame({"case_id": ids, "wfns": d.wfns, "s100b": d.s100b, "ndka": d.ndka,
                         "note": "x"})
    pred.loc[5, "ndka"] = np.nan  # one missing score
    extra = pd.DataFrame({"case_id": ["zz-1"], "wfns": [1], "s100b": [0.1], "ndka": [3.0],
                          "note": ["y"]})
    pd.concat([pred, extra]).to_csv(tmp_path / "pred.csv", index=False)
    return tmp_path, coh


def _run(args, capsys=None):
    rc = main(["evaluate", *map(str, args)])
    return rc


def test_asah_full_cohort_matches_proc(tmp_path, capsys):
    d, y = asah()
    ids = [f"c{r}" for r in d.rowname]
    coh = tmp_path / "cohort"
    coh.mkdir()
    pd.DataFrame({"case_id": ids, "her2": y}).to_csv(coh / "cohort.csv", index=False)
    pd.DataFrame({"case_id": ids, "wfns": d.wfns, "s100b": d.s100b, "ndka": d.ndka}).to_csv(
        tmp_path / "pred.csv", index=False)
    out = tmp_path / "out.json"
    rc = _run(["--predictions", tmp_path / "pred.csv", "--truth", coh / "cohort.csv",
               "--compare", "wfns", "s100b", "--compare", "wfns", "ndka",
               "--n-boot", 500, "--json", out])
    assert rc == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["n"] == 113 and r["positives"] == 41
    s = r["scores"]
    assert_allclose(s["wfns"]["auc"], 0.823678861788618, atol=1e-9)
    assert_allclose(s["ndka"]["auc_ci_delong"], [0.501244999271703, 0.722670989888189], atol=1e-9)
    assert_allclose(s["s100b"]["youden"]["threshold"], 0.205, atol=1e-12)
    assert s["s100b"]["youden"]["sensitivity"] == pytest.approx(26 / 41)
    lo, hi = s["s100b"]["auc_ci_bootstrap"]
    assert lo < 0.7313685636856369 < hi
    assert s["wfns"]["is_probability"] is False and s["wfns"]["brier"] is None
    assert "not a probability" in s["wfns"]["note"]
    c = {(x["a"], x["b"]): x for x in r["comparisons"]}
    assert_allclose([c["wfns", "s100b"]["z"], c["wfns", "s100b"]["p"]],
                    [2.20898359144091, 0.0271757822291882], atol=1e-9)
    assert_allclose([c["wfns", "ndka"]["z"], c["wfns", "ndka"]["p"]],
                    [2.79777591868904, 0.00514557970691098], atol=1e-9)
    assert c["wfns", "s100b"]["method"] == "delong"
    assert r["excluded"]["counts"]["predictions_without_label"] == 0


def test_df_binary_probability_column_matches_dcurves_and_glm(tmp_path):
    b, y = df_binary()
    ids = [f"p{i}" for i in b.patientid]
    coh = tmp_path / "cohort"
    coh.mkdir()
    pd.DataFrame({"case_id": ids, "her2": y}).to_csv(coh / "cohort.csv", index=False)
    pd.DataFrame({"case_id": ids, "p_her2": b.cancerpredmarker, "marker": b.marker}).to_csv(
        tmp_path / "pred.csv", index=False)
    out = tmp_path / "o.json"
    html = tmp_path / "o.html"
    assert _run(["--predictions", tmp_path / "pred.csv", "--truth", coh, "--score", "p_her2",
                 "--threshold", 0.25, "--n-boot", 200, "--json", out, "--html", html]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    s = r["scores"]["p_her2"]
    dca = {round(x["threshold"], 2): x for x in s["dca"]}
    assert len(dca) == 99
    assert_allclose(dca[0.25]["net_benefit"], 0.064, atol=1e-12)
    ta = {round(x["threshold"], 2): x["net_benefit"] for x in r["treat_all"]}
    assert_allclose(ta[0.25], -0.1466666666666667, atol=1e-12)
    ref = pd.read_csv(VENDORED / "glm_calibration.csv")
    ref = ref[(ref.predictor == "cancerpredmarker") & (ref.g == 10)].iloc[0]
    assert_allclose([s["calibration_intercept"], s["calibration_slope"], s["brier"]],
                    [ref.intercept, ref.slope, ref.brier], atol=1e-6)
    assert_allclose(s["hosmer_lemeshow"]["statistic"], ref.hl_statistic, rtol=1e-9)
    assert s["hosmer_lemeshow"]["df"] == 8 and s["hosmer_lemeshow"]["groups"] == 10
    assert s["at_threshold"]["threshold"] == 0.25
    n = r["n"]
    assert_allclose(s["at_threshold"]["tp"] / n - s["at_threshold"]["fp"] / n / 3, 0.064)
    assert r["comparisons"] == []
    text = html.read_text(encoding="utf-8")
    assert "ROC curve" in text and "Decision curves" in text and "Calibration" in text


def test_mtcars_hosmer_lemeshow_through_the_command(tmp_path):
    from scipy.special import expit
    from her2core.metrics import logistic_fit

    d = pd.read_csv(shared("hosmer_lemeshow", "mtcars.csv"))
    X = np.column_stack([np.ones(len(d)), d.wt, d.hp])
    p = expit(X @ logistic_fit(d.am, X).coef)
    ids = [f"m{i}" for i in range(len(d))]
    (tmp_path / "c").mkdir()
    pd.DataFrame({"case_id": ids, "her2": d.am}).to_csv(tmp_path / "c" / "cohort.csv",
                                                        index=False)
    pd.DataFrame({"case_id": ids, "p": p}).to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "o.json"
    assert _run(["--predictions", tmp_path / "p.csv", "--truth", tmp_path / "c",
                 "--hl-groups", 6, "--n-boot", 100, "--json", out]) == 0
    hl = json.loads(out.read_text(encoding="utf-8"))["scores"]["p"]["hosmer_lemeshow"]
    assert_allclose([hl["statistic"], hl["p"]], [2.350166448223214, 0.6716510821159789],
                    atol=1e-6)
    assert hl["df"] == 4


def test_exclusions_reported(asah_files, capsys):
    tmp, coh = asah_files
    out = tmp / "o.json"
    assert _run(["--predictions", tmp / "pred.csv", "--truth", coh, "--n-boot", 100,
                 "--json", out]) == 0
    err = capsys.readouterr().err
    assert "excluded 2 prediction rows without a label: c32, zz-1" in err
    assert "excluded 1 cases without a value of ndka: c34" in err
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["n"] == 112
    ex = r["excluded"]
    assert ex["counts"]["predictions_without_label"] == 2
    assert ex["missing_score"]["ndka"] == ["c34"]
    assert set(r["scores"]) == {"wfns", "s100b", "ndka"}  # "note" is text: not a score
    assert r["scores"]["ndka"]["n"] == 111
    assert len(r["comparisons"]) == 3


@pytest.mark.parametrize("content,message", [
    (None, "predictions file not found"),
    ("", "empty file"),
    ("id,score\na,0.1\n", "no case_id column"),
    ("case_id,score\na,0.1\na,0.2\n", "duplicate case_id: a"),
    ("case_id,score\na,x\n", "no numeric score column"),
])
def test_bad_prediction_files(asah_files, capsys, content, message):
    tmp, coh = asah_files
    bad = tmp / "bad.csv"
    if content is not None:
        bad.write_text(content)
    rc = _run(["--predictions", bad, "--truth", coh, "--json", tmp / "o.json"])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "bad.csv" in err
    assert "Traceback" not in err


def test_bad_truth_and_options(asah_files, capsys):
    tmp, coh = asah_files
    assert _run(["--predictions", tmp / "pred.csv", "--truth", tmp / "nowhere",
                 "--json", tmp / "o.json"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert _run(["--predictions", tmp / "pred.csv", "--truth", coh, "--score", "nope",
                 "--json", tmp / "o.json"]) == 2
    assert "no column nope" in capsys.readouterr().err
    assert _run(["--predictions", tmp / "pred.csv", "--truth", coh, "--compare", "wfns",
                 "nope", "--json", tmp / "o.json"]) == 2
    assert "--compare column nope" in capsys.readouterr().err
    other = tmp / "truth.csv"  # a cohort table under another name works too
    other.write_text((coh / "cohort.csv").read_text(encoding="utf-8"))
    assert _run(["--predictions", tmp / "pred.csv", "--truth", other, "--n-boot", 100,
                 "--json", tmp / "o.json"]) == 0


def test_her2_low_task_uses_ihc(tmp_path):
    coh = tmp_path / "c"
    coh.mkdir()
    table = pd.DataFrame({
        "case_id": [f"k{i}" for i in range(10)],
        "her2": [0, 0, 0, 0, 0, 0, 1, 1, 0, 0],
        "her2_ihc": ["0", "0", "0", "1+", "1+", "2+", "3+", "3+", "", "1+"]})
    table.to_csv(coh / "cohort.csv", index=False)
    pd.DataFrame({"case_id": table.case_id,
                  "p_her2_low": [0.1, 0.3, 0.6, 0.4, 0.8, 0.9, 0.5, 0.5, 0.5, 0.7]}).to_csv(
        tmp_path / "p.csv", index=False)
    out = tmp_path / "o.json"
    assert main(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--truth", str(coh),
                 "--task", "her2_low", "--n-boot", "100", "--json", str(out)]) == 0
    r = json.loads(out.read_text(encoding="utf-8"))
    # HER2-positive k6, k7 and k8 (no IHC) have no her2_low label
    assert r["n"] == 7 and r["positives"] == 4
    assert r["excluded"]["predictions_without_label"] == ["k6", "k7", "k8"]
    # cases 0.4, 0.8, 0.9, 0.7 vs controls 0.1, 0.3, 0.6: 11 of 12 pairs ordered
    assert_allclose(r["scores"]["p_her2_low"]["auc"], 11 / 12)


def test_compare_groups_unpaired_matches_proc(tmp_path):
    """df_binary marker, age > 65 vs <= 65: pROC roc.test(paired=FALSE),
    tests/reference/proc_extra_tests.csv."""
    b, y = df_binary()
    ids = [f"p{i}" for i in b.patientid]
    coh = tmp_path / "cohort"
    coh.mkdir()
    pd.DataFrame({"case_id": ids, "her2": y,
                  "center": np.where(b.age > 65, "old", "young")}).to_csv(
        coh / "cohort.csv", index=False)
    pd.DataFrame({"case_id": ids, "marker": b.marker}).to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "o.json"
    assert main(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--truth", str(coh),
                 "--compare-groups", "center", "--n-boot", "100", "--json", str(out)]) == 0
    g = json.loads(out.read_text(encoding="utf-8"))["group_comparisons"][0]
    ref = pd.read_csv(VENDORED / "proc_extra_tests.csv").iloc[1]
    assert (g["group_a"], g["group_b"]) == ("old", "young")
    assert_allclose([g["d"], g["df"], g["p"], g["auc_a"], g["auc_b"]],
                    [ref.statistic, ref.df, ref.p, ref.auc_a, ref.auc_b], atol=1e-9)
    assert main(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--truth", str(coh),
                 "--compare-groups", "nope", "--json", str(out)]) == 2
