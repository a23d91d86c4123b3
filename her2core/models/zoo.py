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
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from her2core.models.clinical import ClinicalPreprocessor
from her2core.selection import make_logistic

log = logging.getLogger(__name__)

__all__ = ["ZOO_NAMES", "make_classifier", "make_zoo_model"]

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
        from xgboost import XGBClassifier
        return (XGBClassifier(n_estimators=100, random_state=random_state, n_jobs=1,
                              eval_metric="logloss", verbosity=0),
                {"max_depth": [2, 3], "learning_rate": [0.05, 0.1]})
    if name == "lightgbm":
        from lightgbm import LGBMClassifier
        return (LGBMClassifier(n_estimators=100, random_state=random_state, n_jobs=1, verbose=-1),
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
