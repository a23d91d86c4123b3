"""Explain one case of a cohort: the library behind `explain`.

The numbers come from :class:`her2core.predictor.CasePredictor`, the runtime the
app uses, so a case's probability, nomogram points and SHAP contributions are the
same here and in the app. The SHAP reference population is the bundle's own
(its training cases' second-level inputs with out-of-fold block scores); with
``background`` another cohort's cases are used instead (their block scores
computed by the final model), and the result says so.

Files written into ``out`` (when given):

* ``shap_<case>.csv`` - predictor, value, contribution, group (log-odds scale);
  ``#`` comment lines above the header give the base value, the prediction, the
  method, and (when it applies) that the backbones were randomly initialised;
* ``explain_<case>.html`` - waterfall of the case (and beeswarm / bar summaries of
  the reference population);
* ``gradcam/<case>_<sequence>_<backbone>_<method>.nii.gz`` - each map on its
  source image's grid (same size, spacing, origin, direction) and ``.png``
  overlays; ``gradcam/<case>_grid_<method>.png`` - sequences x backbones;
* ``explain_<case>.json`` - the numbers, file list, provenance and ``random_init``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2core import DISCLAIMER, __version__
from her2core.errors import BundleError, CohortError, Her2Error

log = logging.getLogger(__name__)

__all__ = ["ExplainResult", "explain_case", "case_clinical_values"]


@dataclass
class ExplainResult:
    case_id: str
    task: str
    probability: float
    interval: tuple[float, float] | None
    contributions: Any                            # PatientContributions
    points: dict | None
    cams: list = field(default_factory=list)      # explain.case.CamResult
    summary: dict = field(default_factory=dict)   # JSON-ready (explain_<case>.json)
    files: dict[str, str] = field(default_factory=dict)


def case_clinical_values(cohort, case_id: str) -> dict[str, Any]:
    """The case's cohort.csv row as clinical values (missing -> None; levels as text), with
    the computed columns (DCE kinetics) filled from its images as ``predict`` does."""
    from her2core.cohort import COMPUTED_COLUMNS
    from her2core.models.workflow import computed_columns
    row = cohort.table.loc[case_id]
    out = {}
    for k, v in row.items():
        out[str(k)] = None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
    if any(out.get(c) is None for c in COMPUTED_COLUMNS):
        comp = computed_columns(cohort, list(COMPUTED_COLUMNS), [str(case_id)]).iloc[0]
        for c in COMPUTED_COLUMNS:
            if out.get(c) is None and not pd.isna(comp[c]):
                out[c] = comp[c].item() if hasattr(comp[c], "item") else comp[c]
    return out


def explain_case(bundle, cohort, case_id: str, *, task: str = "her2", out=None,
                 method: str = "gradcam", background=None, background_max: int = 100,
                 cache_dir=None, direction: str = "auto", gradcam: bool = True,
                 opacity: float = 0.4, cmap: str = "cividis", time_budget_s: float = 60.0,
                 progress=None) -> ExplainResult:
    """SHAP contributions and Grad-CAM maps of one case (see the module docstring)."""
    from her2core.explain.figures import (RANDOM_INIT_NOTE, bar_figure, beeswarm_figure,
                                          save_cam_grid_png, waterfall_figure)
    from her2core.explain.gradcam import METHODS
    from her2core.explain.shap_explain import explain_model
    from her2core.features.extract import load_case
    from her2core.predictor import CasePredictor

    t0 = time.perf_counter()
    if method not in METHODS:
        raise Her2Error(f"unknown Grad-CAM method {method!r}", hint="choose one of " + ", ".join(METHODS))
    if not 0 <= opacity <= 1:
        raise Her2Error(f"opacity {opacity} outside 0..1")
    import matplotlib
    if cmap not in matplotlib.colormaps:
        raise Her2Error(f"colour map {cmap!r} is not a matplotlib colour map",
                        hint="e.g. cividis, viridis, inferno, magma")
    if task not in bundle.models:
        raise BundleError(f"bundle has no model for task {task!r} (tasks: {bundle.tasks})",
                          file=bundle.path)
    case = str(case_id)
    if case not in cohort.case_ids:
        raise CohortError("no such case in the cohort", case_id=case,
                          file=Path(cohort.root) / "cohort.csv", hint="check --case against cohort.csv")
    predictor = CasePredictor(bundle)
    images = masks = {}
    if predictor.config is not None:
        images, masks = load_case(cohort.files(case), predictor.config)
    part = predictor.image_part(images, masks, case_id=case, gradcam=gradcam and method == "gradcam",
                                progress=progress)
    clinical = case_clinical_values(cohort, case)
    cp = predictor.clinical_part(part, clinical, task)
    model = bundle.models[task]
    random_init = bundle.random_init
    warning = RANDOM_INIT_NOTE if random_init else None

    # ------------------------------------------------------------ SHAP reference
    pc = cp.contributions
    bg_rows, bg_label = predictor.background(task), "the bundle's training cases (out-of-fold scores)"
    if background is None and bg_rows is None:
        log.warning("the bundle carries no SHAP reference population (made by an older version): "
                    "the cohort's cases are used instead")
        background = cohort
    if background is not None:
        from her2core.cohort import read_cohort
        from her2core.models.workflow import compute_features, model_frame
        bg_c = background if hasattr(background, "case_ids") else read_cohort(background)
        ids = list(bg_c.case_ids)[: max(1, int(background_max))]
        feats = None
        if predictor.config is not None:
            res = compute_features(bg_c, predictor.config, cache_dir=cache_dir, case_ids=ids)
            feats = res["features"]
            for e in res["errors"]:
                log.warning("background case skipped: %s", e)
        Xb = model_frame(bg_c, feats, model.clinical_inputs())
        if feats is not None:
            Xb = Xb.loc[[i for i in Xb.index if i in feats.index]]
        bg_rows = model.second_level(Xb).reset_index(drop=True)
        bg_label = f"{len(bg_rows)} cases of {getattr(bg_c, 'root', background)} (block scores of the final model)"
        Z = predictor.second_level_row(part, clinical, task)
        pc = explain_model(model.final_estimator, bg_rows.reindex(columns=list(Z.columns)), Z,
                           case_ids=[case], time_budget_s=time_budget_s).patient(0)
    if pc is None:
        raise Her2Error("no SHAP contributions for this bundle: " + "; ".join(cp.notes),
                        case_id=case, file=bundle.path)
    if bg_rows is not None and len(bg_rows) < 20:
        log.warning("only %d reference case(s): the SHAP base value (their mean log-odds) is "
                    "unstable", len(bg_rows))
    cohort_res = None
    if bg_rows is not None and not pc.approximate:
        # every input of the final level (pc lists only those it uses)
        bgz = bg_rows.reindex(columns=list(predictor.second_level_row(part, clinical, task).columns))
        cohort_res = explain_model(model.final_estimator, bgz, bgz, method=pc.method,
                                   case_ids=[f"ref{i}" for i in range(len(bgz))])

    summary: dict[str, Any] = {
        "case_id": case, "task": task, "random_init": random_init, "warning": warning,
        "disclaimer": DISCLAIMER, "bundle": str(bundle.path), "bundle_checksum": bundle.checksum,
        "probability": cp.probability, "interval": list(cp.interval) if cp.interval else None,
        "interval_method": cp.interval_method, "imputed": cp.imputed,
        "out_of_range": cp.out_of_range, "notes": cp.notes,
        "nomogram": ({"total_points": cp.points["total_points"], "points": cp.points["points"]}
                     if cp.points else None),
        "shap": {"method": pc.method, "approximate": pc.approximate, "note": pc.note,
                 "scale": pc.scale, "base_value": pc.base_value, "prediction": pc.prediction,
                 "probability": pc.probability,
                 "sum_of_contributions": float(np.sum(pc.contributions)),
                 "additivity_error": pc.additivity_error,
                 "group_totals": pc.group_totals(), "background": bg_label,
                 "n_background": int(len(bg_rows)) if bg_rows is not None else 0},
        "gradcam": [], "gradcam_notes": [], "weights": bundle.weights, "her2core": __version__,
    }
    result = ExplainResult(case_id=case, task=task, probability=cp.probability,
                           interval=cp.interval, contributions=pc, points=cp.points, summary=summary)

    # ------------------------------------------------------------ Grad-CAM
    cams = []
    if gradcam and predictor.config is not None:
        if method == "gradcam":
            cams = part.tasks[task].gradcam
            summary["gradcam_notes"] = list(part.tasks[task].gradcam_notes)
        else:
            from her2core.explain.case import case_gradcam
            skipped: list[str] = []
            cams = case_gradcam(model, predictor.config, predictor.backbones(), images, masks,
                                part.features, method=method, case_id=case, direction=direction,
                                skipped=skipped, only_used=True)
            summary["gradcam_notes"] = skipped
    result.cams = list(cams)
    if out is None:
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        return result

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"shap_{case}.csv"
    header = [f"# her2core {__version__} explain: case {case}, task {task}, bundle {bundle.path}",
              f"# scale {pc.scale}; base value (background mean) {pc.base_value:.10g}; "
              f"prediction {pc.prediction:.10g}; p = {pc.probability:.6g}",
              f"# method {pc.method}; approximate {pc.approximate}; {pc.note}",
              f"# background: {bg_label}",
              f"# {DISCLAIMER}"]
    if random_init:
        header.insert(1, "# RANDOM-INIT weights: " + (warning or RANDOM_INIT_NOTE))
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        fh.write("\n".join(header) + "\n")
        pc.to_frame().to_csv(fh, index=False, float_format="%.12g")
    result.files["csv"] = str(csv_path)
    cells = {}
    if cams:
        from her2core.explain.figures import save_overlay_png
        from her2core.explain.placement import save_map
        gdir = out / "gradcam"
        for r in cams:
            stem = f"{case}_{r.sequence}_{r.backbone}_{r.method}".replace("+", "pp")
            desc = f"her2core {r.method} {r.sequence} {r.backbone} D-score" + \
                (" RANDOM-INIT weights: not meaningful" if r.random_init else "")
            save_map(r.map_image, gdir / f"{stem}.nii.gz", description=desc)
            side = "raises" if r.direction == "positive" else "lowers"
            save_overlay_png(gdir / f"{stem}.png", r.image_slice, r.map_slice,
                             title=f"{case} {r.sequence} {r.backbone} {r.method}: what {side} the "
                                   f"D-score ({r.dscore_head:+.3f})",
                             cmap=cmap, opacity=opacity, random_init=r.random_init)
            img = images[r.sequence]
            summary["gradcam"].append({
                "sequence": r.sequence, "backbone": r.backbone, "method": r.method,
                "target_layer": r.target_layer, "weights": r.weights, "random_init": r.random_init,
                "dscore_head": r.dscore_head, "dscore_model": r.dscore_model,
                "target_side": r.direction, "slice_index": r.slice_index, "empty": r.empty,
                "notes": r.notes, "nifti": str(gdir / f"{stem}.nii.gz"),
                "png": str(gdir / f"{stem}.png"), "same_grid_as_image": r.map_image.same_grid(img),
                "size": list(r.map_image.size), "spacing": list(r.map_image.spacing),
                "origin": list(r.map_image.origin), "direction": list(r.map_image.direction)})
            cells[(r.sequence, r.backbone)] = (r.image_slice, r.map_slice)
        grid = save_cam_grid_png(gdir / f"{case}_grid_{method}.png".replace("+", "p"), cells,
                                 title=f"{case}: {method} maps of each D-score the model uses",
                                 cmap=cmap, opacity=opacity, random_init=random_init)
        summary["gradcam_grid"] = str(grid) if grid else None
    figs = [waterfall_figure(pc)]
    if cohort_res is not None:
        figs += [beeswarm_figure(cohort_res), bar_figure(cohort_res)]
    if cells:
        from her2core.explain.figures import cam_grid_figure
        figs.append(cam_grid_figure(cells, cmap=cmap, opacity=opacity,
                                    title=f"{case}: {method} maps of each D-score the model uses",
                                    random_init=random_init))
    html_path = out / f"explain_{case}.html"
    with open(html_path, "w", encoding="utf-8") as fh:
        fh.write("<html><head><meta charset='utf-8'><title>her2core explain</title></head><body>")
        fh.write(f"<p><b>{DISCLAIMER}</b></p>")
        if random_init:
            fh.write(f"<p style='color:red'><b>{warning}</b></p>")
        for i, f in enumerate(figs):
            fh.write(f.to_html(full_html=False, include_plotlyjs=(i == 0)))
        fh.write("</body></html>")
    result.files["html"] = str(html_path)
    summary["shap"]["csv"], summary["shap"]["html"] = str(csv_path), str(html_path)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    jpath = out / f"explain_{case}.json"
    jpath.write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    result.files["json"] = str(jpath)
    return result
