"""Assemble the one-case report (her2core.report) from the session."""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from her2core import report as R
from her2core import viewer as V
from her2core.errors import Her2Error

from . import services as S
from . import widgets as W


def slice_figures(case, roi_seq: str | None, mask_canonical) -> list[R.ReportFigure]:
    """One axial slice per sequence through the ROI centre, with the ROI outline where on-grid."""
    figs = []
    for s in case.sequences:
        img, can = S.canonical_for(case, s)
        k = can.n_slices("axial") // 2
        m = None
        if mask_canonical is not None and roi_seq is not None:
            rimg, _ = S.canonical_for(case, roi_seq)
            if s == roi_seq or (img.same_grid(rimg) and not can.is_2d):
                drawn = V.MaskEditor(mask_canonical).drawn_slices("axial")
                if drawn:
                    k = drawn[len(drawn) // 2]
                m = can.get_slice("axial", k, mask_canonical)
        grey = V.apply_window(can.get_slice("axial", k), *V.window_presets(can.array)["Auto (1-99 %)"])
        rgb = V.compose_rgb(grey, mask=m, mask_opacity=0.25)
        f = max(1, int(round(256 / max(rgb.shape[:2]))))
        rgb = np.repeat(np.repeat(rgb, f, axis=0), f, axis=1)
        figs.append(R.ReportFigure(f"{s} axial slice {k + 1}", V.rgb_to_png_bytes(rgb),
                                   "ROI outlined" if m is not None else "no ROI on this grid"))
    return figs


def build_report(case, clinical: dict[str, Any], threshold: float, part=None, cp=None,
                 task: str = "her2") -> R.CaseReport:
    roi_seq, mask = W.current_mask(case)
    bundle = S.current_bundle()
    env = S.environment()
    case_d: dict[str, Any] = {"source": case.source, "note": case.note, "sequences": case.sequences,
                              "file_sha256": dict(case.hashes), "clinical": dict(clinical)}
    if mask is not None:
        _, can = S.canonical_for(case, roi_seq)
        sx, sy, sz = can.spacing
        case_d.update({"roi_sequence": roi_seq, "roi_voxels": int(mask.sum()),
                       "roi_volume_ml": None if can.is_2d else round(float(mask.sum()) * sx * sy * sz / 1000, 4),
                       "roi_sha256": hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()})
    if case.label:
        case_d["known_label"] = case.label
    pred: dict[str, Any] = {"threshold": threshold, "task": task}
    figs = slice_figures(case, roi_seq, mask)
    if cp is not None:
        pred.update({"probability": cp.probability,
                     "interval": list(cp.interval) if cp.interval else None,
                     "interval_method": cp.interval_method, "imputed": list(cp.imputed),
                     "out_of_range": list(cp.out_of_range)})
        if task == "her2":
            pred["p_her2"] = cp.probability
        if cp.points:
            pred.update({"total_points": cp.points["total_points"], "points": cp.points["points"]})
        if cp.contributions is not None:
            c = cp.contributions
            pred["contributions"] = [{"predictor": p, "value": v, "contribution": float(x)}
                                     for p, v, x in zip(c.predictors, c.values, c.contributions)]
            pred["shap_base_value"] = float(c.base_value)
            pred["shap_method"] = c.method
            figs.append(R.ReportFigure("SHAP contributions", R.contributions_png(
                pred["contributions"], float(c.base_value)), c.method))
    if part is not None:
        ts = part.tasks.get(task)
        if ts is not None:
            pred["image_scores"] = dict(ts.scores)
            from .predict import cam_overlay_rgb
            for r in ts.gradcam:
                try:
                    figs.append(R.ReportFigure(f"Grad-CAM {r.sequence} / {r.backbone}",
                                               V.rgb_to_png_bytes(cam_overlay_rgb(case, r.sequence,
                                                                                  r.map_image)),
                                               " ".join(ts.gradcam_notes)))
                except Her2Error:  # a map that cannot be drawn is left out
                    continue
    model: dict[str, Any] = {"available": bundle is not None}
    if bundle is not None:
        model.update({"name": bundle.name, "path": str(bundle.path), "checksum": bundle.checksum,
                      "random_init": bundle.random_init, "weights": bundle.weights,
                      "tasks": bundle.tasks, "model_card": bundle.summary()})
    else:
        model["message"] = S.NO_BUNDLE
    software = {k: v for k, v in env.items() if k not in ("device",)}
    notes = []
    if cp is None:
        notes.append("No prediction in this report (not run on the Prediction page).")
    return R.CaseReport(case_id=case.case_id, case=case_d, prediction=pred, model=model,
                        software=software, figures=figs, notes=notes)
