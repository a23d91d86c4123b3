"""Per-case feature cache: one small parquet (or CSV) file per case and settings.

Each file holds two columns, ``feature`` and ``value`` (float64).

Key = sha256 of (sha256 of every image and mask file used, the feature
settings JSON, the weights identity of every backbone, library versions). Any
change of an input file, a setting, a weights file or a library version gives
a new key, so a stale row is never reused. Files are written atomically
(temporary name + rename); a damaged cache file is ignored and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from her2core.provenance import file_sha256, library_versions

log = logging.getLogger(__name__)

def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes; for a folder (DICOM series), of its files' names and digests."""
    return file_sha256(path)


def feature_versions(radiomics: bool) -> dict[str, str]:
    """Versions that change features (part of the cache key and the provenance)."""
    names = ["torch", "timm", "numpy", "SimpleITK", "her2core"] + (["radiomics"] if radiomics else [])
    out = library_versions(*names)
    if "radiomics" in out:
        out["pyradiomics"] = out.pop("radiomics")
    return out


def cache_key(file_hashes: Mapping[str, str], settings: Mapping[str, Any],
              weights: Mapping[str, str], versions: Mapping[str, str]) -> str:
    blob = json.dumps({"files": dict(sorted(file_hashes.items())), "settings": settings,
                       "weights": dict(sorted(weights.items())),
                       "versions": dict(sorted(versions.items()))},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _parquet_ok() -> bool:
    try:
        import pyarrow  # noqa: F401
        return True
    except ImportError:  # pragma: no cover
        return False


class FeatureCache:
    """Rows of features keyed by (case_id, key) in ``cache_dir``."""

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.suffix = ".parquet" if _parquet_ok() else ".csv"
        self.hits = 0
        self.misses = 0

    def path(self, case_id: str, key: str) -> Path:
        return self.dir / f"{case_id}__{key[:32]}{self.suffix}"

    def get(self, case_id: str, key: str) -> dict[str, float] | None:
        import pandas as pd
        p = self.path(case_id, key)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            df = pd.read_parquet(p) if self.suffix == ".parquet" else pd.read_csv(p)
            row = dict(zip(df["feature"].astype(str), df["value"].astype(float)))
        except Exception as exc:  # damaged file: recompute
            log.warning("feature cache: ignoring unreadable %s (%s)", p.name, exc)
            self.misses += 1
            return None
        self.hits += 1
        return row

    def put(self, case_id: str, key: str, row: Mapping[str, float]) -> Path:
        import numpy as np
        import pandas as pd
        p = self.path(case_id, key)
        # long format (feature, value): tens of thousands of columns in one row
        # would make parquet metadata dominate the file
        df = pd.DataFrame({"feature": list(row.keys()),
                           "value": np.asarray(list(row.values()), dtype=np.float64)})
        tmp = p.with_name(p.name + f".tmp{os.getpid()}")
        if self.suffix == ".parquet":
            df.to_parquet(tmp)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, p)
        return p
