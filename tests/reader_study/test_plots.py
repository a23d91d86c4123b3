from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from her2core.reader_study import mrmc, plots

from .test_mrmc import REF


def _result():
    df = pd.read_csv(REF / "vandyke.csv")
    reads = pd.DataFrame({
        "reader": df["reader"].astype(str), "arm": np.where(df["treatment"] == 1, "unaided", "aided"),
        "case": df["case"], "truth": df["truth"], "rating": df["rating"].astype(float),
        "call_positive": df["rating"] >= 4, "confidence": 50.0})
    info = [{"name": str(i), "level": "senior" if i <= 2 else "junior"} for i in range(1, 6)]
    return mrmc.analyze_reads(reads, readers_info=info)


def test_roc_points_and_figures_from_results():
    res = _result()
    p = next(x for x in res["per_reader"] if x["reader"] == "1" and x["arm"] == "unaided")
    # reader 1, modality 1: trapezoid under the ROC polyline is the empirical AUC
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    assert_allclose(trapezoid(p["roc"]["tpr"], p["roc"]["fpr"]), 0.91964573, atol=5e-9)
    assert p["roc"]["fpr"][0] == 0 and p["roc"]["tpr"][-1] == 1
    figs = plots.all_figures(res)
    roc = figs["roc"]
    curve = next(t for t in roc.data if t.name.startswith("unaided (AUC 0.920)"))
    assert_allclose(curve.x, p["roc"]["fpr"])
    point = [t for t in roc.data if t.name == "unaided call"][0]
    assert_allclose(point.y, [p["sensitivity"]["estimate"]])
    diff = figs["difference"]
    assert_allclose(diff.data[1].x, [0.04380032], atol=5e-9)
    assert_allclose(diff.data[0].x, [0.02818035, 0.04653784, 0.01787440, 0.02624799, 0.10016103], atol=5e-8)
    lv = figs["levels"]
    senior_aided = [t for t in lv.data if t.name == "aided"][0]
    assert list(senior_aided.x) == ["junior", "senior"]
    assert_allclose(senior_aided.y, [np.mean([0.92173913, 0.99935588, 0.92995169]),
                                     np.mean([0.94782609, 0.90531401])], atol=5e-8)
    ch = figs["change"]
    assert len(ch.data) == 4 * 5
