"""Inputs of a new reader study: cohort truth, readers CSV, predictions CSV, bundle checksum.

Shared by the ``reader-study create`` command and the app's owner page (which passes
uploaded files as file-like objects). Errors name the file and the case.
"""
from __future__ import annotations

import hashlib
import io
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


def _name(path, what) -> str:
    if isinstance(path, (str, Path)):
        return str(path)
    return str(getattr(path, "name", None) or f"<{what} upload>")


def _read_csv(path, what):
    """Read a CSV given as a path, bytes or a file-like object (all cells as text)."""
    import pandas as pd

    from her2core.errors import CohortError
    name = _name(path, what)
    src = io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else path
    if isinstance(path, (str, Path)):
        if not Path(path).is_file():
            raise CohortError(f"{what} file not found", file=path)
    try:
        return pd.read_csv(src, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:  # noqa: BLE001 - reported as a user error naming the file
        raise CohortError(f"cannot read {what} CSV: {exc}", file=name) from None


def load_readers(path) -> list[dict]:
    from her2core.reader_study.service import ReaderStudyError
    df = _read_csv(path, "readers")
    path = _name(path, "readers")
    cols = {c.strip().lower(): c for c in df.columns}
    missing = {"name", "level"} - set(cols)
    if missing:
        raise ReaderStudyError(f"readers CSV lacks column(s) {', '.join(sorted(missing))}", file=path,
                               hint="columns: name, level (junior/senior), years")
    out = []
    for _, row in df.iterrows():
        years = row[cols["years"]].strip() if "years" in cols else ""
        try:
            yv = float(years) if years else None
        except ValueError:
            raise ReaderStudyError(f"reader {row[cols['name']]!r}: years {years!r} is not a number",
                                   file=path) from None
        out.append({"name": row[cols["name"]].strip(), "level": row[cols["level"]].strip(),
                    "years": yv})
    return out


def load_predictions(path) -> dict[str, dict]:
    from her2core.reader_study.service import ReaderStudyError
    df = _read_csv(path, "predictions")
    path = _name(path, "predictions")
    if "case_id" not in df.columns or "p_her2" not in df.columns:
        raise ReaderStudyError("predictions CSV needs columns case_id and p_her2", file=path)
    out = {}
    for _, row in df.iterrows():
        rec = {}
        for col in df.columns:
            if col == "case_id":
                continue
            v = row[col].strip()
            try:
                num = float(v)
                rec[col] = num if math.isfinite(num) else None
            except ValueError:
                rec[col] = v or None
        p = rec.get("p_her2")
        if p is None or not (0.0 <= p <= 1.0):
            raise ReaderStudyError(f"p_her2 must be a probability in 0..1, got {row['p_her2']!r}",
                                   case_id=row["case_id"], file=path)
        out[row["case_id"].strip()] = rec
    return out


def bundle_checksum(folder) -> str:
    """The bundle's identity (her2core.bundle.bundle_checksum: the MANIFEST's overall line)."""
    from her2core.bundle import bundle_checksum as checksum
    return checksum(folder)


def cases_from_cohort(root, only=None, predictions=None) -> list[dict]:
    from her2core.cohort import read_cohort
    from her2core.reader_study.service import ReaderStudyError

    cohort = read_cohort(root)
    her2 = cohort.labels("her2")
    try:
        low = cohort.labels("her2_low")
    except Exception:  # noqa: BLE001 - no her2_ihc column: HER2-low truth unknown
        low = None
    ids = list(only) if only else list(her2.index)
    cases = []
    for cid in ids:
        if cid not in her2.index:
            raise ReaderStudyError("case has no known her2 truth or is not in the cohort",
                                   case_id=cid, file=Path(root) / "cohort.csv")
        rec = {"case_id": cid, "her2": int(her2[cid]),
               "her2_low": int(low[cid]) if low is not None and cid in low.index else None}
        if predictions is not None:
            if cid not in predictions:
                raise ReaderStudyError("no model prediction for this case", case_id=cid,
                                       hint="the aided arm needs p_her2 for every case")
            rec["model_output"] = predictions[cid]
        cases.append(rec)
    if predictions is None:
        log.warning("no --predictions: the aided arm will show no model output")
    return cases
