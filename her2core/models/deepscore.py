"""Per-block scores: the "D-score" of papers 000 / 004 (and a radiomics score).

A :class:`DeepScore` works on one block of feature columns, e.g. every column
``"{sequence}__resnet50__f{i:04d}"`` (the backbone across the sequences) or every
``"{sequence}__radiomics__{name}"``, and is one Pipeline:

    ICC filter (optional side input) -> median imputation -> standardise
    -> [PCA to k, standardise] (paper 003) -> univariate filter (p < 0.05)
    -> Pearson |r| > 0.8 pruning -> LASSO (10-fold CV, 1-SE) -> logistic regression

Every step is fitted in ``fit`` on the rows it is given, so resampling refits
the whole chain. ``decision_function`` is the D-score on the log-odds scale;
the score column is named ``dscore_<block>``.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from her2core.models.clinical import as_frame, check_binary, check_input_width
from her2core.selection import (ClippedPCA, CorrelationPruner, ICCFilter, LassoSelector,
                                MedianImputer, UnivariateFilter, make_logistic)

log = logging.getLogger(__name__)

__all__ = ["DeepScore", "block_columns"]


def _lasso_summary(sel) -> dict:
    """Folds of a fitted :class:`~her2core.selection.LassoSelector`'s CV (JSON-ready)."""
    return {"requested": int(sel.cv), "used": int(sel.n_splits_), "reason": sel.cv_reason_,
            "C": float(sel.C_), "kept": int(np.sum(sel.support_))}


def block_columns(columns, block, sequences=None) -> list[str]:
    """Feature columns ``{sequence}__{block}__...`` of a block (all columns if block is None;
    a list of blocks: their columns, block by block, for early fusion)."""
    if isinstance(block, (list, tuple)):
        return [c for b in block for c in block_columns(columns, b, sequences)]
    out = []
    for c in columns:
        c = str(c)
        if block is None:
            out.append(c)
            continue
        parts = c.split("__")
        if len(parts) < 3 or parts[1] != block:
            continue
        if sequences is not None and parts[0] not in sequences:
            continue
        out.append(c)
    return out


class DeepScore(ClassifierMixin, BaseEstimator):
    """One block's score: selection chain + logistic regression.

    block : backbone name (``"resnet50"``), ``"radiomics"``, or None for all columns.
    sequences : restrict to these sequences (None: all present).
    icc_second : second-ROI feature table (DataFrame by case_id) for the ICC filter,
        or None (no ICC filtering). icc_threshold / icc_kind as :class:`ICCFilter`.
    pca : number of PCA components before the univariate filter (003: 64), or None.
        With several blocks, a mapping ``{block: k}`` reduces those blocks only.
    block may be a list of blocks: **early fusion** (paper 003's DLR model): each block is
        imputed, standardised (and PCA-reduced when ``pca`` names it) on its own, the
        results are concatenated, then one selection chain and logistic regression follow.
    classifier : the block's model on the selected features: "logistic" (default; L2 with
        ``C``) or a model-zoo name tuned by stratified 5-fold grid search (paper 003: the
        Rad / DLR model is the best of LR, RF, ExtraTrees, XGBoost, LightGBM:
        ``classifier="best"`` with ``classifiers`` listing them).
    corr_strategy : "label" (keep the feature more associated with the label) or
        "greedy" (greedy recursive deletion, paper 003), see CorrelationPruner.
    univariate : "ttest" / "mannwhitney" / None; alpha its threshold.
    corr_threshold : Pearson |r| pruning threshold (None: off).
    lasso : use the LASSO step; lasso_rule "1se" / "min"; lasso_cv folds; lasso_path "adaptive" /
        "full" (how its CV walks the C grid, see :class:`~her2core.selection.LassoSelector`).
    C : penalty of the final logistic regression on the selected features
        (L2; 1.0 keeps the score stable when a handful of features separate a
        small training set).
    """

    lasso_path = "adaptive"  # default for scores loaded from bundles written before the parameter

    def __init__(self, block=None, sequences=None, icc_second=None, icc_threshold=0.9,
                 icc_kind="ICC(3,1)", pca=None, univariate="ttest", alpha=0.05,
                 corr_threshold=0.8, lasso=True, lasso_rule="1se", lasso_cv=10, lasso_n_Cs=12,
                 max_features=None, C=1.0, random_state=0, corr_strategy="label",
                 classifier="logistic", classifiers=None, lasso_path="adaptive"):
        self.block = block
        self.sequences = sequences
        self.icc_second = icc_second
        self.icc_threshold = icc_threshold
        self.icc_kind = icc_kind
        self.pca = pca
        self.univariate = univariate
        self.alpha = alpha
        self.corr_threshold = corr_threshold
        self.lasso = lasso
        self.lasso_rule = lasso_rule
        self.lasso_cv = lasso_cv
        self.lasso_n_Cs = lasso_n_Cs
        self.lasso_path = lasso_path
        self.max_features = max_features
        self.C = C
        self.random_state = random_state
        self.corr_strategy = corr_strategy
        self.classifier = classifier
        self.classifiers = classifiers

    @property
    def score_name(self) -> str:
        if isinstance(self.block, (list, tuple)):
            return "dscore_" + "+".join(map(str, self.block))
        return f"dscore_{self.block or 'all'}"

    def _branch(self, pca) -> list:
        steps = []
        if self.icc_second is not None:
            steps.append(("icc", ICCFilter(second=self.icc_second, threshold=self.icc_threshold,
                                           kind=self.icc_kind)))
        steps += [("impute", MedianImputer()), ("scale", StandardScaler())]
        if pca:
            steps += [("pca", ClippedPCA(n_components=int(pca), random_state=self.random_state)),
                      ("scale_pca", StandardScaler())]
        return steps

    def _fused(self, columns) -> list:
        from sklearn.compose import ColumnTransformer
        pca = self.pca if isinstance(self.pca, dict) else {}
        branches = []
        for b in self.block:
            cols = [columns.index(c) for c in block_columns(columns, b, self.sequences)]
            if cols:
                branches.append((str(b), Pipeline(self._branch(pca.get(b))), cols))
        return [("fuse", ColumnTransformer(branches, remainder="drop",
                                           verbose_feature_names_out=True))]

    def _build(self, columns=None) -> Pipeline:
        steps = []
        if isinstance(self.block, (list, tuple)):
            steps += self._fused(list(columns))
        elif self.icc_second is not None:
            steps.append(("icc", ICCFilter(second=self.icc_second, threshold=self.icc_threshold,
                                           kind=self.icc_kind)))
        if not isinstance(self.block, (list, tuple)):
            steps += [("impute", MedianImputer()), ("scale", StandardScaler())]
            if self.pca:
                steps += [("pca", ClippedPCA(n_components=int(self.pca),
                                             random_state=self.random_state)),
                          ("scale_pca", StandardScaler())]
        if self.univariate:
            steps.append(("univariate", UnivariateFilter(test=self.univariate, alpha=self.alpha)))
        if self.corr_threshold is not None:
            steps.append(("correlation", CorrelationPruner(threshold=self.corr_threshold,
                                                           strategy=self.corr_strategy)))
        if self.lasso:
            steps.append(("lasso", LassoSelector(cv=self.lasso_cv, rule=self.lasso_rule,
                                                 n_Cs=self.lasso_n_Cs, max_features=self.max_features,
                                                 path=self.lasso_path,
                                                 random_state=self.random_state)))
        if self.classifier in (None, "logistic"):
            steps.append(("clf", make_logistic(C=self.C, random_state=self.random_state)))
        else:
            from her2core.models.zoo import TunedClassifier
            steps.append(("clf", TunedClassifier(name=self.classifier, cv=5,
                                                 random_state=self.random_state,
                                                 candidates=self.classifiers)))
        # numpy between the steps (faster); with an ICC filter the first step gets the
        # DataFrame, so the filter sees case ids; feature names chain through the steps
        return Pipeline(steps)

    def fit(self, X, y):
        X = as_frame(X)
        y = check_binary(y)
        cols = block_columns(X.columns.tolist(), self.block, self.sequences)
        if X.shape[1] == 0:
            raise ValueError(f"0 feature(s) (shape=({X.shape[0]}, 0)) while a minimum of 1 is "
                             "required.")
        if not cols:
            raise ValueError(f"no feature columns for block {self.block!r}"
                             + (f" and sequences {self.sequences}" if self.sequences else ""))
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns.tolist()], dtype=object)
        self.n_features_in_ = X.shape[1]
        self.columns_ = cols
        Xb = X[cols]
        if Xb.shape[0] < 2:
            raise ValueError(f"n_samples={Xb.shape[0]}: at least 2 samples are needed")
        # Only the ICC filter needs the case ids of a DataFrame; every other chain gets a float
        # array (scikit-learn's per-column checks of a wide DataFrame cost more than the
        # imputation itself; the numbers are the same). Feature names chain through cols.
        self.array_input_ = self.icc_second is None
        if self.array_input_:
            Xb = Xb.to_numpy(dtype=float)
        self.pipeline_ = self._build(cols).fit(Xb, y)
        self.classes_ = self.pipeline_.classes_
        clf_in = self.pipeline_[:-1].get_feature_names_out(cols)
        self.selected_features_ = [str(c) for c in clf_in]
        log.debug("%s: %d of %d features selected", self.score_name, len(self.selected_features_),
                 len(cols))
        return self

    def _block(self, X):
        check_is_fitted(self, "pipeline_")
        check_input_width(self, X)
        X = as_frame(X)
        have = set(X.columns.tolist())
        missing = [c for c in self.columns_ if c not in have]
        if missing:
            if X.shape[1] == len(self.columns_) and self.block is None:
                X = X.set_axis(self.columns_, axis=1)
            else:
                raise ValueError(f"X has {X.shape[1]} features, but DeepScore is expecting "
                                 f"{self.n_features_in_} features as input "
                                 f"(missing {missing[:3]}...)")
        Xb = X[self.columns_]
        # scores fitted before array_input_ existed were fitted on the DataFrame
        return Xb.to_numpy(dtype=float) if getattr(self, "array_input_", False) else Xb

    def decision_function(self, X):
        """The D-score on the log-odds scale."""
        Xb = self._block(X)
        return self.pipeline_.decision_function(Xb)

    def predict_proba(self, X):
        Xb = self._block(X)
        return self.pipeline_.predict_proba(Xb)

    def predict(self, X):
        Xb = self._block(X)
        return self.pipeline_.predict(Xb)

    # -- public view of the fitted model -----------------------------------------------
    def input_columns(self) -> list[str]:
        """The block's feature columns this score reads."""
        check_is_fitted(self, "pipeline_")
        return list(self.columns_)

    def selected_features(self) -> list[str]:
        """The features left after selection (inputs of the final logistic step)."""
        check_is_fitted(self, "pipeline_")
        return list(self.selected_features_)

    def coefficients(self) -> dict:
        """Intercept and coefficient of each selected (standardised) feature, JSON-ready."""
        check_is_fitted(self, "pipeline_")
        clf = self.pipeline_[-1]
        if hasattr(clf, "summary"):   # a tuned model-zoo classifier: no coefficients
            return {"block": self.block, "n_input_features": len(self.columns_),
                    "selected_features": list(self.selected_features_), "classifier": clf.summary()}
        return {"block": self.block, "n_input_features": len(self.columns_),
                "selected_features": list(self.selected_features_),
                "intercept": float(clf.intercept_[0]),
                "coefficients": dict(zip(self.selected_features_, map(float, clf.coef_[0])))}

    def lasso_summary(self) -> dict | None:
        """LASSO CV folds asked for and used at this fit, and why fewer (None: no LASSO)."""
        check_is_fitted(self, "pipeline_")
        if "lasso" not in self.pipeline_.named_steps:
            return None
        return _lasso_summary(self.pipeline_.named_steps["lasso"])

    def icc_summary(self) -> dict | None:
        """Features kept by the ICC filter, of how many, on how many cases (None: no ICC step)."""
        check_is_fitted(self, "pipeline_")
        if "fuse" in self.pipeline_.named_steps:
            fs = [t.named_steps["icc"] for _, t, _ in self.pipeline_.named_steps["fuse"].transformers_
                  if hasattr(t, "named_steps") and "icc" in t.named_steps]
            if not fs:
                return None
            return {"kept": int(sum(f.support_.sum() for f in fs)), "of": len(self.columns_),
                    "cases": int(min(f.n_matched_ for f in fs)), "threshold": self.icc_threshold,
                    "kind": self.icc_kind}
        if "icc" not in self.pipeline_.named_steps:
            return None
        f = self.pipeline_.named_steps["icc"]
        return {"kept": int(f.support_.sum()), "of": len(self.columns_),
                "cases": int(f.n_matched_), "threshold": self.icc_threshold, "kind": self.icc_kind}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags
