"""Series picker: list the series of a DICOM folder / zip and build a case from a mapping.

``list_series(path)`` describes every image series (description, modality, rows x
columns, number of slices, series number, temporal position, acquisition time as an
offset from the earliest series) without patient identifiers.
``build_case(path, {"T1": uid, "T2": uid, "DCE": uid, "DCE_phases": [uid, ...]})``
loads the chosen series as Images; the phase series become one 4-D ``DCE_phases``
Image (they must share one grid). ``write_case(cohort_root, case_id, images)``
writes them in the cohort layout (../shared/cohort-format.md), adding the case's
row to cohort.csv.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from her2core.errors import CohortError, GeometryError, Her2Error, ImageLoadError

from .image import Image
from .io import (DEFAULT_MAX_VOXELS, DEFAULT_MAX_ZIP_BYTES, DicomSeriesInfo, list_dicom_series,
                 load_dicom_series_set, save_image)

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], Any]

#: the series picker's output is one of these
SeriesInfo = DicomSeriesInfo
ROLES = ("T1", "T2", "DCE", "DCE_phases")

# description keywords -> role, for the picker's first suggestion (the user decides)
_HINTS = (
    ("DCE_phases", re.compile(r"dyn|dce|vibrant|thrive|twist|phase|ph\d|fl3d.*dyn|kinetic", re.I)),
    ("T2", re.compile(r"t2|stir|tirm|tse", re.I)),
    ("T1", re.compile(r"t1", re.I)),
)
_SUBTRACTION = re.compile(r"sub|subtract|mip|map|adc|dwi|diff", re.I)


def list_series(path: str | os.PathLike, *, images_only: bool = True,
                max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> list[SeriesInfo]:
    """Every series in a DICOM folder or zip, ordered by series number, then time.

    ``time_offset_s`` is set relative to the earliest series with a time (phases of
    a DCE are typically 60-120 s apart). Raises ImageLoadError when there is no
    DICOM image at all.
    """
    infos = list_dicom_series(path, max_zip_bytes=max_zip_bytes, images_only=images_only)
    infos = [s for s in infos if s.is_image] if images_only else infos
    if not infos:
        raise ImageLoadError("no DICOM image series found (only non-image objects)", file=path,
                             hint="give the folder or zip of the MRI / ultrasound study")
    times = [s.time_s for s in infos if s.time_s is not None]
    t0 = min(times) if times else None
    for s in infos:
        s.time_offset_s = None if s.time_s is None or t0 is None else round(s.time_s - t0, 3)
    big = 10 ** 9
    infos.sort(key=lambda s: (s.series_number if s.series_number is not None else big,
                              s.time_s if s.time_s is not None else big, s.uid))
    return infos


def series_table(infos: Sequence[SeriesInfo]) -> list[dict[str, Any]]:
    """Rows for display: number (1-based, as the CLI accepts), uid, description, modality,
    size, slices, temporal position(s), time offset."""
    rows = []
    for i, s in enumerate(infos, 1):
        rows.append({"#": i, "uid": s.uid, "series_number": s.series_number,
                     "description": s.description or "", "modality": s.modality or "",
                     "size": f"{s.rows} x {s.columns}" if s.rows else "",
                     "slices": s.n_slices,
                     "temporal": (f"{s.temporal_positions} positions" if s.temporal_positions > 1
                                  else (str(s.temporal_position) if s.temporal_position is not None
                                        else "")),
                     "time_offset_s": s.time_offset_s})
    return rows


def suggest_mapping(infos: Sequence[SeriesInfo]) -> dict[str, Any]:
    """A first guess of the role of each series from its description (the user confirms).

    Phases are the series whose description looks dynamic, in time order; a single
    series with several temporal positions is the phase series by itself.
    Subtractions, MIPs and diffusion maps are left out.
    """
    mapping: dict[str, Any] = {}
    phases: list[SeriesInfo] = []
    for s in infos:
        desc = s.description or ""
        if _SUBTRACTION.search(desc) or (s.modality or "MR") != "MR":
            continue
        if s.temporal_positions > 1:
            mapping.setdefault("DCE_phases", [s.uid])
            continue
        for role, rx in _HINTS:
            if rx.search(desc):
                if role == "DCE_phases":
                    phases.append(s)
                elif role not in mapping:
                    mapping[role] = s.uid
                break
    if len(phases) == 1 and "DCE_phases" not in mapping:
        mapping.setdefault("DCE", phases[0].uid)          # one dynamic series: the DCE volume
    elif phases and "DCE_phases" not in mapping:
        phases.sort(key=lambda s: (s.time_s if s.time_s is not None else 0,
                                   s.series_number or 0))
        mapping["DCE_phases"] = [s.uid for s in phases]
    return mapping


def resolve_series(ref: str, infos: Sequence[SeriesInfo]) -> str:
    """A SeriesInstanceUID from a UID or the 1-based row number of :func:`series_table`."""
    ref = str(ref).strip()
    uids = [s.uid for s in infos]
    if ref in uids:
        return ref
    if ref.isdigit() and "." not in ref and 1 <= int(ref) <= len(infos):
        return infos[int(ref) - 1].uid
    raise ImageLoadError(f"series {ref!r} is not in the folder: give a UID or a number from "
                         f"1 to {len(infos)} as listed")


@dataclass
class CaseSeries:
    """The Images built from a mapping, and where each came from."""

    images: dict[str, Image]
    sources: dict[str, list[str]] = field(default_factory=dict)   # role -> series UIDs
    notes: list[str] = field(default_factory=list)


def build_case(path: str | os.PathLike, mapping: Mapping[str, Any], *,
               max_voxels: int = DEFAULT_MAX_VOXELS,
               max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES,
               progress: ProgressFn | None = None) -> dict[str, Image]:
    """Images for a case from a series mapping; see :func:`build_case_series`."""
    return build_case_series(path, mapping, max_voxels=max_voxels,
                             max_zip_bytes=max_zip_bytes, progress=progress).images


def build_case_series(path: str | os.PathLike, mapping: Mapping[str, Any], *,
                      max_voxels: int = DEFAULT_MAX_VOXELS,
                      max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES,
                      progress: ProgressFn | None = None) -> CaseSeries:
    """Load the series a mapping names and shape them as cohort images.

    mapping: {"T1": uid, "T2": uid, "DCE": uid, "DCE_phases": [uid, ...]} (any subset).
    ``DCE_phases`` lists the phase series in temporal order (pre-contrast first), or one
    series holding several temporal positions; they are stacked into a 4-D Image and
    must share one grid (GeometryError naming the differences otherwise). Without a
    "DCE" entry, DCE is the first post-contrast phase (phase 1). Every image is 3-D.

    Raises:
        ImageLoadError for an unknown role / series, GeometryError for phases on
        different grids, Her2Error for an empty mapping.
    """
    path = Path(path)
    report = progress or (lambda done, total, message: None)
    unknown = sorted(set(mapping) - set(ROLES))
    if unknown:
        raise ImageLoadError(f"unknown sequence name(s) {unknown} in the series mapping",
                             file=path, hint="use T1, T2, DCE and DCE_phases")
    wanted: dict[str, list[str]] = {}
    for role in ROLES:
        value = mapping.get(role)
        if value in (None, "", []):
            continue
        uids = [value] if isinstance(value, str) else [str(v) for v in value]
        if role != "DCE_phases" and len(uids) != 1:
            raise ImageLoadError(f"{role} must be one series, got {len(uids)}", file=path)
        if len(set(uids)) != len(uids):
            raise ImageLoadError(f"a series is listed twice among the {role}", file=path)
        wanted[role] = uids
    if not wanted:
        raise Her2Error("no series chosen: map at least one series to T1, T2, DCE or DCE_phases",
                        file=path)
    all_uids = list(dict.fromkeys(u for uids in wanted.values() for u in uids))
    report(0, len(all_uids) + 1, "reading series")
    split = len(wanted.get("DCE_phases", [])) == 1
    loaded = load_dicom_series_set(path, all_uids, split_temporal=split, max_voxels=max_voxels,
                                   max_zip_bytes=max_zip_bytes)
    out = CaseSeries(images={}, sources=dict(wanted))
    for role, uids in wanted.items():
        if role != "DCE_phases":
            image = loaded[uids[0]][0]
            if image.ndim != 3 or image.is_phases:
                raise ImageLoadError(f"series {uids[0]} chosen as {role} is "
                                     f"{image.ndim}-D; {role} must be a 3-D volume", file=path)
            out.images[role] = image.replace(sequence=role, modality="MR")
            continue
        phases = [img for u in uids for img in loaded[u]]
        if len(phases) < 2:
            raise ImageLoadError(
                f"DCE_phases needs at least two phases; series {uids[0]} holds one",
                file=path, hint="list the pre-contrast and post-contrast series in order")
        out.images["DCE_phases"] = stack_phases(phases, uids if not split else None, path)
        if split:
            out.notes.append(f"series {uids[0]} split into {len(phases)} phases by "
                             "TemporalPositionIdentifier")
    if "DCE" not in out.images and "DCE_phases" in out.images:
        out.images["DCE"] = out.images["DCE_phases"].phase(1).replace(sequence="DCE",
                                                                       modality="MR")
        out.notes.append("DCE is phase 1 (the first post-contrast phase) of DCE_phases")
    report(len(all_uids) + 1, len(all_uids) + 1, "done")
    return out


def stack_phases(phases: Sequence[Image], uids: Sequence[str] | None = None,
                 path: str | os.PathLike | None = None) -> Image:
    """One 4-D (t, z, y, x) DCE_phases Image from 3-D phases on one grid."""
    ref = phases[0]
    for t, img in enumerate(phases[1:], 1):
        if img.ndim != 3 or img.is_phases:
            raise ImageLoadError(f"phase {t} is not a 3-D volume", file=path)
        diffs = ref.grid_differences(img)
        if diffs:
            who = f"series {uids[t]}" if uids else f"phase {t}"
            raise GeometryError(
                f"DCE phases are on different grids: {who} differs from phase 0 "
                f"({'; '.join(diffs)})", file=path,
                hint="choose phase series of one dynamic acquisition (same slices and matrix)")
    arr = np.stack([np.asarray(p.array) for p in phases])
    return Image(arr, ref.spacing, ref.origin, ref.direction, sequence="DCE_phases",
                 modality="MR", source=ref.source,
                 meta={"n_phases": len(phases), "format": "DICOM"})


def write_case(cohort_root: str | os.PathLike, case_id: str, images: Mapping[str, Image], *,
               overwrite: bool = False) -> list[Path]:
    """Write a case's images as cases/<case_id>/<name>.nii.gz and add its cohort.csv row.

    A new cohort gets a cohort.csv with the case_id column only; an existing one gets
    a row with empty cells (filled in later), unless the case is already listed.
    Existing image files are refused unless ``overwrite``.
    """
    from her2core.cohort import CASES_DIR, CSV_NAME, IMAGE_NAMES, is_safe_case_id
    root = Path(cohort_root)
    if not is_safe_case_id(case_id):
        raise CohortError(f"unsafe case_id {case_id!r}", file=CSV_NAME,
                          hint="letters, digits, '-' and '_' only")
    for name in images:
        if name not in IMAGE_NAMES:
            raise CohortError(f"unknown image name {name!r}", case_id=case_id)
    case_dir = root / CASES_DIR / case_id
    targets = {name: case_dir / f"{name}.nii.gz" for name in images}
    clash = [p.name for p in targets.values() if p.exists()]
    if clash and not overwrite:
        raise CohortError(f"already has {', '.join(sorted(clash))}", case_id=case_id,
                          file=case_dir, hint="choose another case id, or pass --overwrite (overwrite=True in Python)")
    csv_path = root / CSV_NAME
    root.mkdir(parents=True, exist_ok=True)
    if csv_path.exists():
        text = csv_path.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or rows[0][:1] != ["case_id"]:
            raise CohortError("first column of the header is not case_id", file=csv_path)
        if case_id not in {r[0] for r in rows[1:] if r}:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow([case_id] + [""] * (len(rows[0]) - 1))
            sep = "" if text.endswith("\n") or not text else "\n"
            csv_path.write_text(text + sep + buf.getvalue(), encoding="utf-8")
    else:
        csv_path.write_text(f"case_id\n{case_id}\n", encoding="utf-8")
    written = []
    for name, image in images.items():
        written.append(save_image(image, targets[name]))
    log.info("case %s: wrote %s", case_id, ", ".join(p.name for p in written))
    return written


__all__ = ["SeriesInfo", "ROLES", "list_series", "series_table", "suggest_mapping",
           "resolve_series", "CaseSeries", "build_case", "build_case_series", "stack_phases",
           "write_case"]
