"""SHAP contributions: exact on the log-odds scale, equal to shap's own explainers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

shap = pytest.importorskip("shap")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

from her2core.explain.shap_explain import (  # noqa: E402
    CohortContributions, explain_model, explain_patient, predictor_group)

NUM = ["age", "dscore_resnet50", "DCE__radiomics__original_firstorder_Mean"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 80
    X = pd.DataFrame({
        "age": rng.normal(55, 10, n),
        "dscore_resnet50": rng.normal(0, 1, n),
        "DCE__radiomics__original_firstorder_Mean": rng.normal(100, 20, n),
        "enhancement_curve": rng.choice(["persistent", "plateau", "washout"], n),
    }, index=[f"c{i:03d}" for i in range(n)])
    X.loc["c003", "age"] = np.nan
    y = (X["dscore_resnet50"] + 0.8 * (X["enhancement_curve"] == "washout")
         + rng.normal(0, 1, n) > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def pipeline(data):
    X, y = data
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUM),
        ("cat", OneHotEncoder(), ["enhancement_curve"])])
    return make_pipeline(pre, LogisticRegression(C=10.0)).fit(X, y)


def test_groups_by_column_name():
    assert predictor_group("dscore_vgg16") == "deep score"
    assert predictor_group("dscore_radiomics") == "radiomics"
    assert predictor_group("T2__radiomics__original_glcm_Contrast") == "radiomics"
    assert predictor_group("DCE__resnet50__f0012") == "deep score"
    assert predictor_group("aln_abnormal") == "clinical"
    assert predictor_group("enhancement_curve") == "clinical"


def test_linear_equals_shap_linear_explainer(data, pipeline):
    X, _ = data
    res = explain_model(pipeline, X, X)
    assert res.method == "linear" and not res.approximate
    # reference: shap.LinearExplainer, interventional, on the model's own inputs
    pre, lr = pipeline[:-1], pipeline[-1]
    Zb = pre.transform(X)
    masker = shap.maskers.Independent(Zb, max_samples=len(Zb))
    ref = shap.LinearExplainer((lr.coef_, lr.intercept_), masker)
    sv = ref(Zb)
    assert_allclose(res.base_value, float(np.ravel(sv.base_values)[0]), atol=1e-10)
    # map transformed columns back: 3 numeric columns then 3 one-hot columns
    back = np.column_stack([sv.values[:, 0], sv.values[:, 1], sv.values[:, 2],
                            sv.values[:, 3:6].sum(axis=1)])
    assert_allclose(res.contributions, back, atol=1e-10)
    # contributions add up exactly to log-odds(patient) - base
    assert_allclose(res.base_value + res.contributions.sum(axis=1),
                    pipeline.decision_function(X), atol=1e-10)
    assert res.additivity_error < 1e-10


def test_hand_computed_two_predictor_model():
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "dscore_x": [1.0, 1.0, 0.0, 2.0]})
    y = np.array([0, 0, 1, 1])
    lr = LogisticRegression().fit(X, y)
    lr.coef_ = np.array([[2.0, -1.0]])
    lr.intercept_ = np.array([0.5])
    res = explain_model(lr, X, X.iloc[[3]])
    # means: a 1.5, dscore 1.0 -> base = 0.5 + 3 - 1 = 2.5; case 3: 2*(1.5), -1*(1.0)
    assert_allclose(res.base_value, 2.5, atol=1e-12)
    assert_allclose(res.contributions[0], [3.0, -1.0], atol=1e-12)
    assert_allclose(res.predictions[0], 0.5 + 6.0 - 2.0, atol=1e-12)
    assert res.groups == ["clinical", "deep score"]


def test_patient_table_and_probability(data, pipeline):
    X, _ = data
    pc = explain_patient(pipeline, X, X.loc[["c003"]])
    df = pc.to_frame()
    assert list(df.columns) == ["predictor", "value", "contribution", "group"]
    assert list(df["group"]) == ["clinical", "deep score", "radiomics", "clinical"]
    assert np.isnan(df.loc[0, "value"])  # missing age shown as missing, not 0
    assert_allclose(pc.base_value + df["contribution"].sum(), pc.prediction, atol=1e-10)
    assert_allclose(pc.probability, pipeline.predict_proba(X.loc[["c003"]])[0, 1], atol=1e-12)


def test_tree_model_uses_tree_explainer(data):
    from sklearn.ensemble import GradientBoostingClassifier
    X, y = data
    Xn = X[NUM].fillna(55.0)
    gb = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(Xn, y)
    res = explain_model(gb, Xn, Xn.iloc[:10])
    assert res.method == "tree" and res.scale == "log-odds" and not res.approximate
    ref = shap.TreeExplainer(gb, data=Xn.to_numpy(), feature_perturbation="interventional",
                             model_output="raw")
    assert_allclose(res.contributions, ref.shap_values(Xn.iloc[:10].to_numpy()), atol=1e-8)
    assert_allclose(res.base_value + res.contributions.sum(axis=1),
                    gb.decision_function(Xn.iloc[:10]), atol=1e-6)


def test_other_models_are_flagged_approximate(data):
    from sklearn.neighbors import KNeighborsClassifier
    X, y = data
    Xn = X[NUM].fillna(55.0)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=15)).fit(Xn, y)
    res = explain_model(knn, Xn, Xn.iloc[:2], time_budget_s=5, n_summary=5)
    assert res.method == "kernel" and res.approximate
    assert "Approximate" in res.note and "k-means" in res.note
    # KernelExplainer's contributions still add up to the prediction - its base
    assert res.additivity_error < 1e-6


def test_project_nomogram_explained_on_second_level():
    from her2core.models.deepscore import DeepScore
    from her2core.models.nomogram_model import StackedNomogram
    rng = np.random.default_rng(1)
    n = 120
    F = pd.DataFrame(rng.normal(size=(n, 12)), columns=[f"T1__resnet18__f{i:04d}" for i in range(12)])
    y = (F.iloc[:, 0] + F.iloc[:, 1] + rng.normal(0, 1, n) > 0).astype(int).to_numpy()
    C = pd.DataFrame({"age": rng.normal(55, 10, n),
                      "enhancement_curve": rng.choice(["persistent", "plateau", "washout"], n)})
    X = pd.concat([F, C], axis=1)
    nm = StackedNomogram(scorers=[("resnet18", DeepScore(block="resnet18", lasso_cv=3))],
                         clinical_selection="none", cv=3).fit(X, y)
    res = explain_model(nm, X, X.iloc[:5])
    assert isinstance(res, CohortContributions)
    assert res.predictors == ["dscore_resnet18", "age", "enhancement_curve"]
    assert res.method == "linear"
    assert_allclose(res.predictions, nm.decision_function(X.iloc[:5]), atol=1e-10)
    assert_allclose(res.base_value + res.contributions.sum(axis=1), res.predictions, atol=1e-10)


def test_figures_from_results(data, pipeline):
    from her2core.explain.figures import bar_figure, beeswarm_figure, waterfall_figure
    X, _ = data
    res = explain_model(pipeline, X, X)
    pc = res.patient("c005")
    fig = waterfall_figure(pc)
    w = fig.data[0]                       # horizontal: the values are on x
    assert_allclose(w.x[0], pc.base_value)
    assert_allclose(np.sum(w.x[1:-1]), pc.prediction - pc.base_value, atol=1e-12)
    bee = beeswarm_figure(res)
    assert len([t for t in bee.data if t.name in NUM + ["enhancement_curve"]]) == 4
    bar = bar_figure(res)
    per_pred = dict(zip(bar.data[0].y, bar.data[0].x))
    assert_allclose(per_pred["dscore_resnet50"], np.mean(np.abs(res.contributions[:, 1])))


def test_cam_grid_figure_places_each_overlay():
    from her2core.explain.figures import cam_grid_figure, overlay_rgb
    img = np.arange(16, dtype=float).reshape(4, 4)
    cam = np.zeros((4, 4))
    cam[1, 2] = 1.0
    cells = {("T1", "resnet50"): (img, cam), ("T2", "vgg16"): (img, cam)}
    fig = cam_grid_figure(cells, opacity=0.5, random_init=True)
    assert len(fig.data) == 2
    expected = (overlay_rgb(img, cam, opacity=0.5) * 255).astype(np.uint8)
    assert_allclose(np.asarray(fig.data[0].z), expected)
    assert "RANDOM-INIT" in fig.layout.title.text


class _AdditiveModel:
    """A fitted "GAM" with no coef_: log-odds = sin(a) + b**2 / 4 - 0.5 (additive, nonlinear)."""
    classes_ = np.array([0, 1])

    def predict_proba(self, X):
        lo = np.sin(X["a"].to_numpy()) + X["b"].to_numpy() ** 2 / 4 - 0.5
        p = 1 / (1 + np.exp(-lo))
        return np.column_stack([1 - p, p])


def test_opaque_additive_model_is_exact():
    rng = np.random.default_rng(3)
    bg = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    x = pd.DataFrame({"a": [1.2], "b": [-2.0]})
    res = explain_model(_AdditiveModel(), bg, x)
    assert res.method == "additive" and not res.approximate
    # interventional SHAP of an additive model: g_j(x_j) - mean_b g_j(b_j)
    assert_allclose(res.contributions[0], [np.sin(1.2) - np.sin(bg["a"]).mean(),
                                           1.0 - (bg["b"] ** 2 / 4).mean()], atol=1e-9)
    assert res.additivity_error < 1e-9


def test_clinical_model_owner_map_equals_the_perturbation_map():
    from her2core.explain.shap_explain import _FnTransform, _split, dependence_map
    from her2core.models.clinical import ClinicalModel
    rng = np.random.default_rng(5)
    n = 90
    X = pd.DataFrame({"age": rng.normal(55, 10, n), "er": rng.integers(0, 2, n).astype(float),
                      "enhancement_curve": rng.choice(["persistent", "plateau", "washout"], n)})
    X.loc[[2, 7], "er"] = np.nan
    y = (rng.random(n) < 0.4).astype(int)
    m = ClinicalModel(selection="none").fit(X, y)
    pre, est = _split(m)
    assert est.model is m and pre.owners is not None   # the public coefficients() view
    known = np.array([[o == c for o in pre.owners] for c in X.columns])
    probed = dependence_map(_FnTransform(pre.fn), X)
    assert (known == probed).all()
    res = explain_model(m, X, X.iloc[:3])
    assert_allclose(res.base_value + res.contributions.sum(axis=1), m.decision_function(X.iloc[:3]),
                    atol=1e-10)
