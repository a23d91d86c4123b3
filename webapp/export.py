"""Assemble the one-case report (her2core.report.build_case_report) from the session."""
from __future__ import annotations

from typing import Any

from her2core import report as R

from . import services as S
from . import widgets as W


def build_report(case, clinical: dict[str, Any], threshold: float, part=None, cp=None,
                 task: str = "her2") -> R.CaseReport:
    """The report of the open case: its images and ROIs, the session's clinical values and
    threshold, and the prediction (``part`` / ``cp``) when it was run."""
    pairs = {s: S.canonical_for(case, s) for s in case.sequences}
    bundle = S.current_bundle()
    cp_low = None
    pred = S.current_predictor()
    if part is not None and cp is not None and task == "her2" and pred is not None \
            and "her2_low" in pred.tasks:
        cp_low = pred.clinical_part(part, clinical, "her2_low", shap=False)
    info = {"source": case.source, "note": case.note, "file_sha256": dict(case.hashes),
            "known_label": case.label or None}
    software = {k: v for k, v in S.environment().items() if k not in ("device",)}
    return R.build_case_report(
        case.case_id, views={s: c for s, (_, c) in pairs.items()},
        images={s: i for s, (i, _) in pairs.items()}, rois=W.case_rois(case),
        clinical=clinical, threshold=threshold, task=task, bundle=bundle,
        part=part, cp=cp, cp_low=cp_low, case_info=info, software=software)
