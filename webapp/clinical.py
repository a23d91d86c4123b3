"""Clinical fields of cohort-format.md with units and plausible ranges for the form."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str                     # "number" | "binary" | "choice"
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    step: float = 1.0
    options: tuple[str, ...] = ()
    help: str = ""


FIELDS: tuple[Field, ...] = (
    Field("age", "Age", "number", "years", 18, 100, 1.0),
    Field("menopausal", "Post-menopausal", "binary"),
    Field("er", "ER positive", "binary", help=">= 1 % stained cells"),
    Field("pr", "PR positive", "binary", help=">= 1 % stained cells"),
    Field("ki67", "Ki-67", "number", "%", 0, 100, 1.0),
    Field("grade", "Histological grade", "choice", options=("1", "2", "3")),
    Field("tumor_size_mm", "Tumour size (largest diameter)", "number", "mm", 1, 200, 0.5),
    Field("multifocal", "Multifocal", "binary"),
    Field("aln_abnormal", "Abnormal axillary node", "binary"),
    Field("aln_diameter_mm", "Largest axillary node", "number", "mm", 1, 80, 0.5),
    Field("enhancement_curve", "DCE curve type", "choice", options=("persistent", "plateau", "washout")),
    Field("peritumoral_edema", "Peritumoral oedema", "binary"),
    Field("intratumoral_edema", "Intratumoral oedema", "binary"),
    Field("rim_enhancement", "Rim enhancement", "binary"),
    Field("microcalcification", "Microcalcification", "binary"),
    Field("nme", "Non-mass enhancement", "binary"),
    Field("mass_shape", "Mass shape", "choice", options=("round_oval", "irregular")),
    Field("adc_min", "ADC min", "number", "10^-3 mm^2/s", 0.2, 3.0, 0.01),
    Field("eer", "Early enhancement rate", "number", "ratio", 0.0, 3.0, 0.01),
)
BY_NAME = {f.name: f for f in FIELDS}


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
        elif f.kind == "binary":
            out[f.name] = int(float(v))
        elif f.name == "grade":
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
        v = values.get(f.name)
        if is_missing(v):
            continue
        if f.kind == "number":
            try:
                x = float(v)
            except (TypeError, ValueError):
                problems.append(f"{f.label}: {v!r} is not a number")
                continue
            if not math.isfinite(x) or (f.lo is not None and x < f.lo) or (f.hi is not None and x > f.hi):
                problems.append(f"{f.label}: {x:g} {f.unit} is outside {f.lo:g}-{f.hi:g} {f.unit}")
        elif f.kind == "binary" and str(v) not in ("0", "1", "0.0", "1.0"):
            problems.append(f"{f.label}: must be 0 or 1, not {v!r}")
        elif f.kind == "choice" and str(v) not in f.options and not (
                f.name == "grade" and str(v) in ("1.0", "2.0", "3.0")):
            problems.append(f"{f.label}: {v!r} is not one of {', '.join(f.options)}")
    return problems
