"""Cross-validation folds for the many small refits of a bootstrap: the same folds as
scikit-learn's, computed without its per-call overhead.

:func:`group_folds` is :class:`sklearn.model_selection.StratifiedGroupKFold` with
``shuffle=True``: it returns **the same folds** (``tests/models/test_folds.py`` compares
them on random inputs), but evaluates the greedy "which fold takes this group" step for all
folds at once instead of one numpy call per (group, fold) pair. Why not use scikit-learn's
directly: an optimism bootstrap of a stacked nomogram builds thousands of these splits
(outer stacking folds and the LASSO's inner CV in every resample, whose duplicated cases
must stay together), and scikit-learn's loop took about a third of the refit time there
(benchmarks/bench_bootstrap.py). The algorithm, tie-breaking included, is scikit-learn's
(after the Kaggle kernel it cites); only its arithmetic is batched.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["group_folds"]


def _best_fold(counts: list, y_cnt: list, g: list) -> int:
    """scikit-learn's ``_find_best_fold``: the fold whose class shares stay most even once
    the group is added (mean over classes of the std across folds), ties (``np.isclose``,
    rtol 1e-5, atol 1e-8) broken by the smaller fold, then the first.

    Plain floats, summed in numpy's order for these short axes (first element, then each next
    one), so every value is the same double numpy computes; a numpy call per (group, fold) pair
    costs more than the arithmetic."""
    k = len(counts)
    n_cls = len(y_cnt)
    best, min_eval, min_size = None, math.inf, math.inf
    for i in range(k):
        total = 0.0
        for c in range(n_cls):
            vals = [(counts[j][c] + g[c] if j == i else counts[j][c]) / y_cnt[c] for j in range(k)]
            acc = vals[0]
            for v in vals[1:]:
                acc += v
            mean = acc / k
            d0 = vals[0] - mean
            sq = d0 * d0
            for v in vals[1:]:
                d = v - mean
                sq += d * d
            std = math.sqrt(sq / k)
            total = std if c == 0 else total + std
        e = total / n_cls
        size = sum(counts[i]) if n_cls else 0.0
        close = e == min_eval or (math.isfinite(min_eval)
                                  and abs(e - min_eval) <= 1e-8 + 1e-5 * abs(min_eval))
        if e < min_eval or (close and size < min_size):
            best, min_eval, min_size = i, e, size
    return best


def group_folds(y, groups, n_splits: int, random_state=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of ``StratifiedGroupKFold(n_splits, shuffle=True,
    random_state)`` on ``y`` and ``groups``: the same folds, in the same order."""
    y = np.asarray(y).ravel()
    rng = check_random_state(random_state)
    _, y_inv, y_cnt = np.unique(y, return_inverse=True, return_counts=True)
    y_inv = y_inv.ravel()
    if np.all(n_splits > y_cnt):
        raise ValueError(f"n_splits={n_splits} cannot be greater than the number of members "
                         "in each class.")
    _, g_inv, g_cnt = np.unique(np.asarray(groups).ravel(), return_inverse=True,
                                return_counts=True)
    g_inv = g_inv.ravel()
    n_groups = len(g_cnt)
    if n_splits > n_groups:
        raise ValueError(f"Cannot have number of splits n_splits={n_splits} greater than the "
                         f"number of groups: {n_groups}.")
    per_group = np.zeros((n_groups, len(y_cnt)))
    np.add.at(per_group, (g_inv, y_inv), 1)
    perm = np.arange(n_groups)
    rng.shuffle(perm)
    per_group = per_group[perm]
    inv_perm = np.empty_like(perm)
    inv_perm[perm] = np.arange(perm.size)
    g_inv = inv_perm[g_inv]
    order = np.argsort(-np.std(per_group, axis=1), kind="stable")
    counts = [[0.0] * len(y_cnt) for _ in range(n_splits)]
    fold_of_group = np.empty(n_groups, dtype=int)
    y_list = [float(c) for c in y_cnt]
    rows = per_group.tolist()
    for gi in order.tolist():
        g = rows[gi]
        f = _best_fold(counts, y_list, g)
        counts[f] = [a + b for a, b in zip(counts[f], g)]
        fold_of_group[gi] = f
    fold = fold_of_group[g_inv]
    idx = np.arange(len(y))
    return [(idx[fold != i], idx[fold == i]) for i in range(n_splits)]
