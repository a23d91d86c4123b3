"""Tree final models (paper 003's zoo: RF / ExtraTrees / XGBoost / LightGBM) are explained
exactly by shap.TreeExplainer: the values equal interventional Shapley values computed by
brute force over every coalition, and base + contributions reproduce the model's output."""
from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

shap = pytest.importorskip("shap")

from her2core.explain.shap_explain import explain_model  # noqa: E402
from her2core.models.zoo import PortableGBM, TunedClassifier  # noqa: E402


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 70
    X = pd.DataFrame({"dscore_dlr": rng.normal(0, 1, n), "age": rng.normal(55, 10, n).round(),
                      "er": rng.integers(0, 2, n).astype(float)},
                     index=[f"c{i:03d}" for i in range(n)])
    y = (1.5 * X["dscore_dlr"] - 0.8 * X["er"] + 0.03 * (X["age"] - 55)
         + rng.normal(0, 0.7, n) > 0).astype(int).to_numpy()
    return X, y


def brute_force_shapley(f, background: pd.DataFrame, x: pd.DataFrame) -> np.ndarray:
    """Interventional Shapley values of one row ``x``: v(S) = mean over the background of
    f(x on S, background elsewhere), weighted over every coalition (the definition)."""
    cols = list(background.columns)
    p = len(cols)

    def v(S):
        rows = background.copy()
        for c in S:
            rows[c] = x.iloc[0][c]
        return float(np.mean(f(rows)))

    phi = np.zeros(p)
    for j, cj in enumerate(cols):
        rest = [c for c in cols if c != cj]
        for k in range(p):
            for S in combinations(rest, k):
                w = factorial(k) * factorial(p - k - 1) / factorial(p)
                phi[j] += w * (v(list(S) + [cj]) - v(list(S)))
    return phi


@pytest.mark.parametrize("name, scale", [("lightgbm", "log-odds"), ("rf", "probability"),
                                         ("extratrees", "probability")])
def test_tree_final_models_are_explained_exactly(name, scale, data):
    X, y = data
    model = TunedClassifier(name=name, cv=3).fit(X, y)
    bg = X.iloc[:40]
    cc = explain_model(model, bg, X.iloc[40:45])
    assert cc.method == "tree" and not cc.approximate and cc.scale == scale
    assert "TreeExplainer" in cc.note and "checked" in cc.note
    own = model.predict_proba(X.iloc[40:45])[:, 1] if scale == "probability" else \
        model.decision_function(X.iloc[40:45])
    assert_allclose(cc.predictions, own, atol=1e-12)
    assert cc.additivity_error < 1e-6
    f = (lambda d: model.predict_proba(d)[:, 1]) if scale == "probability" else \
        model.decision_function
    for i in (0, 3):
        ref = brute_force_shapley(f, bg, X.iloc[[40 + i]])
        assert_allclose(cc.contributions[i], ref, atol=1e-6)
    assert_allclose(cc.base_value, np.mean(f(bg)), atol=1e-6)


def test_portable_gbm_is_explained_through_its_rebuilt_booster(data):
    """LightGBM / XGBoost kept as their own text model: TreeExplainer reads the booster
    ``native_model()`` rebuilds, and the log-odds are the boosters' raw output."""
    X, y = data
    for kind in ("lightgbm", "xgboost"):
        m = PortableGBM(kind, n_estimators=30).fit(X, y)
        cc = explain_model(m, X, X.iloc[:6])
        assert cc.method == "tree" and cc.scale == "log-odds"
        assert ("LightGBM" if kind == "lightgbm" else "XGBoost") + " booster" in cc.note
        assert_allclose(cc.predictions, m.decision_function(X.iloc[:6]), atol=1e-12)
        # XGBoost sums its trees in float32: additivity holds to its rounding
        assert cc.additivity_error < (1e-6 if kind == "lightgbm" else 1e-5)
        p = m.predict_proba(X.iloc[:6])[:, 1]
        assert_allclose(np.log(p / (1 - p)), cc.predictions, atol=1e-9)


@pytest.mark.parametrize("kind", ["deep_tree", "forest", "xgboost"])
def test_exact_interventional_walk_equals_brute_force(kind, data):
    """her2core's own walk (used where shap's C code loses weight on features split more
    than once along a path) gives the Shapley values of the definition."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier
    from her2core.explain.shap_explain import interventional_tree_shap
    X, y = data
    Z = X.to_numpy()
    if kind == "deep_tree":
        m = DecisionTreeClassifier(max_depth=8, random_state=0).fit(Z, y)
        f = lambda d: m.predict_proba(np.asarray(d))[:, 1]  # noqa: E731
    elif kind == "forest":
        m = RandomForestClassifier(n_estimators=15, random_state=1).fit(Z, y)
        f = lambda d: m.predict_proba(np.asarray(d))[:, 1]  # noqa: E731
    else:
        m = PortableGBM("xgboost", n_estimators=20, max_depth=4).fit(Z, y)
        f = lambda d: m.decision_function(np.asarray(d))  # noqa: E731
    ens = shap.TreeExplainer(m.native_model() if kind == "xgboost" else m).model
    bg = X.iloc[:25]
    phi = interventional_tree_shap(ens, bg.to_numpy(), Z[50:53])
    for i in range(3):
        ref = brute_force_shapley(f, bg, X.iloc[[50 + i]])
        assert_allclose(phi[i], ref, atol=1e-5 if kind == "xgboost" else 1e-9)


def test_failed_additivity_is_not_reported_as_exact(data, monkeypatch):
    """If TreeExplainer's values did not reproduce the model, the tree path is refused and
    the next method (flagged approximate when it is the model-agnostic one) is used."""
    import her2core.explain.shap_explain as se
    X, y = data
    model = TunedClassifier(name="lightgbm", cv=3).fit(X, y)
    monkeypatch.setattr(se, "TREE_ADDITIVITY_TOL", -1.0)
    cc = explain_model(model, X.iloc[:30], X.iloc[30:31], time_budget_s=2, n_summary=5)
    assert cc.method != "tree"
    with pytest.raises(ValueError, match="TreeExplainer contributions miss"):
        explain_model(model, X.iloc[:30], X.iloc[30:31], method="tree")
