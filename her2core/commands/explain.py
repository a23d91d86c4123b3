"""`python -m her2core explain`: SHAP contributions and Grad-CAM maps for one case.

Argument parsing and printing only: the work and the files written are
:func:`her2core.workflows.explain.explain_case`, on the same runtime as the app
(:class:`her2core.predictor.CasePredictor`).
"""
from __future__ import annotations

import logging

import numpy as np

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
                   help="reference cohort for SHAP (default: the bundle's own training cases "
                        "with their out-of-fold scores, as in the app)")
    p.add_argument("--background-max", type=int, default=100, metavar="N",
                   help="at most N cases of --background (default 100)")
    p.add_argument("--cache", metavar="DIR", help="feature cache folder (default: none)")
    p.add_argument("--direction", choices=("auto", "positive", "negative"), default="auto",
                   help="map what raises the D-score (positive), what lowers it (negative), or "
                        "auto: positive unless that map is empty, then negative (default)")
    p.add_argument("--no-gradcam", action="store_true", help="SHAP only")
    p.add_argument("--opacity", type=float, default=0.4, help="overlay opacity 0..1 (default 0.4)")
    p.add_argument("--cmap", default="cividis",
                   help="matplotlib colour map of the overlays (default cividis, perceptually uniform)")
    p.add_argument("--time-budget", type=float, default=60.0, metavar="S",
                   help="time bound of the model-agnostic SHAP explainer (default 60 s)")


def run(args) -> int:
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.workflows.explain import explain_case

    bundle = load_bundle(args.bundle)
    cohort = read_cohort(args.cohort)
    res = explain_case(bundle, cohort, args.case, task=args.task, out=args.out, method=args.method,
                       background=args.background, background_max=args.background_max,
                       cache_dir=args.cache, direction=args.direction,
                       gradcam=not args.no_gradcam, opacity=args.opacity, cmap=args.cmap,
                       time_budget_s=args.time_budget)
    pc = res.contributions
    iv = f" [{res.interval[0]:.4f}, {res.interval[1]:.4f}]" if res.interval else ""
    print(f"case {res.case_id}: p = {res.probability:.6f}{iv}; log-odds {pc.prediction:+.6f} = base "
          f"{pc.base_value:+.6f} + contributions {np.sum(pc.contributions):+.6f} (error "
          f"{pc.additivity_error:.2e}); {len(res.cams)} Grad-CAM map(s) -> {args.out}"
          + ("  [RANDOM-INIT weights]" if bundle.random_init else ""))
    for note in res.summary.get("notes", []) + res.summary.get("gradcam_notes", []):
        print(f"note: {note}")
    if res.summary.get("imputed"):
        print(f"imputed (training value used): {', '.join(res.summary['imputed'])}")
    return 0
