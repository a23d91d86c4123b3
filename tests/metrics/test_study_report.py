"""her2core.study_report on a clinical-only synthetic cohort with given predictions
(the bundle's image pipeline is not run here), and its bad-input messages."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core import metrics as M
from her2core.cohort import read_cohort
from her2core.metrics.table1 import table1
from her2core.study_report import report_study


class FakeBundle:
    path = "fake-bundle"
    tasks = ["her2", "her2_low"]
    random_init = False
    model_card = {"model": "test model", "data": {"where_held_out": "center=B"},
                  "recipe": {"clinical_predictors": ["age", "er", "pr", "ki67", "tumor_size_mm",
                                                     "enhancement_curve"]}}


def _predictions(cohort, extra=()):
    rng = np.random.default_rng(0)
    rows = []
    for task in ("her2", "her2_low"):
        y = cohort.labels(task)
        lp = 1.5 * (y - 0.5) + rng.normal(0, 1, len(y))
        rows.append(pd.DataFrame({"case_id": y.index, "task": task,
                                  "p": 1 / (1 + np.exp(-lp.to_numpy())),
                                  "set": np.where(cohort.table.loc[y.index, "center"] == "B",
                                                  "external", "training")}))
    return pd.concat(rows + list(extra), ignore_index=True)


@pytest.fixture(scope="module")
def report(clinical_cohort, tmp_path_factory):
    c = read_cohort(clinical_cohort)
    pred = _predictions(c, [pd.DataFrame({"case_id": ["not-a-case"], "task": ["her2"],
                                          "p": [0.5], "set": ["training"]})])
    out = tmp_path_factory.mktemp("report")
    res = report_study(FakeBundle(), c, out, predictions=pred, n_calibrate=10, n_boot=50)
    return c, pred, res


@pytest.mark.slow
def test_report_files_and_table1(report):
    c, pred, res = report
    for key in ("table1", "table1_her2_low", "odds_ratios", "roc", "delong", "calibration",
                "calibrate_curve", "decision_curves", "reclassification", "thresholds", "pdf",
                "html", "json"):
        assert key in res.files, key
    assert open(res.files["pdf"], "rb").read(5) == b"%PDF-"
    t1 = pd.read_csv(res.files["table1"])
    assert {"variable", "set", "test", "p", "p_fdr"} <= set(t1.columns)
    assert set(t1["set"]) == {"training", "external"}  # internal = training cases: not repeated
    assert not t1.duplicated(["variable", "set"]).any()
    # same numbers as table1() on the training cases directly
    tr = pred[(pred.task == "her2") & (pred.set == "training") & pred.case_id.isin(c.table.index)]
    d = c.table.loc[tr.case_id].assign(y=c.labels("her2").loc[tr.case_id].to_numpy())
    direct = table1(d, "y", variables=["age", "ki67", "er"]).to_frame().set_index("variable")
    got = t1[t1.set == "training"].set_index("variable")
    for v in ("age", "ki67", "er"):
        assert got.loc[v, "test"] == direct.loc[v, "test"]
        assert_allclose(got.loc[v, "p"], direct.loc[v, "p"], rtol=1e-9)
    # a one-level variable in a set is said, not fatal
    assert any("center has a single level" in p for p in res.problems)
    assert any("not-a-case" in p for p in res.problems)


@pytest.mark.slow
def test_report_roc_matches_metrics_and_clinical_model_is_honest(report):
    c, pred, res = report
    roc = pd.read_csv(res.files["roc"])
    p = pd.read_csv(res.files["predictions"], dtype={"case_id": str})
    ext = p[p.set == "external"]
    r = roc[(roc.set == "external") & (roc.model == "model")].iloc[0]
    ci = M.ci_auc_delong(ext.y, ext.model)
    assert_allclose([r.auc, r.lower, r.upper], [ci.auc, ci.lower, ci.upper], rtol=1e-9)
    # internal = out-of-fold clinical predictions: differ from the apparent ones
    tr = p[p.set == "training"].set_index("case_id").clinical
    it = p[p.set == "internal"].set_index("case_id").clinical
    assert it.notna().all() and not np.allclose(tr.loc[it.index], it)
    assert p[p.set == "internal"].model.isna().all()  # no bundle OOF predictions given
    rc = pd.read_csv(res.files["reclassification"])
    assert set(rc.measure) == {"categorical NRI", "continuous NRI", "IDI"}
    odds = pd.read_csv(res.files["odds_ratios"])
    assert "er=1 vs 0" in set(odds.term)
    js = json.loads(open(res.files["json"]).read())
    assert js["sets"]["her2"]["external"] == int((pred[pred.task == "her2"].set == "external").sum())


def test_one_class_set_is_reported_and_the_rest_written(clinical_cohort, tmp_path):
    c = read_cohort(clinical_cohort)
    pred = _predictions(c)
    pred = pred[pred.task == "her2"]
    y = c.labels("her2")
    # the external set holds only positives
    ext = pred.set == "external"
    pred = pred[~ext | pred.case_id.isin(y.index[y == 1])]
    res = report_study(FakeBundle(), c, tmp_path, predictions=pred, tasks=["her2"],
                       n_calibrate=5, n_boot=50, formats=("html",))
    # the report still has its HTML
    assert any("set external: only positive" in p for p in res.problems)
    roc = pd.read_csv(res.files["roc"])
    assert set(roc.set) == {"training", "internal"}
    assert "html" in res.files and "pdf" not in res.files
