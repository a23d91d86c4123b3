"""The combined model as ONE scikit-learn estimator: :class:`StackedNomogram`.

``fit(X, y)`` on a DataFrame holding the image feature columns and the clinical
columns:

1. for every block scorer (a :class:`~her2core.models.deepscore.DeepScore` or any
   classifier with ``decision_function``), **cross-fitted** out-of-fold scores
   are computed (stratified k-fold; when case ids repeat, as in a bootstrap
   resample, copies of one case stay in one fold), so the second level never
   sees a score computed on the case itself;
2. each scorer is then refitted on all rows, for use at prediction time;
3. the second level, a :class:`~her2core.models.clinical.ClinicalModel`, is
   fitted on the out-of-fold scores (always kept) + clinical predictors
   (univariable screen, optional stepwise): an unpenalised logistic regression,
   i.e. a nomogram (paper 000: D-scores + aln_abnormal, enhancement_curve,
   peritumoral_edema, microcalcification; paper 004: D-score + clinical).

Late fusion of modality models (paper 001) is the same estimator without
clinical predictors (see :mod:`her2core.models.fusion`); a clinical-only model
is the same estimator without scorers. Because everything happens inside
``fit``, bootstrap validation refits every selection step.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from her2core.folds import group_folds
from her2core.models.clinical import ClinicalModel, as_frame, check_binary, check_input_width

log = logging.getLogger(__name__)

__all__ = ["StackedNomogram", "scorer_name"]


def scorer_name(name: str) -> str:
    return name if name.startswith("dscore_") else f"dscore_{name}"


class StackedNomogram(ClassifierMixin, BaseEstimator):
    """Block scores (cross-fitted) + clinical predictors in one logistic regression.

    scorers : list of (name, estimator); the score column is ``dscore_<name>``.
    clinical_predictors : clinical columns offered to the second level; None:
        every column of X not used by a scorer (and not ``case_id``-like text).
    clinical_selection : "univariate" (p < alpha) or "none".
    stepwise : backward elimination of clinical variables: True / "aic" (AIC), "p"
        (likelihood-ratio p < stepwise_p), False (off).
    fdr, multivariable_p, stepwise_p : the second level's selection rule (paper 002:
        FDR-adjusted screen, multivariable p < 0.1, stepwise p < 0.05), see ClinicalModel.
    cv : folds for the out-of-fold scores.
    C : inverse penalty of the second level (inf: unpenalised nomogram).
    final : None (logistic nomogram) or an unfitted classifier used as the
        second level instead (e.g. a model-zoo search; then no nomogram).
    nonnegative_scores : a score whose second-level weight is not positive is
        dropped (see :class:`ClinicalModel` ``positive``).
    score_selection : "screen" (default): a score enters the second level only if
        its out-of-fold values pass the univariable test (p < alpha), like the
        clinical predictors; "force": always enters. Screening keeps a score
        without signal out (on such data the in-sample score is overfit, and the
        bootstrap optimism estimate under-corrects overfit learners).
    """

    def __init__(self, scorers=(), clinical_predictors=None, clinical_selection="univariate",
                 alpha=0.05, stepwise=False, cv=5, C=np.inf, final=None, nonnegative_scores=True,
                 score_selection="screen", random_state=0, fdr=False, multivariable_p=None,
                 stepwise_p=0.05):
        self.scorers = scorers
        self.clinical_predictors = clinical_predictors
        self.clinical_selection = clinical_selection
        self.alpha = alpha
        self.stepwise = stepwise
        self.cv = cv
        self.C = C
        self.final = final
        self.nonnegative_scores = nonnegative_scores
        self.score_selection = score_selection
        self.random_state = random_state
        self.fdr = fdr
        self.multivariable_p = multivariable_p
        self.stepwise_p = stepwise_p

    # -- helpers -------------------------------------------------------------
    def _clinical_columns(self, X: pd.DataFrame, used: set) -> list[str]:
        if self.clinical_predictors is not None:
            return [c for c in self.clinical_predictors if c in X.columns]
        return [c for c in X.columns if c not in used and "__" not in str(c)]

    def _splitter(self, y, groups):
        n_min = int(np.bincount(y).min())
        n_groups = len(np.unique(groups))
        k = max(2, min(int(self.cv), n_min))
        if n_groups < len(groups):
            return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        return StratifiedKFold(n_splits=k, shuffle=True, random_state=self.random_state)

    # -- fit -----------------------------------------------------------------
    def fit(self, X, y):
        from threadpoolctl import threadpool_limits

        # many tiny fits: BLAS threads only add contention
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(X, y)

    def _fit(self, X, y):
        X = as_frame(X)
        y = check_binary(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns.tolist()], dtype=object)
        self.n_features_in_ = X.shape[1]
        groups = pd.factorize(pd.Index(X.index))[0]
        oof = {}
        self.scorers_ = []
        used: set = set()
        for name, est in self.scorers:
            col = scorer_name(name)
            scores = np.full(len(yi), np.nan)
            splitter = self._splitter(yi, groups)
            for tr, te in _split(splitter, yi, groups):
                m = clone(est).fit(X.iloc[tr], y[tr])
                scores[te] = _score(m, X.iloc[te])
            oof[col] = scores
            fitted = clone(est).fit(X, y)
            self.scorers_.append((col, fitted))
            used |= set(getattr(fitted, "columns_", []))
        self.score_columns_ = list(oof)
        self.clinical_columns_ = self._clinical_columns(X, used)
        Z = pd.DataFrame(oof, index=X.index)
        Z = pd.concat([Z, X[self.clinical_columns_]], axis=1)
        if Z.shape[1] == 0:
            raise ValueError(f"0 feature(s) (shape=({X.shape[0]}, 0)) while a minimum of 1 is "
                             "required (no scorers and no clinical predictors).")
        self.oof_scores_ = Z[self.score_columns_].copy()
        if self.final is None:
            screen = self.score_selection == "screen"
            if self.score_selection not in ("screen", "force"):
                raise ValueError(f"score_selection must be 'screen' or 'force', got "
                                 f"{self.score_selection!r}")
            self.final_ = ClinicalModel(predictors=self.clinical_columns_,
                                        force=() if screen else self.score_columns_,
                                        screen=self.score_columns_ if screen else (),
                                        selection=self.clinical_selection, alpha=self.alpha,
                                        stepwise=self.stepwise, C=self.C, fdr=self.fdr,
                                        multivariable_p=self.multivariable_p,
                                        stepwise_p=self.stepwise_p,
                                        positive=self.score_columns_ if self.nonnegative_scores
                                        else ()).fit(Z, y)
        else:
            self.final_ = clone(self.final).fit(Z, y)
        return self

    # -- predict -------------------------------------------------------------
    def second_level(self, X) -> pd.DataFrame:
        """The second-level inputs: ``dscore_*`` (log-odds) and the clinical columns.

        A clinical column absent from ``X`` enters as missing (the second level imputes
        it with its training value; :meth:`missing_inputs` tells the caller which).
        Block columns cannot be imputed: an absent one raises ValueError naming it.
        """
        check_is_fitted(self, "final_")
        check_input_width(self, X)
        X = as_frame(X)
        absent = self.missing_inputs(X)
        blocks = {k: v for k, v in absent.items() if k != "clinical"}
        if blocks:
            detail = "; ".join(f"{k}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''} "
                               f"({len(v)} column(s))" for k, v in blocks.items())
            raise ValueError(f"the input lacks the columns of block score(s) {detail}")
        Z = pd.DataFrame({c: _score(m, X) for c, m in self.scorers_}, index=X.index)
        clin = X.reindex(columns=self.clinical_columns_)
        return pd.concat([Z, clin], axis=1)

    # -- public view of the fitted model -----------------------------------------------
    @property
    def final_estimator(self):
        """The fitted second level (a ClinicalModel for a nomogram, else the chosen final)."""
        check_is_fitted(self, "final_")
        return self.final_

    def fitted_scorers(self) -> list[tuple[str, object]]:
        """(score column, fitted block scorer) pairs, in second-level order."""
        check_is_fitted(self, "final_")
        return list(self.scorers_)

    def score_columns(self) -> list[str]:
        check_is_fitted(self, "final_")
        return list(self.score_columns_)

    def clinical_inputs(self) -> list[str]:
        """Clinical columns offered to the second level (whether kept or not)."""
        check_is_fitted(self, "final_")
        return list(self.clinical_columns_)

    def second_level_columns(self) -> list[str]:
        check_is_fitted(self, "final_")
        return list(self.score_columns_) + list(self.clinical_columns_)

    def used_variables(self) -> list[str]:
        """Second-level inputs the final model keeps (all of them for a non-selecting final)."""
        check_is_fitted(self, "final_")
        fn = getattr(self.final_, "used_variables", None)
        return list(fn()) if callable(fn) else self.second_level_columns()

    def is_nomogram(self) -> bool:
        """True when the second level is the project's logistic model (points, intervals)."""
        check_is_fitted(self, "final_")
        return isinstance(self.final_, ClinicalModel)

    def scorer_for_block(self, block: str):
        """(score column, fitted scorer) of a feature block (e.g. a backbone), or None."""
        check_is_fitted(self, "final_")
        for col, est in self.scorers_:
            if getattr(est, "block", None) == block:
                return col, est
        return None

    def required_columns(self) -> dict[str, list[str]]:
        """{"clinical": clinical inputs, score column: that block's feature columns}."""
        check_is_fitted(self, "final_")
        out = {"clinical": list(self.clinical_columns_)}
        for col, est in self.scorers_:
            cols = est.input_columns() if hasattr(est, "input_columns") else \
                [str(c) for c in getattr(est, "feature_names_in_", [])]
            out[col] = list(cols)
        return out

    def missing_inputs(self, X) -> dict[str, list[str]]:
        """Per group of :meth:`required_columns`, the columns absent from ``X``."""
        cols = set(as_frame(X).columns)
        out = {}
        for k, need in self.required_columns().items():
            miss = [c for c in need if c not in cols]
            if miss:
                out[k] = miss
        return out

    def block_scores(self, X) -> pd.DataFrame:
        """The block scores (``dscore_*``, log-odds) of each row."""
        return self.second_level(X)[self.score_columns_]

    def out_of_fold_second_level(self, X_train) -> pd.DataFrame:
        """Second-level rows of the training cases with their cross-fitted (out-of-fold)
        block scores, as the second level was fitted on them: the honest reference
        population for SHAP. ``X_train``: the frame ``fit`` was given (same rows)."""
        check_is_fitted(self, "final_")
        X_train = as_frame(X_train)
        oof = getattr(self, "oof_scores_", None)
        if oof is None or len(oof) != len(X_train):
            raise ValueError("out-of-fold scores are kept only on the fitted model, for the rows "
                             "it was fitted on")
        Z = pd.DataFrame(oof.to_numpy(), columns=list(oof.columns), index=X_train.index)
        return pd.concat([Z, X_train.reindex(columns=self.clinical_columns_)], axis=1)

    def predict_interval(self, X, level: float = 0.95):
        """(n, 2) delta-method probability interval of a logistic second level, or None."""
        if not self.is_nomogram():
            return None
        return self.final_.predict_interval(self.second_level(X), level)

    def decision_function(self, X):
        Z = self.second_level(X)
        if hasattr(self.final_, "decision_function"):
            return np.asarray(self.final_.decision_function(Z))
        p = np.clip(self.final_.predict_proba(Z)[:, 1], 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    def predict_proba(self, X):
        Z = self.second_level(X)
        return self.final_.predict_proba(Z)

    def predict(self, X):
        p = self.predict_proba(X)[:, 1]
        return self.classes_[(p > 0.5).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags


def _split(splitter, y, groups):
    if isinstance(splitter, StratifiedGroupKFold):
        # the same folds as splitter.split(X, y, groups), without its per-call overhead
        return group_folds(y, groups, splitter.n_splits, splitter.random_state)
    return splitter.split(np.zeros(len(y)), y)


def _score(model, X) -> np.ndarray:
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X), dtype=float).ravel()
    p = np.clip(model.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))
