"""The clinical form's fields: the cohort schema (her2core.cohort.CLINICAL_FIELDS), once.

Names, labels, units, valid ranges and levels come from her2core; this module
only adapts them to form values (missing -> None) and checks entered values
with the same rule the cohort parser uses.
"""
from __future__ import annotations

import math
from typing import Any

from her2core.cohort import CLINICAL_BY_NAME as BY_NAME
from her2core.cohort import CLINICAL_FIELDS as FIELDS

__all__ = ["FIELDS", "BY_NAME", "is_missing", "normalise", "validate"]


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v == "")


def normalise(values: dict[str, Any]) -> dict[str, Any]:
    """Clinical dict with every known field present (missing -> None) and typed values."""
    out: dict[str, Any] = {}
    for f in FIELDS:
        v = values.get(f.name)
        if is_missing(v):
            out[f.name] = None
        elif f.kind == "number":
            out[f.name] = float(v)
        elif f.kind in ("binary", "grade"):
            out[f.name] = int(float(v))
        else:
            out[f.name] = str(v)
    for k, v in values.items():  # extra columns are carried along
        if k not in out:
            out[k] = v
    return out


def validate(values: dict[str, Any]) -> list[str]:
    """Problems (one sentence each) with entered values; empty when all is well."""
    problems = []
    for f in FIELDS:
        why = f.problem(values.get(f.name))
        if why:
            problems.append(f"{f.label}: {why}")
    return problems
