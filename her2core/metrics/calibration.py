"""Calibration of predicted probabilities.

* ``calibration_intercept_slope``: calibration-in-the-large, R
  ``glm(y ~ 1, offset = qlogis(p), family = binomial)``, and the calibration
  slope, R ``glm(y ~ qlogis(p), family = binomial)`` (with its own intercept).
  Both are maximum-likelihood fits by IRLS to 1e-12, with Wald 95% CIs.
* ``brier_score``: mean((p - y)^2).
* ``hosmer_lemeshow``: ResourceSelection ``hoslem.test`` grouping: type-7
  quantile breaks of the fitted values at 0, 1/g, ..., 1, duplicates removed,
  right-closed intervals with the lowest included; X^2 = sum over groups and
  both outcomes of (O - E)^2 / E; df = G - 2 with G the number of non-empty
  groups actually formed. hoslem.test uses the requested g for df, and gives
  NaN when an interval between unique breaks is empty; the two differ only
  when tied fitted values merge or empty intervals, and then G - 2 is the
  honest count (``groups_requested`` keeps g).
* ``binned_calibration``: observed fraction per bin (quantile or uniform bins)
  with Wilson CIs; ``loess_calibration``: statsmodels ``lowess`` of y on p
  (frac 2/3, no robustness iterations, delta = 1% of the range: R
  ``lowess(p, y, iter=0)`` as used by rms ``val.prob``).

Probabilities of exactly 0 or 1 have an infinite logit; they are clipped to
[1e-12, 1 - 1e-12] for the logistic fits (and the clipping is reported).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats
from scipy.special import expit, logit

from her2core.metrics._common import as_binary, as_score
from her2core.metrics.thresholds import wilson_ci

log = logging.getLogger(__name__)
EPS = 1e-12


def check_probabilities(p, n: int | None = None, name: str = "p") -> np.ndarray:
    arr = as_score(p, n, name)
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{name} must be probabilities in [0, 1]; found values from "
                         f"{arr.min():g} to {arr.max():g}")
    return arr


def is_probability(x) -> bool:
    arr = np.asarray(x, dtype=float)
    arr = arr[np.isfinite(arr)]
    return arr.size > 0 and arr.min() >= 0 and arr.max() <= 1


@dataclass
class LogisticFit:
    coef: np.ndarray
    cov: np.ndarray
    converged: bool
    n_iter: int
    deviance: float


def logistic_fit(y, X, offset=None, max_iter: int = 100, tol: float = 1e-12) -> LogisticFit:
    """Unpenalised logistic regression by IRLS (R ``glm(family=binomial)``).

    ``X`` must include the intercept column if one is wanted. Returns the
    coefficients, their covariance (inverse Fisher information) and the
    deviance."""
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    off = np.zeros(y.size) if offset is None else np.asarray(offset, dtype=float)
    beta = np.zeros(X.shape[1])
    # start as glm does: mu = (y + 0.5) / 2
    mu = (y + 0.5) / 2
    eta = logit(mu)
    dev_old = np.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        w = mu * (1 - mu)
        z = eta - off + (y - mu) / np.maximum(w, 1e-300)
        XtW = X.T * w
        try:
            beta = np.linalg.solve(XtW @ X, XtW @ z)
        except np.linalg.LinAlgError:
            beta = np.linalg.lstsq(XtW @ X, XtW @ z, rcond=None)[0]
        eta = X @ beta + off
        mu = np.clip(expit(eta), 1e-15, 1 - 1e-15)
        dev = -2 * np.sum(y * np.log(mu) + (1 - y) * np.log(1 - mu))
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            converged = True
            break
        dev_old = dev
    w = mu * (1 - mu)
    info = (X.T * w) @ X
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.full_like(info, np.nan)
    return LogisticFit(coef=beta, cov=cov, converged=converged, n_iter=it, deviance=float(dev))


def _logit_clipped(p: np.ndarray) -> tuple[np.ndarray, int]:
    n_clip = int(np.sum((p < EPS) | (p > 1 - EPS)))
    return logit(np.clip(p, EPS, 1 - EPS)), n_clip


@dataclass
class CalibrationFit:
    intercept: float  # calibration-in-the-large (slope fixed at 1)
    intercept_ci: tuple[float, float]
    slope: float
    slope_ci: tuple[float, float]
    slope_model_intercept: float  # intercept of glm(y ~ logit(p))
    n: int
    n_clipped: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["intercept_ci"] = list(self.intercept_ci)
        d["slope_ci"] = list(self.slope_ci)
        return d


def calibration_intercept_slope(y, p, level: float = 0.95) -> CalibrationFit:
    """Calibration intercept (glm(y ~ 1, offset=logit(p))) and slope
    (glm(y ~ logit(p))), with Wald CIs."""
    y = as_binary(y)
    p = check_probabilities(p, y.size)
    lp, n_clip = _logit_clipped(p)
    if n_clip:
        log.warning("%d probabilities of exactly 0 or 1 clipped to [1e-12, 1-1e-12] "
                    "for the calibration fit", n_clip)
    one = np.ones((y.size, 1))
    z = stats.norm.ppf(1 - (1 - level) / 2)
    warn: list[str] = []
    f0 = logistic_fit(y, one, offset=lp)
    se0 = float(np.sqrt(f0.cov[0, 0]))
    a = float(f0.coef[0])
    if np.ptp(lp) == 0:
        b = se1 = b0 = float("nan")
        warn.append("all predictions are equal: the calibration slope is undefined")
    else:
        f1 = logistic_fit(y, np.column_stack([one, lp]))
        se1 = float(np.sqrt(f1.cov[1, 1]))
        b, b0 = float(f1.coef[1]), float(f1.coef[0])
        mu = expit(f1.coef[0] + f1.coef[1] * lp)
        if not f1.converged or np.any((mu < 1e-10) | (mu > 1 - 1e-10)):
            warn.append("the outcome is (quasi-)perfectly separated by the predictions: the "
                        "slope estimate is unreliable (R glm warns 'fitted probabilities "
                        "numerically 0 or 1 occurred')")
    if not f0.converged:
        warn.append("calibration-in-the-large fit did not converge")
    for w in warn:
        log.warning("%s", w)
    return CalibrationFit(intercept=a, intercept_ci=(float(a - z * se0), float(a + z * se0)),
                          slope=b, slope_ci=(float(b - z * se1), float(b + z * se1)),
                          slope_model_intercept=b0, n=int(y.size), n_clipped=n_clip,
                          warnings=warn)


def calibration_slope(y, p) -> float:
    """Slope only (fast path used inside bootstrap loops)."""
    lp, _ = _logit_clipped(np.asarray(p, dtype=float))
    f = logistic_fit(y, np.column_stack([np.ones(lp.size), lp]), tol=1e-10)
    return float(f.coef[1])


def brier_score(y, p) -> float:
    y = as_binary(y)
    p = check_probabilities(p, y.size)
    return float(np.mean((p - y) ** 2))


@dataclass
class HosmerLemeshow:
    statistic: float
    df: int
    p: float
    groups: int
    groups_requested: int
    breaks: list[float]
    observed: list[list[float]]  # per group [y0, y1]
    expected: list[list[float]]  # per group [E0, E1]
    counts: list[int]
    note: str | None = None  # set when the test cannot be computed (p is then NaN)

    def to_dict(self) -> dict:
        return asdict(self)


def hosmer_lemeshow(y, p, g: int = 10) -> HosmerLemeshow:
    """Hosmer-Lemeshow goodness-of-fit test, ResourceSelection grouping
    (see the module docstring)."""
    y = as_binary(y).astype(float)
    p = check_probabilities(p, y.size)
    if g < 3:
        raise ValueError("g must be at least 3 (df = g - 2)")
    # fewer than 3 groups (tied fitted values): p is NaN and ``note`` says why
    qq = np.unique(np.quantile(p, np.linspace(0, 1, g + 1), method="linear"))
    if qq.size < 2:
        return HosmerLemeshow(statistic=float("nan"), df=-2, p=float("nan"), groups=0,
                              groups_requested=g, breaks=qq.tolist(), observed=[], expected=[],
                              counts=[], note="all fitted values are equal: no groups can be "
                                              "formed")
    # R cut(right=TRUE, include.lowest=TRUE): (b_{k-1}, b_k], first [b_0, b_1]
    grp = np.searchsorted(qq, p, side="left") - 1
    grp[grp < 0] = 0
    n_groups = qq.size - 1
    cnt = np.bincount(grp, minlength=n_groups)
    o1 = np.bincount(grp, weights=y, minlength=n_groups)
    e1 = np.bincount(grp, weights=p, minlength=n_groups)
    o0, e0 = cnt - o1, cnt - e1
    keep = cnt > 0
    obs = np.column_stack([o0, o1])[keep]
    exp = np.column_stack([e0, e1])[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        chisq = float(np.sum((obs - exp) ** 2 / exp))
    G = int(keep.sum())
    df = G - 2
    note = None
    if G < 3:
        note = (f"only {G} group(s) of fitted values could be formed (too many ties); "
                "the Hosmer-Lemeshow test needs at least 3")
    pval = float(stats.chi2.sf(chisq, df)) if note is None else float("nan")
    return HosmerLemeshow(statistic=chisq, df=df, p=pval, groups=G, groups_requested=g,
                          breaks=qq.tolist(), observed=obs.tolist(), expected=exp.tolist(),
                          counts=cnt[keep].astype(int).tolist(), note=note)


@dataclass
class BinnedCalibration:
    mean_predicted: list[float]
    observed: list[float]
    lower: list[float]
    upper: list[float]
    count: list[int]
    strategy: str
    n_bins: int

    def to_dict(self) -> dict:
        return asdict(self)


def binned_calibration(y, p, n_bins: int = 10, strategy: str = "quantile",
                       level: float = 0.95) -> BinnedCalibration:
    """Observed event fraction per bin of predicted probability, with Wilson
    CIs. ``strategy`` "quantile" (equal counts) or "uniform" (equal widths)."""
    y = as_binary(y)
    p = check_probabilities(p, y.size)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1), method="linear"))
    elif strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    else:
        raise ValueError("strategy must be 'quantile' or 'uniform'")
    grp = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, max(edges.size - 2, 0))
    out = BinnedCalibration([], [], [], [], [], strategy, n_bins)
    for k in range(max(edges.size - 1, 1)):
        sel = grp == k
        nk = int(sel.sum())
        if nk == 0:
            continue
        ok = int(y[sel].sum())
        lo, hi = wilson_ci(ok, nk, level)
        out.mean_predicted.append(float(p[sel].mean()))
        out.observed.append(ok / nk)
        out.lower.append(lo)
        out.upper.append(hi)
        out.count.append(nk)
    return out


@dataclass
class SmoothCalibration:
    predicted: list[float]
    observed: list[float]
    frac: float
    method: str = "statsmodels lowess, it=0, delta=0.01*range (R lowess)"

    def to_dict(self) -> dict:
        return asdict(self)


def loess_calibration(y, p, frac: float = 2 / 3, n_points: int | None = 200) -> SmoothCalibration:
    """LOWESS calibration curve (observed vs predicted), at up to ``n_points``
    distinct predicted values (all when None)."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    y = as_binary(y).astype(float)
    p = check_probabilities(p, y.size)
    fit = lowess(y, p, frac=frac, it=0, delta=0.01 * float(np.ptp(p)), return_sorted=True)
    xs, ys = fit[:, 0], fit[:, 1]
    if n_points is not None and xs.size > n_points:
        idx = np.unique(np.linspace(0, xs.size - 1, n_points).round().astype(int))
        xs, ys = xs[idx], ys[idx]
    return SmoothCalibration(predicted=xs.tolist(), observed=np.clip(ys, 0, 1).tolist(),
                             frac=frac)
