"""Bootstrap optimism correction of a refittable model (as rms ``validate``).

Efron's optimism bootstrap, the algorithm of rms ``validate(fit, B=1000)``:
1. fit the pipeline on all cases; its performance on them is "apparent";
2. for b = 1..B draw n cases with replacement (not stratified, as rms), clone
   and refit the whole pipeline on them (every selection / scaling step inside
   the pipeline refits, so nothing learnt from the left-out cases leaks in),
   score it on the resample ("training") and on the original cases ("test");
3. optimism = mean(training - test); corrected = apparent - optimism.
Resamples with one class only, or whose fit raises, are skipped and counted
(``n_failed``), as rms reports the number of successful resamples.

Indices: AUC (= Dxy/2 + 1/2), calibration slope (glm(y ~ logit(p))),
calibration intercept (calibration-in-the-large) and Brier score.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import logit

from her2core.metrics._common import as_binary
from her2core.metrics.calibration import EPS, logistic_fit
from her2core.metrics.roc import auc as _auc

log = logging.getLogger(__name__)
INDICES = ("auc", "calibration_slope", "calibration_intercept", "brier")
DEFAULT_B = 1000
DEFAULT_SEED = 20240601


def _indices(y, p) -> dict:
    lp = logit(np.clip(p, EPS, 1 - EPS))
    one = np.ones(y.size)
    slope = logistic_fit(y, np.column_stack([one, lp]), tol=1e-10).coef[1]
    icpt = logistic_fit(y, one[:, None], offset=lp, tol=1e-10).coef[0]
    return {"auc": _auc(y, p), "calibration_slope": float(slope),
            "calibration_intercept": float(icpt), "brier": float(np.mean((p - y) ** 2))}


@dataclass
class ValidationResult:
    apparent: dict
    optimism: dict
    corrected: dict
    training_mean: dict
    test_mean: dict
    n: int
    B: int
    n_success: int
    n_failed: int
    seed: int | None
    method: str = "optimism bootstrap (rms validate), pipeline cloned and refit per resample"

    def to_dict(self) -> dict:
        return asdict(self)


def _proba(model, X):
    return np.asarray(model.predict_proba(X))[:, 1]


def _take(X, idx):
    return X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]


def _one_resample(estimator, X, y, idx):
    """Refit on one resample: (training indices, test indices), or None when it cannot be used."""
    from sklearn import config_context
    from sklearn.base import clone

    yb = y[idx]
    if yb.min() == yb.max():
        return None
    Xb = _take(X, idx)
    try:
        # the rows are those the full fit already validated: skip scikit-learn's repeated
        # finiteness and parameter checks in the hundreds of small refits inside the resample
        with warnings.catch_warnings(), config_context(assume_finite=True,
                                                       skip_parameter_validation=True):
            warnings.simplefilter("ignore")
            m = clone(estimator).fit(Xb, yb)
            pb = _proba(m, Xb)
            po = _proba(m, X)
    except (ValueError, np.linalg.LinAlgError) as exc:
        log.debug("bootstrap resample failed: %s", exc)
        return None
    return _indices(yb, pb), _indices(y, po)


def bootstrap_validate(estimator, X, y, B: int = DEFAULT_B, seed: int | None = DEFAULT_SEED,
                       n_jobs: int | None = 1, progress=None) -> ValidationResult:
    """Optimism-corrected AUC, calibration slope/intercept and Brier score of a
    scikit-learn classifier or Pipeline (see the module docstring).

    n_jobs : worker processes for the resamples (joblib; None or 1: in this process, -1: every
        core). The resamples are drawn here, before any refit, so the answer does not depend on
        n_jobs.
    progress : optional callable(done, total) after each batch of resamples.
    """
    from sklearn.base import clone

    y = as_binary(y)
    if y.min() == y.max():
        raise ValueError("validation needs both outcomes in the data")
    full = clone(estimator).fit(X, y)
    apparent = _indices(y, _proba(full, X))
    rng = np.random.default_rng(seed)
    n = y.size
    draws = [rng.integers(0, n, size=n) for _ in range(B)]
    jobs = 1 if n_jobs in (None, 0, 1) else n_jobs
    outcomes = []
    if jobs == 1:
        for b, idx in enumerate(draws):
            outcomes.append(_one_resample(estimator, X, y, idx))
            if progress is not None and ((b + 1) % 10 == 0 or b + 1 == B):
                progress(b + 1, B)
    else:
        from joblib import Parallel, delayed

        # one stream of tasks, results in draw order (so the means are summed in the same
        # order as in one process): no barrier between batches leaves a worker idle
        with Parallel(n_jobs=jobs, return_as="generator") as parallel:
            stream = parallel(delayed(_one_resample)(estimator, X, y, idx) for idx in draws)
            for b, outcome in enumerate(stream):
                outcomes.append(outcome)
                if progress is not None and ((b + 1) % 10 == 0 or b + 1 == B):
                    progress(b + 1, B)
    train_rows = [o[0] for o in outcomes if o is not None]
    test_rows = [o[1] for o in outcomes if o is not None]
    failed = sum(o is None for o in outcomes)
    if not train_rows:
        raise ValueError("every bootstrap resample failed to fit")
    tr = {k: float(np.mean([r[k] for r in train_rows])) for k in INDICES}
    te = {k: float(np.mean([r[k] for r in test_rows])) for k in INDICES}
    opt = {k: tr[k] - te[k] for k in INDICES}
    corr = {k: apparent[k] - opt[k] for k in INDICES}
    return ValidationResult(apparent=apparent, optimism=opt, corrected=corr,
                            training_mean=tr, test_mean=te, n=int(n), B=B,
                            n_success=len(train_rows), n_failed=failed, seed=seed)
