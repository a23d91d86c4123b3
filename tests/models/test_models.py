"""Clinical model, D-score, StackedNomogram, zoo, fusion, validation on synthetic frames."""
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.utils.estimator_checks import parametrize_with_checks

from her2core.models import (ClinicalModel, ClinicalPreprocessor, DeepScore, StackedNomogram,
                             late_fusion, make_zoo_model)
from her2core.metrics.validation import bootstrap_validate
from her2core.models.validation import auc, external_validation, repeated_cv
from her2core.selection import SideTable


CLIN = ["age", "er", "enhancement_curve", "aln_abnormal"]


def test_preprocessor_reference_levels_and_missing():
    X = pd.DataFrame({"enhancement_curve": ["washout", None, "plateau", "washout"],
                      "mass_shape": ["irregular", "round_oval", None, "irregular"],
                      "age": [40.0, np.nan, 60.0, 50.0], "er": [1.0, 0.0, np.nan, 1.0]})
    p = ClinicalPreprocessor().fit(X)
    Z = p.transform(X)
    assert list(Z.columns) == ["enhancement_curve=plateau", "enhancement_curve=washout",
                               "mass_shape=irregular", "age", "er",
                               "enhancement_curve__missing", "mass_shape__missing", "age__missing",
                               "er__missing"]
    # median age 50, most frequent er 1, mode curve 'washout', mode shape 'irregular'
    assert_allclose(Z["age"], [40, 50, 60, 50])
    assert_allclose(Z["er"], [1, 0, 1, 1])
    assert_allclose(Z["enhancement_curve=washout"], [1, 1, 0, 1])
    assert_allclose(Z["mass_shape=irregular"], [1, 0, 1, 1])
    assert_allclose(Z["age__missing"], [0, 1, 0, 0])


def test_clinical_model_selects_informative_and_matches_unpenalised_fit(frame):
    X, y = frame
    m = ClinicalModel(predictors=CLIN).fit(X, y)
    assert "er" in m.variables_ and "enhancement_curve" in m.variables_
    assert "age" not in m.variables_
    assert m.univariate_p_["er"] < 1e-4
    # coefficients equal a plain unpenalised logistic fit on the same design
    import statsmodels.api as sm
    Z = m.prep_.transform(X)[m.columns_]
    ref = sm.Logit(y.to_numpy(), sm.add_constant(Z.to_numpy())).fit(disp=0)
    assert_allclose(m.intercept_[0], ref.params[0], atol=2e-3)
    assert_allclose(m.coef_[0], ref.params[1:], atol=2e-3)
    assert auc(y, m.predict_proba(X)[:, 1]) > 0.7


def test_stepwise_drops_noise(frame_factory):
    X, y = frame_factory(n=300, seed=3)
    rng = np.random.default_rng(0)
    X["noise1"] = rng.normal(size=len(X))
    X["noise2"] = rng.normal(size=len(X))
    m = ClinicalModel(predictors=["er", "noise1", "noise2"], selection="none", stepwise=True).fit(X, y)
    assert "er" in m.variables_
    assert len(m.stepwise_dropped_) >= 1


def test_deepscore_selects_signal_columns(frame):
    X, y = frame
    d = DeepScore(block="resnet18", lasso_cv=5).fit(X, y)
    assert d.score_name == "dscore_resnet18"
    assert "DCE__resnet18__f0000" in d.selected_features_
    assert all("__resnet18__" in c for c in d.columns_) and len(d.columns_) == 24
    s = d.decision_function(X)
    assert_allclose(1 / (1 + np.exp(-s)), d.predict_proba(X)[:, 1])
    assert auc(y, s) > 0.75


def test_deepscore_icc_side_input(frame):
    X, y = frame
    cols = [c for c in X.columns if "__resnet18__" in c]
    second = X[cols].copy()
    rng = np.random.default_rng(1)
    second.iloc[:, 1:] = rng.normal(size=(len(X), len(cols) - 1))  # only f0000 of DCE reproducible
    second.iloc[:, 0] += 0.01 * rng.normal(size=len(X))
    d = DeepScore(block="resnet18", icc_second=SideTable(second), lasso_cv=5).fit(X, y)
    icc_step = d.pipeline_.named_steps["icc"]
    assert list(icc_step.get_feature_names_out()) == ["DCE__resnet18__f0000"]
    assert d.selected_features_ == ["DCE__resnet18__f0000"]


def test_stacked_nomogram_oof_and_chain(frame):
    X, y = frame
    model = StackedNomogram(scorers=[("resnet18", DeepScore(block="resnet18", lasso_cv=5)),
                                     ("radiomics", DeepScore(block="radiomics", lasso_cv=5))],
                            clinical_predictors=CLIN, cv=5).fit(X, y)
    assert model.score_columns_ == ["dscore_resnet18", "dscore_radiomics"]
    Z = model.second_level(X)
    assert list(Z.columns[:2]) == ["dscore_resnet18", "dscore_radiomics"]
    # the second level is fitted on out-of-fold scores, not on the refitted in-sample ones
    assert not np.allclose(model.oof_scores_["dscore_resnet18"], Z["dscore_resnet18"])
    p = model.predict_proba(X)[:, 1]
    assert_allclose(p, model.final_.predict_proba(Z)[:, 1])
    assert auc(y, p) > 0.85
    # clinical-only (no images)
    clin = StackedNomogram(clinical_predictors=CLIN).fit(X[CLIN], y)
    assert clin.score_columns_ == [] and "er" in clin.final_.variables_


def test_stacked_nomogram_bootstrap_duplicates_grouped(frame):
    X, y = frame
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(X), len(X))
    model = StackedNomogram(scorers=[("resnet18", DeepScore(block="resnet18", lasso_cv=3))],
                            clinical_predictors=["er"], cv=3)
    model.fit(X.iloc[idx], y.iloc[idx])
    assert np.isfinite(model.oof_scores_.to_numpy()).all()


def test_late_fusion_and_zoo(frame):
    X, y = frame
    fused = late_fusion({"mri": DeepScore(block="resnet18", lasso_cv=3),
                         "us": DeepScore(block="radiomics", lasso_cv=3)}, cv=3).fit(X, y)
    assert fused.clinical_columns_ == []
    assert set(fused.final_.variables_) == {"dscore_mri", "dscore_us"}
    zoo = make_zoo_model("tree", cv=3).fit(X[CLIN], y)
    assert zoo.best_score_ > 0.6
    assert make_zoo_model("lightgbm", cv=2).fit(X[CLIN], y).predict_proba(X[CLIN]).shape == (len(X), 2)
    with pytest.raises(ValueError, match="unknown model"):
        make_zoo_model("nope")


def test_validation_random_labels_near_half(frame_factory):
    X, y = frame_factory(n=200, seed=5, n_feat=6, random_labels=True)
    model = StackedNomogram(scorers=[("resnet18", DeepScore(block="resnet18", lasso_cv=3, lasso_n_Cs=4))],
                            clinical_predictors=CLIN, cv=3)
    res = bootstrap_validate(model, X, y, B=10, seed=0)
    assert res.apparent["auc"] >= res.corrected["auc"] and res.n_failed == 0
    # Monte-Carlo and sampling noise at this size (n=200, B=10): about +-0.1
    assert abs(res.corrected["auc"] - 0.5) < 0.15
    cv = repeated_cv(model, X, y, n_splits=3, n_repeats=1)
    assert abs(cv.auc - 0.5) < 0.15 and cv.n_failed == 0


def test_external_validation_keeps_auc(frame_factory):
    Xa, ya = frame_factory(n=160, seed=11)
    Xb, yb = frame_factory(n=160, seed=12)
    model = StackedNomogram(scorers=[("resnet18", DeepScore(block="resnet18", lasso_cv=5))],
                            clinical_predictors=CLIN, cv=5).fit(Xa, ya)
    res = external_validation(model, Xb, yb, label="centre B")
    assert res.auc > 0.8 and res.extra["auc_ci95"][0] < res.auc < res.extra["auc_ci95"][1]


@parametrize_with_checks([ClinicalModel(), DeepScore(lasso_cv=2, lasso_n_Cs=2),
                          StackedNomogram(scorers=[("a", DeepScore(lasso=False))], cv=2, C=1.0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
