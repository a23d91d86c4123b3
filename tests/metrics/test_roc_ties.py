"""The drawn ROC curve of tied and constant scores: one diagonal step per tie, as pROC draws it."""
import numpy as np
import pytest

from her2core import plots
from her2core.metrics import roc_curve


def _curve_trace(fig):
    return next(t for t in fig.data if t.name and "AUC" in t.name)


def _drawn_area(tr) -> float:
    """Area under the polyline plotly draws (shape linear: straight segments; hv: steps)."""
    x, y = np.asarray(tr.x, float), np.asarray(tr.y, float)
    x, y = x[::-1], y[::-1]                  # points run from (1, 1) to (0, 0)
    if tr.line.shape == "hv":                # horizontal first, then vertical
        return float(np.sum(np.diff(x) * y[:-1]))
    assert tr.line.shape in (None, "linear")
    return float(np.trapezoid(y, x))


def test_constant_score_is_drawn_as_the_diagonal():
    y = [0, 0, 0, 1, 1]
    c = roc_curve(y, [0.3] * 5)
    assert c.sensitivity == [1.0, 0.0] and c.specificity == [0.0, 1.0] and c.auc == 0.5
    tr = _curve_trace(plots.roc_figure({"constant": c}))
    assert list(tr.x) == [1.0, 0.0] and list(tr.y) == [1.0, 0.0]
    assert tr.line.shape in (None, "linear")      # a straight line: the diagonal
    assert _drawn_area(tr) == pytest.approx(0.5, abs=1e-12)


def test_tied_scores_drawn_as_one_diagonal_step_with_the_legend_auc():
    # one case and one control tie at 2: the point (0.5, 1) joins (0, 0.5) by a diagonal
    y = [0, 0, 1, 1]
    s = [1.0, 2.0, 2.0, 3.0]
    c = roc_curve(y, s)
    assert c.thresholds[1:-1] == [1.5, 2.5]
    assert c.sensitivity == [1.0, 1.0, 0.5, 0.0]
    assert c.specificity == [0.0, 0.5, 1.0, 1.0]
    assert c.auc == pytest.approx(0.875, abs=1e-12)
    tr = _curve_trace(plots.roc_figure({"tied": c}))
    assert list(tr.x) == [1.0, 0.5, 0.0, 0.0] and list(tr.y) == [1.0, 1.0, 0.5, 0.0]
    assert _drawn_area(tr) == pytest.approx(c.auc, abs=1e-12)


def test_distinct_scores_still_drawn_as_steps():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30), np.ones(20)].astype(int)
    s = rng.normal(size=50) + y
    c = roc_curve(y, s)
    tr = _curve_trace(plots.roc_figure({"m": c}))
    x, yy = np.asarray(tr.x), np.asarray(tr.y)
    # every segment moves along one axis only: the empirical staircase
    assert np.all((np.diff(x) == 0) | (np.diff(yy) == 0))
    assert _drawn_area(tr) == pytest.approx(c.auc, abs=1e-12)
