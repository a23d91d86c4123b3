"""Bias-corrected calibration curve (rms ``calibrate``) and rms ``val.prob`` statistics.

``calibrate_boot`` is the algorithm of rms ``calibrate(fit, method = "boot", B)``
for a binary logistic model (calibrate.default + predab.resample):

1. ``predy``: 50 equally spaced predicted probabilities from the 5th smallest to
   the 5th largest fitted value (rms's default grid), unless given;
2. the apparent curve: ``lowess(p, y, iter = 0)`` (f = 2/3, delta = 1 % of the
   range) interpolated linearly at ``predy`` (R ``approx``, NA outside the range);
   the calibration error is curve - predy;
3. for each bootstrap resample (drawn with replacement, as R ``sample(n,
   replace = TRUE)``) the *whole* model is refitted (``fit`` is a callable doing
   every step, variable selection included), and the error is measured on the
   resample (training) and on the original cases (test);
4. optimism = mean(training error) - mean(test error), averaged per grid point over
   the resamples where both are defined (predab.resample sets NAs aside);
   bias-corrected curve = apparent curve - optimism.

``print(calibrate)``'s mean absolute error, mean squared error and 0.9 quantile of
the absolute error are those of the bias-corrected curve interpolated at the
fitted values. With the same resample indices (``indices``) the numbers equal
rms's to rounding; with a seed the resamples differ from R's.

``val_prob`` gives the 18 statistics of rms ``val.prob(p, y)`` (Dxy, C, Nagelkerke
R2, D, U, Q, Brier, calibration intercept and slope, Emax / E90 / Eavg of the
lowess curve, Spiegelhalter z). As rms 6.5, C and Dxy are those of the logistic
recalibration's probabilities rounded to multiples of 0.002 (``C_exact`` is the
plain AUC of p). rms 6.5 returns NA for "D:p" (its
``lrm.fit(maxit = 1)`` reports no p); here it is the chi-squared(1) p of the
likelihood-ratio statistic "D:Chi-sq".
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from scipy import stats
from scipy.special import expit, logit

from her2core.metrics._common import as_binary
from her2core.metrics.calibration import check_probabilities, logistic_fit
from her2core.metrics.roc import auc as _auc

log = logging.getLogger(__name__)

__all__ = ["CalibrateResult", "ValProb", "calibrate_boot", "val_prob", "r_lowess",
           "approx_first", "default_predy", "bootstrap_indices"]


def r_lowess(x, y) -> tuple[np.ndarray, np.ndarray]:
    """R ``lowess(x, y, iter = 0)``: sorted x and the fitted values."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    fit = lowess(y, x, frac=2 / 3, it=0, delta=0.01 * float(np.ptp(x)), return_sorted=True)
    return fit[:, 0], fit[:, 1]


def approx_first(x, y, xout) -> np.ndarray:
    """R ``approx(x, y, xout, ties = function(v) v[1])``: linear, NaN outside [min, max]."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    o = np.argsort(x, kind="stable")
    x, y = x[o], y[o]
    ux, first = np.unique(x, return_index=True)
    uy = y[first]
    xout = np.asarray(xout, float)
    if ux.size == 1:
        out = np.where(xout == ux[0], uy[0], np.nan)
        return out.astype(float)
    out = np.interp(xout, ux, uy)
    out[(xout < ux[0]) | (xout > ux[-1])] = np.nan
    return out


def _approx_mean(x, y, xout) -> np.ndarray:
    """R ``approx(x, y, xout, ties = mean)``."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, weights=y) / np.bincount(inv)
    out = np.interp(np.asarray(xout, float), ux, uy)
    out[(xout < ux[0]) | (xout > ux[-1])] = np.nan
    return out


def default_predy(p) -> np.ndarray:
    """rms's grid: seq(p[5], p[n - 4], length = 50) of the sorted fitted values."""
    s = np.sort(np.asarray(p, float))
    n = s.size
    if n < 11:
        raise ValueError("the calibration curve needs more than 10 cases")
    return np.linspace(s[4], s[n - 5], 50)


def bootstrap_indices(n: int, B: int, seed: int | None) -> np.ndarray:
    """(B, n) resample indices (0-based)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(B, n))


def _cal_error(p, y, predy):
    xs, ys = r_lowess(p, y)
    cal = approx_first(xs, ys, predy)
    return cal - predy, cal


@dataclass
class CalibrateResult:
    predy: list[float]
    apparent: list[float]          # calibrated.orig
    corrected: list[float]         # calibrated.corrected
    optimism: list[float]
    n_used: list[int]              # resamples contributing per grid point
    B: int
    n_failed: int
    n: int
    mean_absolute_error: float
    mean_squared_error: float
    quantile90_absolute_error: float
    seed: int | None = None
    method: str = ("rms calibrate(method='boot'): lowess(iter=0) at 50 predicted values, "
                   "whole model refitted per resample")
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate_boot(fit: Callable, X, y, *, B: int = 200, seed: int | None = 20240601,
                   indices: np.ndarray | None = None, predy=None,
                   progress: Callable | None = None) -> CalibrateResult:
    """Bias-corrected calibration curve of a refittable model (see the module docstring).

    ``fit(X_sub, y_sub)`` fits the whole model on the rows given and returns a function
    ``predict(X_any) -> probabilities``. ``X`` is anything that supports row selection
    with an integer array through ``X[idx]`` (numpy) or ``X.iloc[idx]`` (pandas).
    ``indices``: (B, n) 0-based resample indices (for comparisons with R)."""
    yv = as_binary(y).astype(float)
    n = yv.size

    def rows(idx):
        return X.iloc[idx] if hasattr(X, "iloc") else X[idx]

    pred0 = fit(X, yv)
    p0 = check_probabilities(pred0(X), n)
    grid = default_predy(p0) if predy is None else np.asarray(predy, float)
    err0, cal0 = _cal_error(p0, yv, grid)
    if indices is None:
        indices = bootstrap_indices(n, B, seed)
    indices = np.asarray(indices, dtype=int)
    train_sum = np.zeros(grid.size)
    test_sum = np.zeros(grid.size)
    num = np.zeros(grid.size, dtype=int)
    failed = 0
    for b, idx in enumerate(indices):
        try:
            pr = fit(rows(idx), yv[idx])
            pb = np.asarray(pr(X), float)
        except Exception as exc:  # noqa: BLE001 - a failed refit is counted, as rms does
            log.debug("calibrate: resample %d failed: %s", b, exc)
            failed += 1
            continue
        if not np.all(np.isfinite(pb)):
            failed += 1
            continue
        tr, _ = _cal_error(pb[idx], yv[idx], grid)
        te, _ = _cal_error(pb, yv, grid)
        ok = np.isfinite(tr + te)
        num += ok
        train_sum[ok] += tr[ok]
        test_sum[ok] += te[ok]
        if progress:
            progress(b + 1, len(indices), "calibration bootstrap")
    with np.errstate(invalid="ignore", divide="ignore"):
        optimism = train_sum / num - test_sum / num
    corrected = cal0 - optimism
    ok = np.isfinite(corrected)
    notes = []
    if failed:
        notes.append(f"{failed} of {len(indices)} refits failed and were left out")
    if ok.sum() >= 2:
        cc = _approx_mean(grid[ok], corrected[ok], p0)
        err = p0 - cc
        e = err[np.isfinite(err)]
        mae, mse = float(np.mean(np.abs(e))), float(np.mean(e ** 2))
        q90 = float(np.quantile(np.abs(e), 0.9, method="linear"))
    else:
        mae = mse = q90 = float("nan")
    return CalibrateResult(predy=grid.tolist(), apparent=cal0.tolist(), corrected=corrected.tolist(),
                           optimism=optimism.tolist(), n_used=num.tolist(), B=int(len(indices)),
                           n_failed=failed, n=n, mean_absolute_error=mae, mean_squared_error=mse,
                           quantile90_absolute_error=q90, seed=seed, notes=notes)


@dataclass
class ValProb:
    Dxy: float
    C: float
    R2: float
    D: float
    D_chisq: float
    D_p: float
    U: float
    U_chisq: float
    U_p: float
    Q: float
    Brier: float
    Intercept: float
    Slope: float
    Emax: float
    E90: float
    Eavg: float
    S_z: float
    S_p: float
    n: int
    C_exact: float = float("nan")   # AUC without rms's rounding

    def to_dict(self) -> dict:
        return asdict(self)

    R_NAMES = ("Dxy", "C (ROC)", "R2", "D", "D:Chi-sq", "D:p", "U", "U:Chi-sq", "U:p", "Q",
               "Brier", "Intercept", "Slope", "Emax", "E90", "Eavg", "S:z", "S:p")

    def as_r(self) -> dict:
        vals = [self.Dxy, self.C, self.R2, self.D, self.D_chisq, self.D_p, self.U, self.U_chisq,
                self.U_p, self.Q, self.Brier, self.Intercept, self.Slope, self.Emax, self.E90,
                self.Eavg, self.S_z, self.S_p]
        return dict(zip(self.R_NAMES, vals))


def val_prob(y, p) -> ValProb:
    """rms ``val.prob(p, y, pl = FALSE)`` (see the module docstring). Probabilities of
    exactly 0 or 1 are left out of the logistic recalibration, as rms does."""
    yv = as_binary(y).astype(float)
    p = check_probabilities(p, yv.size)
    n = yv.size
    z_s = np.sum((yv - p) * (1 - 2 * p)) / np.sqrt(np.sum((1 - 2 * p) ** 2 * p * (1 - p)))
    s_p = float(2 * stats.norm.sf(abs(z_s)))
    with np.errstate(divide="ignore"):
        lg = logit(p)
    fin = np.isfinite(lg)
    ybar = yv.mean()
    l0 = -2 * np.sum(yv * np.log(ybar) + (1 - yv) * np.log(1 - ybar))
    if np.unique(p).size == 1:
        intc = float(logit(ybar))
        l01 = -2 * np.sum(yv * lg - np.log1p(np.exp(lg)))
        lcal = -2 * np.sum(yv * intc - np.log1p(np.exp(intc)))
        u_chi = float(l01 - lcal)
        d = -1 / n
        u = (u_chi - 1) / n
        e = abs(p[0] - ybar)
        return ValProb(0.0, 0.5, 0.0, d, 0.0, 1.0, u, u_chi, float(stats.chi2.sf(u_chi, 1)),
                       d - u, float(np.mean((yv - p[0]) ** 2)), intc, 0.0, 0.0, 0.0, e, e,
                       float(z_s), s_p, n, 0.5)
    yf, lf, pf = yv[fin], lg[fin], p[fin]
    l01 = -2 * np.sum(yf * lf - np.log1p(np.exp(lf)))
    yb = yf.mean()
    l0f = -2 * np.sum(yf * np.log(yb) + (1 - yf) * np.log(1 - yb))
    lr = float(l0f - l01)
    nf = yf.size
    r2 = float((1 - np.exp(-lr / nf)) / (1 - np.exp(-l0f / nf)))
    fit = logistic_fit(yf, np.column_stack([np.ones(nf), lf]))
    # rms 6.5 (lrm.fit) reports C / Dxy of the logistic recalibration's probabilities
    # rounded to multiples of 0.002; C_exact is the AUC of p itself
    p_recal = expit(fit.coef[0] + fit.coef[1] * lf)
    c = _auc(yf.astype(int), np.round(p_recal * 500) / 500)
    c_exact = _auc(yf.astype(int), pf)
    u_chi = float(l01 - fit.deviance)
    d = (lr - 1) / nf
    u = (u_chi - 2) / nf
    xs, ys = r_lowess(p, yv)
    cal = _approx_mean(xs, ys, p)
    er = np.abs(p - cal)
    return ValProb(Dxy=2 * c - 1, C=c, R2=r2, D=d, D_chisq=lr, D_p=float(stats.chi2.sf(lr, 1)),
                   U=u, U_chisq=u_chi, U_p=float(stats.chi2.sf(u_chi, 2)), Q=d - u,
                   Brier=float(np.mean((p - yv) ** 2)), Intercept=float(fit.coef[0]),
                   Slope=float(fit.coef[1]), Emax=float(er.max()),
                   E90=float(np.quantile(er, 0.9, method="linear")), Eavg=float(er.mean()),
                   S_z=float(z_s), S_p=s_p, n=n, C_exact=c_exact)
