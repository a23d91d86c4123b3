"""Clinical predictors: encoding, imputation, and the clinical logistic model.

Encoding (:class:`ClinicalPreprocessor`), all learnt in ``fit``:

- continuous columns: missing values imputed with the training median;
- 0/1 columns (all observed values in {0, 1}): imputed with the most frequent
  value;
- categorical columns (text): imputed with the most frequent level, then
  one-hot with the **reference level dropped** (treatment coding, as R's
  ``glm``). Reference levels: ``enhancement_curve = persistent`` (so the
  coefficients read "plateau vs persistent", "washout vs persistent"),
  ``mass_shape = round_oval`` (so "irregular vs round/oval"); any other text
  column: its alphabetically first level. Encoded names are ``col=level``.
- every column with a missing value in the training data gets a missing
  indicator ``col__missing`` (missing values are never dropped silently).

:class:`ClinicalModel` (papers 002 / 003 / 004): univariable logistic regression
per variable (likelihood-ratio test, all dummies of a categorical variable
together), variables with p < ``alpha`` enter a multivariable logistic
regression, unpenalised by default (``C=inf``) so its coefficients are a real
nomogram's; optional backward stepwise selection on AIC (as R's ``step``,
direction "backward"). Columns in ``force`` (e.g. deep scores) always stay in.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from her2core.cohort import CLINICAL_FIELDS
from her2core.selection import make_logistic

log = logging.getLogger(__name__)

__all__ = ["CLINICAL_PREDICTORS", "CATEGORICAL_LEVELS", "ClinicalPreprocessor", "ClinicalModel",
           "as_frame", "check_input_width", "check_binary"]

#: Candidate predictors of cohort.csv used when none are named (the cohort schema's).
CLINICAL_PREDICTORS = [f.name for f in CLINICAL_FIELDS if f.predictor]
#: Known categorical columns: levels, the first is the reference.
CATEGORICAL_LEVELS = {f.name: list(f.levels) for f in CLINICAL_FIELDS if f.kind == "choice"}


def as_frame(X) -> pd.DataFrame:
    """DataFrame view of X (numpy input gets columns x0, x1, ...)."""
    if isinstance(X, pd.DataFrame):
        cols = X.columns.tolist()   # one conversion (iterating an Arrow-backed Index is slow)
        if not all(isinstance(c, str) for c in cols):
            return X.set_axis([str(c) for c in cols], axis=1)
        return X
    import scipy.sparse as sp
    if sp.issparse(X):
        raise TypeError("Sparse input is not supported: pass a dense DataFrame or array")
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"Expected 2D array, got {arr.ndim}D array instead")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def check_input_width(est, X):
    """Array input must have the fitted width (DataFrames are matched by column name)."""
    if not isinstance(X, pd.DataFrame):
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"Expected 2D array, got {arr.ndim}D array instead. Reshape your data "
                             "either using array.reshape(-1, 1) if your data has a single feature "
                             "or array.reshape(1, -1) if it contains a single sample.")
        n = arr.shape[1]
        if n != est.n_features_in_:
            raise ValueError(f"X has {n} features, but {type(est).__name__} is expecting "
                             f"{est.n_features_in_} features as input")


def check_binary(y):
    """The target as a 1-D array; scikit-learn style errors when absent or not binary."""
    from sklearn.utils.validation import column_or_1d
    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    y = column_or_1d(y, warn=True)
    y_type = type_of_target(y, input_name="y", raise_unknown=True)
    if y_type != "binary":
        raise ValueError("Only binary classification is supported. The type of the target "
                         f"is {y_type}.")
    return y


def _is_text(s: pd.Series) -> bool:
    """Text (categorical) column: non-numeric values that do not all parse as numbers."""
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return False
    obs = s.dropna()
    if not len(obs):
        return False
    return bool(pd.to_numeric(obs, errors="coerce").isna().any())


class ClinicalPreprocessor(TransformerMixin, BaseEstimator):
    """Impute, add missing indicators and one-hot encode clinical columns.

    columns : list of column names or None (all columns of X).
    add_indicator : add ``col__missing`` for columns missing in training.
    """

    def __init__(self, columns=None, add_indicator: bool = True):
        self.columns = columns
        self.add_indicator = add_indicator

    def fit(self, X, y=None):
        X = as_frame(X)
        cols = list(X.columns) if self.columns is None else list(self.columns)
        absent = [c for c in cols if c not in X.columns]
        if absent:
            raise ValueError(f"clinical columns not in the data: {absent}")
        if not cols:
            raise ValueError(f"0 feature(s) (shape=({X.shape[0]}, 0)) while a minimum of 1 is "
                             "required.")
        if X.shape[0] < 1:
            raise ValueError(f"Found array with 0 sample(s) (shape=(0, {X.shape[1]})) while a "
                             "minimum of 1 is required.")
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns.tolist()], dtype=object)
        self.n_features_in_ = X.shape[1]
        self.columns_ = cols
        self.kinds_, self.fill_, self.levels_ = {}, {}, {}
        self.indicators_ = []
        for c in cols:
            s = X[c]
            if _is_text(s):
                obs = s.dropna().astype(str)
                known = CATEGORICAL_LEVELS.get(c)
                levels = list(known) if known else sorted(obs.unique().tolist())
                extra = sorted(set(obs.unique()) - set(levels))
                if extra:
                    raise ValueError(f"column {c}: unknown levels {extra} (expected {levels})")
                self.kinds_[c] = "categorical"
                self.levels_[c] = levels
                self.fill_[c] = obs.mode().sort_values().iloc[0] if len(obs) else levels[0]
            else:
                v = pd.to_numeric(s, errors="raise").astype(float)
                obs = v.dropna()
                if not np.all(np.isfinite(obs)):
                    raise ValueError(f"Input contains infinity in column {c}")
                if len(obs) and set(np.unique(obs)) <= {0.0, 1.0}:
                    self.kinds_[c] = "binary"
                    self.fill_[c] = float(obs.mode().sort_values().iloc[0])
                else:
                    self.kinds_[c] = "continuous"
                    self.fill_[c] = float(obs.median()) if len(obs) else 0.0
            if self.add_indicator and X[c].isna().any():
                self.indicators_.append(c)
        names = []
        for c in cols:
            if self.kinds_[c] == "categorical":
                names += [f"{c}={lv}" for lv in self.levels_[c][1:]]
            else:
                names.append(c)
        names += [f"{c}__missing" for c in self.indicators_]
        self.feature_names_out_ = names
        self.variable_of_ = {n: n.split("=")[0].replace("__missing", "") for n in names}
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        X = as_frame(X)
        absent = [c for c in self.columns_ if c not in X.columns]
        if absent:
            raise ValueError(f"clinical columns not in the data: {absent}")
        out = {}
        for c in self.columns_:
            s = X[c]
            if self.kinds_[c] == "categorical":
                s = s.astype(object).where(s.notna(), None)
                bad = s.dropna().astype(str)
                bad = bad[~bad.isin(self.levels_[c])]
                if len(bad):
                    log.warning("column %s: unknown level(s) %s treated as missing", c,
                                sorted(bad.unique()))
                    s = s.where(~s.isin(bad.unique()), None)
                s = s.fillna(self.fill_[c]).astype(str)
                for lv in self.levels_[c][1:]:
                    out[f"{c}={lv}"] = (s == lv).astype(float).to_numpy()
            else:
                v = pd.to_numeric(s, errors="coerce").astype(float)
                out[c] = v.fillna(self.fill_[c]).to_numpy()
        for c in self.indicators_:
            out[f"{c}__missing"] = X[c].isna().astype(float).to_numpy()
        return pd.DataFrame(out, index=X.index, columns=self.feature_names_out_)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "columns_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def set_output(self, *, transform=None):  # always pandas
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        return tags


def _fit_lr(X: np.ndarray, y: np.ndarray, C: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        # Newton-Cholesky: a few exact steps on these small dense designs (lbfgs crawls
        # for hundreds of iterations when the data are nearly separable)
        return make_logistic(C=C, max_iter=100, tol=1e-8, solver="newton-cholesky").fit(X, y)


def _coef_covariance(D: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float,
                     C: float) -> np.ndarray:
    """Inverse Hessian of the (penalised) negative log-likelihood at the fit,
    ordered (intercept, coefficients); pseudo-inverse when the information is singular
    (perfect separation, constant columns)."""
    from scipy.special import expit
    A = np.column_stack([np.ones(len(D)), D])
    p = expit(D @ coef + intercept) if D.shape[1] else np.full(len(D), expit(intercept))
    H = A.T @ (A * (p * (1 - p))[:, None])
    if np.isfinite(C) and C > 0:
        H = H + np.diag(np.r_[0.0, np.full(D.shape[1], 1.0 / C)])
    try:
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(H)


def _bh_adjust(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (R ``p.adjust(p, "BH")``)."""
    p = np.asarray(p, float)
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adj, 1.0)
    return out


def _loglik(model, X, y) -> float:
    p = np.clip(model.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _null_loglik(y) -> float:
    m = np.clip(y.mean(), 1e-12, 1 - 1e-12)
    return float(np.sum(y * np.log(m) + (1 - y) * np.log(1 - m)))


class ClinicalModel(ClassifierMixin, BaseEstimator):
    """Univariable screen + multivariable (optionally stepwise) logistic regression.

    predictors : columns to consider (None: every column of X).
    force : columns always in the model (deep scores in the combined nomogram).
    selection : "univariate" (likelihood-ratio p < alpha), "lasso" (variables with a
        non-zero L1 coefficient, 10-fold CV 1-SE rule), "univariate+lasso" (the LASSO
        on the variables that pass the univariable screen; paper 002) or "none".
    fdr : the univariable p-values are Benjamini-Hochberg adjusted (FDR) before they
        are compared with ``alpha`` (paper 002: FDR-adjusted p <= 0.05).
    multivariable_p : after the selection, one multivariable fit; variables whose
        likelihood-ratio p in it is >= this value are dropped (paper 002: 0.1). None: off.
    stepwise : False; True or "aic": backward elimination on AIC (R ``step``); "p":
        backward elimination, dropping the variable with the largest likelihood-ratio
        p until every p < ``stepwise_p`` (paper 002: 0.05).
    C : inverse penalty of the final model; ``inf`` = unpenalised (nomogram).
    positive : columns (of ``force``) whose coefficient must be positive: a
        risk score entering with a negative weight is dropped and the model
        refitted (non-negativity as in Breiman's stacked regressions; on data
        without signal, out-of-fold scores are anti-correlated with the label
        and would otherwise get a negative weight).
    screen : columns always screened by the univariable test (p < alpha), whatever
        ``selection`` says (the deep scores of the combined model).
    With no variable left the model predicts the training prevalence.
    """

    def __init__(self, predictors=None, force=(), selection: str = "univariate",
                 alpha: float = 0.05, stepwise=False, C: float = np.inf, positive=(),
                 screen=(), fdr: bool = False, multivariable_p=None, stepwise_p: float = 0.05):
        self.predictors = predictors
        self.force = force
        self.selection = selection
        self.alpha = alpha
        self.stepwise = stepwise
        self.C = C
        self.positive = positive
        self.screen = screen
        self.fdr = fdr
        self.multivariable_p = multivariable_p
        self.stepwise_p = stepwise_p

    def fit(self, X, y):
        X = as_frame(X)
        y = check_binary(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns.tolist()], dtype=object)
        self.n_features_in_ = X.shape[1]
        self.lasso_ = None
        force = [c for c in (self.force or ())]
        preds = list(X.columns) if self.predictors is None else list(self.predictors)
        cols = list(dict.fromkeys(force + list(self.screen or ()) + preds))
        if not cols:
            raise ValueError(f"0 feature(s) (shape=({X.shape[0]}, 0)) while a minimum of 1 is "
                             "required.")
        self.prep_ = ClinicalPreprocessor(columns=cols).fit(X)
        Z = self.prep_.transform(X)
        groups: dict[str, list[str]] = {}
        for n in Z.columns:
            groups.setdefault(self.prep_.variable_of_[n], []).append(n)
        # univariable likelihood-ratio screen
        ll0 = _null_loglik(yi)
        pvals = {}
        for var, names in groups.items():
            Xa = Z[names].to_numpy()
            if np.all(np.ptp(Xa, axis=0) == 0):
                pvals[var] = 1.0
                continue
            ll1 = _loglik(_fit_lr(Xa, yi, np.inf), Xa, yi)
            pvals[var] = float(stats.chi2.sf(max(2 * (ll1 - ll0), 0.0), df=len(names)))
        self.univariate_p_ = pvals
        screen = [v for v in (self.screen or ()) if v in groups and v not in force]
        candidates = [v for v in groups if v not in force and v not in screen]
        tested = [v for v in groups if v not in force]
        q = _bh_adjust([pvals[v] for v in tested]) if self.fdr else [pvals[v] for v in tested]
        self.univariate_q_ = dict(zip(tested, map(float, q)))
        crit = self.univariate_q_
        passed = {v for v in tested if crit[v] < self.alpha or (self.fdr and crit[v] <= self.alpha)}
        screened = [v for v in screen if v in passed]
        if self.selection == "univariate":
            chosen = [v for v in candidates if v in passed]
        elif self.selection == "lasso":
            chosen = self._lasso_variables(Z, yi, groups, candidates)
        elif self.selection == "univariate+lasso":
            chosen = self._lasso_variables(Z, yi, groups, [v for v in candidates if v in passed])
        elif self.selection == "none":
            chosen = candidates
        else:
            raise ValueError("selection must be 'univariate', 'lasso', 'univariate+lasso' or "
                             f"'none', got {self.selection!r}")
        # no fallback to the "best" variable: with nothing significant the model is the
        # intercept (prevalence), which is what the data support
        chosen = screened + chosen
        variables = [v for v in force if v in groups] + chosen
        self.multivariable_dropped_ = []
        if self.multivariable_p is not None:
            pm = self._drop_p(Z, yi, groups, variables)
            keep = [v for v in variables if v in force or pm[v] < float(self.multivariable_p)]
            self.multivariable_dropped_ = [v for v in variables if v not in keep]
            variables = keep
        self.stepwise_dropped_ = []
        if self.stepwise in (True, "aic"):
            variables = self._backward_aic(Z, yi, groups, variables, set(force))
        elif self.stepwise == "p":
            variables = self._backward_p(Z, yi, groups, variables, set(force))
        elif self.stepwise not in (False, None, "none"):
            raise ValueError(f"stepwise must be False, 'aic' or 'p', got {self.stepwise!r}")
        positive = [v for v in (self.positive or ()) if v in groups]
        self.dropped_negative_ = []
        while True:
            columns = [n for v in variables for n in groups[v]]
            if not columns:
                prev = float(np.clip(yi.mean(), 1e-6, 1 - 1e-6))
                coef, intercept = np.zeros((1, 0)), np.array([np.log(prev / (1 - prev))])
                break
            lr = _fit_lr(Z[columns].to_numpy(), yi, self.C)
            coef, intercept = lr.coef_, lr.intercept_
            bad = [(coef[0, columns.index(v)], v) for v in positive
                   if v in variables and coef[0, columns.index(v)] <= 0]
            if not bad:
                break
            worst = min(bad)[1]
            log.debug("%s has a negative weight in the second level: dropped", worst)
            variables = [v for v in variables if v != worst]
            self.dropped_negative_.append(worst)
        self.variables_ = variables
        self.columns_ = columns
        self.coef_ = np.asarray(coef, float)
        self.intercept_ = np.asarray(intercept, float)
        self.cov_ = _coef_covariance(Z[columns].to_numpy(dtype=float), yi, self.coef_[0],
                                     float(self.intercept_[0]), self.C)
        self.model_ = "fitted"
        log.debug("clinical model: %d variable(s) kept: %s", len(variables), ", ".join(variables))
        return self

    def _lasso_variables(self, Z, yi, groups, candidates):
        """Variables with a non-zero LASSO coefficient (10-fold CV, 1-SE; paper 002)."""
        from her2core.selection import LassoSelector
        names = [n for v in candidates for n in groups[v]]
        if not names:
            return []
        Xa = Z[names].to_numpy(dtype=float)
        sd = Xa.std(axis=0)
        sd[sd == 0] = 1.0
        Xs = (Xa - Xa.mean(axis=0)) / sd
        sel = LassoSelector(cv=10, rule="1se").fit(Xs, yi)
        self.lasso_ = {"requested": int(sel.cv), "used": int(sel.n_splits_),
                       "reason": sel.cv_reason_, "C": float(sel.C_), "kept": int(sel.support_.sum())}
        kept = {self.prep_.variable_of_[n] for n, k in zip(names, sel.support_) if k}
        return [v for v in candidates if v in kept]

    def _loglik_of(self, Z, yi, groups, vs) -> float:
        names = [n for v in vs for n in groups[v]]
        if not names:
            return _null_loglik(yi)
        Xa = Z[names].to_numpy()
        return _loglik(_fit_lr(Xa, yi, self.C), Xa, yi)

    def _drop_p(self, Z, yi, groups, variables) -> dict[str, float]:
        """Likelihood-ratio p of each variable in the multivariable model of ``variables``
        (all dummies of a categorical variable together)."""
        full = self._loglik_of(Z, yi, groups, variables)
        out = {}
        for v in variables:
            red = self._loglik_of(Z, yi, groups, [w for w in variables if w != v])
            out[v] = float(stats.chi2.sf(max(2 * (full - red), 0.0), df=len(groups[v])))
        return out

    def _backward_p(self, Z, yi, groups, variables, fixed):
        """Backward elimination: drop the largest likelihood-ratio p until all < stepwise_p."""
        current, steps = list(variables), []
        while True:
            free = [v for v in current if v not in fixed]
            if not free:
                break
            pm = self._drop_p(Z, yi, groups, current)
            worst = max(free, key=lambda v: pm[v])
            if pm[worst] < float(self.stepwise_p):
                break
            current.remove(worst)
            steps.append(worst)
        self.stepwise_dropped_ = steps
        return current

    def _backward_aic(self, Z, yi, groups, variables, fixed):
        def aic(vs):
            names = [n for v in vs for n in groups[v]]
            if not names:
                return -2 * _null_loglik(yi) + 2
            Xa = Z[names].to_numpy()
            return -2 * _loglik(_fit_lr(Xa, yi, self.C), Xa, yi) + 2 * (len(names) + 1)

        current = list(variables)
        best = aic(current)
        steps = []
        while True:
            trials = [(aic([w for w in current if w != v]), v) for v in current if v not in fixed]
            if not trials:
                break
            score, drop = min(trials)
            if score < best - 1e-9 and len(current) > 1:
                best = score
                current.remove(drop)
                steps.append(drop)
            else:
                break
        self.stepwise_dropped_ = steps
        self.aic_ = best
        return current

    def _design(self, X):
        check_is_fitted(self, "model_")
        check_input_width(self, X)
        X = as_frame(X)
        return self.prep_.transform(X)[self.columns_].to_numpy()

    def decision_function(self, X):
        return self._design(X) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X):
        from scipy.special import expit
        p1 = expit(self.decision_function(X))
        return np.column_stack([1 - p1, p1])

    def predict(self, X):
        d = self.decision_function(X)
        return self.classes_[(d > 0).astype(int)]

    def coefficients(self) -> dict:
        """Intercept and coefficient per encoded column (plain floats, JSON-ready)."""
        check_is_fitted(self, "model_")
        return {"intercept": float(self.intercept_[0]),
                "coefficients": {n: float(c) for n, c in zip(self.columns_, self.coef_[0])}}

    # -- public view of the fitted model (callers never read fitted attributes) ----------
    def used_variables(self) -> list[str]:
        """The predictors (input columns) left in the final model, in model order."""
        check_is_fitted(self, "model_")
        return list(self.variables_)

    def lasso_summary(self) -> dict | None:
        """LASSO CV folds asked for and used (selection "lasso"), else None."""
        check_is_fitted(self, "model_")
        return None if self.lasso_ is None else dict(self.lasso_)

    def input_columns(self) -> list[str]:
        """Every input column the model reads (its candidates, whether kept or not)."""
        check_is_fitted(self, "model_")
        return list(self.prep_.columns_)

    def design(self, X) -> pd.DataFrame:
        """The encoded design (imputed, one-hot, missing indicators) of the kept columns."""
        check_is_fitted(self, "model_")
        check_input_width(self, X)
        return self.prep_.transform(as_frame(X))[self.columns_]

    def design_variables(self) -> list[str]:
        """For each design column, the input variable it encodes (``col``, ``col=level``,
        ``col__missing`` all belong to ``col``)."""
        check_is_fitted(self, "model_")
        return [self.prep_.variable_of_[c] for c in self.columns_]

    def encoding(self) -> dict:
        """How each input is encoded: kinds, categorical levels (reference first), the
        training values used for missing inputs, missing indicators."""
        check_is_fitted(self, "model_")
        return {"kinds": dict(self.prep_.kinds_), "levels": {k: list(v) for k, v in self.prep_.levels_.items()},
                "reference_levels": {c: lv[0] for c, lv in self.prep_.levels_.items()},
                "imputation": dict(self.prep_.fill_), "indicators": list(self.prep_.indicators_)}

    def imputation_values(self) -> dict:
        """Training value that replaces a missing input (median, or most frequent level)."""
        check_is_fitted(self, "model_")
        return dict(self.prep_.fill_)

    def univariable_p(self) -> dict[str, float]:
        """Likelihood-ratio p-value of each candidate in the univariable screen."""
        check_is_fitted(self, "model_")
        return dict(self.univariate_p_)

    def coefficient_covariance(self) -> np.ndarray:
        """Covariance of (intercept, coefficients) from the observed information
        (inverse Hessian of the log-likelihood, plus the L2 penalty when C is finite):
        what R's ``vcov(glm(...))`` gives for the unpenalised model."""
        check_is_fitted(self, "model_")
        return np.array(self.cov_, dtype=float, copy=True)

    def predict_interval(self, X, level: float = 0.95) -> np.ndarray:
        """Delta-method interval of the predicted probability, (n, 2) lower / upper.

        The linear predictor's standard error sqrt(x' V x) from the coefficient
        covariance V, the interval formed on the log-odds scale and mapped through
        the logistic function (as ``predict(glm, se.fit=TRUE)`` in R). Conditional on
        the inputs (for a combined nomogram: on the block scores).
        """
        from scipy.special import expit
        from scipy.stats import norm
        check_is_fitted(self, "model_")
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1, got {level}")
        D = self._design(X)
        lp = D @ self.coef_[0] + self.intercept_[0]
        A = np.column_stack([np.ones(len(D)), D])
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", A, self.cov_, A), 0.0))
        z = float(norm.ppf(0.5 + level / 2))
        return np.column_stack([expit(lp - z * se), expit(lp + z * se)])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True  # text columns are categorical predictors
        tags.classifier_tags.multi_class = False
        return tags
