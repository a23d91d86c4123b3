"""SHAP contributions on the log-odds scale, per patient and per cohort.

Three paths, chosen from the fitted model:

* **Exact linear** (logistic nomogram, deep-score models, any Pipeline whose last
  step is a linear classifier with ``coef_`` / ``intercept_``): the contribution of
  model input ``k`` is ``coef_k * (z_k - mean_background(z_k))`` on the model's own
  (scaled / imputed / one-hot) inputs ``z``, summed back to the original predictor
  that produced ``z_k``. This is exactly what ``shap.LinearExplainer`` with an
  interventional (Independent) background computes; the base value is the mean
  log-odds of the background and the contributions add up to
  ``log-odds(patient) - base`` to rounding.
* **Exact additive** (an estimator we cannot open, whose log-odds are nevertheless
  additive in its predictors): interventional SHAP computed by replacing one
  predictor at a time in every background row; additivity is verified, and if it
  fails the model-agnostic path is used instead.
* **Trees** through ``shap.TreeExplainer`` (interventional, raw output: log-odds
  for gradient boosting / XGBoost / LightGBM, probability for random forests /
  ExtraTrees). A :class:`~her2core.models.zoo.PortableGBM` (LightGBM / XGBoost kept as
  the library's text model) is explained through its rebuilt booster
  (``native_model()``). Additivity is checked: base + contributions must give the
  model's own output to 1e-6, otherwise the next method is tried.
* **Anything else** through ``shap.KernelExplainer`` on the log-odds with a
  summarised background (``shap.kmeans``) and a time bound: flagged
  ``approximate=True`` with a sentence saying so.

Results are plain dataclasses; figures are built from them in
:mod:`her2core.explain.figures`.
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "GROUPS", "predictor_group", "PatientContributions", "CohortContributions",
    "explain_model", "explain_patient", "dependence_map",
]

#: The three predictor groups of the cohort summary (paper 002 Fig. 2B, grouped).
GROUPS = ("clinical", "deep score", "radiomics")

_DEEP_FEATURE = re.compile(r"^[^_].*__[^_].*__f\d+$")


def predictor_group(name: str) -> str:
    """Group of a predictor by its column name.

    ``dscore_*`` is a deep score, except ``dscore_radiomics*`` (a score built on
    radiomics features) which is radiomics; ``*__radiomics__*`` is radiomics; a raw deep
    feature column (``{sequence}__{backbone}__f0012``, as explained inside a
    deep-score model) counts as "deep score" too; everything else is clinical.
    """
    name = str(name)
    if name.startswith("dscore_radiomics"):
        return "radiomics"          # the radiomics score of a nomogram is radiomics, not deep
    if name.startswith("dscore"):
        return "deep score"
    if "__radiomics__" in name:
        return "radiomics"
    if _DEEP_FEATURE.match(name):
        return "deep score"
    return "clinical"


# --------------------------------------------------------------------- results
@dataclass
class PatientContributions:
    """One patient's waterfall: base value + contributions = prediction.

    ``contributions`` are on ``scale`` ("log-odds" for every linear / boosted
    model; "probability" only for random forests explained by TreeExplainer).
    """
    case_id: str | None
    predictors: list[str]
    values: list[Any]
    contributions: np.ndarray
    groups: list[str]
    base_value: float
    prediction: float
    method: str
    approximate: bool = False
    note: str = ""
    scale: str = "log-odds"
    provenance: dict[str, Any] = field(default_factory=dict)
    #: inputs of the model that its final level does not use (contribution 0 by
    #: construction): not listed as predictors, so their values are never shown
    left_out: list[str] = field(default_factory=list)

    @property
    def additivity_error(self) -> float:
        """|base + sum(contributions) - prediction| (0 to rounding for exact methods)."""
        return float(abs(self.base_value + float(np.sum(self.contributions)) - self.prediction))

    @property
    def probability(self) -> float:
        if self.scale == "probability":
            return float(self.prediction)
        return float(1.0 / (1.0 + np.exp(-self.prediction)))

    @property
    def base_probability(self) -> float:
        if self.scale == "probability":
            return float(self.base_value)
        return float(1.0 / (1.0 + np.exp(-self.base_value)))

    def to_frame(self) -> pd.DataFrame:
        """Table with columns predictor, value, contribution, group (input order)."""
        return pd.DataFrame({
            "predictor": self.predictors,
            "value": self.values,
            "contribution": np.asarray(self.contributions, dtype=float),
            "group": self.groups,
        })

    def group_totals(self) -> dict[str, float]:
        out = {g: 0.0 for g in GROUPS}
        for g, c in zip(self.groups, self.contributions):
            out[g] = out.get(g, 0.0) + float(c)
        return out


@dataclass
class CohortContributions:
    """Contributions of every predictor for every case (rows = cases)."""
    case_ids: list[str]
    predictors: list[str]
    values: pd.DataFrame                  # original predictor values, rows = cases
    contributions: np.ndarray             # (n_cases, n_predictors)
    groups: list[str]
    base_value: float
    predictions: np.ndarray               # model output per case on `scale`
    method: str
    approximate: bool = False
    note: str = ""
    scale: str = "log-odds"
    provenance: dict[str, Any] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)   # see PatientContributions

    def patient(self, case: int | str) -> PatientContributions:
        i = self.case_ids.index(case) if isinstance(case, str) else int(case)
        return PatientContributions(
            case_id=self.case_ids[i], predictors=list(self.predictors),
            values=list(self.values.iloc[i].tolist()),
            contributions=np.asarray(self.contributions[i], dtype=float),
            groups=list(self.groups), base_value=float(self.base_value),
            prediction=float(self.predictions[i]), method=self.method,
            approximate=self.approximate, note=self.note, scale=self.scale,
            provenance=dict(self.provenance), left_out=list(self.left_out))

    def mean_abs(self) -> pd.Series:
        """Mean |contribution| per predictor, largest first (the bar summary)."""
        s = pd.Series(np.mean(np.abs(self.contributions), axis=0), index=self.predictors)
        return s.sort_values(ascending=False)

    def group_mean_abs(self) -> pd.Series:
        """Mean over cases of |sum of a group's contributions|, per group."""
        out = {}
        g = np.asarray(self.groups)
        for name in GROUPS:
            sel = g == name
            if sel.any():
                out[name] = float(np.mean(np.abs(self.contributions[:, sel].sum(axis=1))))
        return pd.Series(out)

    @property
    def additivity_error(self) -> float:
        return float(np.max(np.abs(self.base_value + self.contributions.sum(axis=1)
                                   - self.predictions))) if len(self.case_ids) else 0.0


# ------------------------------------------------------------------- helpers
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


def _positive_proba(model, X: pd.DataFrame) -> np.ndarray:
    proba = np.asarray(model.predict_proba(X))
    if proba.ndim == 2:
        classes = list(getattr(model, "classes_", [0, 1]))
        col = classes.index(1) if 1 in classes else proba.shape[1] - 1
        return proba[:, col]
    return proba


def model_logodds(model, X: pd.DataFrame) -> np.ndarray:
    """The model's log-odds for HER2-positive (``decision_function`` where linear)."""
    lo = _logit(_positive_proba(model, X))
    fn = getattr(model, "decision_function", None)
    if fn is not None:
        try:
            d = np.asarray(fn(X), dtype=float)
        except Exception:  # noqa: BLE001 - some meta-estimators lack it; fall back to proba
            log.debug("decision_function failed; using logit(predict_proba)", exc_info=True)
            return lo
        # decision_function is the log-odds only for logistic-type models (not SVMs):
        # use it (more precise far from 0.5) only where it agrees with logit(proba).
        ok = np.abs(lo) < 30
        if d.shape == lo.shape and np.allclose(d[ok], lo[ok], rtol=1e-6, atol=1e-6):
            return d
    return lo


def _as_array(Z) -> np.ndarray:
    if hasattr(Z, "toarray"):
        Z = Z.toarray()
    if isinstance(Z, pd.DataFrame):
        Z = Z.to_numpy()
    return np.asarray(Z, dtype=float)


class _FnTransform:
    """A ``transform``-only wrapper around a function (preprocessing of a composite model)."""

    def __init__(self, fn: Callable[[pd.DataFrame], Any], owners: list[str] | None = None):
        self.fn = fn
        self.owners = owners   # input column of each output column, when known by construction

    def transform(self, X):
        return self.fn(X)


def _split(model):
    """(preprocessing or None, final estimator) of a fitted model.

    Understands Pipelines, fitted searches (``best_estimator_``) and the project's
    ClinicalModel (``prep_`` -> ``columns_`` -> ``coef_`` / ``intercept_``).
    """
    from sklearn.pipeline import Pipeline
    if hasattr(model, "best_estimator_"):
        return _split(model.best_estimator_)
    if isinstance(model, Pipeline):
        if len(model.steps) == 1:
            return _split(model[-1])
        inner_pre, est = _split(model[-1])
        head = model[:-1]
        if inner_pre is None:
            return head, est
        return _FnTransform(lambda X, h=head, p=inner_pre: p.transform(h.transform(X))), est
    if all(callable(getattr(model, a, None)) for a in ("design", "design_variables", "coefficients")):
        # the project's ClinicalModel: its encoded design, each column naming its variable
        return _FnTransform(model.design, model.design_variables()), _LinearView(model)
    return None, model


class _LinearView:
    """coef_ / intercept_ of a model that publishes them through ``coefficients()``."""

    def __init__(self, model):
        c = model.coefficients()
        self.model = model
        self.coef_ = np.asarray([list(c["coefficients"].values())], dtype=float)
        self.intercept_ = np.asarray([c["intercept"]], dtype=float)
        self.classes_ = getattr(model, "classes_", np.array([0, 1]))

    def __getattr__(self, name):
        return getattr(self.model, name)


def dependence_map(pre, data: pd.DataFrame) -> np.ndarray:
    """Boolean (n_inputs, n_outputs): which transformed columns each input column drives.

    Found by perturbation: input column j is replaced by its values rolled by
    one row (and by the values of a shuffled copy); every output column that
    changes in any row depends on j. Exact for per-column transforms (scaling,
    imputation, one-hot encoding, column selection).
    """
    base = _as_array(pre.transform(data))
    n_in = data.shape[1]
    dep = np.zeros((n_in, base.shape[1]), dtype=bool)
    rng = np.random.default_rng(0)
    for j, col in enumerate(data.columns):
        for shift in (1, None):
            alt = data.copy()
            vals = alt[col].to_numpy()
            alt[col] = np.roll(vals, 1) if shift else vals[rng.permutation(len(vals))]
            z = _as_array(pre.transform(alt))
            diff = ~((z == base) | (np.isnan(z) & np.isnan(base)))
            dep[j] |= diff.any(axis=0)
    return dep


# ------------------------------------------------------------------ explainers
_TREE_TYPES = ("RandomForest", "ExtraTrees", "GradientBoosting", "HistGradientBoosting",
               "DecisionTree", "XGB", "LGBM", "CatBoost")


def _is_linear(est) -> bool:
    coef = getattr(est, "coef_", None)
    return (coef is not None and getattr(est, "intercept_", None) is not None
            and np.asarray(coef).ndim in (1, 2) and np.asarray(coef).reshape(-1).size > 0
            and (np.asarray(coef).ndim == 1 or np.asarray(coef).shape[0] == 1))


def _is_tree(est) -> bool:
    return callable(getattr(est, "native_model", None)) or \
        any(t in type(est).__name__ for t in _TREE_TYPES)


def _tree_model(est):
    """What TreeExplainer reads: the library's booster of a
    :class:`~her2core.models.zoo.PortableGBM` (kept as text, rebuilt by ``native_model``),
    otherwise the fitted estimator itself."""
    fn = getattr(est, "native_model", None)
    return fn() if callable(fn) else est


def _tree_scale(est) -> str:
    """The raw output of a tree model: log-odds for boosting, probability for forests."""
    name = type(est).__name__
    return "probability" if ("RandomForest" in name or "ExtraTrees" in name
                             or "DecisionTree" in name) else "log-odds"


def _tree_name(est) -> str:
    kind = getattr(est, "kind", None)
    if callable(getattr(est, "native_model", None)) and kind:
        return {"lightgbm": "LightGBM", "xgboost": "XGBoost"}.get(str(kind), str(kind)) + " booster"
    return type(est).__name__


#: tree SHAP must reproduce the model's own output to this (relative to max(1, |output|))
TREE_ADDITIVITY_TOL = 1e-6


def _probe_rows(background: pd.DataFrame, X: pd.DataFrame, n: int = 200) -> pd.DataFrame:
    """Rows for the dependence map: X plus up to ``n`` background rows (spread evenly)."""
    if len(background) > n:
        background = background.iloc[np.linspace(0, len(background) - 1, n).astype(int)]
    return pd.concat([background, X], axis=0, ignore_index=True)


def _linear_exact(model, pre, est, background: pd.DataFrame, X: pd.DataFrame):
    coef = np.asarray(est.coef_, dtype=float).reshape(-1)
    intercept = float(np.asarray(est.intercept_, dtype=float).reshape(-1)[0])
    Zb = _as_array(pre.transform(background)) if pre is not None else _as_array(background)
    Zx = _as_array(pre.transform(X)) if pre is not None else _as_array(X)
    if Zb.shape[1] != coef.size:
        raise ValueError(f"model inputs ({Zb.shape[1]}) and coefficients ({coef.size}) differ")
    if np.isnan(Zb).any() or np.isnan(Zx).any():
        raise ValueError("the model's inputs contain NaN after its own preprocessing")
    zbar = Zb.mean(axis=0)
    phi_z = coef[None, :] * (Zx - zbar[None, :])
    base = intercept + float(coef @ zbar)
    pred = Zx @ coef + intercept
    owners_known = getattr(pre, "owners", None)
    if pre is None:
        dep = np.eye(X.shape[1], dtype=bool)
    elif owners_known is not None and set(owners_known) <= set(X.columns):
        # ClinicalModel: each encoded column names its variable (col, col=level, col__missing)
        cols = list(X.columns)
        dep = np.zeros((len(cols), len(owners_known)), dtype=bool)
        for k, v in enumerate(owners_known):
            dep[cols.index(v), k] = True
    else:
        dep = dependence_map(pre, _probe_rows(background, X))
    owners = dep.sum(axis=0)
    if np.any((owners > 1) & (coef != 0)):
        raise ValueError("a model input depends on several predictors (interaction); "
                         "not additive per predictor")
    if np.any((owners == 0) & (coef != 0) & (np.abs(phi_z).max(axis=0) > 0)):
        raise ValueError("a model input depends on no predictor but varies")
    phi = phi_z @ dep.T.astype(float)
    # model's own decision function should agree with the reconstruction
    d = model_logodds(model, X)
    if np.max(np.abs(d - pred)) > 1e-8 * max(1.0, np.max(np.abs(pred))):
        raise ValueError("decision_function is not the linear model on the transformed inputs")
    return phi, base, pred


def _additive_probe(model, background: pd.DataFrame, X: pd.DataFrame, *, tol: float = 1e-9):
    """Interventional SHAP for an additive log-odds model, by one-at-a-time replacement."""
    fb = model_logodds(model, background)
    base = float(fb.mean())
    pred = model_logodds(model, X)
    n_b, p = background.shape
    phi = np.zeros((len(X), p))
    for i in range(len(X)):
        rows = []
        for j, col in enumerate(background.columns):
            b = background.copy()
            b[col] = [X.iloc[i][col]] * n_b
            rows.append(b)
        big = pd.concat(rows, axis=0, ignore_index=True)
        f = model_logodds(model, big).reshape(p, n_b)
        phi[i] = (f - fb[None, :]).mean(axis=1)
    err = np.abs(base + phi.sum(axis=1) - pred)
    scale = max(1.0, float(np.max(np.abs(pred))))
    if np.any(err > tol * scale):
        raise ValueError(f"model is not additive in its predictors (error {err.max():.3g})")
    # additivity must hold pairwise too: check one interaction per case cheaply
    return phi, base, pred


def interventional_tree_shap(ensemble, background: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Exact interventional Shapley values of a tree ensemble, (n_rows, n_inputs).

    ``ensemble``: shap's parsed trees (``shap.TreeExplainer(model).model``, a
    ``TreeEnsemble``: one node layout for scikit-learn, LightGBM and XGBoost, leaf values
    on the raw output scale, the positive class's column last). For a row x and a
    background row b, a tree is walked as in Chen, Lundberg and Lee (2022, "Explaining a
    series of models by propagating Shapley values"): where x and b part at a split on a
    feature not met yet, both branches are followed, the feature joining x's set on x's
    branch and b's set on b's; a feature met again follows the branch of the set it is in.
    At a leaf of value v reached with a features from x and c from b, each of x's features
    gets v (a-1)! c! / (a+c)!, each of b's loses v a! (c-1)! / (a+c)!. Averaged over the
    background this is the interventional Shapley value, with no approximation. Background
    rows are walked together (grouped by their branch).
    """
    from math import factorial
    if np.any(np.asarray(ensemble.threshold_types) > 0):
        raise ValueError("categorical tree splits are not supported by the exact walk")
    dtype = getattr(ensemble, "input_dtype", np.float64)
    B = np.asarray(background, dtype=dtype).astype(float)
    Xa = np.asarray(X, dtype=dtype).astype(float)
    n_b, p = B.shape
    left, right = np.asarray(ensemble.children_left), np.asarray(ensemble.children_right)
    default, feat = np.asarray(ensemble.children_default), np.asarray(ensemble.features)
    thr, vals = np.asarray(ensemble.thresholds, float), np.asarray(ensemble.values, float)
    vals = vals[..., -1] if vals.ndim == 3 else vals
    tree_limit = getattr(ensemble, "tree_limit", None)
    n_trees = vals.shape[0] if tree_limit in (None, -1) else min(int(tree_limit), vals.shape[0])
    w = {}

    def weights(a, c):
        if (a, c) not in w:
            n = factorial(a + c)
            w[(a, c)] = (factorial(a - 1) * factorial(c) / n if a else 0.0,
                         factorial(a) * factorial(c - 1) / n if c else 0.0)
        return w[(a, c)]

    out = np.zeros((len(Xa), p))
    for r, x in enumerate(Xa):
        phi = out[r]
        for t in range(n_trees):
            L, R, D, F, T, V = left[t], right[t], default[t], feat[t], thr[t], vals[t]

            def go(node, value):
                if np.isnan(value):
                    return D[node]
                return L[node] if value <= T[node] else R[node]

            stack = [(0, (), (), np.arange(n_b))]
            while stack:
                node, sx, sb, idx = stack.pop()
                if L[node] < 0:                      # a leaf
                    a, c = len(sx), len(sb)
                    if a or c:
                        pos, neg = weights(a, c)
                        share = V[node] * len(idx) / n_b
                        for j in sx:
                            phi[j] += pos * share
                        for j in sb:
                            phi[j] -= neg * share
                    continue
                j = int(F[node])
                xd = go(node, x[j])
                if j in sx:
                    stack.append((xd, sx, sb, idx))
                    continue
                bj = B[idx, j]
                bd = np.where(np.isnan(bj), D[node], np.where(bj <= T[node], L[node], R[node]))
                if j in sb:
                    for child in (L[node], R[node]):
                        sel = idx[bd == child]
                        if len(sel):
                            stack.append((child, sx, sb, sel))
                    continue
                same, other = idx[bd == xd], idx[bd != xd]
                if len(same):
                    stack.append((xd, sx, sb, same))
                if len(other):
                    stack.append((xd, sx + (j,), sb, other))
                    ob = bd[bd != xd]
                    for child in np.unique(ob):
                        stack.append((int(child), sx, sb + (j,), other[ob == child]))
    return out


def _tree(model, pre, est, background: pd.DataFrame, X: pd.DataFrame, max_background: int):
    """Interventional TreeExplainer on the model's own inputs, summed back to the
    predictors. Exact: base + contributions must reproduce the model's own output
    (log-odds for boosting, probability for forests) to :data:`TREE_ADDITIVITY_TOL`,
    else ValueError (the caller then tries the next method)."""
    import shap
    Zb = _as_array(pre.transform(background)) if pre is not None else _as_array(background)
    Zx = _as_array(pre.transform(X)) if pre is not None else _as_array(X)
    if len(Zb) > max_background:
        rng = np.random.default_rng(0)
        Zb = Zb[rng.choice(len(Zb), max_background, replace=False)]
    expl = shap.TreeExplainer(_tree_model(est), data=Zb,
                              feature_perturbation="interventional", model_output="raw")
    sv = expl.shap_values(Zx, check_additivity=False)
    ev = np.asarray(expl.expected_value, dtype=float).reshape(-1)
    if isinstance(sv, list):  # older shap: one array per class
        sv = sv[-1]
    sv = np.asarray(sv, dtype=float)
    if sv.ndim == 3:  # (n, p, classes)
        sv = sv[:, :, -1]
        ev = ev[-1:]
    base = float(ev[-1])
    scale = _tree_scale(est)
    pred_model = _positive_proba(model, X) if scale == "probability" else model_logodds(model, X)
    tol = TREE_ADDITIVITY_TOL * max(1.0, float(np.max(np.abs(pred_model))))
    err = np.abs(base + sv.sum(axis=1) - pred_model)
    # shap's C interventional algorithm loses path weight when a feature is split on more
    # than once along a root-to-leaf path (shap issue 3267; seen here with random forests):
    # such trees, or any row failing additivity, go through the exact walk instead
    walked = _repeats_a_split(expl.model) or bool(np.any(err > tol))
    if walked:
        sv = interventional_tree_shap(expl.model, Zb, Zx)
        err = np.abs(base + sv.sum(axis=1) - pred_model)
    if np.any(err > tol):
        raise ValueError(f"TreeExplainer contributions miss the model's {scale} by "
                         f"{float(err.max()):.3g}")
    dep = (np.eye(X.shape[1], dtype=bool) if pre is None else
           dependence_map(pre, _probe_rows(background, X)))
    owners = dep.sum(axis=0)
    used_inputs = np.abs(sv).max(axis=0) > 0 if len(sv) else np.zeros(dep.shape[1], bool)
    if np.any((owners > 1) & used_inputs):
        raise ValueError("a model input depends on several predictors: contributions cannot "
                         "be summed back to one predictor")
    phi = sv @ dep.T.astype(float)
    return phi, base, pred_model, scale, walked


def _repeats_a_split(ensemble) -> bool:
    """True when some tree splits on one feature twice along a root-to-leaf path."""
    left, right = np.asarray(ensemble.children_left), np.asarray(ensemble.children_right)
    feat = np.asarray(ensemble.features)
    for t in range(left.shape[0]):
        stack = [(0, frozenset())]
        while stack:
            node, seen = stack.pop()
            if node < 0 or left[t, node] < 0:
                continue
            j = int(feat[t, node])
            if j in seen:
                return True
            seen = seen | {j}
            stack += [(int(left[t, node]), seen), (int(right[t, node]), seen)]
    return False


def _kernel(model, background: pd.DataFrame, X: pd.DataFrame, *, time_budget_s: float,
            n_summary: int, random_state: int):
    import shap
    cols = list(background.columns)
    dtypes = background.dtypes

    def f(a: np.ndarray) -> np.ndarray:
        df = pd.DataFrame(a, columns=cols)
        for c in cols:
            if pd.api.types.is_numeric_dtype(dtypes[c]):
                df[c] = pd.to_numeric(df[c], errors="coerce")
        return model_logodds(model, df)

    numeric = all(pd.api.types.is_numeric_dtype(t) for t in dtypes)
    k = int(min(n_summary, len(background)))
    if numeric and not background.isna().any().any():
        summary = shap.kmeans(background.to_numpy(dtype=float), k)
        n_bg = k
    else:
        summary = shap.sample(background.to_numpy(dtype=object), k, random_state=random_state)
        n_bg = len(summary)
    t0 = time.perf_counter()
    f(background.iloc[:n_bg].to_numpy(dtype=object if not numeric else float))
    per_row = max((time.perf_counter() - t0) / max(n_bg, 1), 1e-6)
    p = len(cols)
    budget_samples = int(time_budget_s / (per_row * n_bg * max(len(X), 1)))
    nsamples = int(np.clip(budget_samples, 2 * p + 2, 2 * p + 2048))
    if budget_samples < 2 * p + 2:
        log.warning("KernelExplainer: time budget %.0f s allows only %d coalitions; using %d",
                    time_budget_s, budget_samples, nsamples)
    expl = shap.KernelExplainer(f, summary, link="identity")
    Xa = X.to_numpy(dtype=float) if numeric else X.to_numpy(dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sv = np.asarray(expl.shap_values(Xa, nsamples=nsamples, silent=True), dtype=float)
    if sv.ndim == 3:
        sv = sv[:, :, 0]
    base = float(np.asarray(expl.expected_value).reshape(-1)[0])
    pred = model_logodds(model, X)
    note = (f"Approximate: model-agnostic KernelExplainer with {nsamples} coalition samples "
            f"against a {n_bg}-point summary of the background "
            f"({'k-means' if numeric else 'random sample'}); contributions add up to the "
            f"prediction but are estimates, not exact Shapley values.")
    return sv, base, pred, note


def explain_model(model, background: pd.DataFrame, X: pd.DataFrame, *,
                  case_ids: Sequence[str] | None = None, method: str = "auto",
                  time_budget_s: float = 30.0, n_summary: int = 10,
                  max_tree_background: int = 200, random_state: int = 0,
                  provenance: dict[str, Any] | None = None,
                  only_used: bool = True) -> CohortContributions:
    """SHAP contributions of every predictor (column of ``X``) for every row of ``X``.

    Args:
        model: a fitted scikit-learn classifier or Pipeline taking ``X``'s columns.
        background: reference cases (typically the training set), same columns.
        X: the cases to explain.
        method: "auto", "linear", "additive", "tree" or "kernel".
        time_budget_s: bound for the model-agnostic explainer.
        only_used: list only the predictors the model keeps (its ``used_variables()``,
            when it has one); the others (contribution 0) are named in ``left_out``.
    """
    if list(background.columns) != list(X.columns):
        raise ValueError("background and X must have the same columns in the same order")
    if len(background) == 0:
        raise ValueError("background is empty")
    ids = list(case_ids) if case_ids is not None else [str(i) for i in X.index]
    if hasattr(model, "second_level") and hasattr(model, "final_estimator"):
        # stacked nomogram: explain its second level (dscore_* + clinical predictors)
        background = model.second_level(background)
        X = model.second_level(X)
        model = model.final_estimator
    background = background.reset_index(drop=True)
    Xr = X.reset_index(drop=True)
    pre, est = _split(model)
    scale, note, approximate = "log-odds", "", False
    used = None
    tried: list[str] = []
    order = ([method] if method != "auto" else
             (["linear", "additive", "kernel"] if _is_linear(est) else
              ["tree", "additive", "kernel"] if _is_tree(est) else ["additive", "kernel"]))
    for m in order:
        try:
            if m == "linear":
                phi, base, pred = _linear_exact(model, pre, est, background, Xr)
                note = ("Exact: coefficient x (input - background mean) on the model's "
                        "log-odds scale, summed back to each predictor "
                        "(= shap.LinearExplainer, interventional).")
            elif m == "additive":
                phi, base, pred = _additive_probe(model, background, Xr)
                note = ("Exact: the model's log-odds are additive in its predictors; "
                        "interventional Shapley values by one-at-a-time replacement.")
            elif m == "tree":
                phi, base, pred, scale, walked = _tree(model, pre, est, background, Xr,
                                                       max_tree_background)
                how = ("interventional Shapley values by her2core's exact tree walk on the "
                       "trees shap.TreeExplainer parsed (its own C code is wrong for trees "
                       "that split on a feature twice along a path)") if walked else \
                    "shap.TreeExplainer, interventional"
                note = (f"Exact: {how}, {_tree_name(est)}, {scale} scale, against "
                        f"{min(len(background), max_tree_background)} background cases; base "
                        "value + contributions = the model's "
                        f"{'probability' if scale == 'probability' else 'log-odds'} (checked).")
            elif m == "kernel":
                phi, base, pred, note = _kernel(model, background, Xr,
                                                time_budget_s=time_budget_s,
                                                n_summary=n_summary, random_state=random_state)
                approximate = True
            else:
                raise ValueError(f"unknown SHAP method {m!r}; use auto, linear, additive, tree or kernel")
            used = m
            break
        except ValueError as exc:
            if method != "auto":
                raise
            tried.append(f"{m}: {exc}")
            log.info("SHAP %s path not applicable (%s); trying the next", m, exc)
    if used is None:
        raise ValueError("no SHAP method applies: " + "; ".join(tried))
    phi = np.asarray(phi, dtype=float)
    predictors = [str(c) for c in X.columns]
    keep = list(range(len(predictors)))
    kept_fn = getattr(model, "used_variables", None)
    if only_used and callable(kept_fn):
        # an input the final level dropped (e.g. a D-score the second level did not keep)
        # contributes nothing; listing it would show its value as if it were a predictor
        kept = {str(c) for c in kept_fn()}
        keep = [j for j, c in enumerate(predictors)
                if c in kept or (phi.size and np.max(np.abs(phi[:, j])) > 1e-12)]
    left_out = [predictors[j] for j in range(len(predictors)) if j not in keep]
    values = X.reset_index(drop=True).iloc[:, keep].copy()
    predictors = [predictors[j] for j in keep]
    return CohortContributions(
        case_ids=ids, predictors=predictors, values=values,
        contributions=phi[:, keep], groups=[predictor_group(c) for c in predictors],
        base_value=float(base), predictions=np.asarray(pred, dtype=float), method=used,
        approximate=approximate, note=note, scale=scale, provenance=dict(provenance or {}),
        left_out=left_out)


def explain_patient(model, background: pd.DataFrame, x: pd.DataFrame | pd.Series, *,
                    case_id: str | None = None, **kwargs) -> PatientContributions:
    """One patient's contributions (waterfall)."""
    if isinstance(x, pd.Series):
        x = x.to_frame().T.astype(background.dtypes.to_dict(), errors="ignore")
    if len(x) != 1:
        raise ValueError(f"explain_patient takes one row, got {len(x)}")
    cid = case_id if case_id is not None else str(x.index[0])
    return explain_model(model, background, x, case_ids=[cid], **kwargs).patient(0)
