"""The honest optimism bootstrap of the demo recipe: today's per-resample refit against the fast path.

Both run on the same feature table (n = 400 synthetic MRI cases, the demo recipe's ResNet18 D-score
on DCE + T2, the DCE radiomics score and the clinical predictors) and the same resamples (one seed),
in one process, one after the other:

- reference: the recipe with ``lasso_path: "full"``, ``bootstrap_validate(..., n_jobs=1)``: every
  resample clones the whole pipeline and refits it from scratch, the LASSO inside each D-score
  solving every C of its CV grid in every fold (what ``train --bootstrap`` did before this change);
- fast: the recipe as shipped (``lasso_path: "adaptive"``), ``bootstrap_validate(..., n_jobs=J)``:
  the same refits, every selection step still inside every resample, but the LASSO's CV skips the
  C values whose solution is exactly zero and stops walking the grid once the CV deviance has
  risen past its minimum, and the resamples run on J worker processes (also timed with one).

Reported: seconds per resample of each path, the ratio, the projection to B = 1000, and the
optimism-corrected AUC of both over the same resamples (they must agree within 0.005).

    python benchmarks/bench_bootstrap.py [--n 400] [--resamples 24] [--jobs 2] [--profile]
Features are cached under --work (default /tmp/her2_bench_bootstrap).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from her2core.cohort import read_cohort  # noqa: E402
from her2core.metrics.validation import bootstrap_validate  # noqa: E402
from her2core.models.recipes import build_model, load_recipe, merge_config  # noqa: E402
from her2core.models.workflow import compute_features, feature_config_for, model_frame  # noqa: E402
from her2core.provenance import library_versions  # noqa: E402
from her2core.synthetic import make_cohort  # noqa: E402

log = logging.getLogger("bench_bootstrap")


def table(n: int, seed: int, work: Path):
    root = work / f"cohort_n{n}_s{seed}"
    if not (root / "cohort.csv").is_file():
        make_cohort(root, n=n, seed=seed, modalities="mri", shape=(40, 40, 10), overwrite=True)
    recipe = merge_config(load_recipe("demo"), {"features": {"num_workers": 0}})
    cohort = read_cohort(root)
    res = compute_features(cohort, feature_config_for(recipe, random_init=True), cache_dir=work / "cache")
    X = model_frame(cohort, res["features"], recipe["clinical_predictors"])
    y = cohort.labels("her2")
    ids = [c for c in y.index if c in X.index]
    return recipe, X.loc[ids], y.loc[ids].to_numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=24, help="resamples timed on each path")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the fast path")
    ap.add_argument("--profile", action="store_true", help="cProfile one reference resample and stop")
    ap.add_argument("--work", default="/tmp/her2_bench_bootstrap")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "bootstrap_cpu.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    recipe, X, y = table(args.n, args.seed, work)
    model = build_model(recipe, X.columns, random_state=args.seed)
    reference = build_model(merge_config(recipe, {"scorer_settings": {"lasso_path": "full"}}),
                            X.columns, random_state=args.seed)
    log.info("table: %d cases (%d positive), %d columns", len(y), int(y.sum()), X.shape[1])
    if args.profile:
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
        bootstrap_validate(reference, X, y, B=1, seed=args.seed)
        pr.disable()
        pstats.Stats(pr).sort_stats("cumulative").print_stats(30)
        return 0
    B = args.resamples
    t = time.perf_counter()
    ref = bootstrap_validate(reference, X, y, B=B, seed=args.seed, n_jobs=1)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    fast = bootstrap_validate(model, X, y, B=B, seed=args.seed, n_jobs=args.jobs)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    fast1 = bootstrap_validate(model, X, y, B=B, seed=args.seed, n_jobs=1)
    t_fast1 = time.perf_counter() - t
    # the two fits on all cases: the same selected features and the same probabilities?
    full_ref, full_fast = reference.fit(X, y), build_model(recipe, X.columns, random_state=args.seed).fit(X, y)
    same_features = {name: sorted(a.selected_features()) == sorted(b.selected_features())
                     for (name, a), (_, b) in zip(full_ref.fitted_scorers(), full_fast.fitted_scorers())}
    max_dp = float(np.max(np.abs(full_ref.predict_proba(X)[:, 1] - full_fast.predict_proba(X)[:, 1])))
    per_ref, per_fast, per_fast1 = t_ref / B, t_fast / B, t_fast1 / B
    out = {
        "what": "optimism bootstrap of the demo recipe, every selection step refitted per resample",
        "n": int(len(y)), "positives": int(y.sum()), "columns": int(X.shape[1]), "resamples": B,
        "jobs": args.jobs, "cpu_count": os.cpu_count(),
        "reference_s_per_resample": round(per_ref, 3),
        "fast_s_per_resample": round(per_fast, 3),
        "fast_one_worker_s_per_resample": round(per_fast1, 3),
        "ratio_reference_over_fast": round(per_ref / per_fast, 2),
        "ratio_reference_over_fast_one_worker": round(per_ref / per_fast1, 2),
        "projected_B1000_reference_min": round(per_ref * 1000 / 60, 1),
        "projected_B1000_fast_min": round(per_fast * 1000 / 60, 1),
        "corrected_auc_reference": ref.corrected["auc"],
        "corrected_auc_fast": fast.corrected["auc"],
        "corrected_auc_fast_one_worker": fast1.corrected["auc"],
        "abs_difference": abs(ref.corrected["auc"] - fast.corrected["auc"]),
        "apparent_auc": ref.apparent["auc"],
        "full_data_same_selected_features": same_features,
        "full_data_max_abs_probability_difference": max_dp,
        "failed": [ref.n_failed, fast.n_failed],
        "versions": library_versions("numpy", "scipy", "scikit-learn", "torch"),
    }
    print(json.dumps({k: v for k, v in out.items() if k != "versions"}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
