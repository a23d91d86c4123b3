"""The three-way call (positive / low / zero, paper 002's readers' answer) in `predict`'s table
and `evaluate`'s per-class ROC."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from her2core.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from her2core.synthetic import make_cohort
    root = tmp_path_factory.mktemp("tw")
    cohort = make_cohort(root / "c", n=160, seed=11, centres=2, modalities="none", signal=1.5,
                         low_signal=2.0)
    assert main(["train", "--cohort", str(cohort), "--task", "her2,her2_low", "--bootstrap", "0",
                 "--where", "center=B", "--out", str(root / "b")]) == 0
    assert main(["predict", "--bundle", str(root / "b"), "--cohort", str(cohort),
                 "--out", str(root / "p.csv")]) == 0
    return cohort, root


def test_predict_writes_class_probabilities_that_sum_to_one(trained):
    from her2core.predictor import three_way
    _, root = trained
    p = pd.read_csv(root / "p.csv")
    assert {"p_positive", "p_low", "p_zero", "three_way_call"} <= set(p.columns)
    np.testing.assert_allclose(p[["p_positive", "p_low", "p_zero"]].sum(axis=1), 1.0, atol=1e-9)
    for _, r in p.head(5).iterrows():
        ref = three_way(r.p_her2, r.p_her2_low)
        assert r.p_low == pytest.approx(ref["low"], abs=1e-9)
        assert r.three_way_call == max(ref, key=ref.get)


def test_evaluate_gives_one_roc_per_class(trained, tmp_path, capsys):
    from her2core.cohort import read_cohort
    cohort, root = trained
    out = tmp_path / "e.json"
    assert main(["evaluate", "--predictions", str(root / "p.csv"), "--truth", str(cohort),
                 "--json", str(out), "--n-boot", "200"]) == 0
    assert "three-way call: per-class AUC" in capsys.readouterr().err
    res = json.loads(out.read_text())
    assert "p_positive" not in res["scores"] and "imputed" not in res["scores"]
    c = read_cohort(cohort)
    her2, low = c.labels("her2"), c.labels("her2_low")
    lab = pd.concat([pd.Series("positive", index=her2.index[her2 == 1]),
                     low.reindex(her2.index[her2 == 0]).dropna().map({1: "low", 0: "zero"})])
    p = pd.read_csv(root / "p.csv").set_index("case_id").loc[lab.index]
    assert res["three_way"]["n"] == len(lab)
    for cls in ("positive", "low", "zero"):
        ref = roc_auc_score((lab == cls).astype(int), p[f"p_{cls}"])
        got = res["three_way"]["classes"][cls]
        assert got["auc"] == pytest.approx(ref, abs=1e-12)
        assert got["ci95"][0] <= got["auc"] <= got["ci95"][1]


def test_no_three_way_call_when_the_her2_low_model_keeps_no_predictor():
    from her2core.workflows.predict import three_way_columns
    model = lambda used: SimpleNamespace(used_variables=lambda: used)  # noqa: E731
    out = pd.DataFrame({"p_her2": [0.2], "p_her2_low": [0.8]})
    notes: list[str] = []
    three_way_columns(out, SimpleNamespace(models={"her2": model(["er"]), "her2_low": model([])}),
                      notes)
    assert "p_low" not in out and "kept no predictor" in notes[0]
    three_way_columns(out, SimpleNamespace(models={"her2": model(["er"]),
                                                   "her2_low": model(["ki67"])}), notes)
    assert out.loc[0, "p_low"] == pytest.approx(0.8 * 0.8) and out.loc[0, "three_way_call"] == "low"
