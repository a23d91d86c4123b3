"""Explanation figures: one theme argument, a readable horizontal waterfall, a beeswarm whose
colour bar clears its legend, perceptually uniform Grad-CAM colours (issue 17 items 7, 11, 15)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core import plots
from her2core.explain.figures import bar_figure, beeswarm_figure, overlay_rgb, waterfall_figure
from her2core.explain.shap_explain import CohortContributions, PatientContributions


def _pc() -> PatientContributions:
    return PatientContributions(
        case_id="syn-0000", predictors=["er", "dscore_radiomics", "ki67"], values=[1, -0.31, 17.2],
        contributions=np.array([-1.46, 0.35, -0.22]), groups=["clinical", "radiomics", "clinical"],
        base_value=-0.40, prediction=-1.73, method="linear")


def _cc() -> CohortContributions:
    rng = np.random.default_rng(1)
    vals = pd.DataFrame({"er": rng.integers(0, 2, 40), "dscore_x": rng.normal(size=40)})
    phi = np.column_stack([vals["er"] - 0.5, 0.8 * vals["dscore_x"]])
    return CohortContributions(case_ids=[f"c{i}" for i in range(40)], predictors=["er", "dscore_x"],
                               values=vals, contributions=phi, groups=["clinical", "deep score"],
                               base_value=0.0, predictions=phi.sum(axis=1), method="linear")


def test_waterfall_is_horizontal_with_horizontal_values_and_a_short_title():
    fig = waterfall_figure(_pc())
    w = fig.data[0]
    assert w.orientation == "h" and w.textangle == 0
    assert list(w.y) == ["base (background)", "er = 1", "dscore_radiomics = -0.31", "ki67 = 17.2",
                         "this patient"]
    assert_allclose(w.x, [-0.40, -1.46, 0.35, -0.22, -1.73])
    assert fig.layout.yaxis.autorange == "reversed"           # base on top, patient at the bottom
    first_line = fig.layout.title.text.split("<br>")[0]
    assert first_line == "Contributions to the log-odds"      # fits a half-width panel
    assert "p = 0.151" in fig.layout.title.text


@pytest.mark.parametrize("builder", ["waterfall", "beeswarm", "bar", "roc", "dca"])
def test_one_theme_argument_light_by_default(builder):
    from her2core.metrics import decision_curves, roc_curve
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
    make = {"waterfall": lambda **k: waterfall_figure(_pc(), **k),
            "beeswarm": lambda **k: beeswarm_figure(_cc(), **k),
            "bar": lambda **k: bar_figure(_cc(), **k),
            "roc": lambda **k: plots.roc_figure({"m": roc_curve(y, p)}, **k),
            "dca": lambda **k: plots.decision_curve_figure(decision_curves(y, {"m": p}), **k)}[builder]
    light, dark = make(), make(theme="dark")
    assert light.layout.font.color == plots.THEMES["light"]["font"]
    assert dark.layout.font.color == plots.THEMES["dark"]["font"]
    assert dark.layout.paper_bgcolor == "rgba(0,0,0,0)"
    assert dark.layout.template.layout.paper_bgcolor != light.layout.template.layout.paper_bgcolor
    # nothing is drawn in black ink on the dark theme
    for tr in dark.data:
        line = getattr(tr, "line", None)
        assert getattr(line, "color", None) not in ("black", "#000000"), builder
    with pytest.raises(ValueError, match="unknown figure theme"):
        make(theme="sepia")


def test_beeswarm_colour_bar_clears_the_group_legend():
    fig = beeswarm_figure(_cc())
    bar = next(t.marker.colorbar for t in fig.data if getattr(t.marker, "showscale", False))
    leg = fig.layout.legend
    # the legend is one row above the plot area (paper y >= 1); the colour bar spans
    # y in [bar.y, bar.y + len] inside it, to the right of the plot
    assert leg.orientation == "h" and leg.y >= 1.0 and leg.yanchor == "bottom"
    assert bar.yanchor == "bottom" and bar.y + bar.len <= 1.0
    assert bar.x >= 1.0 and bar.title.side == "right"


def test_grad_cam_overlay_uses_a_perceptually_uniform_map_by_default():
    import matplotlib
    img = np.zeros((2, 2))
    cam = np.array([[0.0, 1.0], [0.5, 0.25]])
    rgb = overlay_rgb(img, cam, opacity=1.0)
    assert_allclose(rgb, matplotlib.colormaps["inferno"](cam)[..., :3])
