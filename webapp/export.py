"""Assemble the one-case report (her2core.report) from the session."""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from her2core import report as R
from her2core import viewer as V

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


def build_report(case, clinical: dict[str, Any], threshold: float, part=None, cp=None) -> R.CaseReport:
    roi_seq, mask = W.current_mask(case)
    info = S.bundle_info()
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
    pred: dict[str, Any] = {"threshold": threshold}
    figs = slice_figures(case, roi_seq, mask)
    if cp is not None:
        pred.update({"p_her2": cp.p_her2, "p_her2_interval": list(cp.p_interval) if cp.p_interval else None,
                     "interval_method": cp.interval_method, "p_her2_low": cp.p_low})
        if cp.patient_points:
            pred.update({"total_points": cp.patient_points["total_points"],
                         "points": cp.patient_points["points"], "point_values": cp.point_values,
                         "out_of_range": cp.patient_points.get("out_of_range", [])})
        if cp.contributions is not None:
            c = cp.contributions
            pred["contributions"] = [{"predictor": p, "value": v, "contribution": float(x)}
                                     for p, v, x in zip(c.predictors, c.values, c.contributions)]
            pred["shap_base_value"] = float(c.base_value)
            pred["shap_method"] = c.method
            figs.append(R.ReportFigure("SHAP contributions", R.contributions_png(
                pred["contributions"], float(c.base_value)), c.method))
    if part is not None:
        pred["image_scores"] = dict(part.scores)
        from .predict import cam_overlay_rgb
        for (s, bb), cam in sorted(part.gradcam.items()):
            try:
                figs.append(R.ReportFigure(f"Grad-CAM {s} / {bb}",
                                           V.rgb_to_png_bytes(cam_overlay_rgb(case, s, cam, roi_seq, mask)),
                                           part.gradcam_note))
            except Exception:  # noqa: BLE001 - a map that cannot be drawn is left out
                continue
    model = {"available": info.available, "name": info.name, "path": info.path,
             "checksum": info.checksum, "random_init": info.random_init, "weights": info.weights,
             "tasks": info.tasks}
    if info.card:
        model["model_card"] = {k: info.card[k] for k in list(info.card)[:12]}
    if not info.available:
        model["message"] = info.message
    software = {k: v for k, v in env.items() if k not in ("device",)}
    notes = []
    if cp is None:
        notes.append("No prediction in this report (not run, or not available in this build).")
    return R.CaseReport(case_id=case.case_id, case=case_d, prediction=pred, model=model,
                        software=software, figures=figs, notes=notes)
