"""`python -m her2core explain`: SHAP contributions and Grad-CAM maps for one case.

Writes into --out:

* ``shap_<case>.csv`` - predictor, value, contribution, group (log-odds scale);
  ``#`` comment lines above the header give the base value, the prediction, the
  method, and (when it applies) that the backbones were randomly initialised;
* ``explain_<case>.html`` - waterfall of the case, beeswarm and bar summaries of
  the reference cohort (plotly);
* ``gradcam/<case>_<sequence>_<backbone>_<method>.nii.gz`` - each map on its
  source image's grid (same size, spacing, origin, direction) and ``.png``
  overlays; ``gradcam/<case>_grid_<method>.png`` - sequences x backbones;
* ``explain_<case>.json`` - the numbers, file list, provenance and a
  ``random_init`` field.

The reference (background) cohort for SHAP is the cohort the case is read from
(up to --background-max cases, the case included), or --background.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from her2core import DISCLAIMER, __version__
from her2core.errors import BundleError, CohortError, Her2Error

NAME = "explain"
HELP = ("SHAP contributions (CSV + HTML figures) and Grad-CAM maps (NIfTI + PNG) of a bundle's "
        "prediction for one case")

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    from her2core.explain.gradcam import METHODS
    p.add_argument("--bundle", required=True, metavar="BUNDLE", help="model bundle directory")
    p.add_argument("--cohort", required=True, metavar="DIR",
                   help="cohort folder holding the case; also the SHAP reference population")
    p.add_argument("--case", required=True, metavar="ID", help="case_id to explain")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--method", choices=METHODS, default="gradcam",
                   help="CAM method (default gradcam; scorecam runs one forward pass per channel of "
                        "the target layer: minutes per map on a CPU)")
    p.add_argument("--task", default="her2", help="bundle task (default her2)")
    p.add_argument("--background", metavar="DIR",
                   help="reference cohort for SHAP (default: the --cohort itself), e.g. the "
                        "training cohort when --cohort holds a single new case")
    p.add_argument("--background-max", type=int, default=100, metavar="N",
                   help="at most N reference cases as the SHAP background (default 100)")
    p.add_argument("--cache", metavar="DIR", help="feature cache folder (default: none)")
    p.add_argument("--direction", choices=("auto", "positive", "negative"), default="auto",
                   help="map what raises the D-score (positive), what lowers it (negative), or "
                        "auto: positive unless that map is empty, then negative (default)")
    p.add_argument("--no-gradcam", action="store_true", help="SHAP only")
    p.add_argument("--opacity", type=float, default=0.4, help="overlay opacity 0..1 (default 0.4)")
    p.add_argument("--cmap", default="jet", help="matplotlib colour map of the overlays (default jet)")
    p.add_argument("--time-budget", type=float, default=60.0, metavar="S",
                   help="time bound of the model-agnostic SHAP explainer (default 60 s)")


def _model_input(model, features: pd.DataFrame | None, cohort, ids) -> pd.DataFrame:
    """The DataFrame the model was fitted on (its feature_names_in_): features + clinical columns.

    Built as the train command builds it (``models.workflow.model_frame``).
    """
    from her2core.models.workflow import model_frame
    names = [str(c) for c in getattr(model, "feature_names_in_", [])]
    feat_cols = set(features.columns) if features is not None else set()
    clinical = [c for c in names if c not in feat_cols] if names else list(cohort.table.columns)
    X = model_frame(cohort, features, clinical)
    X = X.loc[[i for i in ids if i in X.index]]
    if not names:
        names = list(X.columns)
    missing = [c for c in names if c not in X.columns]
    if missing:
        raise BundleError(f"the model needs columns the cohort / features lack: {missing[:5]}"
                          + (" ..." if len(missing) > 5 else ""),
                          hint="use the cohort layout and feature settings the bundle was trained with")
    return X[names]


def run(args) -> int:
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.explain.figures import (RANDOM_INIT_NOTE, bar_figure, beeswarm_figure,
                                          save_cam_grid_png, waterfall_figure)
    from her2core.explain.shap_explain import explain_model

    t0 = time.perf_counter()
    out = Path(args.out)
    if not 0 <= args.opacity <= 1:
        raise Her2Error(f"--opacity {args.opacity} outside 0..1")
    import matplotlib
    if args.cmap not in matplotlib.colormaps:
        raise Her2Error(f"--cmap {args.cmap!r} is not a matplotlib colour map",
                        hint="e.g. jet, turbo, inferno, viridis")
    bundle = load_bundle(args.bundle)
    if args.task not in bundle.models:
        raise BundleError(f"bundle has no model for task {args.task!r} (tasks: {bundle.tasks})",
                          file=args.bundle)
    model = bundle.models[args.task]
    cohort = read_cohort(args.cohort)
    case = str(args.case)
    if case not in cohort.case_ids:
        raise CohortError("no such case in the cohort", case_id=case, file=Path(args.cohort) / "cohort.csv",
                          hint="check --case against cohort.csv")
    n_bg = max(1, int(args.background_max))
    separate = args.background is not None and \
        Path(args.background).resolve() != Path(args.cohort).resolve()
    bg_cohort = read_cohort(args.background) if separate else cohort
    if separate:
        bg_ids = list(bg_cohort.case_ids)[:n_bg]
        case_ids = [case]
    else:
        bg_ids = [case] + [c for c in cohort.case_ids if c != case][: n_bg - 1]
        case_ids = bg_ids

    # ------------------------------------------------------------ features
    config = extractor = None
    features = bg_features = None
    warning = None
    weights: dict[str, str] = {}
    if bundle.feature_config:
        from her2core.features.config import FeatureConfig
        from her2core.features.extract import FeatureExtractor
        config = FeatureConfig.from_dict(bundle.feature_config)
        extractor = FeatureExtractor(config)
        features, errors = extractor.extract_cohort(cohort, cache_dir=args.cache, case_ids=case_ids)
        bad = [e for e in errors if e.case_id == case]
        if bad:
            raise bad[0]
        bg_features = features
        if separate:
            bg_features, errors = extractor.extract_cohort(bg_cohort, cache_dir=args.cache,
                                                           case_ids=bg_ids)
        for e in errors:
            log.warning("background case skipped: %s", e)
        weights = dict(features.attrs.get("weights", {}))
        warning = features.attrs.get("warning")
    random_init = bundle.random_init or any(str(v).startswith("random-init") for v in weights.values())
    if random_init and not warning:
        warning = RANDOM_INIT_NOTE
    X_case = _model_input(model, features, cohort, [case])
    X = _model_input(model, bg_features, bg_cohort, bg_ids)
    if len(X) < 20:
        log.warning("only %d background case(s): the SHAP base value (their mean log-odds) is "
                    "unstable; pass --background with a larger reference cohort", len(X))

    # ------------------------------------------------------------ SHAP
    prov = {"random_init": random_init, "bundle": str(bundle.path), "task": args.task,
            "her2core": __version__}
    res_case = explain_model(model, X, X_case, case_ids=[case],
                             time_budget_s=args.time_budget, provenance=prov)
    pc = res_case.patient(0)
    cohort_res = None
    if not res_case.approximate:
        cohort_res = explain_model(model, X, X, case_ids=list(X.index), provenance=prov,
                                   method=res_case.method)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"shap_{case}.csv"
    header = [f"# her2core {__version__} explain: case {case}, task {args.task}, bundle {bundle.path}",
              f"# scale {pc.scale}; base value (background mean) {pc.base_value:.10g}; "
              f"prediction {pc.prediction:.10g}; p = {pc.probability:.6g}",
              f"# method {pc.method}; approximate {pc.approximate}; {pc.note}",
              f"# background: {len(X)} cases of {args.background if separate else args.cohort}",
              f"# {DISCLAIMER}"]
    if random_init:
        header.insert(1, "# RANDOM-INIT weights: " + (warning or RANDOM_INIT_NOTE))
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        fh.write("\n".join(header) + "\n")
        pc.to_frame().to_csv(fh, index=False, float_format="%.12g")
    html_path = out / f"explain_{case}.html"
    summary = {
        "case_id": case, "task": args.task, "random_init": random_init, "warning": warning,
        "disclaimer": DISCLAIMER,
        "shap": {"method": pc.method, "approximate": pc.approximate, "note": pc.note,
                 "scale": pc.scale, "base_value": pc.base_value, "prediction": pc.prediction,
                 "probability": pc.probability, "sum_of_contributions": float(np.sum(pc.contributions)),
                 "additivity_error": pc.additivity_error,
                 "model_log_odds": float(np.ravel(model.decision_function(X_case)
                                                  if hasattr(model, "decision_function") else
                                                  [pc.prediction])[0]),
                 "group_totals": pc.group_totals(), "n_background": int(len(X)),
                 "csv": str(csv_path), "html": str(html_path)},
        "gradcam": [], "weights": weights,
    }

    # ------------------------------------------------------------ Grad-CAM
    if not args.no_gradcam and config is not None:
        from her2core.explain.case import case_gradcam
        from her2core.features.extract import load_case
        images, masks = load_case(cohort.files(case), config)
        skipped: list[str] = []
        cams = case_gradcam(model, config, extractor.backbones, images, masks,
                            features.loc[[case]], method=args.method, out_dir=out / "gradcam",
                            case_id=case, opacity=args.opacity, cmap=args.cmap,
                            direction=args.direction, skipped=skipped)
        summary["gradcam_skipped"] = skipped
        cells = {(r.sequence, r.backbone): (r.image_slice, r.map_slice) for r in cams}
        grid_path = None
        if cells:
            grid_path = save_cam_grid_png(
                out / "gradcam" / f"{case}_grid_{args.method}.png".replace("+", "p"), cells,
                title=f"{case}: {args.method} maps of each D-score", cmap=args.cmap,
                opacity=args.opacity, random_init=random_init)
        for r in cams:
            stem = f"{case}_{r.sequence}_{r.backbone}_{r.method}".replace("+", "pp")
            img = images[r.sequence]
            summary["gradcam"].append({
                "sequence": r.sequence, "backbone": r.backbone, "method": r.method,
                "target_layer": r.target_layer, "weights": r.weights, "random_init": r.random_init,
                "dscore_head": r.dscore_head, "dscore_model": r.dscore_model,
                "target_side": r.direction,
                "slice_index": r.slice_index, "empty": r.empty, "notes": r.notes,
                "nifti": str(out / "gradcam" / f"{stem}.nii.gz"),
                "png": str(out / "gradcam" / f"{stem}.png"),
                "same_grid_as_image": r.map_image.same_grid(img),
                "size": list(r.map_image.size), "spacing": list(r.map_image.spacing),
                "origin": list(r.map_image.origin), "direction": list(r.map_image.direction)})
        summary["gradcam_grid"] = str(grid_path) if grid_path else None
    figs = [waterfall_figure(pc)]
    if cohort_res is not None:
        figs += [beeswarm_figure(cohort_res), bar_figure(cohort_res)]
    if summary["gradcam"]:
        from her2core.explain.figures import cam_grid_figure
        figs.append(cam_grid_figure(cells, cmap=args.cmap, opacity=args.opacity,
                                    title=f"{case}: {args.method} maps of each D-score",
                                    random_init=random_init))
    with open(html_path, "w", encoding="utf-8") as fh:
        fh.write("<html><head><meta charset='utf-8'><title>her2core explain</title></head><body>")
        fh.write(f"<p><b>{DISCLAIMER}</b></p>")
        if random_init:
            fh.write(f"<p style='color:red'><b>{warning}</b></p>")
        for i, f in enumerate(figs):
            fh.write(f.to_html(full_html=False, include_plotlyjs=(i == 0)))
        fh.write("</body></html>")
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    (out / f"explain_{case}.json").write_text(json.dumps(summary, indent=2, default=float) + "\n",
                                              encoding="utf-8")
    print(f"case {case}: log-odds {pc.prediction:+.6f} = base {pc.base_value:+.6f} "
          f"+ contributions {np.sum(pc.contributions):+.6f} (error {pc.additivity_error:.2e}); "
          f"{len(summary['gradcam'])} Grad-CAM map(s) -> {out}"
          + ("  [RANDOM-INIT weights]" if random_init else ""))
    return 0
