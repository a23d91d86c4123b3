"""Input checks shared by the metric functions (internal)."""
from __future__ import annotations

import numpy as np

DIRECTIONS = ("<", ">", "auto")


def as_binary(y, name: str = "y") -> np.ndarray:
    """Return ``y`` as an int8 array of 0/1; raise ValueError for anything else."""
    arr = np.asarray(y)
    if arr.dtype == bool:
        return arr.astype(np.int8)
    arr = np.asarray(arr, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains missing values; drop or label them first")
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{name} must be 0/1, found {np.unique(arr[bad])[:5].tolist()}")
    return arr.astype(np.int8)


def as_score(x, n: int | None = None, name: str = "score") -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but the outcome has {n}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains missing or infinite values")
    return arr


def split_cases_controls(y, score, direction: str = "<"):
    """Return (cases, controls, direction) with the score oriented so that
    cases are expected to be higher (pROC direction "<": controls < cases).

    ``direction=">"`` negates the score; ``"auto"`` picks as pROC does, by the
    medians (controls' median <= cases' median gives "<").
    """
    y = as_binary(y)
    s = as_score(score, y.shape[0])
    cases = s[y == 1]
    controls = s[y == 0]
    if cases.size == 0 or controls.size == 0:
        raise ValueError("need at least one positive and one negative case "
                         f"(got {cases.size} positives, {controls.size} negatives)")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if direction == "auto":
        direction = "<" if np.median(controls) <= np.median(cases) else ">"
    if direction == ">":
        cases, controls = -cases, -controls
    return cases, controls, direction
