"""Feature selection steps as scikit-learn transformers.

Every selector here is a real scikit-learn estimator: ``__init__`` stores
parameters only, everything learnt from data is computed in ``fit`` (and ends in
``_``), so that a Pipeline refits it inside each cross-validation fold and each
bootstrap resample (the leakage the seed papers suffer from, where ICC / LASSO
were fitted on all cases before validation, cannot happen here).

All selectors accept pandas DataFrames, keep feature names
(``get_feature_names_out``) and honour ``set_output(transform="pandas")``.

- :class:`ICCFilter` keeps features whose intraclass correlation between two ROI
  versions (reader 1 / reader 2, or the ROI and a perturbed ROI) reaches a
  threshold. Default ICC(3,1) (two-way mixed, consistency, single rater,
  Shrout & Fleiss 1979; McGraw & Wong "ICC(C,1)"); ``kind="ICC(2,1)"`` gives
  two-way random, absolute agreement. Paper 000 keeps ICC >= 0.9.
- :class:`UnivariateFilter`: Welch t-test or Mann-Whitney U, p < alpha, at least
  ``k_min`` features kept (the ones with the smallest p).
- :class:`CorrelationPruner`: Pearson |r| > threshold pruning; of a correlated
  pair the feature more associated with the label is kept.
- :class:`LassoSelector`: L1 logistic regression with k-fold CV over a grid of
  C (= 1/lambda), lambda chosen by the 1-SE rule (default, as glmnet's
  ``lambda.1se``) or the minimum CV deviance (``lambda.min``).
- :class:`ClippedPCA`: PCA to ``n_components`` (64 in paper 003), clipped to
  what the training data allows.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin, ClassNamePrefixFeaturesOutMixin
from sklearn.feature_selection import SelectorMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from her2core.folds import group_folds

log = logging.getLogger(__name__)

__all__ = [
    "SideTable", "icc", "ICCFilter", "UnivariateFilter", "CorrelationPruner", "LassoSelector",
    "ClippedPCA", "MedianImputer", "make_logistic", "inner_folds",
]


# ----------------------------------------------------------------------------
# helpers

def make_logistic(C: float = 1.0, l1: bool = False, *, max_iter: int = 1000,
                  random_state=None, class_weight=None, tol: float = 1e-4, solver: str | None = None):
    """A LogisticRegression across scikit-learn versions.

    ``C=np.inf`` is unpenalised; ``l1=True`` is the lasso (liblinear solver).
    scikit-learn 1.8 deprecated ``penalty=`` in favour of ``l1_ratio`` / ``C``.
    """
    import sklearn
    from sklearn.linear_model import LogisticRegression

    new_api = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8)
    kw = dict(C=C, max_iter=max_iter, random_state=random_state, class_weight=class_weight, tol=tol)
    if l1:
        kw["solver"] = "liblinear"
        if new_api:
            kw["l1_ratio"] = 1.0
        else:
            kw["penalty"] = "l1"
    elif not np.isfinite(C) and not new_api:
        kw["C"] = 1.0
        kw["penalty"] = None
    if solver is not None and not l1:
        kw["solver"] = solver
    return LogisticRegression(**kw)


def _class_y(y):
    """Classes and integer codes of a classification target (binary in practice;
    more classes are accepted so the generic scikit-learn checks apply)."""
    y = np.asarray(y)
    kind = type_of_target(y)
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"Unknown label type: a binary outcome is needed, got {kind}")
    classes, yi = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("Only one class present in y; a binary outcome is needed")
    return classes, yi


def icc(ratings, kind: str = "ICC(3,1)") -> float:
    """Intraclass correlation of an (n subjects x k raters) array.

    ``kind``: "ICC(1,1)", "ICC(2,1)" (two-way random, absolute agreement) or
    "ICC(3,1)" (two-way mixed, consistency), Shrout & Fleiss (1979). Rows with
    a missing value are dropped. Returns NaN with fewer than 2 complete rows
    or zero total variance.
    """
    r = np.asarray(ratings, dtype=float)
    r = r[~np.isnan(r).any(axis=1)]
    n, k = r.shape
    if n < 2 or k < 2:
        return float("nan")
    grand = r.mean()
    ss_total = ((r - grand) ** 2).sum()
    if ss_total <= 0:
        return float("nan")
    ss_rows = k * ((r.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((r.mean(axis=0) - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))
    if kind == "ICC(1,1)":
        den = msr + (k - 1) * msw
        return float((msr - msw) / den) if den > 0 else float("nan")
    if kind == "ICC(2,1)":
        den = msr + (k - 1) * mse + k * (msc - mse) / n
        return float((msr - mse) / den) if den > 0 else float("nan")
    if kind == "ICC(3,1)":
        den = msr + (k - 1) * mse
        return float((msr - mse) / den) if den > 0 else float("nan")
    raise ValueError(f"unknown ICC kind {kind!r}: use 'ICC(1,1)', 'ICC(2,1)' or 'ICC(3,1)'")


def _icc_columns(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """ICC per column between two (n x p) arrays, vectorised, NaN-pairwise."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    out = np.full(a.shape[1], np.nan)
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.all():
        n = a.shape[0]
        if n < 2:
            return out
        r = np.stack([a, b], axis=2)  # n, p, 2
        k = 2
        grand = r.mean(axis=(0, 2))
        ss_total = ((r - grand[None, :, None]) ** 2).sum(axis=(0, 2))
        ss_rows = k * ((r.mean(axis=2) - grand) ** 2).sum(axis=0)
        ss_cols = n * ((r.mean(axis=0) - grand[:, None]) ** 2).sum(axis=1)
        ss_err = ss_total - ss_rows - ss_cols
        msr = ss_rows / (n - 1)
        msc = ss_cols / (k - 1)
        mse = ss_err / ((n - 1) * (k - 1))
        msw = (ss_cols + ss_err) / (n * (k - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind == "ICC(1,1)":
                den = msr + (k - 1) * msw
                val = (msr - msw) / den
            elif kind == "ICC(2,1)":
                den = msr + (k - 1) * mse + k * (msc - mse) / n
                val = (msr - mse) / den
            elif kind == "ICC(3,1)":
                den = msr + (k - 1) * mse
                val = (msr - mse) / den
            else:
                raise ValueError(f"unknown ICC kind {kind!r}")
        val[(ss_total <= 0) | (den <= 0)] = np.nan
        return val
    for j in range(a.shape[1]):
        out[j] = icc(np.column_stack([a[:, j], b[:, j]]), kind)
    return out


def _univariate_p(X: np.ndarray, yi: np.ndarray, test: str) -> np.ndarray:
    """Two-sample p-value per column; NaN-safe; constant columns get p = 1."""
    p = np.ones(X.shape[1])
    if yi.max() > 1:  # more than two classes: one-way ANOVA / Kruskal-Wallis
        for j in range(X.shape[1]):
            groups = [X[yi == c, j][~np.isnan(X[yi == c, j])] for c in range(yi.max() + 1)]
            groups = [g for g in groups if len(g) >= 2]
            allv = np.concatenate(groups) if groups else np.array([])
            if len(groups) < 2 or np.ptp(allv) == 0:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                pv = (stats.f_oneway(*groups) if test == "ttest" else stats.kruskal(*groups)).pvalue
            p[j] = pv if np.isfinite(pv) else 1.0
        return p
    g0, g1 = X[yi == 0], X[yi == 1]
    if test == "ttest":
        # Welch t-test, vectorised over columns (NaN-aware); equals scipy.stats.ttest_ind
        n0 = np.sum(~np.isnan(g0), axis=0).astype(float)
        n1 = np.sum(~np.isnan(g1), axis=0).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m0, m1 = np.nanmean(g0, axis=0), np.nanmean(g1, axis=0)
            v0, v1 = np.nanvar(g0, axis=0, ddof=1), np.nanvar(g1, axis=0, ddof=1)
            se2 = v0 / n0 + v1 / n1
            t = (m0 - m1) / np.sqrt(se2)
            df = se2 ** 2 / ((v0 / n0) ** 2 / (n0 - 1) + (v1 / n1) ** 2 / (n1 - 1))
            pv = 2 * stats.t.sf(np.abs(t), df)
        ok = (n0 >= 2) & (n1 >= 2) & np.isfinite(pv) & (se2 > 0)
        p[ok] = pv[ok]
        return p
    if test != "mannwhitney":
        raise ValueError(f"unknown test {test!r}: use 'ttest' or 'mannwhitney'")
    for j in range(X.shape[1]):
        a = g0[:, j][~np.isnan(g0[:, j])]
        b = g1[:, j][~np.isnan(g1[:, j])]
        if len(a) < 2 or len(b) < 2:
            continue
        if np.ptp(np.concatenate([a, b])) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pv = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
        p[j] = pv if np.isfinite(pv) else 1.0
    return p


def _keep_at_least(mask: np.ndarray, order_score: np.ndarray, k_min: int) -> np.ndarray:
    """Make sure at least k_min features are selected: best ``order_score`` first (lower is better)."""
    k_min = min(int(k_min), mask.size)
    if mask.sum() < k_min:
        best = np.argsort(order_score, kind="stable")[:k_min]
        mask = mask.copy()
        mask[best] = True
    return mask


# ----------------------------------------------------------------------------
# ICC

class SideTable:
    """Read-only holder of a side-input DataFrame (the second-ROI features).

    ``copy.deepcopy`` (and so ``sklearn.base.clone``) returns the same holder, so
    a large table is not copied for every fold and bootstrap resample. Fitted
    estimators keep only what they learnt from it; bundles store no side table.
    """

    def __init__(self, frame: pd.DataFrame):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError("SideTable needs a pandas DataFrame indexed by case_id")
        self.frame = frame

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        return f"SideTable({self.frame.shape[0]} cases x {self.frame.shape[1]} features)"


class ICCFilter(SelectorMixin, BaseEstimator):
    """Keep features reproducible between two ROI versions (ICC >= threshold).

    Parameters
    ----------
    second : pandas.DataFrame, :class:`SideTable` or None
        Side input: the same features extracted from the second ROI
        (``mask_reader2`` when the cohort has it, else a perturbed ROI eroded /
        dilated by one voxel), indexed by case_id, columns named as in X.
        ``fit`` computes the ICC only on the training cases (the rows of X,
        matched by index), so the filter is refitted inside every resample.
        With ``second=None`` the filter keeps every feature (logged).
    threshold : float, default 0.9 (paper 000)
    kind : "ICC(3,1)" (default) or "ICC(2,1)" (or "ICC(1,1)").
    min_cases : int, fewer matched cases than this -> keep everything (logged).
    k_min : int, at least this many features (highest ICC) are kept.
    """

    def __init__(self, second=None, threshold: float = 0.9, kind: str = "ICC(3,1)",
                 min_cases: int = 5, k_min: int = 1):
        self.second = second
        self.threshold = threshold
        self.kind = kind
        self.min_cases = min_cases
        self.k_min = k_min

    def fit(self, X, y=None):
        index = X.index if isinstance(X, pd.DataFrame) else None
        Xa = validate_data(self, X, ensure_all_finite="allow-nan", dtype=float)
        p = Xa.shape[1]
        self.icc_ = np.full(p, np.nan)
        self.n_matched_ = 0
        if self.second is None:
            self.support_ = np.ones(p, dtype=bool)
            return self
        if index is None:
            raise ValueError("ICCFilter with a second-ROI table needs X as a DataFrame "
                             "indexed by case_id")
        second = self.second.frame if isinstance(self.second, SideTable) else self.second
        if not isinstance(second, pd.DataFrame):
            raise TypeError("ICCFilter.second must be a pandas DataFrame (or SideTable) "
                            "indexed by case_id")
        names = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None
        cols = [c for c in (names or []) if c in second.columns]
        # matched training rows (a bootstrap resample repeats case ids: keep duplicates,
        # the ICC is then computed on the resample as drawn)
        in_second = np.asarray(index.isin(second.index))
        self.n_matched_ = int(in_second.sum())
        if self.n_matched_ < self.min_cases or not cols:
            log.warning("ICC filter: %d training cases with a second ROI (< %d) or no matching "
                        "columns: all %d features kept", self.n_matched_, self.min_cases, p)
            self.support_ = np.ones(p, dtype=bool)
            return self
        pos = {c: i for i, c in enumerate(names)}
        idx = [pos[c] for c in cols]
        a = Xa[in_second][:, idx]
        b = second.loc[index[in_second], cols].to_numpy(dtype=float)
        vals = _icc_columns(a, b, self.kind)
        self.icc_[idx] = vals
        keep = np.nan_to_num(self.icc_, nan=-np.inf) >= self.threshold
        # columns without a second version cannot be checked: keep them
        missing = np.ones(p, dtype=bool)
        missing[idx] = False
        keep |= missing
        self.support_ = _keep_at_least(keep, -np.nan_to_num(self.icc_, nan=-np.inf), self.k_min)
        log.debug("ICC filter (%s >= %.2f): %d of %d features kept (%d cases)", self.kind,
                 self.threshold, int(self.support_.sum()), p, self.n_matched_)
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


# ----------------------------------------------------------------------------
# univariate

class UnivariateFilter(SelectorMixin, BaseEstimator):
    """Keep features with a two-sample test p < alpha between the classes.

    test : "ttest" (Welch) or "mannwhitney". At least ``k_min`` features (the
    smallest p) are kept, so a pipeline never runs out of features.
    """

    def __init__(self, test: str = "ttest", alpha: float = 0.05, k_min: int = 1):
        self.test = test
        self.alpha = alpha
        self.k_min = k_min

    def fit(self, X, y):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=float)
        self.classes_, yi = _class_y(y)
        self.pvalues_ = _univariate_p(X, yi, self.test)
        keep = self.pvalues_ < self.alpha
        self.support_ = _keep_at_least(keep, self.pvalues_, self.k_min)
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.required = True
        return tags


# ----------------------------------------------------------------------------
# correlation

class CorrelationPruner(SelectorMixin, BaseEstimator):
    """Drop one of every pair of features with |Pearson r| > threshold.

    Features are visited from the most to the least associated with the label
    (|point-biserial r|, i.e. |Pearson r| with the 0/1 label); a feature is kept
    when it is not correlated above the threshold with any feature kept before,
    so of each correlated pair the one more associated with the label stays.
    Without y the column order decides.

    ``strategy="greedy"``: greedy recursive deletion (paper 003, as the OnekeyAI radiomics
    pipeline it follows): while some pair is correlated above the threshold, the feature
    with the most such partners (ties: the larger sum of |r| with the others left, then the
    weaker label association) is deleted, and the correlations are recomputed on the rest.
    """

    def __init__(self, threshold: float = 0.8, strategy: str = "label"):
        self.threshold = threshold
        self.strategy = strategy

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=float)
        p = X.shape[1]
        Xc = X - X.mean(axis=0)
        sd = np.sqrt((Xc ** 2).sum(axis=0))
        const = sd == 0
        sd[const] = 1.0
        Z = Xc / sd
        if y is not None:
            _, yi = _class_y(y)
            # |Pearson r| with each one-vs-rest class indicator (the 0/1 label when binary)
            assoc = np.zeros(p)
            for c in (range(1, 2) if yi.max() == 1 else range(yi.max() + 1)):
                yc = (yi == c).astype(float)
                yc -= yc.mean()
                assoc = np.maximum(assoc, np.abs(Z.T @ (yc / np.sqrt((yc ** 2).sum()))))
            assoc[const] = -1.0
            order = np.argsort(-assoc, kind="stable")
            self.label_assoc_ = assoc
        else:
            order = np.arange(p)
        R = np.abs(Z.T @ Z)
        if self.strategy == "greedy":
            self.support_ = self._greedy(R, const, self.label_assoc_ if y is not None
                                         else np.zeros(p))
            return self
        if self.strategy != "label":
            raise ValueError(f"strategy must be 'label' or 'greedy', got {self.strategy!r}")
        keep = np.zeros(p, dtype=bool)
        kept: list[int] = []
        for j in order:
            if const[j] and (kept or j != order[0]):
                continue
            if kept and np.any(R[j, kept] > self.threshold):
                continue
            keep[j] = True
            kept.append(j)
        if not keep.any():
            keep[order[0]] = True
        self.support_ = keep
        return self

    def _greedy(self, R, const, assoc) -> np.ndarray:
        p = R.shape[0]
        keep = ~const
        if not keep.any():
            keep = np.zeros(p, dtype=bool)
            keep[0] = True
            return keep
        R = R.copy()
        np.fill_diagonal(R, 0.0)
        self.deleted_ = []
        while True:
            idx = np.flatnonzero(keep)
            sub = R[np.ix_(idx, idx)]
            high = (sub > self.threshold).sum(axis=1)
            if high.max() == 0:
                break
            # most partners above the threshold, then most total |r|, then weakest label link
            key = np.lexsort((assoc[idx], -sub.sum(axis=1), -high))
            j = int(idx[key[0]])
            keep[j] = False
            self.deleted_.append(j)
        return keep

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_


# ----------------------------------------------------------------------------
# LASSO

def inner_folds(requested: int, y, groups=None) -> tuple[int, str]:
    """Folds a stratified (group) K-fold can have on ``y``: ``(k, reason)``.

    ``k = min(requested, minority-class count, number of groups)`` (a group is a set of
    rows that must stay together, e.g. copies of one case). ``reason`` says why ``k`` is
    below ``requested`` ("" when it is not); ``k < 2`` means no CV is possible.
    """
    yi = np.unique(np.asarray(y), return_inverse=True)[1].ravel()
    counts = np.bincount(yi)
    n_min = int(counts.min()) if len(counts) > 1 else 0
    k, why = int(requested), []
    if n_min < k:
        k = n_min
        why.append(f"the minority class has {n_min} case(s)")
    if groups is not None:
        g = np.asarray(groups).ravel()
        # groups holding each class: a fold needs a group of the minority class
        per_class = min(len(np.unique(g[yi == c])) for c in range(len(counts))) if len(counts) > 1 else 0
        if per_class < k:
            k = per_class
            why.append(f"{per_class} distinct row group(s) in the smaller class "
                       "(identical rows stay in one fold)")
    return int(k), "; ".join(why)


_L1R_LR = 6            # liblinear's solver type of L1-regularised logistic regression
_LIBLINEAR = {}        # the direct entry once checked (see _l1_fit)


def _l1_fit_sklearn(X, yi, C):
    m = make_logistic(C=C, l1=True, random_state=0).fit(X, yi)
    return m.coef_.ravel(), float(m.intercept_[0])


def _l1_fit(X, yi, C, max_iter: int = 1000, tol: float = 1e-4):
    """(coef (p,), intercept) of ``make_logistic(C, l1=True, random_state=0).fit(X, yi)``
    for 0/1 labels: the same liblinear solve, called directly.

    LogisticRegression's ``fit`` spends longer validating its input, encoding the labels and
    building unit weights than liblinear spends solving these small problems (about 60 % of
    the LASSO's CV time in benchmarks/bench_bootstrap.py), and the LASSO path solves thousands
    of them in a bootstrap. The arguments are those scikit-learn's ``_fit_liblinear`` passes
    (same seed, tolerance, penalised unit intercept), so the answer is bit-for-bit the same
    (``tests/models/test_folds.py`` checks it); if this scikit-learn's private entry point
    does not take them, the public estimator is used instead.
    """
    fn = _LIBLINEAR.get("train")
    if fn is None and "train" not in _LIBLINEAR:
        try:
            from sklearn.svm import _liblinear
            _liblinear.set_verbosity_wrap(0)
            fn = _liblinear.train_wrap
            _LIBLINEAR["seed"] = np.random.RandomState(0).randint(np.iinfo("i").max)
        except (ImportError, AttributeError):
            fn = None
        _LIBLINEAR["train"] = fn
    if fn is None:
        return _l1_fit_sklearn(X, yi, C)
    X = np.ascontiguousarray(X, dtype=np.float64)
    yd = np.array(yi, dtype=np.float64)
    try:
        raw, n_iter = fn(X, yd, False, _L1R_LR, tol, 1.0, float(C), np.ones(2), max_iter,
                         _LIBLINEAR["seed"], 0.1, np.ones(X.shape[0]))
    except (TypeError, ValueError):
        _LIBLINEAR["train"] = None
        return _l1_fit_sklearn(X, yi, C)
    if int(np.max(n_iter)) >= max_iter:
        from sklearn.exceptions import ConvergenceWarning
        warnings.warn("Liblinear failed to converge, increase the number of iterations.",
                      ConvergenceWarning)
    return raw[0, :-1], float(raw[0, -1])


def _l1_coef(X, yi, C):
    """L1 logistic coefficients, (1, p) when binary, one-vs-rest rows otherwise."""
    if yi.max() == 1:
        return _l1_fit(X, yi, C)[0][None, :]
    return np.vstack([make_logistic(C=C, l1=True, random_state=0).fit(X, (yi == c).astype(int)).coef_
                      for c in range(yi.max() + 1)])


def _l1_zero_bound(X, yi) -> float:
    """The largest C at which liblinear's L1 logistic solution is exactly zero.

    liblinear minimises ``C * sum(log-loss) + ||w||_1 + |b|`` (its intercept is the weight of a
    constant column, penalised like the others). At w = 0, b = 0 every fitted probability is 1/2 and
    the loss gradient of column j is ``-sum(s_i x_ij) / 2`` with s = +-1; zero is the optimum while
    ``C * |sum(s_i x_ij)| / 2 <= 1`` for every column, the constant one included
    (``sklearn.svm.l1_min_c``). Below this bound a fit is not needed: its answer is known.
    """
    s = 2.0 * yi - 1.0
    g = np.abs(X.T @ s).max(initial=0.0)
    g = max(g, abs(s.sum()))
    return np.inf if g == 0 else 2.0 / g


class LassoSelector(SelectorMixin, BaseEstimator):
    """L1-penalised logistic regression with k-fold CV over C = 1/lambda.

    The CV criterion is the binomial deviance (log loss), as glmnet's
    ``cv.glmnet(family="binomial")``. ``rule="1se"`` picks the strongest
    penalty whose mean CV deviance is within one standard error of the
    minimum (``lambda.1se``); ``rule="min"`` the minimum (``lambda.min``).
    Features with a non-zero coefficient at the chosen C are kept; if none,
    the ``k_min`` features entering the path first (largest |coef| at the
    weakest penalty of the grid) are kept. Expects standardised input.

    path : how the CV walks the C grid, from the strongest penalty to the weakest.
        ``"adaptive"`` (default) solves only what can matter: a C at which a fold's solution is
        exactly zero (below :func:`_l1_zero_bound`) is not solved (its deviance is that of p = 1/2),
        and the walk stops once the mean CV deviance has stayed above the running minimum plus
        its standard error for ``patience`` consecutive C values (glmnet likewise ends its path
        early; the weakly penalised end, where near-separable fits are slowest, is past the
        minimum and cannot become the 1-SE choice unless the curve turns down again).
        ``"full"`` solves every C of the grid in every fold (the reference: ``bench_bootstrap``
        measures both and how often their choices differ).
    patience : consecutive C values above min + SE before the adaptive walk stops.
    The CV has ``min(cv, minority-class count, distinct row groups per class)`` folds
    (:func:`inner_folds`); ``n_splits_`` is the number used (0: too few cases for a CV,
    the weakest penalty of the grid is used) and ``cv_reason_`` why it is below ``cv``.
    """

    # class-level defaults of the parameters added after bundles were first written, so a
    # selector loaded from an older bundle (skops restores __dict__) still answers get_params
    path = "adaptive"
    patience = 2

    def __init__(self, n_Cs: int = 12, C_range: tuple = (1e-3, 10.0), cv: int = 10,
                 rule: str = "1se", k_min: int = 1, max_features: int | None = None,
                 random_state=0, path: str = "adaptive", patience: int = 2):
        self.n_Cs = n_Cs
        self.C_range = C_range
        self.cv = cv
        self.rule = rule
        self.k_min = k_min
        self.max_features = max_features
        self.random_state = random_state
        self.path = path
        self.patience = patience

    def _cv_deviance(self, X, yi, folds, Cs) -> np.ndarray:
        """(folds x Cs) CV binomial deviance; NaN where a C was not reached or a fold is one-class."""
        adaptive = self.path == "adaptive"
        dev = np.full((len(folds), len(Cs)), np.nan)
        usable = [f for f, (tr, te) in enumerate(folds) if len(te) and len(np.unique(yi[tr])) == 2]
        bounds = {f: _l1_zero_bound(X[folds[f][0]], yi[folds[f][0]]) for f in usable}
        zero_dev = 2.0 * np.log(2.0)
        best, above = np.inf, 0
        # each fold's rows copied once, not once per C
        parts = {f: (np.ascontiguousarray(X[folds[f][0]]), yi[folds[f][0]], X[folds[f][1]])
                 for f in usable}
        for i, C in enumerate(Cs):
            for f in usable:
                tr, te = folds[f]
                if adaptive and C < bounds[f] * (1 - 1e-9):
                    dev[f, i] = zero_dev
                    continue
                X_tr, y_tr, X_te = parts[f]
                coef, icpt = _l1_fit(X_tr, y_tr, C)
                z = X_te @ coef + icpt
                pr = np.clip(1.0 / (1.0 + np.exp(-z)), 1e-12, 1 - 1e-12)
                dev[f, i] = -2 * np.mean(yi[te] * np.log(pr) + (1 - yi[te]) * np.log(1 - pr))
            if not adaptive or not usable:
                continue
            col = dev[usable, i]
            mean = float(np.mean(col))
            se = float(np.std(col, ddof=1) / np.sqrt(len(col))) if len(col) > 1 else 0.0
            if mean < best:
                best, best_se, above = mean, se, 0
            elif mean > best + best_se:
                above += 1
                if above >= self.patience:
                    break
        return dev

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=float)
        self.classes_, yi = _class_y(y)
        if self.rule not in ("1se", "min"):
            raise ValueError(f"rule must be '1se' or 'min', got {self.rule!r}")
        if self.path not in ("adaptive", "full"):
            raise ValueError(f"path must be 'adaptive' or 'full', got {self.path!r}")
        Cs = np.geomspace(self.C_range[0], self.C_range[1], int(self.n_Cs))
        self.Cs_ = Cs
        # identical rows (copies of one case in a bootstrap resample, or cases alike on a
        # few discrete features) stay in one fold, else the CV would reward overfitting
        # through the copies
        _, groups = np.unique(X, axis=0, return_inverse=True)
        groups = np.asarray(groups).ravel()
        n_groups = len(np.unique(groups))
        if len(self.classes_) == 2:
            n_splits, self.cv_reason_ = inner_folds(self.cv, yi, groups)
        else:
            n_splits, self.cv_reason_ = 0, "more than two classes: no CV"
        self.n_splits_ = int(n_splits) if n_splits >= 2 else 0
        if self.cv_reason_ and n_splits < int(self.cv):
            log.info("LASSO CV: %d folds instead of %d (%s)", max(n_splits, 0), int(self.cv),
                     self.cv_reason_)
        dev = np.full((max(n_splits, 1), len(Cs)), np.nan)
        if n_splits >= 2:
            if n_groups < len(groups):
                # StratifiedGroupKFold(shuffle=True)'s folds, without its per-call overhead
                folds = group_folds(yi, groups, n_splits, self.random_state)
            else:
                skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
                folds = list(skf.split(X, yi))
            dev = self._cv_deviance(X, yi, folds, Cs)
            reached = ~np.all(np.isnan(dev), axis=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(dev, axis=0)
                se = np.nanstd(dev, axis=0, ddof=1) / np.sqrt(np.sum(~np.isnan(dev), axis=0))
            se = np.nan_to_num(se, nan=0.0)
            if not reached.any():
                mean = np.zeros(len(Cs))
                reached = np.ones(len(Cs), dtype=bool)
            i_min = int(np.nanargmin(np.where(reached, mean, np.nan)))
            if self.rule == "min":
                i_sel = i_min
            else:
                ok = np.where(reached & (mean <= mean[i_min] + se[i_min]))[0]
                i_sel = int(ok.min())  # smallest C = strongest penalty
            self.cv_deviance_ = np.where(reached, mean, np.nan)
        else:
            i_min = i_sel = len(Cs) - 1
            self.cv_deviance_ = np.full(len(Cs), np.nan)
        self.C_min_ = float(Cs[i_min])
        self.C_ = float(Cs[i_sel])
        self.coef_ = _l1_coef(X, yi, self.C_)
        coef = np.abs(self.coef_).max(axis=0)
        keep = coef != 0
        if keep.sum() < self.k_min:
            weak = np.abs(_l1_coef(X, yi, Cs[-1])).max(axis=0)
            keep = _keep_at_least(keep, -np.abs(weak), self.k_min)
        if self.max_features is not None and keep.sum() > self.max_features:
            top = np.argsort(-np.abs(coef), kind="stable")[: self.max_features]
            keep = np.zeros_like(keep)
            keep[top] = True
        self.support_ = keep
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


# ----------------------------------------------------------------------------
# PCA

class MedianImputer(TransformerMixin, BaseEstimator):
    """``SimpleImputer(strategy="median")`` for float features: the same statistics (column
    medians of the observed values, bit for bit), the same columns dropped (those with no
    observed value), the same output and feature names.

    Why not scikit-learn's: its median goes through a masked-array sort of the whole matrix
    and its input checks inspect a DataFrame column by column; in the optimism bootstrap
    every D-score refit imputes a block of a thousand deep features several times, where
    the two took about a tenth of the refit time (benchmarks/bench_bootstrap.py).
    ``tests/models/test_folds.py`` compares both on random data with missing values.
    """

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan")
        if np.isnan(X).any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns
                med = np.nanmedian(X, axis=0)
        else:
            med = np.median(X, axis=0)
        self.statistics_ = med
        self.support_ = ~np.isnan(med)
        if not self.support_.all():
            log.debug("median imputation: skipping %d feature(s) without any observed value",
                        int((~self.support_).sum()))
        return self

    def transform(self, X):
        check_is_fitted(self, "statistics_")
        X = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan", reset=False)
        X = X[:, self.support_] if not self.support_.all() else X.copy()
        miss = np.isnan(X)
        if miss.any():
            X[miss] = np.take(self.statistics_[self.support_], np.nonzero(miss)[1])
        return X

    def get_feature_names_out(self, input_features=None):
        from sklearn.utils.validation import _check_feature_names_in
        check_is_fitted(self, "statistics_")
        return np.asarray(_check_feature_names_in(self, input_features), dtype=object)[self.support_]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


class ClippedPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """PCA to ``n_components`` (paper 003: 64), clipped to min(n_samples, n_features).

    Output columns are named ``clippedpca0, clippedpca1, ...``.
    """

    def __init__(self, n_components: int = 64, whiten: bool = False, random_state=0):
        self.n_components = n_components
        self.whiten = whiten
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        X = validate_data(self, X, dtype=float)
        k = int(max(1, min(self.n_components, X.shape[0], X.shape[1])))
        self.pca_ = PCA(n_components=k, whiten=self.whiten, svd_solver="full",
                        random_state=self.random_state).fit(X)
        self._n_features_out = k
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        return self

    def transform(self, X):
        check_is_fitted(self, "pca_")
        X = validate_data(self, X, dtype=float, reset=False)
        return self.pca_.transform(X)
