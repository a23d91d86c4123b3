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
    curve = next(t for t in roc.data if t.name == "unaided" and "1, unaided" in t.hovertemplate)
    assert "(AUC 0.920)" in curve.hovertemplate
    assert_allclose(curve.x, p["roc"]["fpr"])
    assert "AUC unaided 0.920" in roc.layout.annotations[0].text
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


def test_roc_legend_names_each_arm_once():
    """Issue 17 item 13: five reader panels gave ten legend entries ("unaided (AUC ...)" per
    reader); the legend now names each arm once, the AUCs are in the panel titles."""
    roc = plots.roc_figure(_result())
    shown = [t.name for t in roc.data if t.showlegend is not False]
    assert sorted(shown) == ["aided", "unaided"]
    titles = [a.text for a in roc.layout.annotations]
    assert len(titles) == 5 and all("AUC unaided" in t and "aided" in t for t in titles)


def test_figures_of_an_interim_analysis_with_missing_metrics():
    """Issue 17 item 4: with two reads saved a group has no HER2-positive case yet, so its
    sensitivity is None; level_figure raised TypeError (None - None)."""
    reads = pd.DataFrame({"reader": ["A", "A"], "arm": ["unaided", "aided"], "case": ["c1", "c1"],
                          "truth": [0, 0], "call_positive": [False, True],
                          "confidence": [60.0, 70.0]})
    res = mrmc.analyze_reads(reads, readers_info=[{"name": "A", "level": "senior"},
                                                  {"name": "B", "level": "junior"}])
    assert res["groups"]["senior"]["arms"]["unaided"]["sensitivity"]["estimate"] is None
    figs = plots.all_figures(res)
    sens = [t for t in figs["levels"].data if t.name == "unaided"][1]   # the sensitivity panel
    assert list(sens.x) == ["senior"] and list(sens.y) == [None]
    spec = [t for t in figs["levels"].data if t.name == "unaided"][2]
    assert_allclose(list(spec.y), [1.0])
    assert "not available" in figs["difference"].layout.title.text
