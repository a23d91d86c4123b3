"""`python -m her2core predict`: apply a bundle to a cohort, write predictions.csv.

Columns (cohort-format.md "Predictions"): case_id, p_her2, the per-model scores
``dscore_*`` (log-odds), nomogram_total_points, p_her2_low when the bundle has
that task, and out_of_range (predictors outside the training ranges, ";"-joined).
Cases whose features fail are reported and left out; the others are written.
"""
from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from her2core.errors import BundleError, CohortError, Her2Error

NAME = "predict"
HELP = "apply a model bundle to a cohort and write predictions.csv"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle folder made by `train`")
    parser.add_argument("--cohort", required=True, help="cohort folder")
    parser.add_argument("--where", default=None, help="only cases matching COL=VALUE")
    parser.add_argument("--weights-dir", default=None, help="folder with local backbone weights")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", required=True, help="predictions CSV to write")


def predict_cohort(bundle, cohort, *, weights_dir=None, cache_dir=None, device=None):
    """(predictions DataFrame, list of Her2Error) for a loaded bundle and a cohort."""
    from her2core.bundle import out_of_range
    from her2core.features.config import FeatureConfig
    from her2core.models.workflow import compute_features, model_frame, total_points

    feats, errors = None, []
    needs_images = any(getattr(m, "scorers_", None) for m in bundle.models.values())
    if needs_images:
        if not bundle.feature_config:
            raise BundleError("the model needs image features but the bundle has no "
                              "feature_config.json", file=bundle.path)
        d = dict(bundle.feature_config)
        if weights_dir:
            d["weights_dir"] = str(weights_dir)
        if device:
            d["device"] = device
        for name, info in bundle.backbones.items():  # same initialisation as in training
            if isinstance(info, dict) and info.get("weights") == "random-init":
                d.setdefault("weights", {})[name] = "random-init"
        config = FeatureConfig.from_dict(d)
        res = compute_features(cohort, config, cache_dir=cache_dir)
        feats, errors = res["features"], list(res["errors"])
        for name, ident in res["weights"].items():
            want = (bundle.backbones.get(name) or {}).get("weights")
            if want is not None and ident != want:
                raise BundleError(f"backbone {name}: weights {ident} differ from the bundle's "
                                  f"{want}", file=bundle.path,
                                  hint="provide the weights the model was trained with "
                                       "(--weights-dir)")
    clinical = set()
    for m in bundle.models.values():
        clinical |= set(getattr(m, "clinical_columns_", []))
    X = model_frame(cohort, feats, sorted(clinical))
    if feats is not None:
        X = X.loc[[c for c in X.index if c in feats.index]]
    out = pd.DataFrame(index=pd.Index(X.index, name="case_id"))
    flags: dict[str, set] = {}
    for task, model in bundle.models.items():
        col = "p_her2" if task == "her2" else f"p_{task}"
        if len(X) == 0:
            out[col] = []
            continue
        Z = model.second_level(X)
        out[col] = model.predict_proba(X)[:, 1]
        suffix = "" if task == "her2" else f"_{task}"
        for c in getattr(model, "score_columns_", []):
            out[c + suffix] = Z[c].to_numpy()
        pts = total_points(bundle.nomograms.get(task), model, X)
        if pts is not None:
            out["nomogram_total_points" + suffix] = pts
        for case, cols in out_of_range(Z, bundle.ranges(task)).items():
            flags.setdefault(case, set()).update(cols)
    out["out_of_range"] = [";".join(sorted(flags.get(c, ()))) for c in out.index]
    if "p_her2" in out.columns:
        out = out[["p_her2"] + [c for c in out.columns if c != "p_her2"]]
    return out.reset_index(), errors


def run(args) -> int:
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort

    bundle = load_bundle(args.bundle)
    cohort = read_cohort(args.cohort)
    if args.where:
        cohort = cohort.subset(args.where)
        if len(cohort) == 0:
            raise CohortError(f"no case matches --where {args.where}", file=args.cohort)
    if bundle.random_init:
        print("WEIGHTS: this bundle uses random-init backbones (demonstration only)")
    preds, errors = predict_cohort(bundle, cohort, weights_dir=args.weights_dir,
                                   cache_dir=args.cache_dir, device=args.device)
    preds.to_csv(args.out, index=False, float_format="%.6g")
    print(f"predictions: {args.out}  ({len(preds)} cases, tasks {', '.join(bundle.tasks)})")
    for err in errors:
        print(f"skipped: {err}")
    n_flag = int((preds["out_of_range"] != "").sum()) if len(preds) else 0
    if n_flag:
        print(f"{n_flag} case(s) have predictors outside the training ranges (column out_of_range)")
    return 0
