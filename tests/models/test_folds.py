"""The bootstrap's fast parts give scikit-learn's answers bit for bit.

her2core.folds.group_folds (StratifiedGroupKFold, shuffled), selection._l1_fit (liblinear's
L1 logistic called directly) and selection.MedianImputer (SimpleImputer, median) exist only to
cut per-call overhead in the optimism bootstrap; each must return exactly what the scikit-learn
estimator it replaces returns.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedGroupKFold

from her2core.folds import group_folds
from her2core.selection import MedianImputer, _l1_fit, _l1_fit_sklearn


def test_group_folds_equal_sklearn_on_random_designs():
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(250):
        n = int(rng.integers(20, 300))
        k = int(rng.integers(2, 11))
        y = rng.integers(0, 2 if trial % 3 else 3, n)
        groups = rng.integers(0, max(k, int(n * rng.uniform(0.3, 1.0))), n)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ref = list(StratifiedGroupKFold(k, shuffle=True, random_state=trial)
                           .split(np.zeros(n), y, groups))
        except ValueError:
            with pytest.raises(ValueError):
                group_folds(y, groups, k, trial)
            continue
        got = group_folds(y, groups, k, trial)
        assert len(got) == len(ref)
        for (a, b), (c, d) in zip(ref, got):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)
        checked += 1
    assert checked > 150


def test_group_folds_bootstrap_copies_stay_together():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2, 120)
    idx = rng.integers(0, 120, 120)            # a bootstrap resample: repeated cases
    folds = group_folds(base[idx], idx, 5, 7)
    for _, te in folds:
        assert not set(idx[te]) & set(np.delete(idx, te))


@pytest.mark.parametrize("C", [0.003, 0.05, 0.3, 2.0, 10.0])
def test_l1_fit_equals_logistic_regression(C):
    rng = np.random.default_rng(int(C * 1000))
    X = rng.normal(size=(150, 30))
    y = (X[:, 0] - 0.7 * X[:, 3] + rng.normal(size=150) > 0).astype(int)
    coef, icpt = _l1_fit(X, y, C)
    ref_coef, ref_icpt = _l1_fit_sklearn(X, y, C)
    np.testing.assert_array_equal(coef, ref_coef)
    assert icpt == ref_icpt
    if C >= 0.3:
        assert np.count_nonzero(coef) > 0


def test_median_imputer_equals_simple_imputer():
    rng = np.random.default_rng(1)
    for trial in range(120):
        n, p = int(rng.integers(2, 200)), int(rng.integers(1, 30))
        X = rng.normal(size=(n, p))
        if trial % 2:
            X[rng.random((n, p)) < 0.3] = np.nan
        if trial % 5 == 0:
            X[:, 0] = np.nan                      # no observed value: dropped by both
        new = rng.normal(size=(9, p))
        new[rng.random((9, p)) < 0.3] = np.nan
        names = [f"f{i}" for i in range(p)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = SimpleImputer(strategy="median").fit(X)
            ours = MedianImputer().fit(X)
            np.testing.assert_array_equal(ours.transform(new), ref.transform(new))
            np.testing.assert_array_equal(ours.transform(X), ref.transform(X))
        assert list(ours.get_feature_names_out(names)) == list(ref.get_feature_names_out(names))
