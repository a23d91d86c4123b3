"""Sensitivity, specificity, PPV, NPV, accuracy and F1 at a threshold, with CIs.

Rule: a case is called positive when ``score >= threshold`` (direction "<",
higher = positive; the same rule as the decision curves) or
``score <= threshold`` for direction ">".

Confidence intervals:
* the five proportions (sensitivity, specificity, PPV, NPV, accuracy) use the
  Wilson score interval without continuity correction by default
  (``ci_method="wilson"``); ``"clopper-pearson"`` gives the exact interval.
  They are conditional on the threshold: at the Youden threshold, which was
  chosen on the same data, they are somewhat optimistic;
* F1 (no closed form) uses a seeded stratified bootstrap percentile interval
  at the same fixed threshold.
PPV and NPV depend on the prevalence of the sample they were measured in.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from her2core.metrics._common import as_binary, as_score
from her2core.metrics.bootstrap import DEFAULT_N_BOOT, DEFAULT_SEED, _quantiles
from her2core.metrics.roc import roc_curve, youden

CI_METHODS = ("wilson", "clopper-pearson")


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (no continuity correction)."""
    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(1 - (1 - level) / 2)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def clopper_pearson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for k successes out of n."""
    if n == 0:
        return float("nan"), float("nan")
    a = 1 - level
    lo = 0.0 if k == 0 else stats.beta.ppf(a / 2, k, n - k + 1)
    hi = 1.0 if k == n else stats.beta.ppf(1 - a / 2, k + 1, n - k)
    return float(lo), float(hi)


def proportion_ci(k: int, n: int, level: float = 0.95, method: str = "wilson"):
    if method == "wilson":
        return wilson_ci(k, n, level)
    if method == "clopper-pearson":
        return clopper_pearson_ci(k, n, level)
    raise ValueError(f"ci_method must be one of {CI_METHODS}, got {method!r}")


@dataclass
class Estimate:
    value: float
    lower: float
    upper: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ThresholdMetrics:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    accuracy: Estimate
    f1: Estimate
    level: float = 0.95
    ci_method: str = "wilson"
    f1_ci_method: str = "stratified bootstrap percentile"
    n_boot: int = DEFAULT_N_BOOT
    seed: int | None = DEFAULT_SEED
    rule: str = "score >= threshold is positive"
    chosen_by: str = "user"  # "user" or "youden"

    def to_dict(self) -> dict:
        return asdict(self)

    def flat(self) -> dict:
        """{"threshold", "sensitivity", ..., "f1"} values plus "<name>_ci": [lo, hi]."""
        out: dict = {"threshold": self.threshold}
        for k in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "f1"):
            e: Estimate = getattr(self, k)
            out[k] = e.value
            out[f"{k}_ci"] = [e.lower, e.upper]
        out.update(tp=self.tp, fp=self.fp, tn=self.tn, fn=self.fn)
        return out


def _ratio(a, b):
    return a / b if b > 0 else float("nan")


def _f1(tp, fp, fn):
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), np.nan)


def threshold_metrics(y, score, threshold: float, direction: str = "<",
                      level: float = 0.95, ci_method: str = "wilson",
                      n_boot: int = DEFAULT_N_BOOT, seed: int | None = DEFAULT_SEED,
                      chosen_by: str = "user") -> ThresholdMetrics:
    """Confusion-matrix metrics at ``threshold`` with CIs (see the module docstring)."""
    y = as_binary(y)
    s = as_score(score, y.size)
    if direction not in ("<", ">"):
        raise ValueError("direction must be '<' or '>' at a threshold")
    pred = s >= threshold if direction == "<" else s <= threshold
    pos = y == 1
    tp = int(np.sum(pred & pos))
    fn = int(np.sum(~pred & pos))
    fp = int(np.sum(pred & ~pos))
    tn = int(np.sum(~pred & ~pos))

    def est(k, n):
        lo, hi = proportion_ci(k, n, level, ci_method)
        return Estimate(_ratio(k, n), lo, hi)

    # F1 bootstrap, stratified: the threshold is fixed, so in a resample of the
    # m cases the number of true positives is Binomial(m, tp/m), and the false
    # positives among the n controls Binomial(n, fp/n) - the same distribution
    # as drawing indices, at O(1) per resample.
    rng = np.random.default_rng(seed)
    m, n = tp + fn, fp + tn
    tpb = rng.binomial(m, tp / m, size=n_boot) if m else np.zeros(n_boot, dtype=int)
    fpb = rng.binomial(n, fp / n, size=n_boot) if n else np.zeros(n_boot, dtype=int)
    f1s = _f1(tpb, fpb, m - tpb)
    ok = np.isfinite(f1s)
    f1_lo, _, f1_hi = _quantiles(f1s[ok], level) if ok.any() else (np.nan,) * 3
    f1 = float(_f1(np.array(tp), np.array(fp), np.array(fn)))

    return ThresholdMetrics(
        threshold=float(threshold), tp=tp, fp=fp, tn=tn, fn=fn,
        sensitivity=est(tp, tp + fn), specificity=est(tn, tn + fp),
        ppv=est(tp, tp + fp), npv=est(tn, tn + fn), accuracy=est(tp + tn, y.size),
        f1=Estimate(f1, float(f1_lo), float(f1_hi)), level=level, ci_method=ci_method,
        n_boot=n_boot, seed=seed,
        rule="score >= threshold is positive" if direction == "<"
        else "score <= threshold is positive",
        chosen_by=chosen_by)


def youden_metrics(y, score, direction: str = "<", **kwargs) -> ThresholdMetrics:
    """``threshold_metrics`` at the Youden-optimal threshold of the ROC curve
    (pROC's midpoint threshold, see roc.youden)."""
    curve = roc_curve(y, score, direction)
    pt = youden(curve)
    return threshold_metrics(y, score, pt.threshold, direction=curve.direction,
                             chosen_by="youden", **kwargs)
