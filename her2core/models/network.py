"""A fine-tuned network's logit as a block score of the combined nomogram.

Fine-tuned networks (papers 001, 003, 004; :mod:`her2core.finetune`) are trained
by their own stratified K-fold, which gives every training case an out-of-fold
logit from a fold model that never saw it; new cases get the mean logit of the
fold models. That logit is a feature column (``ft__<name>``) of the model frame,
and :class:`NetworkScore` passes it through as the D-score (log-odds) of the
second level. Cross-fitting a pass-through changes nothing, so the second level
is fitted on out-of-fold network outputs only (never on in-sample ones).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from her2core.models.clinical import as_frame, check_binary

__all__ = ["NetworkScore", "network_column"]


def network_column(name: str) -> str:
    """Feature column holding a fine-tuned network's logit."""
    return f"ft__{name}"


class NetworkScore(ClassifierMixin, BaseEstimator):
    """The logit in ``column`` as a score (``decision_function``); ``block`` names it."""

    def __init__(self, column: str = "ft__network", block: str | None = None):
        self.column = column
        self.block = block

    def fit(self, X, y):
        X = as_frame(X)
        y = check_binary(y)
        if self.column not in X.columns:
            raise ValueError(f"no column {self.column!r} (the network's logit)")
        self.classes_ = np.unique(y)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns.tolist()], dtype=object)
        self.n_features_in_ = X.shape[1]
        self.columns_ = [self.column]
        return self

    def _z(self, X) -> np.ndarray:
        check_is_fitted(self, "columns_")
        X = as_frame(X)
        if self.column not in X.columns:
            raise ValueError(f"X lacks {self.column!r} (the network's logit)")
        return pd.to_numeric(X[self.column], errors="coerce").to_numpy(dtype=float)

    def decision_function(self, X):
        return self._z(X)

    def predict_proba(self, X):
        from scipy.special import expit
        p = expit(self._z(X))
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[(self._z(X) > 0).astype(int)]

    # -- public view, as the other block scorers -----------------------------------------
    def input_columns(self) -> list[str]:
        check_is_fitted(self, "columns_")
        return [self.column]

    def selected_features(self) -> list[str]:
        return self.input_columns()

    def coefficients(self) -> dict:
        return {"block": self.block, "column": self.column, "pass_through": True}

    def icc_summary(self):
        return None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags
