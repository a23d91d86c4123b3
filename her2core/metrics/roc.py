"""ROC curve and AUC, with pROC's conventions.

* Direction "<" (default): controls < cases, a higher score means positive.
  ">" reverses it; "auto" picks by the medians as pROC does (documented, not
  recommended: it makes an uninformative score look better than 0.5).
* Thresholds are pROC's: -inf, the midpoints between consecutive distinct
  score values, +inf. A case is called positive when its score is above the
  threshold (for direction "<"); because thresholds are midpoints, ">" and
  ">=" give the same result.
* The AUC is the Mann-Whitney statistic with ties counted one half.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from her2core.metrics._common import split_cases_controls


@dataclass
class RocCurve:
    """ROC curve in plain lists, ordered by increasing threshold
    (sensitivity falls from 1 to 0, specificity rises from 0 to 1)."""

    thresholds: list[float]
    sensitivity: list[float]
    specificity: list[float]
    auc: float
    n_cases: int
    n_controls: int
    direction: str = "<"

    @property
    def fpr(self) -> list[float]:
        return [1.0 - s for s in self.specificity]

    def thinned(self, max_points: int = 2000) -> "RocCurve":
        """A copy with at most ``max_points`` points (for plotting large n);
        the first and last points are kept."""
        k = len(self.thresholds)
        if k <= max_points:
            return self
        idx = np.unique(np.linspace(0, k - 1, max_points).round().astype(int))
        pick = lambda a: [a[i] for i in idx]  # noqa: E731
        return RocCurve(pick(self.thresholds), pick(self.sensitivity),
                        pick(self.specificity), self.auc, self.n_cases,
                        self.n_controls, self.direction)

    def to_dict(self) -> dict:
        d = asdict(self)
        # JSON has no infinity: the end thresholds are written as null
        d["thresholds"] = [None if not np.isfinite(t) else t for t in self.thresholds]
        return d


def _counts_by_value(cases: np.ndarray, controls: np.ndarray):
    """Distinct sorted values and, per value, the number of cases and controls."""
    values, inv = np.unique(np.concatenate([cases, controls]), return_inverse=True)
    m = cases.size
    c = np.bincount(inv[:m], minlength=values.size)
    d = np.bincount(inv[m:], minlength=values.size)
    return values, c, d


def auc_from_counts(c: np.ndarray, d: np.ndarray) -> float:
    """AUC from per-distinct-value counts of cases ``c`` and controls ``d``
    (values sorted ascending); ties count one half."""
    below = np.cumsum(d) - d
    m, n = c.sum(), d.sum()
    return float(np.sum(c * (below + 0.5 * d)) / (m * n))


def auc(y, score, direction: str = "<") -> float:
    """Area under the ROC curve (pROC ``auc``)."""
    cases, controls, _ = split_cases_controls(y, score, direction)
    _, c, d = _counts_by_value(cases, controls)
    return auc_from_counts(c, d)


def roc_curve(y, score, direction: str = "<") -> RocCurve:
    """Empirical ROC curve with pROC's thresholds (see the module docstring)."""
    cases, controls, direction = split_cases_controls(y, score, direction)
    values, c, d = _counts_by_value(cases, controls)
    m, n = cases.size, controls.size
    # positives at threshold k (k = 0 .. len(values)) are the values above it
    tp = np.concatenate([[m], m - np.cumsum(c)])
    fp = np.concatenate([[n], n - np.cumsum(d)])
    mids = (values[:-1] + values[1:]) / 2.0
    thr = np.concatenate([[-np.inf], mids, [np.inf]])
    if direction == ">":
        # the score was negated; report thresholds on the user's scale,
        # still ordered so that sensitivity falls along the list
        thr = -thr
    return RocCurve(thresholds=thr.tolist(), sensitivity=(tp / m).tolist(),
                    specificity=(1.0 - fp / n).tolist(),
                    auc=auc_from_counts(c, d), n_cases=int(m), n_controls=int(n),
                    direction=direction)


@dataclass
class YoudenPoint:
    threshold: float
    sensitivity: float
    specificity: float
    youden_index: float
    n_ties: int = 1  # how many thresholds share the maximum (the lowest is reported)


def youden(curve: RocCurve) -> YoudenPoint:
    """Threshold maximising sensitivity + specificity - 1 (pROC
    ``coords(roc, "best", best.method="youden")``). The infinite end points are
    excluded. Ties: pROC returns them all; here the lowest threshold (the
    highest sensitivity) is reported and ``n_ties`` says how many there were."""
    se = np.asarray(curve.sensitivity)[1:-1]
    sp = np.asarray(curve.specificity)[1:-1]
    thr = np.asarray(curve.thresholds)[1:-1]
    if se.size == 0:  # a constant score
        raise ValueError("the score takes a single value: no threshold separates the cases")
    j = se + sp - 1.0
    best = j.max()
    ties = np.flatnonzero(np.isclose(j, best, rtol=0, atol=1e-12))
    i = ties[0]
    return YoudenPoint(threshold=float(thr[i]), sensitivity=float(se[i]),
                       specificity=float(sp[i]), youden_index=float(j[i]),
                       n_ties=int(ties.size))


@dataclass
class RocBand:
    """Pointwise bootstrap CI of the sensitivity at fixed specificities
    (pROC ``ci.se``), for the band around a ROC curve."""

    specificity: list[float]
    sensitivity_lower: list[float]
    sensitivity_median: list[float]
    sensitivity_upper: list[float]
    level: float
    n_boot: int
    seed: int | None
    stratified: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
