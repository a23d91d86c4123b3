"""Model zoo: classic classifiers with a small 5-fold CV hyper-parameter search.

``make_zoo_model(name)`` returns a ``GridSearchCV`` (scoring ROC AUC, stratified
5-fold) over ``Pipeline(ClinicalPreprocessor -> StandardScaler -> classifier)``,
so it takes the same DataFrames as the other models (text categories, missing
values). Names: lr, svm, tree, knn, mlp, rf, extratrees, gbm (scikit-learn
histogram gradient boosting), xgboost, lightgbm. The search is inside ``fit``;
nested in an outer CV or bootstrap it is refitted there too.
"""
from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from her2core.errors import Her2Error
from her2core.models.clinical import ClinicalPreprocessor
from her2core.selection import make_logistic

log = logging.getLogger(__name__)

__all__ = ["ZOO_NAMES", "make_classifier", "make_zoo_model", "PortableGBM", "TunedClassifier",
           "require_library", "library_available", "OPTIONAL_LIBRARY"]

ZOO_NAMES = ["lr", "svm", "tree", "knn", "mlp", "rf", "extratrees", "gbm", "xgboost", "lightgbm"]


def make_classifier(name: str, random_state=0):
    """(estimator, small parameter grid) for a zoo name; unknown names raise."""
    if name == "lr":
        return make_logistic(C=1.0, random_state=random_state), {"C": [0.01, 0.1, 1.0, 10.0]}
    if name == "svm":
        from sklearn.svm import SVC
        return (SVC(probability=True, random_state=random_state),
                {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.01]})
    if name == "tree":
        from sklearn.tree import DecisionTreeClassifier
        return (DecisionTreeClassifier(random_state=random_state),
                {"max_depth": [2, 3, 5], "min_samples_leaf": [5, 10]})
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier
        return KNeighborsClassifier(), {"n_neighbors": [5, 11, 21], "weights": ["uniform", "distance"]}
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier
        return (MLPClassifier(max_iter=500, early_stopping=False, random_state=random_state),
                {"hidden_layer_sizes": [(16,), (32,)], "alpha": [1e-3, 1e-1]})
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier
        return (RandomForestClassifier(n_estimators=200, random_state=random_state, n_jobs=1),
                {"max_depth": [3, None], "min_samples_leaf": [1, 5]})
    if name == "extratrees":
        from sklearn.ensemble import ExtraTreesClassifier
        return (ExtraTreesClassifier(n_estimators=200, random_state=random_state, n_jobs=1),
                {"max_depth": [3, None], "min_samples_leaf": [1, 5]})
    if name == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier
        return (HistGradientBoostingClassifier(random_state=random_state),
                {"learning_rate": [0.05, 0.1], "max_depth": [2, 3]})
    if name == "xgboost":
        require_library("xgboost")
        return (PortableGBM("xgboost", random_state=random_state),
                {"max_depth": [2, 3], "learning_rate": [0.05, 0.1]})
    if name == "lightgbm":
        require_library("lightgbm")
        return (PortableGBM("lightgbm", random_state=random_state),
                {"num_leaves": [4, 8], "learning_rate": [0.05, 0.1]})
    raise ValueError(f"unknown model {name!r}: choose one of {', '.join(ZOO_NAMES)}")


def make_zoo_model(name: str, cv: int = 5, search: str = "grid", n_iter: int = 8,
                   random_state=0, columns=None):
    """A CV-tuned pipeline for ``name`` (see module doc). ``search``: grid / random."""
    est, grid = make_classifier(name, random_state=random_state)
    pipe = Pipeline([("prep", ClinicalPreprocessor(columns=columns)), ("scale", StandardScaler()),
                     ("clf", est)])
    grid = {f"clf__{k}": v for k, v in grid.items()}
    splitter = StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state)
    if search == "grid":
        return GridSearchCV(pipe, grid, scoring="roc_auc", cv=splitter, error_score=np.nan)
    if search == "random":
        return RandomizedSearchCV(pipe, grid, n_iter=n_iter, scoring="roc_auc", cv=splitter,
                                  random_state=random_state, error_score=np.nan)
    raise ValueError(f"search must be 'grid' or 'random', got {search!r}")


class PortableGBM(ClassifierMixin, BaseEstimator):
    """LightGBM or XGBoost gradient boosting that a bundle can hold.

    The fitted trees are kept as the library's own text model (LightGBM
    ``model_to_string``, XGBoost JSON), never pickled, and the native booster is rebuilt
    on first use; :meth:`native_model` returns it (e.g. for SHAP's TreeExplainer).
    ``kind``: "lightgbm" or "xgboost"; a missing library raises Her2Error with the
    pip command.
    """

    def __init__(self, kind="lightgbm", n_estimators=100, learning_rate=0.1, num_leaves=8,
                 max_depth=3, random_state=0):
        self.kind = kind
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.random_state = random_state

    def fit(self, X, y):
        from sklearn.utils.validation import validate_data
        X, y = validate_data(self, X, y, dtype=float, ensure_all_finite="allow-nan")
        self.classes_, yi = np.unique(y, return_inverse=True)
        if len(self.classes_) != 2:
            raise ValueError("PortableGBM is a binary classifier")
        if self.kind == "lightgbm":
            lgb = require_library("lightgbm")
            m = lgb.LGBMClassifier(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                   num_leaves=self.num_leaves, random_state=self.random_state,
                                   n_jobs=1, verbose=-1, min_child_samples=5).fit(X, yi)
            self.model_text_ = m.booster_.model_to_string()
        elif self.kind == "xgboost":
            xgb = require_library("xgboost")
            m = xgb.XGBClassifier(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                  max_depth=self.max_depth, random_state=self.random_state,
                                  n_jobs=1, eval_metric="logloss", verbosity=0).fit(X, yi)
            self.model_text_ = bytes(m.get_booster().save_raw("json")).decode("utf-8")
        else:
            raise ValueError(f"kind must be 'lightgbm' or 'xgboost', got {self.kind!r}")
        self._native = None
        return self

    def native_model(self):
        """The library's booster (lightgbm.Booster / xgboost.Booster), rebuilt from text."""
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self, "model_text_")
        if getattr(self, "_native", None) is None:
            if self.kind == "lightgbm":
                self._native = require_library("lightgbm").Booster(model_str=self.model_text_)
            else:
                b = require_library("xgboost").Booster()
                b.load_model(bytearray(self.model_text_.encode("utf-8")))
                self._native = b
        return self._native

    def decision_function(self, X):
        """The boosted trees' raw output (log-odds of the positive class), float64."""
        from sklearn.utils.validation import validate_data
        X = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan", reset=False)
        b = self.native_model()
        if self.kind == "lightgbm":
            m = b.predict(X, raw_score=True)
        else:
            m = b.predict(require_library("xgboost").DMatrix(X), output_margin=True)
        return np.asarray(m, dtype=np.float64).ravel()

    def predict_proba(self, X):
        """1 / (1 + exp(-raw output)) in float64 (the library's own probability, without
        its float32 rounding), so log-odds and probability agree to the last digit."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_native", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def require_library(name: str):
    """Import an optional model library or raise one clear Her2Error line."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise Her2Error(f"the {name} model needs the {name} package, which is not installed",
                        hint=f"pip install {name}, or choose another final model (lr, rf, "
                             "extratrees, svm)") from exc


def library_available(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


#: zoo names and the optional library each needs
OPTIONAL_LIBRARY = {"lightgbm": "lightgbm", "xgboost": "xgboost"}


class TunedClassifier(ClassifierMixin, BaseEstimator):
    """A model-zoo classifier, tuned by stratified k-fold grid search on ROC AUC inside
    ``fit`` (k = min(cv, minority-class count)), kept as the refitted best pipeline: the
    deployable final model of a recipe (paper 003: LR / RF / ExtraTrees / XGBoost /
    LightGBM). Not a nomogram: a tree or kernel model has no points scale.

    ``name="best"``: every name of ``candidates`` is tuned the same way and the one with
    the highest inner CV AUC is kept (``chosen_``; all scores in ``search_``).
    """

    def __init__(self, name="lr", cv=5, random_state=0, candidates=None):
        self.name = name
        self.cv = cv
        self.random_state = random_state
        self.candidates = candidates

    def fit(self, X, y):
        from her2core.models.clinical import as_frame
        X = as_frame(X)
        self.classes_, yi = np.unique(np.asarray(y), return_inverse=True)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns.tolist()], dtype=object)
        self.n_features_in_ = X.shape[1]
        k = max(2, min(int(self.cv), int(np.bincount(yi).min())))
        names = list(self.candidates or []) if self.name == "best" else [self.name]
        if not names:
            raise ValueError("TunedClassifier(name='best') needs candidates")
        self.search_, best = {}, None
        for nm in names:
            gs = make_zoo_model(nm, cv=k, random_state=self.random_state).fit(X, yi)
            sc = float(gs.best_score_) if np.isfinite(gs.best_score_) else -np.inf
            self.search_[nm] = sc if np.isfinite(sc) else float("nan")
            if best is None or sc > best[0]:
                best = (sc, nm, gs)
        _, self.chosen_, gs = best
        self.best_estimator_ = gs.best_estimator_
        self.best_params_ = {str(k_): (v if isinstance(v, (int, float, str)) or v is None
                                       else str(v)) for k_, v in gs.best_params_.items()}
        self.cv_auc_ = float(gs.best_score_) if np.isfinite(gs.best_score_) else float("nan")
        self.cv_folds_ = int(k)
        return self

    def predict_proba(self, X):
        from sklearn.utils.validation import check_is_fitted
        from her2core.models.clinical import as_frame
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(as_frame(X))

    def decision_function(self, X):
        """Log-odds of the positive class: the boosted trees' raw output for LightGBM /
        XGBoost, logit(probability) for the other classifiers (an SVM's own decision
        function is a margin, not log-odds)."""
        from sklearn.utils.validation import check_is_fitted
        from her2core.models.clinical import as_frame
        check_is_fitted(self, "best_estimator_")
        if isinstance(self.best_estimator_[-1], PortableGBM):
            return np.asarray(self.best_estimator_.decision_function(as_frame(X)), dtype=float)
        p = np.clip(self.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]

    def summary(self) -> dict:
        """Name, tuned parameters, inner CV AUC and folds (JSON-ready)."""
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self, "best_estimator_")
        return {"model": self.chosen_, "best_params": dict(self.best_params_),
                "inner_cv_auc": self.cv_auc_, "inner_cv_folds": self.cv_folds_,
                "compared": dict(self.search_) if len(self.search_) > 1 else None}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        return tags
