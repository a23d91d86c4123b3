"""Honest validation of a whole modelling pipeline.

- Harrell's bootstrap optimism correction (rms ``validate``) is
  :func:`her2core.metrics.validation.bootstrap_validate` (the one implementation);
- :func:`repeated_cv`: repeated stratified k-fold CV AUC (the estimator is
  refitted in every fold).
- :func:`external_validation`: a fitted model on held-out rows (another
  centre): AUC with DeLong 95 % CI.

"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold
from her2core.jsonutil import jsonable as _jsonable

log = logging.getLogger(__name__)

__all__ = ["auc", "calibration_slope", "repeated_cv", "external_validation", "ValidationResult"]


def auc(y, p) -> float:
    """Mann-Whitney AUC with ties counted one half (pROC ``auc``)."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, float)
    if len(np.unique(y)) < 2:
        return float("nan")
    try:
        from her2core.metrics.roc import auc as _auc
        return float(_auc(y, p))
    except ImportError:  # pragma: no cover - metrics module is part of the project
        from sklearn.metrics import roc_auc_score
        return float(roc_auc_score(y, p))


def calibration_slope(y, p) -> float:
    """Slope of logit(p) in a logistic regression of y (1 = perfectly calibrated)."""
    from her2core.selection import make_logistic
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, float), 1e-8, 1 - 1e-8)
    lp = np.log(p / (1 - p)).reshape(-1, 1)
    if len(np.unique(y)) < 2 or np.ptp(lp) == 0:
        return float("nan")
    return float(make_logistic(C=np.inf, max_iter=500).fit(lp, y).coef_[0, 0])


def _metrics(y, p) -> dict:
    y = np.asarray(y).astype(int)
    p = np.asarray(p, float)
    return {"auc": auc(y, p), "brier": float(np.mean((p - y) ** 2)),
            "slope": calibration_slope(y, p)}


@dataclass
class ValidationResult:
    method: str
    auc: float                      # the headline (corrected / mean / external) AUC
    apparent: dict = field(default_factory=dict)
    optimism: dict = field(default_factory=dict)
    corrected: dict = field(default_factory=dict)
    n: int = 0
    n_positive: int = 0
    n_resamples: int = 0
    n_failed: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def _p1(model, X):
    return model.predict_proba(X)[:, 1]


class _Progress:
    def __init__(self, what: str, total: int):
        self.what, self.total, self.t0, self.next = what, total, time.time(), 0

    def __call__(self, done: int):
        if done >= self.next or done == self.total:
            el = time.time() - self.t0
            eta = el / done * (self.total - done) if done else float("nan")
            log.info("%s: %d / %d done, %.0f s elapsed, ETA %.0f s", self.what, done, self.total,
                     el, eta)
            self.next = done + max(1, self.total // 10)


def repeated_cv(estimator, X, y, n_splits: int = 5, n_repeats: int = 10,
                random_state=0) -> ValidationResult:
    """Repeated stratified k-fold CV; the estimator is refitted in every fold."""
    X = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    y = np.asarray(y).astype(int)
    rskf = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats,
                                   random_state=random_state)
    oof = np.full((n_repeats, len(y)), np.nan)
    prog = _Progress("repeated CV", n_splits * n_repeats)
    failed = 0
    for i, (tr, te) in enumerate(rskf.split(X, y)):
        try:
            m = clone(estimator).fit(X.iloc[tr], y[tr])
            oof[i // n_splits, te] = _p1(m, X.iloc[te])
        except Exception as exc:
            failed += 1
            log.warning("CV fold %d failed and was skipped: %s: %s", i, type(exc).__name__, exc)
        prog(i + 1)
    per = [_metrics(y[~np.isnan(r)], r[~np.isnan(r)]) for r in oof]
    mean = {k: float(np.nanmean([d[k] for d in per])) for k in per[0]}
    sd = {k: float(np.nanstd([d[k] for d in per], ddof=1)) if len(per) > 1 else float("nan")
          for k in per[0]}
    return ValidationResult(method=f"repeated stratified {n_splits}-fold CV x {n_repeats}",
                            auc=mean["auc"], corrected=mean, n=len(y), n_positive=int(y.sum()),
                            n_resamples=n_splits * n_repeats, n_failed=failed,
                            extra={"sd": sd, "oof_first_repeat": oof[0].tolist()})


def external_validation(fitted, X_test, y_test, label: str = "held-out") -> ValidationResult:
    """AUC (DeLong 95 % CI), Brier and calibration slope of a fitted model on new rows."""
    y = np.asarray(y_test).astype(int)
    p = _p1(fitted, X_test)
    m = _metrics(y, p)
    extra = {}
    try:
        from her2core.metrics.delong import ci_auc_delong
        ci = ci_auc_delong(y, p)
        extra = {"auc_ci95": [ci.lower, ci.upper], "ci_method": "DeLong"}
    except Exception as exc:  # pragma: no cover - CI is optional decoration
        log.debug("no DeLong CI: %s", exc)
    return ValidationResult(method=f"external validation on {label}", auc=m["auc"], corrected=m,
                            n=len(y), n_positive=int(y.sum()), extra=extra)
