"""Figures are built from the plain results (and from their JSON form)."""
import json

from numpy.testing import assert_allclose

from her2core import plots
from her2core.metrics import (binned_calibration, calibration_intercept_slope, ci_auc_delong,
                              decision_curves, loess_calibration, roc_band, roc_curve, youden)
from her2core.nomogram import Nomogram

from ._refs import df_binary


def test_roc_figure_with_band():
    b, y = df_binary()
    c = roc_curve(y, b.cancerpredmarker)
    band = roc_band(y, b.cancerpredmarker, n_boot=100, seed=0)
    fig = plots.roc_figure({"model": c}, {"model": band},
                           {"model": ci_auc_delong(y, b.cancerpredmarker)},
                           {"model": youden(c)}, max_points=300)
    names = [t.name for t in fig.data]
    assert names[0] == "chance"
    assert any(n.startswith("model: AUC 0.861 (0.822-0.899)") for n in names if n)
    curve = [t for t in fig.data if t.name and t.name.startswith("model: AUC")][0]
    assert len(curve.x) == 300
    # also from the JSON form
    fig2 = plots.roc_figure({"m": json.loads(json.dumps(c.to_dict()))})
    assert_allclose(fig2.data[1].y[0], 1.0)


def test_calibration_and_dca_figures():
    b, y = df_binary()
    p = b.cancerpredmarker
    fig = plots.calibration_figure({"m": binned_calibration(y, p)}, {"m": loess_calibration(y, p)},
                                   {"m": calibration_intercept_slope(y, p)})
    assert len(fig.data) == 3
    assert "slope 1.00" in fig.data[1].name
    res = decision_curves(y, {"m": p})
    fig = plots.decision_curve_figure(res)
    assert [t.name for t in fig.data] == ["treat all", "treat none", "m"]
    assert_allclose(fig.data[2].y[24], 0.064, atol=1e-12)
    fig = plots.decision_curve_figure(res.to_dict(), standardized=True)
    assert_allclose(fig.data[2].y[24], 0.064 / 0.14, atol=1e-12)


def test_nomogram_figure_marks_the_patient():
    nom = Nomogram.from_coefficients(-3.0, {"age": 0.05, "size": 0.1, "washout": 1.2},
                                     ranges={"age": (30, 80), "size": (5, 50)},
                                     categorical={"curve": {"persistent": None,
                                                            "washout": "washout"}})
    pp = nom.patient_points({"age": 90, "size": 20, "curve": "washout"})
    fig = plots.nomogram_figure(nom, pp)
    marker = [t for t in fig.data if t.name == "patient"][0]
    assert_allclose(marker.x[:3], [pp["points"]["age"], pp["points"]["size"],
                                   pp["points"]["curve"]])
    assert any("outside the training range: age" in a.text for a in fig.layout.annotations)
    assert pp["out_of_range"] == ["age"]
    # size has the widest range (4.5 lp units) -> 100 points
    assert_allclose(nom.points_for("size", 50), 100)
    plots.nomogram_figure(nom.to_dict())  # from JSON form


def test_nomogram_figure_tolerates_partial_patient():
    nom = Nomogram.from_coefficients(-1.0, {"a": 1.0}, ranges={"a": (0, 2)})
    fig = plots.nomogram_figure(nom.to_dict(), {"points": {"a": 50.0, "unknown": 3.0},
                                                "probability": None})
    marker = [t for t in fig.data if t.name == "patient"][0]
    # unknown names are skipped; one predictor: the total axis equals its points
    assert_allclose(list(marker.x), [50.0, 50.0, 50.0])
    assert "probability 0.500" in marker.text[-1]
