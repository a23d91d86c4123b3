"""Seeded stratified bootstrap: AUC CI, ROC band, and a generic statistic CI.

Stratified means cases and controls are resampled separately, each with its
own size kept (pROC ``boot.stratified=TRUE``), so every resample has both
classes. Percentile intervals use R's default type-7 quantiles (numpy
"linear"), as pROC does. The random numbers come from
``numpy.random.default_rng(seed)``; the same seed gives the same interval,
but the draws differ from R's, so bootstrap CIs agree with pROC only up to
Monte-Carlo error.

AUCs of resamples are computed without sorting: the distinct score values are
found once, each resample is turned into per-value counts of cases and
controls (``bincount``), and the Mann-Whitney sum is a cumulative sum over
those counts, O(n) per resample.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from her2core.metrics._common import as_binary, as_score, split_cases_controls
from her2core.metrics.delong import AucCI
from her2core.metrics.roc import RocBand, auc_from_counts

DEFAULT_N_BOOT = 2000
DEFAULT_SEED = 20240601
_CHUNK_ELEMS = 4_000_000


def _quantiles(x: np.ndarray, level: float) -> tuple[float, float, float]:
    a = (1 - level) / 2
    q = np.quantile(x, [a, 0.5, 1 - a], method="linear")
    return float(q[0]), float(q[1]), float(q[2])


def _resampled_counts(inv_cases, inv_controls, n_values, rng, n_boot):
    """Yield (c, d) count matrices (b, n_values) for chunks of resamples."""
    m, n = inv_cases.size, inv_controls.size
    per = max(m + n, n_values)
    chunk = max(1, min(n_boot, _CHUNK_ELEMS // per))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        ic = inv_cases[rng.integers(0, m, size=(b, m))]
        id_ = inv_controls[rng.integers(0, n, size=(b, n))]
        offs = (np.arange(b) * n_values)[:, None]
        c = np.bincount((ic + offs).ravel(), minlength=b * n_values).reshape(b, n_values)
        d = np.bincount((id_ + offs).ravel(), minlength=b * n_values).reshape(b, n_values)
        done += b
        yield c, d


def _prepare(y, score, direction):
    cases, controls, direction = split_cases_controls(y, score, direction)
    values, inv = np.unique(np.concatenate([cases, controls]), return_inverse=True)
    m = cases.size
    return values, inv[:m], inv[m:], direction


def bootstrap_aucs(y, score, n_boot: int = DEFAULT_N_BOOT, seed: int | None = DEFAULT_SEED,
                   direction: str = "<") -> np.ndarray:
    """AUCs of ``n_boot`` stratified resamples (array of length n_boot)."""
    values, ic, id_, _ = _prepare(y, score, direction)
    rng = np.random.default_rng(seed)
    m, n = ic.size, id_.size
    out = []
    for c, d in _resampled_counts(ic, id_, values.size, rng, n_boot):
        below = np.cumsum(d, axis=1) - d
        out.append(np.sum(c * (below + 0.5 * d), axis=1) / (m * n))
    return np.concatenate(out)


def ci_auc_bootstrap(y, score, n_boot: int = DEFAULT_N_BOOT, seed: int | None = DEFAULT_SEED,
                     level: float = 0.95, direction: str = "<") -> AucCI:
    """Percentile CI of the AUC from a stratified bootstrap (pROC
    ``ci.auc(method="bootstrap", boot.stratified=TRUE)``)."""
    values, ic, id_, direction = _prepare(y, score, direction)
    c0 = np.bincount(ic, minlength=values.size)
    d0 = np.bincount(id_, minlength=values.size)
    aucs = bootstrap_aucs(y, score, n_boot, seed, direction)
    lo, _, hi = _quantiles(aucs, level)
    return AucCI(auc=auc_from_counts(c0, d0), lower=lo, upper=hi, level=level,
                 method="bootstrap", var=float(np.var(aucs, ddof=1)),
                 n_cases=int(ic.size), n_controls=int(id_.size), direction=direction,
                 n_boot=n_boot, seed=seed)


def roc_band(y, score, n_boot: int = DEFAULT_N_BOOT, seed: int | None = DEFAULT_SEED,
             level: float = 0.95, specificities=None, direction: str = "<") -> RocBand:
    """Pointwise stratified-bootstrap CI of the sensitivity at fixed
    specificities (pROC ``ci.se``); on each resample the sensitivity at a
    specificity s is the highest sensitivity among thresholds whose
    specificity is at least s."""
    if specificities is None:
        specificities = np.linspace(0, 1, 51)
    sp_grid = np.asarray(specificities, dtype=float)
    values, ic, id_, direction = _prepare(y, score, direction)
    rng = np.random.default_rng(seed)
    m, n = ic.size, id_.size
    rows = []
    for c, d in _resampled_counts(ic, id_, values.size, rng, n_boot):
        zeros = np.zeros((c.shape[0], 1))
        tp = m - np.concatenate([zeros, np.cumsum(c, axis=1)], axis=1)
        fp = n - np.concatenate([zeros, np.cumsum(d, axis=1)], axis=1)
        se, sp = tp / m, 1.0 - fp / n
        for r in range(se.shape[0]):
            k = np.searchsorted(sp[r], sp_grid - 1e-12, side="left")
            k = np.minimum(k, se.shape[1] - 1)
            rows.append(se[r, k])
    mat = np.vstack(rows)
    a = (1 - level) / 2
    q = np.quantile(mat, [a, 0.5, 1 - a], axis=0, method="linear")
    return RocBand(specificity=sp_grid.tolist(), sensitivity_lower=q[0].tolist(),
                   sensitivity_median=q[1].tolist(), sensitivity_upper=q[2].tolist(),
                   level=level, n_boot=n_boot, seed=seed)


def stratified_indices(y, rng: np.random.Generator) -> np.ndarray:
    """One stratified resample of row indices (cases and controls separately)."""
    y = as_binary(y)
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    return np.concatenate([rng.choice(pos, pos.size, replace=True),
                           rng.choice(neg, neg.size, replace=True)])


def bootstrap_statistic_ci(y, score, statistic: Callable[[np.ndarray, np.ndarray], float],
                           n_boot: int = DEFAULT_N_BOOT, seed: int | None = DEFAULT_SEED,
                           level: float = 0.95) -> tuple[float, float, float, int]:
    """Percentile CI of ``statistic(y, score)`` over stratified resamples.

    Returns (estimate, lower, upper, n_valid); resamples where the statistic
    is not finite are dropped and counted out of ``n_valid``."""
    y = as_binary(y)
    s = as_score(score, y.size)
    rng = np.random.default_rng(seed)
    est = float(statistic(y, s))
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = stratified_indices(y, rng)
        vals[b] = statistic(y[idx], s[idx])
    ok = np.isfinite(vals)
    if not ok.any():
        return est, float("nan"), float("nan"), 0
    lo, _, hi = _quantiles(vals[ok], level)
    return est, lo, hi, int(ok.sum())
