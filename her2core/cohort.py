"""The cohort format (../shared/cohort-format.md): read, validate, write.

    <cohort>/cohort.csv                 one row per case (UTF-8, comma, header)
    <cohort>/cases/<case_id>/T1.nii.gz  T2, DCE (3-D), DCE_phases (4-D), mask,
                                         mask_reader2, US (2-D), US_mask

Image files may be .nii.gz, .nii, .nrrd, .mha or a DICOM folder per sequence;
US also .png / .dcm, US_mask also .png. Every column but case_id is optional;
extra columns are carried along; an empty cell is a missing value, never 0.

``read_cohort(root)`` parses and types the table (problems per case and
column); ``validate_cohort(root)`` additionally opens every image, checks its
dimensionality and geometry and every mask against its reference image, and
returns a ``ValidationReport`` (usable / unusable cases, text and JSON forms).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from her2core.errors import (CohortError, GeometryError, Her2Error, ImageLoadError,
                             InputLimitError, MaskError)

log = logging.getLogger(__name__)

__all__ = [
    "ClinicalField", "CLINICAL_FIELDS", "CLINICAL_BY_NAME", "COMPUTED_COLUMNS", "BINARY_COLUMNS", "CATEGORICAL_COLUMNS", "NUMERIC_RANGES", "IMAGE_NAMES",
    "CaseFiles", "Cohort", "read_cohort", "write_cohort", "validate_cohort",
    "ValidationReport", "CaseReport", "FileReport", "is_safe_case_id",
]

CSV_NAME = "cohort.csv"
CASES_DIR = "cases"

@dataclass(frozen=True)
class ClinicalField:
    """One clinical column of cohort.csv: the single definition the parser, the models
    and the app's form all use (name, meaning, unit, valid range, levels).

    kind: "number" (float in [lo, hi]; ``lo_inclusive`` False means lo itself is not
    valid), "binary" (0 / 1), "choice" (text levels, the first is the reference level
    of the logistic models) or "grade" (1, 2, 3: an ordinal number).
    ``step`` is the form's increment; ``predictor``: a candidate predictor of the
    clinical models when none are named. ``computed``: the image the value is computed
    from when the cell is empty ("DCE_phases": :mod:`her2core.imaging.kinetics`, inside
    the case's ROI); a value given in cohort.csv is kept.
    """
    name: str
    label: str
    kind: str
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_inclusive: bool = True
    levels: tuple[str, ...] = ()
    step: float = 1.0
    help: str = ""
    predictor: bool = True
    computed: str = ""

    def problem(self, value) -> str | None:
        """Why ``value`` is not valid for this column (None when it is, or missing)."""
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            return None
        if self.kind == "choice":
            return None if str(value) in self.levels else \
                f"{value!r} is not one of {', '.join(self.levels)}"
        try:
            f = float(value)
        except (TypeError, ValueError):
            return f"{value!r} is not a number"
        if not math.isfinite(f):
            return f"{value!r} is not a finite number"
        if self.kind == "binary":
            return None if f in (0.0, 1.0) else f"{value!r} is not 0 or 1"
        if self.kind == "grade":
            return None if f in GRADE_VALUES else f"{value!r} is not a histological grade 1, 2 or 3"
        below = self.lo is not None and (f < self.lo or (f == self.lo and not self.lo_inclusive))
        above = self.hi is not None and f > self.hi
        if below or above:
            return f"{_fmt(f)} {self.unit} is out of range (expected {self.range_text()})".replace("  ", " ")
        return None

    def range_text(self) -> str:
        lo, hi = self.lo, self.hi
        unit = f" {self.unit}" if self.unit else ""
        if hi is not None:
            return f"{_fmt(lo)}-{_fmt(hi)}{unit}"
        return (f"> {_fmt(lo)}" if not self.lo_inclusive else f">= {_fmt(lo)}") + unit


#: Clinical and imaging-sign columns of cohort.csv (../shared/cohort-format.md).
CLINICAL_FIELDS: tuple[ClinicalField, ...] = (
    ClinicalField("age", "Age", "number", "years", 0.0, 120.0, step=1.0),
    ClinicalField("menopausal", "Post-menopausal", "binary"),
    ClinicalField("er", "ER positive", "binary", help=">= 1 % stained cells"),
    ClinicalField("pr", "PR positive", "binary", help=">= 1 % stained cells"),
    ClinicalField("ki67", "Ki-67", "number", "%", 0.0, 100.0, step=1.0),
    ClinicalField("grade", "Histological grade", "grade", levels=("1", "2", "3")),
    ClinicalField("tumor_size_mm", "Tumour size (largest diameter)", "number", "mm", 0.0, None,
                  lo_inclusive=False, step=0.5),
    ClinicalField("multifocal", "Multifocal", "binary"),
    ClinicalField("aln_abnormal", "Abnormal axillary node", "binary",
                  help="abnormal axillary lymph node on imaging"),
    ClinicalField("aln_diameter_mm", "Largest axillary node", "number", "mm", 0.0, None,
                  lo_inclusive=False, step=0.5),
    ClinicalField("enhancement_curve", "DCE curve type", "choice",
                  levels=("persistent", "plateau", "washout")),
    ClinicalField("peritumoral_edema", "Peritumoral oedema", "binary"),
    ClinicalField("intratumoral_edema", "Intratumoral oedema", "binary"),
    ClinicalField("rim_enhancement", "Rim enhancement", "binary"),
    ClinicalField("microcalcification", "Microcalcification", "binary"),
    ClinicalField("nme", "Non-mass enhancement", "binary"),
    ClinicalField("mass_shape", "Mass shape", "choice", levels=("round_oval", "irregular")),
    ClinicalField("adc_min", "ADC min", "number", "10^-3 mm^2/s", 0.0, None, lo_inclusive=False,
                  step=0.01, help="minimum apparent diffusion coefficient"),
    ClinicalField("eer", "Early enhancement rate", "number", "ratio", 0.0, None, step=0.01),
    # paper 002's further predictors (levels as the paper / the BI-RADS MRI lexicon name them)
    ClinicalField("n_category", "Regional N category", "choice", levels=("N0", "N1", "N2", "N3"),
                  help="clinical regional lymph node category (AJCC cN)"),
    ClinicalField("lesion_number", "Lesion number", "choice", levels=("single", "multiple"),
                  help="single lesion, or multiple = multifocal or multicentric (paper 002); "
                       "must agree with multifocal when both are given"),
    ClinicalField("quadrant", "Distribution quadrant", "choice",
                  levels=("upper_left", "lower_left", "upper_right", "lower_right",
                          "central_left", "central_right"),
                  help="breast side and upper / lower half; central = areola and central area "
                       "(paper 002's six levels)"),
    ClinicalField("accompanying_signs", "Accompanying signs", "binary",
                  help="nipple inversion, skin retraction or pectoralis muscle invasion"),
    ClinicalField("fgt", "Fibroglandular tissue", "choice",
                  levels=("fatty", "scattered", "heterogeneous", "extreme"),
                  help="BI-RADS amount of fibroglandular tissue: a almost entirely fat, "
                       "b scattered, c heterogeneous, d extreme"),
    ClinicalField("bpe", "Background parenchymal enhancement", "choice",
                  levels=("minimal", "mild", "moderate", "marked"), help="BI-RADS BPE level"),
    ClinicalField("t2_signal", "Signal on T2WI", "choice",
                  levels=("hyperintense", "slightly_hyperintense", "isointense", "hypointense"),
                  help="lesion signal on T2-weighted images relative to the parenchyma"),
    ClinicalField("mass_margin", "Mass margin", "choice",
                  levels=("circumscribed", "irregular", "spiculated"),
                  help="BI-RADS mass margin (irregular and spiculated = not circumscribed)"),
    ClinicalField("internal_enhancement", "Mass internal enhancement", "choice",
                  levels=("homogeneous", "heterogeneous", "rim", "dark_septations"),
                  help="BI-RADS internal enhancement pattern; rim must agree with "
                       "rim_enhancement when both are given"),
    # computed from DCE_phases inside the ROI when the cell is empty (her2core.imaging.kinetics)
    ClinicalField("dce_curve", "DCE curve type (computed)", "choice",
                  levels=("persistent", "plateau", "washout"), computed="DCE_phases",
                  help="BI-RADS delayed phase from the ROI's mean signal: change from the "
                       "initial-phase peak to the last phase > +10 % persistent, < -10 % "
                       "washout, else plateau; computed from DCE_phases when left empty"),
    ClinicalField("dce_eer", "Early enhancement rate (computed)", "number", "ratio", -1.0, None,
                  step=0.01, computed="DCE_phases",
                  help="(SI post - SI pre) / SI pre of the ROI's mean signal, SI post = the peak "
                       "within 2 min of the pre-contrast phase; computed from DCE_phases when "
                       "left empty"),
)
CLINICAL_BY_NAME: dict[str, ClinicalField] = {f.name: f for f in CLINICAL_FIELDS}
#: columns computed from a case's images when their cell is empty (name -> image)
COMPUTED_COLUMNS: dict[str, str] = {f.name: f.computed for f in CLINICAL_FIELDS if f.computed}
#: pairs of columns that describe one finding: (column, level, 0/1 column) - a row where
#: ``column == level`` must have the 0/1 column 1 and any other level must have it 0
CONSISTENT_COLUMNS = (("lesion_number", "multiple", "multifocal"),
                      ("internal_enhancement", "rim", "rim_enhancement"))

BINARY_COLUMNS = ("her2",) + tuple(f.name for f in CLINICAL_FIELDS if f.kind == "binary")
CATEGORICAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "her2_ihc": ("0", "1+", "2+", "3+"),
    **{f.name: f.levels for f in CLINICAL_FIELDS if f.kind == "choice"},
}
#: numeric column -> (low, high, low_inclusive); None = unbounded
NUMERIC_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    **{f.name: (f.lo, f.hi, f.lo_inclusive) for f in CLINICAL_FIELDS if f.kind == "number"},
    "p_her2": (0.0, 1.0, True),
    "p_her2_low": (0.0, 1.0, True),
}
GRADE_VALUES = (1, 2, 3)
TEXT_COLUMNS = ("center",)

#: image name -> (accepted extensions in order, expected spatial dimension, DICOM folder allowed)
_VOLUME_EXT = (".nii.gz", ".nii", ".nrrd", ".mha")
IMAGE_NAMES: dict[str, tuple[tuple[str, ...], int, bool]] = {
    "T1": (_VOLUME_EXT, 3, True),
    "T2": (_VOLUME_EXT, 3, True),
    "DCE": (_VOLUME_EXT, 3, True),
    "DCE_phases": (_VOLUME_EXT, 4, True),
    "mask": (_VOLUME_EXT, 3, False),
    "mask_reader2": (_VOLUME_EXT, 3, False),
    "US": ((".png", ".nii.gz", ".dcm", ".nii", ".nrrd", ".mha"), 2, False),
    "US_mask": ((".png", ".nii.gz", ".nii", ".nrrd", ".mha"), 2, False),
}
MASK_REFERENCE = {"mask": ("DCE", "T1"), "mask_reader2": ("DCE", "T1"), "US_mask": ("US",)}
#: optional sidecar of DCE_phases: {"phase_times_s": [t0, t1, ...]} (her2core.imaging.kinetics)
PHASE_TIMES_NAME = "DCE_phases.json"

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_VOXELS = 512 * 1024 * 1024     # refuse declared sizes above this
MIN_MASK_VOXELS = 1


def is_safe_case_id(case_id: str) -> bool:
    """Letters, digits, '-' and '_' only (so it is a plain folder name)."""
    return bool(_SAFE_ID.match(case_id or "")) and case_id not in (".", "..")


# ====================================================================== files
@dataclass
class CaseFiles:
    """Paths of one case's images (None when absent)."""
    case_id: str
    T1: Path | None = None
    T2: Path | None = None
    DCE: Path | None = None
    DCE_phases: Path | None = None
    US: Path | None = None
    mask: Path | None = None
    US_mask: Path | None = None
    mask_reader2: Path | None = None
    folder: Path | None = None
    DCE_phases_times: Path | None = None     # DCE_phases.json: the phases' times (optional)

    def present(self) -> dict[str, Path]:
        return {n: getattr(self, n) for n in IMAGE_NAMES if getattr(self, n) is not None}

    def __getitem__(self, name: str) -> Path | None:
        if name not in IMAGE_NAMES:
            raise KeyError(name)
        return getattr(self, name)


def _discover(case_dir: Path, case_id: str) -> tuple[CaseFiles, list[Her2Error], list[str]]:
    """Find the case's image files; return (files, problems, notes)."""
    files = CaseFiles(case_id, folder=case_dir)
    problems: list[Her2Error] = []
    notes: list[str] = []
    if not case_dir.is_dir():
        return files, problems, notes
    entries = {p.name: p for p in case_dir.iterdir()}
    used: set[str] = set()
    for name, (exts, _dim, dicom_ok) in IMAGE_NAMES.items():
        cands = [entries[name + e] for e in exts if name + e in entries]
        if dicom_ok and name in entries and entries[name].is_dir():
            cands.append(entries[name])
        if len(cands) > 1:
            problems.append(CohortError(
                f"several files for {name}: {', '.join(c.name for c in cands)}",
                case_id=case_id, file=_rel(cands[0]), hint="keep exactly one"))
        if cands:
            setattr(files, name, cands[0])
            used.update(c.name for c in cands)
    if PHASE_TIMES_NAME in entries and entries[PHASE_TIMES_NAME].is_file():
        files.DCE_phases_times = entries[PHASE_TIMES_NAME]
        used.add(PHASE_TIMES_NAME)
    lower = {n.lower(): n for n in IMAGE_NAMES}
    for fname in sorted(set(entries) - used):
        stem = fname.split(".")[0]
        hint = ""
        if stem.lower() in lower and stem not in IMAGE_NAMES:
            hint = f" (names are case-sensitive: did you mean {lower[stem.lower()]}?)"
        elif stem in IMAGE_NAMES:
            hint = f" (extension not accepted for {stem}: use one of " \
                   f"{', '.join(IMAGE_NAMES[stem][0])})"
        notes.append(f"ignored unrecognised file {fname}{hint}")
    return files, problems, notes


def _rel(path: Path | str) -> str:
    """cases/<id>/<file> style path for messages."""
    p = Path(path)
    parts = p.parts
    if CASES_DIR in parts:
        i = len(parts) - 1 - parts[::-1].index(CASES_DIR)
        return "/".join(parts[i:])
    return p.name


# ====================================================================== table parsing
@dataclass
class TableProblem:
    case_id: str | None
    column: str | None
    row: int | None            # 1-based line number in cohort.csv (header = line 1)
    message: str

    def as_error(self) -> CohortError:
        where = f"column {self.column}: " if self.column else ""
        row = f" (line {self.row})" if self.row is not None and self.case_id is None else ""
        return CohortError(where + self.message + row, case_id=self.case_id, file=CSV_NAME)


def _decode(raw: bytes, path: Path) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for bom, name in ((b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if raw.startswith(bom):
            raise CohortError(f"the file is {name}, not UTF-8", file=path.name,
                              hint="save it as CSV UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise CohortError(
            f"the file is not UTF-8: byte 0x{raw[exc.start]:02x} on line {line} "
            f"(perhaps Latin-1 / Windows-1252)", file=path.name,
            hint="save it as CSV UTF-8") from None


def _parse_float(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _parse_table(text: str) -> tuple[pd.DataFrame, list[TableProblem], list[str]]:
    """Parse cohort.csv text into a typed table (all rows kept, bad cells NaN)."""
    problems: list[TableProblem] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, row_lines = [], []
    try:
        for r in reader:
            if any(c.strip() for c in r):       # blank lines are skipped
                rows.append(r)
                row_lines.append(reader.line_num)
    except csv.Error as exc:
        raise CohortError(f"not a readable CSV file (line {reader.line_num}): {exc}",
                          file=CSV_NAME) from None
    if not rows:
        raise CohortError("the file is empty", file=CSV_NAME,
                          hint="it needs a header row with at least case_id")
    header = [h.strip() for h in rows[0]]
    if "case_id" not in header:
        sep = ";" if ";" in rows[0][0] else ("\t" if "\t" in rows[0][0] else None)
        hint = (f"the file seems to use {'semicolons' if sep == ';' else 'tabs'}: "
                "use commas") if sep else "the header row must name a case_id column"
        raise CohortError("no case_id column in the header row", file=CSV_NAME, hint=hint)
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise CohortError(f"column(s) named more than once: {', '.join(dup)}", file=CSV_NAME)
    if "" in header:
        raise CohortError(f"column {header.index('') + 1} of the header has no name",
                          file=CSV_NAME)
    ncol = len(header)
    records: list[list[str]] = []
    lines: list[int] = []
    for r, line_no in zip(rows[1:], row_lines[1:]):
        if len(r) > ncol and any(c.strip() for c in r[ncol:]):
            problems.append(TableProblem(r[header.index("case_id")].strip() or None, None,
                                         line_no, f"row has {len(r)} cells but the header "
                                         f"has {ncol}"))
        r = (r + [""] * ncol)[:ncol]
        records.append([c.strip() for c in r])
        lines.append(line_no)
    raw = pd.DataFrame(records, columns=header, dtype=object)
    ids = raw["case_id"].tolist()
    # --- case ids
    seen: dict[str, int] = {}
    for cid, ln in zip(ids, lines):
        if cid == "":
            problems.append(TableProblem(None, "case_id", ln, "empty case_id"))
        elif not is_safe_case_id(cid):
            problems.append(TableProblem(cid, "case_id", ln,
                                         f"unsafe case_id {cid!r}: only letters, digits, "
                                         "'-' and '_' are allowed (no path separators or '..')"))
        seen[cid] = seen.get(cid, 0) + 1
    for cid, count in seen.items():
        if cid and count > 1:
            problems.append(TableProblem(cid, "case_id", None,
                                         f"case_id {cid!r} appears {count} times in cohort.csv"))
    # --- typed columns
    typed: dict[str, Any] = {}
    for col in header:
        if col == "case_id":
            continue
        vals = raw[col].tolist()

        def bad(i, msg, col=col):
            problems.append(TableProblem(ids[i] or None, col, lines[i], msg))

        if col in BINARY_COLUMNS:
            out = np.full(len(vals), np.nan)
            for i, v in enumerate(vals):
                if v == "":
                    continue
                f = _parse_float(v)
                if f in (0.0, 1.0):
                    out[i] = f
                else:
                    bad(i, f"value {v!r} is not 0, 1 or empty")
            typed[col] = out
        elif col in CATEGORICAL_COLUMNS:
            allowed = CATEGORICAL_COLUMNS[col]
            out_c: list[Any] = []
            for i, v in enumerate(vals):
                if v == "":
                    out_c.append(np.nan)
                elif v in allowed:
                    out_c.append(v)
                elif col == "her2_ihc" and v.replace(" ", "") in allowed:
                    out_c.append(v.replace(" ", ""))
                else:
                    bad(i, f"unknown value {v!r}: allowed are {', '.join(allowed)} or empty")
                    out_c.append(np.nan)
            typed[col] = pd.Categorical(out_c, categories=list(allowed), ordered=True)
        elif col == "grade":
            out = np.full(len(vals), np.nan)
            for i, v in enumerate(vals):
                if v == "":
                    continue
                f = _parse_float(v)
                if f is None:
                    bad(i, f"value {v!r} is not a number")
                elif f not in GRADE_VALUES:
                    bad(i, f"value {v!r} is not a histological grade 1, 2 or 3")
                else:
                    out[i] = f
            typed[col] = out
        elif col in NUMERIC_RANGES:
            lo, hi, lo_inc = NUMERIC_RANGES[col]
            out = np.full(len(vals), np.nan)
            for i, v in enumerate(vals):
                if v == "":
                    continue
                f = _parse_float(v.replace(",", ".") if v.count(",") == 1 and "." not in v
                                 else v)
                if f is None:
                    hint = " (leave the cell empty for a missing value)" \
                        if v.lower() in ("na", "nan", "n/a", "none", "null", "-", "?") else ""
                    bad(i, f"value {v!r} is not a number{hint}")
                    continue
                if "," in v:
                    bad(i, f"value {v!r} uses a decimal comma: write {v.replace(',', '.')}")
                    continue
                below = lo is not None and (f < lo or (f == lo and not lo_inc))
                above = hi is not None and f > hi
                if below or above:
                    rng = (f"{_fmt(lo)}-{_fmt(hi)}" if hi is not None
                           else (f"> {_fmt(lo)}" if not lo_inc else f">= {_fmt(lo)}"))
                    bad(i, f"value {v!r} is out of range (expected {rng})")
                    continue
                out[i] = f
            typed[col] = out
        else:
            # text or extra column: numeric when every filled cell is a number
            filled = [v for v in vals if v != ""]
            nums = [_parse_float(v) for v in filled]
            if col not in TEXT_COLUMNS and filled and all(n is not None for n in nums):
                typed[col] = np.array([np.nan if v == "" else float(v) for v in vals])
            else:
                typed[col] = pd.array([np.nan if v == "" else v for v in vals], dtype=object)
    table = pd.DataFrame(typed, index=pd.Index(ids, name="case_id", dtype=object))
    table = table[[c for c in header if c != "case_id"]]
    notes = []
    known = {c.lower(): c for c in (*BINARY_COLUMNS, *CATEGORICAL_COLUMNS, *NUMERIC_RANGES,
                                    "grade", *TEXT_COLUMNS)}
    for col in header:
        if col not in known.values() and col.lower() in known and known[col.lower()] not in header:
            notes.append(f"column {col!r} is carried as an extra column: the format's column "
                         f"is {known[col.lower()]!r} (names are case-sensitive)")
    # --- label consistency
    if "her2" in table and "her2_ihc" in table:
        her2 = table["her2"].to_numpy()
        ihc = table["her2_ihc"].astype(object).to_numpy()
        for i, (h, s) in enumerate(zip(her2, ihc)):
            if isinstance(s, str) and not np.isnan(h):
                if (s in ("0", "1+") and h == 1) or (s == "3+" and h == 0):
                    problems.append(TableProblem(
                        ids[i] or None, "her2", lines[i],
                        f"her2 = {int(h)} contradicts her2_ihc = {s} "
                        "(IHC 0 / 1+ is negative, 3+ is positive)"))
    # two columns that describe one finding must agree where both are given
    for col, level, flag in CONSISTENT_COLUMNS:
        if col not in table or flag not in table:
            continue
        levels = table[col].astype(object).to_numpy()
        flags = table[flag].to_numpy()
        for i, (lv, f) in enumerate(zip(levels, flags)):
            if isinstance(lv, str) and not np.isnan(f) and (lv == level) != (f == 1):
                problems.append(TableProblem(
                    ids[i] or None, col, lines[i],
                    f"{col} = {lv} contradicts {flag} = {int(f)} ({col} = {level} "
                    f"goes with {flag} = 1, any other level with {flag} = 0)"))
    return table, problems, notes


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# ====================================================================== Cohort
class Cohort:
    """A cohort on disk: typed table indexed by case_id plus the case folders."""

    def __init__(self, root: Path, table: pd.DataFrame, problems: list[Her2Error] | None = None):
        self.root = Path(root)
        self.table = table
        self.problems: list[Her2Error] = list(problems or [])
        self.notes: list[str] = []

    def __repr__(self) -> str:
        return f"Cohort({str(self.root)!r}, {len(self.table)} cases)"

    def __len__(self) -> int:
        return len(self.table)

    @property
    def case_ids(self) -> list[str]:
        return [str(c) for c in self.table.index]

    @property
    def has_images(self) -> bool:
        d = self.root / CASES_DIR
        return d.is_dir() and any(p.is_dir() and not p.name.startswith((".", "__"))
                                  for p in d.iterdir())

    def files(self, case_id: str) -> CaseFiles:
        """Image paths of a case (None for each absent image)."""
        if case_id not in self.table.index:
            raise CohortError("no such case in cohort.csv", case_id=case_id, file=CSV_NAME)
        if not is_safe_case_id(case_id):
            raise CohortError("unsafe case_id", case_id=case_id, file=CSV_NAME)
        files, _, _ = _discover(self.root / CASES_DIR / case_id, case_id)
        return files

    # ---------------------------------------------------------------- labels
    def her2(self) -> pd.Series:
        """her2 (1/0/NaN), completed from her2_ihc where that is unambiguous (0, 1+ -> 0; 3+ -> 1)."""
        t = self.table
        h = t["her2"].astype(float) if "her2" in t else pd.Series(np.nan, index=t.index)
        if "her2_ihc" in t:
            ihc = t["her2_ihc"].astype(object)
            h = h.copy()
            h[h.isna() & ihc.isin(["0", "1+"])] = 0.0
            h[h.isna() & (ihc == "3+")] = 1.0
        return h

    def labels(self, task: str = "her2") -> pd.Series:
        """Known labels of a task, as an int Series indexed by case_id.

        "her2": 1 = HER2-positive, 0 = HER2-negative.
        "her2_low": among HER2-negatives, 1 = HER2-low (IHC 1+, or 2+ without
        amplification), 0 = HER2-zero (IHC 0); positives and cases without an
        IHC score are left out.
        """
        h = self.her2()
        if task == "her2":
            y = h.dropna()
        elif task == "her2_low":
            if "her2_ihc" not in self.table:
                raise CohortError("the her2_low task needs a her2_ihc column", file=CSV_NAME)
            ihc = self.table["her2_ihc"].astype(object)
            neg = h == 0
            y = pd.Series(np.nan, index=self.table.index)
            y[neg & ihc.isin(["1+", "2+"])] = 1.0
            y[neg & (ihc == "0")] = 0.0
            y = y.dropna()
        else:
            raise ValueError(f"unknown task {task!r}: use 'her2' or 'her2_low'")
        return y.astype(int).rename(task)

    # ---------------------------------------------------------------- subsets
    def _mask(self, where: str) -> pd.Series:
        t = self.table
        mask = pd.Series(True, index=t.index)
        for cond in re.split(r"\s*&\s*", where.strip()):
            m = re.match(r"^\s*([A-Za-z0-9_]+)\s*(!=|==|=)\s*(.*?)\s*$", cond)
            if not m:
                raise CohortError(f"cannot read the condition {cond!r}",
                                  hint="write column=value or column!=value, joined by &")
            col, op, val = m.groups()
            if col == "case_id":
                series = pd.Series(t.index.astype(str), index=t.index)
            elif col in t:
                series = t[col]
            else:
                raise CohortError(f"no column {col!r} in cohort.csv", file=CSV_NAME)
            if pd.api.types.is_numeric_dtype(series) and not isinstance(series.dtype,
                                                                        pd.CategoricalDtype):
                f = _parse_float(val)
                if f is None:
                    raise CohortError(f"column {col} is numeric but {val!r} is not a number")
                hit = series == f
            else:
                hit = series.astype(object).map(lambda v, val=val: isinstance(v, str) and v == val)
            hit = hit.fillna(False).astype(bool)
            mask &= ~hit if op == "!=" else hit
        return mask

    def subset(self, where: str | None = None, *, case_ids: Iterable[str] | None = None,
               invert: bool = False) -> "Cohort":
        """Cases matching ``where`` ("center=A", "center!=A", "er=1 & center=B") or listed.

        ``invert=True`` gives the complement (cases with a missing value count as
        not matching, so they land in the complement).
        """
        mask = pd.Series(True, index=self.table.index)
        if where:
            mask &= self._mask(where)
        if case_ids is not None:
            wanted = set(case_ids)
            mask &= self.table.index.isin(wanted)
        if invert:
            mask = ~mask
        keep = set(self.table.index[mask.to_numpy()])
        probs = [p for p in self.problems if p.case_id is None or p.case_id in keep]
        return Cohort(self.root, self.table[mask.to_numpy()].copy(), probs)

    def exclude(self, where: str) -> "Cohort":
        """Complement of ``subset(where)``: e.g. train on exclude("center=A")."""
        return self.subset(where, invert=True)

    def external_split(self, column: str = "center", value: str = "A") -> tuple["Cohort", "Cohort"]:
        """(train, test): train on every case whose ``column`` is not ``value``, test on the rest."""
        test = self.subset(f"{column}={value}")
        if len(test) == 0:
            raise CohortError(f"no case has {column} = {value}", file=CSV_NAME)
        return self.exclude(f"{column}={value}"), test


def read_cohort(root: str | Path, *, on_problem: str = "drop") -> Cohort:
    """Read ``root/cohort.csv`` into a typed Cohort.

    Column types: 0/1 columns and grade as float (NaN = missing); her2_ihc,
    enhancement_curve, mass_shape as ordered pandas Categorical; numeric columns
    float, range-checked; center text; extra columns numeric when every filled
    cell is a number, text otherwise.

    on_problem: "drop" (default) leaves rows with problems out of the table
    (logged, listed in ``cohort.problems``), "keep" keeps them with the bad
    cells empty, "raise" raises CohortError listing the problems.
    """
    if on_problem not in ("drop", "keep", "raise"):
        raise ValueError("on_problem must be drop, keep or raise")
    root = Path(root)
    if not root.is_dir():
        raise CohortError("cohort folder not found", file=str(root),
                          hint="give the folder that holds cohort.csv")
    path = root / CSV_NAME
    if not path.is_file():
        raise CohortError("missing", file=str(path),
                          hint="a cohort folder needs cohort.csv with a case_id column")
    text = _decode(path.read_bytes(), path)
    table, tprobs, notes = _parse_table(text)
    for n in notes:
        log.warning("%s: %s", CSV_NAME, n)
    errors = [p.as_error() for p in tprobs]
    if errors and on_problem == "raise":
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise CohortError(f"{len(errors)} problem(s): {shown}{more}", file=CSV_NAME)
    for e in errors:
        log.log(logging.WARNING if on_problem == "drop" else logging.DEBUG, "%s", e)
    if on_problem == "drop" and errors:
        bad = {p.case_id for p in tprobs if p.case_id} | {"" for p in tprobs if p.case_id is None}
        keep = ~table.index.isin(bad)
        if any(p.case_id is None for p in tprobs):
            keep &= table.index != ""
        table = table[keep].copy()
    cohort = Cohort(root, table, errors)
    cohort.notes = notes
    return cohort


# ====================================================================== write
def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, (np.floating,)):
        return _cell(float(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if v is pd.NA or v is pd.NaT:
        return ""
    return str(v)


def write_cohort(root: str | Path, table: pd.DataFrame,
                 images: Mapping[str, Mapping[str, Any]] | None = None, *,
                 us_format: str = "nii.gz", overwrite: bool = False) -> Path:
    """Write ``table`` (indexed by case_id, or with a case_id column) and images.

    images: case_id -> {name: Image | SimpleITK.Image}, name one of IMAGE_NAMES.
    Volumes are written as <name>.nii.gz; US / US_mask as .nii.gz (keeps
    spacing) or .png with ``us_format="png"`` (8-bit).
    """
    import SimpleITK as sitk
    root = Path(root)
    t = table.copy()
    if "case_id" in t.columns:
        t = t.set_index("case_id")
    t.index = t.index.map(str)
    t.index.name = "case_id"
    bad = [c for c in t.index if not is_safe_case_id(c)]
    if bad:
        raise CohortError(f"unsafe case_id(s): {', '.join(map(repr, bad[:5]))}",
                          file=CSV_NAME, hint="letters, digits, '-' and '_' only")
    dups = sorted(t.index[t.index.duplicated()].unique())
    if dups:
        raise CohortError(f"duplicate case_id(s): {', '.join(dups[:5])}", file=CSV_NAME)
    images = dict(images or {})
    missing = [c for c in images if c not in t.index]
    if missing:
        raise CohortError(f"images given for case(s) without a row: {', '.join(missing[:5])}",
                          file=CSV_NAME)
    csv_path = root / CSV_NAME
    if csv_path.exists() and not overwrite:
        raise CohortError("already exists", file=str(csv_path), hint="pass overwrite=True")
    root.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case_id", *t.columns])
    cols = [t[c].astype(object).tolist() for c in t.columns]
    for i, cid in enumerate(t.index):
        w.writerow([cid, *(_cell(col[i]) for col in cols)])
    csv_path.write_text(buf.getvalue(), encoding="utf-8")
    for cid, named in images.items():
        case_dir = root / CASES_DIR / cid
        case_dir.mkdir(parents=True, exist_ok=True)
        for name, img in named.items():
            if name not in IMAGE_NAMES:
                raise CohortError(f"unknown image name {name!r}: use one of "
                                  f"{', '.join(IMAGE_NAMES)}", case_id=cid)
            s = img if isinstance(img, sitk.Image) else img.to_sitk()
            if name in ("US", "US_mask") and us_format == "png":
                arr = sitk.GetArrayFromImage(s)
                if name == "US_mask":
                    arr = (arr > 0).astype(np.uint8) * 255
                else:
                    arr = np.clip(arr, 0, 255).astype(np.uint8)
                from PIL import Image as PILImage
                PILImage.fromarray(np.squeeze(arr)).save(case_dir / f"{name}.png")
            else:
                sitk.WriteImage(s, str(case_dir / f"{name}.nii.gz"), useCompression=True)
    return root


# ====================================================================== validation
@dataclass
class FileReport:
    name: str
    path: str
    dimension: int | None = None
    size: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    orientation: str | None = None
    pixel_type: str | None = None
    n_phases: int | None = None
    labels: list[int] | None = None
    voxels: int | None = None
    spacing_known: bool = True

    def describe(self) -> str:
        if self.size is None:
            return f"{self.path} (not readable)"
        size = "x".join(str(s) for s in self.size)
        parts = [f"{self.dimension}-D {size}"]
        if self.n_phases:
            parts[0] += f", {self.n_phases} phases"
        if self.spacing is not None:
            sp = "x".join(f"{s:.3g}" for s in self.spacing)
            parts.append(f"spacing {sp} mm" if self.spacing_known else "spacing unknown")
        if self.orientation:
            parts.append(self.orientation)
        if self.voxels is not None:
            parts.append(f"{self.voxels} ROI voxels")
        return f"{self.path}: " + ", ".join(parts)

    def to_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "dimension": self.dimension,
                "size": list(self.size) if self.size else None,
                "spacing": list(self.spacing) if self.spacing else None,
                "spacing_known": self.spacing_known,
                "orientation": self.orientation, "pixel_type": self.pixel_type,
                "n_phases": self.n_phases, "labels": self.labels, "roi_voxels": self.voxels}


@dataclass
class CaseReport:
    case_id: str
    in_table: bool = True
    has_folder: bool = False
    files: dict[str, FileReport] = field(default_factory=dict)
    problems: list[Her2Error] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.in_table and not self.problems

    def to_dict(self) -> dict:
        return {"case_id": self.case_id, "usable": self.usable, "in_table": self.in_table,
                "has_folder": self.has_folder,
                "files": {k: v.to_dict() for k, v in self.files.items()},
                "problems": [_err_dict(p) for p in self.problems], "notes": list(self.notes)}


def _err_dict(e: Her2Error) -> dict:
    return {"type": type(e).__name__, "case_id": e.case_id, "file": e.file,
            "message": e.message, "hint": e.hint, "text": str(e)}


@dataclass
class ValidationReport:
    root: str
    cases: list[CaseReport] = field(default_factory=list)
    problems: list[Her2Error] = field(default_factory=list)   # cohort-level (not one case)
    images_present: bool = False
    notes: list[str] = field(default_factory=list)            # cohort-level, not blocking

    @property
    def usable(self) -> list[str]:
        return [c.case_id for c in self.cases if c.usable]

    @property
    def unusable(self) -> list[str]:
        return [c.case_id for c in self.cases if not c.usable]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unusable

    def case(self, case_id: str) -> CaseReport:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(case_id)

    def all_problems(self) -> list[Her2Error]:
        return list(self.problems) + [p for c in self.cases for p in c.problems]

    def to_dict(self) -> dict:
        return {"root": self.root, "ok": self.ok, "images_present": self.images_present,
                "n_cases": len(self.cases), "usable": self.usable, "unusable": self.unusable,
                "problems": [_err_dict(p) for p in self.problems], "notes": list(self.notes),
                "cases": [c.to_dict() for c in self.cases]}

    def to_text(self, *, verbose: bool = True) -> str:
        out = [f"Cohort {self.root}"]
        kind = "images and clinical table" if self.images_present else \
            "clinical table only (no case folders)"
        out.append(f"  {len(self.cases)} case(s); {kind}")
        for p in self.problems:
            out.append(f"  PROBLEM {p}")
        for n in self.notes:
            out.append(f"  note: {n}")
        for c in self.cases:
            status = "usable" if c.usable else "NOT USABLE"
            if not verbose and c.usable and not c.notes:
                continue
            head = f"- {c.case_id}: {status}"
            if not c.in_table:
                head += " (folder without a row in cohort.csv)"
            out.append(head)
            for fr in c.files.values():
                out.append(f"    found {fr.describe()}")
            for p in c.problems:
                out.append(f"    PROBLEM {p}")
            for n in c.notes:
                out.append(f"    note: {n}")
        out.append(f"Summary: {len(self.usable)} usable, {len(self.unusable)} not usable"
                   + (f", {len(self.problems)} cohort-level problem(s)" if self.problems else ""))
        if self.unusable:
            out.append("Not usable: " + ", ".join(self.unusable))
        return "\n".join(out)


def _orientation(direction: tuple[float, ...], dim: int) -> str | None:
    import SimpleITK as sitk
    d = np.asarray(direction, float).reshape(dim, dim)
    if dim < 3:
        return None
    d3 = d[:3, :3]
    try:
        code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
            tuple(float(v) for v in d3.ravel()))
    except Exception:  # noqa: BLE001 - odd matrices only lose the code
        return None
    oblique = np.max(np.abs(d3), axis=0).min() < 0.999
    return code + (" (oblique)" if oblique else "")


def _short(exc: Exception) -> str:
    """First meaningful line of an ITK / IO error, without source paths."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("sitk::ERROR:"):
            return ln[len("sitk::ERROR:"):].strip()
    for ln in lines:
        low = ln.lower()
        if ("exception" in low and ".h:" in low) or low.startswith("/"):
            continue
        return ln[:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _read_sitk(path: Path, name: str, case_id: str):
    """Read one image as a SimpleITK image (via her2core.imaging when available)."""
    import SimpleITK as sitk
    rel = _rel(path)
    try:
        from her2core.imaging import load_image  # type: ignore
    except ImportError:
        load_image = None
    # header first: refuse absurd declared sizes before allocating (imaging does its own)
    if load_image is None and path.is_file() and path.suffix not in (".png", ".dcm"):
        r = sitk.ImageFileReader()
        r.SetFileName(str(path))
        try:
            r.ReadImageInformation()
        except RuntimeError as exc:
            raise ImageLoadError(f"cannot be read as an image: {_short(exc)}", case_id=case_id,
                                 file=rel, hint="re-export the file") from None
        nvox = int(np.prod(r.GetSize(), dtype=np.int64)) * max(1, r.GetNumberOfComponents())
        if nvox > MAX_VOXELS:
            raise InputLimitError(f"declares {nvox} voxels, more than the limit {MAX_VOXELS}",
                                  case_id=case_id, file=rel)
    spacing_known = True
    if load_image is not None:
        try:
            img = load_image(path, sequence=name)
        except Her2Error as err:
            # name the file relative to the cohort; drop absolute paths and ITK object ids
            err.case_id, err.file = case_id, rel
            err.message = re.sub(r"\w+ImageIO\(0x[0-9a-fA-F]+\):\s*", "",
                                 err.message.replace(str(path), rel))
            err.args = (str(err),)
            raise
        except Exception as exc:  # noqa: BLE001 - report, never crash the batch
            raise ImageLoadError(f"cannot be read: {_short(exc)}", case_id=case_id,
                                 file=rel) from None
        spacing_known = bool(getattr(img, "spacing_known", True))
        return img.to_sitk(), spacing_known
    try:
        if path.is_dir():
            ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
            if not ids:
                raise ImageLoadError("folder holds no DICOM series", case_id=case_id, file=rel)
            if len(ids) > 1:
                raise ImageLoadError(f"folder holds {len(ids)} DICOM series, expected one",
                                     case_id=case_id, file=rel)
            rd = sitk.ImageSeriesReader()
            rd.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), ids[0]))
            img = rd.Execute()
        else:
            img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageLoadError(f"cannot be read: {_short(exc)}", case_id=case_id,
                             file=rel) from None
    if img.GetNumberOfComponentsPerPixel() > 1:
        img = sitk.VectorIndexSelectionCast(img, 0) if img.GetNumberOfComponentsPerPixel() < 3 \
            else sitk.RescaleIntensity(sitk.Cast(sitk.VectorMagnitude(img), sitk.sitkFloat32), 0, 255)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        spacing_known = False
    return img, spacing_known


def _squeeze_2d(img):
    """A 3-D image with a single slice counts as 2-D (US stored as NIfTI)."""
    import SimpleITK as sitk
    if img.GetDimension() == 3 and img.GetSize()[2] == 1:
        return sitk.Extract(img, (img.GetSize()[0], img.GetSize()[1], 0), (0, 0, 0))
    return img


def _bbox_phys(img, arr: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Physical bounding box (LPS) of the labelled voxels (or of the whole grid)."""
    dim = img.GetDimension()
    if arr is None:
        lo, hi = np.zeros(dim), np.asarray(img.GetSize(), float) - 1
    else:
        nz = np.argwhere(arr > 0)
        lo, hi = nz.min(0)[::-1].astype(float), nz.max(0)[::-1].astype(float)
    corners = []
    for bits in range(2 ** dim):
        idx = [hi[k] if (bits >> k) & 1 else lo[k] for k in range(dim)]
        corners.append(img.TransformContinuousIndexToPhysicalPoint([float(i) for i in idx]))
    c = np.asarray(corners)
    half = 0.5 * np.abs(np.asarray(img.GetDirection()).reshape(dim, dim) @ np.asarray(img.GetSpacing()))
    return c.min(0) - half, c.max(0) + half


def _check_mask(case_id: str, name: str, mask, rel: str, ref, ref_name: str, ref_rel: str,
                fr: FileReport) -> list[Her2Error]:
    import SimpleITK as sitk
    probs: list[Her2Error] = []
    arr = sitk.GetArrayFromImage(mask)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.allclose(arr, np.round(arr)):
            probs.append(MaskError("is not a label map (non-integer values)", case_id=case_id,
                                   file=rel, hint="save the ROI as integer labels 0 / 1"))
            return probs
        arr = np.round(arr).astype(np.int64)
    labels = sorted(int(v) for v in np.unique(arr) if v != 0)
    fr.labels = labels
    fr.voxels = int((arr != 0).sum())
    if not labels:
        probs.append(MaskError("mask is empty (no labelled voxel)", case_id=case_id, file=rel,
                               hint="draw the tumour ROI or remove the file"))
        return probs
    if len(labels) > 1:
        shown = ", ".join(map(str, labels[:6])) + (" ..." if len(labels) > 6 else "")
        probs.append(MaskError(f"mask has several labels ({shown}) and none is chosen",
                               case_id=case_id, file=rel,
                               hint="keep only the tumour label, or choose one label"))
    if ref is None:
        return probs
    if mask.GetDimension() != ref.GetDimension():
        probs.append(GeometryError(f"mask is {mask.GetDimension()}-D but {ref_rel} is "
                                   f"{ref.GetDimension()}-D", case_id=case_id, file=rel))
        return probs
    from her2core.imaging.image import grid_differences
    diffs = grid_differences(mask, ref)
    if diffs:
        lo_m, hi_m = _bbox_phys(mask, arr)
        lo_r, hi_r = _bbox_phys(ref)
        if np.any(hi_m < lo_r) or np.any(lo_m > hi_r):
            probs.append(MaskError(f"the ROI lies outside {ref_rel} (no overlap in physical "
                                   "space)", case_id=case_id, file=rel,
                                   hint="the mask belongs to another image or has a wrong origin"))
        elif ref.GetDimension() == 2 and mask.GetSize() == ref.GetSize():
            pass  # 2-D PNG pairs carry no geometry: same pixel grid is enough
        else:
            probs.append(GeometryError(f"mask is not on the grid of {ref_rel}: "
                                       + "; ".join(diffs), case_id=case_id, file=rel,
                                       hint=f"export the mask on the {ref_name} grid "
                                       "(or resample it nearest-neighbour)"))
        return probs
    # same grid: ROI touching the border may be cut off (warning-level, reported by caller)
    return probs


def _edge_note(arr: np.ndarray) -> bool:
    nz = np.argwhere(arr > 0)
    if nz.size == 0:
        return False
    shape = np.asarray(arr.shape)
    inplane = slice(-2, None)
    return bool(np.any(nz.min(0)[inplane] == 0) or np.any(nz.max(0)[inplane] == shape[inplane] - 1))


def _validate_case(root: Path, case_id: str, cr: CaseReport) -> None:
    import SimpleITK as sitk
    case_dir = root / CASES_DIR / case_id
    files, probs, notes = _discover(case_dir, case_id)
    cr.problems.extend(probs)
    cr.notes.extend(notes)
    present = files.present()
    if not present:
        cr.problems.append(CohortError("case folder holds no recognised image",
                                       case_id=case_id, file=f"{CASES_DIR}/{case_id}/",
                                       hint="expected T1/T2/DCE/DCE_phases/mask/US/US_mask "
                                            "files"))
        return
    loaded: dict[str, Any] = {}
    for name, path in present.items():
        exts, dim, _ = IMAGE_NAMES[name]
        rel = _rel(path)
        fr = FileReport(name, rel)
        cr.files[name] = fr
        try:
            img, known = _read_sitk(path, name, case_id)
        except Her2Error as err:
            cr.problems.append(err)
            continue
        except Exception as exc:  # noqa: BLE001 - report, never crash the batch
            cr.problems.append(ImageLoadError(f"cannot be read: {_short(exc)}",
                                              case_id=case_id, file=rel))
            continue
        if dim == 2:
            img = _squeeze_2d(img)
        d = img.GetDimension()
        fr.dimension, fr.pixel_type, fr.spacing_known = d, img.GetPixelIDTypeAsString(), known
        fr.size, fr.spacing = tuple(img.GetSize()), tuple(img.GetSpacing())
        if d == 4:
            fr.n_phases = img.GetSize()[3]
            fr.size, fr.spacing = fr.size[:3], fr.spacing[:3]
            d4 = np.asarray(img.GetDirection()).reshape(4, 4)[:3, :3]
            fr.orientation = _orientation(tuple(d4.ravel()), 3)
        else:
            fr.orientation = _orientation(img.GetDirection(), d)
        if d != dim:
            expect = {2: "2-D", 3: "3-D", 4: "4-D (phases)"}[dim]
            cr.problems.append(ImageLoadError(
                f"is {d}-D{' ' + 'x'.join(map(str, img.GetSize())) if d else ''} but a "
                f"{expect} image is expected for {name}", case_id=case_id, file=rel,
                hint="DCE phases go to DCE_phases, one 3-D volume per sequence"
                if dim == 3 else None))
            continue
        if name == "DCE_phases" and fr.n_phases is not None and fr.n_phases < 2:
            cr.problems.append(ImageLoadError("DCE_phases holds fewer than 2 phases",
                                              case_id=case_id, file=rel))
            continue
        if name == "DCE_phases" and files.DCE_phases_times is not None:
            from her2core.imaging.kinetics import read_phase_times
            try:
                read_phase_times(files.DCE_phases_times, n_phases=fr.n_phases, case_id=case_id)
            except Her2Error as err:
                cr.problems.append(err)
        loaded[name] = img
    # masks against their reference image
    for mname, refs in MASK_REFERENCE.items():
        if mname not in loaded:
            continue
        # the reference is the first of refs the case has (DCE, else T1); when that
        # one is unreadable the geometry cannot be checked (its own problem is listed)
        ref_name = next((r for r in refs if r in present), None)
        mask = loaded[mname]
        rel = cr.files[mname].path
        if ref_name is not None and ref_name not in loaded:
            _check_mask(case_id, mname, mask, rel, None, "", "", cr.files[mname])
            cr.notes.append(f"{mname}: geometry not checked because {ref_name} is unreadable")
            continue
        if ref_name is None:
            cr.problems.append(CohortError(
                f"{mname} present but the case has no {' or '.join(refs)} image to hold it",
                case_id=case_id, file=rel))
            continue
        ref = loaded.get(ref_name) if ref_name else None
        ref_rel = cr.files[ref_name].path if ref_name else ""
        mprobs = _check_mask(case_id, mname, mask, rel, ref, ref_name or "", ref_rel,
                             cr.files[mname])
        cr.problems.extend(mprobs)
        if not mprobs and ref is not None:
            if _edge_note(sitk.GetArrayFromImage(mask)):
                cr.notes.append(f"{mname}: the ROI touches the edge of the image "
                                "(the tumour may be cut off)")
            _imaging_check(case_id, mname, mask, ref, rel, cr)
    # images without the ROI that every image feature needs
    mri = [n for n in ("DCE", "T1", "T2", "DCE_phases") if n in present]
    if mri and "mask" not in present:
        cr.problems.append(MaskError(
            f"missing: the case has {', '.join(mri)} but no tumour ROI", case_id=case_id,
            file=f"{CASES_DIR}/{case_id}/mask.nii.gz",
            hint="add mask.nii.gz on the DCE grid (or draw it in the app)"))
    if "US" in present and "US_mask" not in present:
        cr.problems.append(MaskError(
            "missing: the case has an ultrasound image but no tumour ROI", case_id=case_id,
            file=f"{CASES_DIR}/{case_id}/US_mask.png",
            hint="add US_mask.png (or .nii.gz) of the same size as the image"))
    if files.DCE_phases_times is not None and "DCE_phases" not in present:
        cr.notes.append(f"{PHASE_TIMES_NAME} without DCE_phases: the phase times are not used")
    if "mask_reader2" in present and "mask" not in present:
        cr.notes.append("mask_reader2 without mask: no reader agreement can be computed")


def _imaging_check(case_id, mname, mask, ref, rel, cr: CaseReport) -> None:
    """Second opinion from her2core.imaging.check_mask when that module is present."""
    try:
        from her2core.imaging import Image, check_mask  # type: ignore
    except ImportError:
        return
    try:
        m = Image.from_sitk(mask, sequence="mask", modality="SEG", source=rel)
        r = Image.from_sitk(ref, sequence=None, modality=None, source=None)
        check_mask(m, r)
    except Her2Error as err:
        err.case_id, err.file = case_id, rel
        err.args = (str(err),)
        cr.problems.append(err)
    except Exception as exc:  # noqa: BLE001 - a checker bug must not hide the other cases
        log.debug("imaging.check_mask failed on %s: %s", rel, exc)


def validate_cohort(root: str | Path) -> ValidationReport:
    """Check every case of a cohort folder: table values, files, geometry, masks.

    Never raises for problems in the input: they are collected in the report.
    """
    import SimpleITK as sitk
    root = Path(root)
    rep = ValidationReport(str(root))
    warn_state = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        try:
            cohort = read_cohort(root, on_problem="keep")
        except CohortError as err:
            rep.problems.append(err)
            return rep
        table = cohort.table
        rep.notes.extend(cohort.notes)
        cases_dir = root / CASES_DIR
        entries = sorted(cases_dir.iterdir()) if cases_dir.is_dir() else []
        hidden = [p.name for p in entries if p.name.startswith((".", "__"))]
        folders = [p.name for p in entries if p.is_dir() and p.name not in hidden]
        stray = [p.name for p in entries if not p.is_dir() and p.name not in hidden]
        if hidden:
            rep.notes.append(f"ignored hidden entries under cases/: {', '.join(hidden[:5])}")
        rep.images_present = bool(folders)
        by_id: dict[str, CaseReport] = {}
        for cid in table.index:
            if cid and cid not in by_id:
                by_id[cid] = CaseReport(cid)
        for p in cohort.problems:
            key = p.case_id
            if not key:  # a row without case_id: reported under its line number
                m = re.search(r"\(line (\d+)\)", p.message)
                key = f"(line {m.group(1)})" if m else None
                if key and key not in by_id:
                    by_id[key] = CaseReport(key)
            if key in by_id:
                by_id[key].problems.append(p)
            else:
                rep.problems.append(p)
        for name in stray:
            rep.notes.append(f"ignored file {CASES_DIR}/{name}: each case needs its own "
                             f"folder {CASES_DIR}/<case_id>/")
        for key, cr in by_id.items():
            if not is_safe_case_id(key):
                continue  # never touch the file system with an unsafe id
            cr.has_folder = key in folders
            if cr.has_folder:
                try:
                    _validate_case(root, key, cr)
                except Exception as exc:  # noqa: BLE001 - one odd case must not stop the rest
                    log.debug("checking case %s failed", key, exc_info=True)
                    cr.problems.append(CohortError(
                        f"could not be checked: {type(exc).__name__}: {_short(exc)}",
                        case_id=key, file=f"{CASES_DIR}/{key}/",
                        hint="run with -v for details and report it if the files look right"))
            elif rep.images_present:
                cr.problems.append(CohortError(
                    "row in cohort.csv but no case folder", case_id=key,
                    file=f"{CASES_DIR}/{key}/",
                    hint="add the folder with its images, or remove the row"))
        for name in folders:
            if name in by_id:
                continue
            cr = CaseReport(name, in_table=False, has_folder=True)
            if not is_safe_case_id(name):
                cr.problems.append(CohortError("unsafe folder name", case_id=name,
                                               file=f"{CASES_DIR}/{name}/"))
            else:
                cr.problems.append(CohortError("case folder without a row in cohort.csv",
                                               case_id=name, file=f"{CASES_DIR}/{name}/",
                                               hint="add a row for it, or remove the folder"))
            by_id[name] = cr
        rep.cases = list(by_id.values())
        if not rep.cases:
            rep.problems.append(CohortError("cohort.csv has no case rows", file=CSV_NAME))
        return rep
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn_state)
