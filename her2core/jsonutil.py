"""Plain JSON values from results: the one conversion every writer of JSON uses."""
from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


def jsonable(obj: Any, *, unknown: Callable[[Any], Any] = lambda o: o) -> Any:
    """dicts / lists / numpy scalars and arrays / dataclasses as plain JSON types.

    Non-finite floats become None (JSON has no NaN); tuples and sets become lists;
    dict keys become strings; Paths become strings. Anything else is passed to
    ``unknown`` (default: returned unchanged, so json.dumps decides).
    """
    if obj is None or isinstance(obj, (bool, np.bool_)):
        return None if obj is None else bool(obj)
    if isinstance(obj, str):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v, unknown=unknown) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v, unknown=unknown) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), unknown=unknown)
    if isinstance(obj, Path):
        return str(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj), unknown=unknown)
    if callable(getattr(obj, "item", None)) and getattr(obj, "ndim", None) == 0:
        return jsonable(obj.item(), unknown=unknown)      # torch / pandas scalars
    if callable(getattr(obj, "tolist", None)):
        return jsonable(obj.tolist(), unknown=unknown)    # tensors, Series, Index
    return unknown(obj)
