"""Univariable and multivariable odds ratios with Wald confidence intervals.

Maximum-likelihood logistic regression by IRLS (her2core.metrics.calibration
``logistic_fit``, the same fit as R ``glm(family = binomial)`` and rms ``lrm``):
OR = exp(beta), CI = exp(beta +- z SE) with SE from the inverse information,
p = two-sided Wald test (R ``summary(glm)`` / ``print(lrm)``). Categorical
predictors use treatment contrasts against their first level (R's default), one
row per non-reference level; continuous predictors are per unit of the cohort
column. Univariable fits use the cases with that predictor; the multivariable
fit the complete cases over all its predictors (``n`` says how many).
A fit that does not converge, or has a coefficient beyond +-15 on the log-odds
scale, is flagged as (quasi-)separated: its odds ratios are not interpretable.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from her2core.metrics.calibration import logistic_fit
from her2core.metrics.table1 import is_categorical

__all__ = ["OddsRatioRow", "OddsRatioTable", "design_matrix", "odds_ratio_table", "fit_logistic"]

SEPARATION_LIMIT = 15.0


def design_matrix(data: pd.DataFrame, predictors: Sequence[str], categorical: Iterable[str] = (),
                  levels: dict | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """(X with an intercept column, {term: variable}, {variable: levels}) with treatment
    contrasts. ``levels``: fixed levels per categorical variable (from a training set), so
    that a validation set gets the same columns."""
    cat = set(categorical)
    cols = {"(Intercept)": np.ones(len(data))}
    term_var: dict[str, str] = {}
    lv_out: dict[str, list] = {}
    for v in predictors:
        s = data[v]
        if v in cat or (levels and v in levels) or is_categorical(s):
            if levels and v in levels:
                lv = list(levels[v])
            elif isinstance(s.dtype, pd.CategoricalDtype):
                lv = [x for x in s.cat.categories if (s == x).any()]
            else:
                lv = sorted(s.dropna().unique().tolist(), key=lambda x: (str(type(x)), x))
            lv_out[v] = lv
            for x in lv[1:]:
                name = f"{v}={_lab(x)} vs {_lab(lv[0])}"
                col = np.array((s == x).astype(float), dtype=float)
                col[s.isna().to_numpy()] = np.nan
                cols[name] = col
                term_var[name] = v
        else:
            cols[v] = pd.to_numeric(s, errors="coerce").to_numpy(float)
            term_var[v] = v
    return pd.DataFrame(cols, index=data.index), term_var, lv_out


def _lab(x) -> str:
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return str(int(x))
    return str(x)


@dataclass
class LogisticModel:
    """A fitted logistic regression (coefficients by term)."""
    terms: list[str]
    coef: np.ndarray
    cov: np.ndarray
    predictors: list[str]
    levels: dict
    converged: bool
    n: int
    events: int
    deviance: float
    separated: bool

    def linear_predictor(self, data: pd.DataFrame) -> np.ndarray:
        X, _, _ = design_matrix(data, self.predictors, levels=self.levels)
        X = X.reindex(columns=self.terms, fill_value=0.0)
        return X.to_numpy(float) @ self.coef

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        from scipy.special import expit
        return expit(self.linear_predictor(data))


def fit_logistic(data: pd.DataFrame, y, predictors: Sequence[str],
                 categorical: Iterable[str] = ()) -> LogisticModel:
    """Unpenalised logistic regression on the complete cases of ``predictors``."""
    X, term_var, lv = design_matrix(data, predictors, categorical)
    yv = pd.Series(np.asarray(y, dtype=float), index=data.index)
    ok = X.notna().all(axis=1) & yv.notna()
    Xo, yo = X[ok], yv[ok].to_numpy()
    # drop dummy columns that are constant in the complete cases (a level not present)
    keep = ["(Intercept)"] + [c for c in Xo.columns[1:] if np.ptp(Xo[c].to_numpy()) > 0]
    Xo = Xo[keep]
    f = logistic_fit(yo, Xo.to_numpy(float))
    sep = (not f.converged) or bool(np.any(np.abs(f.coef[1:]) > SEPARATION_LIMIT))
    return LogisticModel(terms=list(Xo.columns), coef=f.coef, cov=f.cov, predictors=list(predictors),
                         levels=lv, converged=f.converged, n=int(ok.sum()), events=int(yo.sum()),
                         deviance=f.deviance, separated=sep)


@dataclass
class OddsRatioRow:
    variable: str
    term: str
    uni_or: float
    uni_lower: float
    uni_upper: float
    uni_p: float
    uni_n: int
    multi_or: float = float("nan")
    multi_lower: float = float("nan")
    multi_upper: float = float("nan")
    multi_p: float = float("nan")
    in_multivariable: bool = False
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class OddsRatioTable:
    rows: list[OddsRatioRow]
    multivariable_predictors: list[str]
    multivariable_n: int
    multivariable_events: int
    level: float
    notes: list[str] = field(default_factory=list)
    method: str = ("logistic regression (ML, as R glm / rms lrm); OR = exp(beta), Wald CI and "
                   "p; categorical: treatment contrasts against the first level")

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.to_dict() for r in self.rows])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows"] = [r.to_dict() for r in self.rows]
        return d


def _wald(model: LogisticModel, term: str, z: float):
    i = model.terms.index(term)
    b, se = float(model.coef[i]), float(np.sqrt(model.cov[i, i]))
    p = float(2 * stats.norm.sf(abs(b / se))) if se > 0 and np.isfinite(se) else float("nan")
    with np.errstate(over="ignore"):  # separated fits: infinite bounds, flagged in the note
        return float(np.exp(b)), float(np.exp(b - z * se)), float(np.exp(b + z * se)), p


def odds_ratio_table(data: pd.DataFrame, y, predictors: Sequence[str],
                     multivariable: Sequence[str] | None = None, *,
                     categorical: Iterable[str] = (), level: float = 0.95) -> OddsRatioTable:
    """Univariable OR of every predictor and multivariable OR of ``multivariable``
    (default: all predictors) in one table (see the module docstring)."""
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    yv = pd.Series(np.asarray(y, dtype=float), index=data.index)
    multivariable = list(predictors if multivariable is None else multivariable)
    rows: list[OddsRatioRow] = []
    notes: list[str] = []
    for v in predictors:
        if data[v].nunique(dropna=True) < 2:
            rows.append(OddsRatioRow(v, v, *(float("nan"),) * 4, int(data[v].notna().sum()),
                                     note=f"{v} has a single level: no odds ratio"))
            notes.append(rows[-1].note)
            continue
        m = fit_logistic(data, yv, [v], categorical)
        for t in m.terms[1:]:
            o, lo, hi, p = _wald(m, t, z)
            note = "separation: OR not interpretable" if m.separated else ""
            rows.append(OddsRatioRow(v, t, o, lo, hi, p, m.n, note=note))
    multi = [v for v in multivariable if data[v].nunique(dropna=True) >= 2]
    mn = me = 0
    if multi:
        mm = fit_logistic(data, yv, multi, categorical)
        mn, me = mm.n, mm.events
        if mm.separated:
            notes.append("the multivariable model is (quasi-)separated: its odds ratios are "
                         "not interpretable")
        for r in rows:
            if r.term in mm.terms:
                r.multi_or, r.multi_lower, r.multi_upper, r.multi_p = _wald(mm, r.term, z)
                r.in_multivariable = True
    return OddsRatioTable(rows=rows, multivariable_predictors=multi, multivariable_n=mn,
                          multivariable_events=me, level=level, notes=notes)
