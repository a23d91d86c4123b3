"""The honest optimism bootstrap of the demo recipe: the per-resample refit as it was when the
speed issue was filed, against today's, both measured in one run on the same table and resamples.

The table: n = 400 synthetic MRI cases, the demo recipe's ResNet18 D-score on DCE + T2, the DCE
radiomics score and the clinical predictors (1141 columns), built by today's code and cached.

- reference: the code of ``--reference-commit`` (default b4e3a13, the last commit before the
  bootstrap speed-up work), exported with ``git archive`` and run in a subprocess on the same
  pickled table: every resample clones the whole pipeline and refits it from scratch, the LASSO
  inside each D-score solving every C of its CV grid in every fold, through scikit-learn's
  LogisticRegression, StratifiedGroupKFold and SimpleImputer (what ``train --bootstrap`` did);
- fast: today's code (``lasso_path: "adaptive"``), ``bootstrap_validate(..., n_jobs=J)`` and with
  one worker: the same refits, every selection step still inside every resample, but the LASSO's
  CV skips the C values whose solution is exactly zero and stops walking the grid once the CV
  deviance has risen past its minimum; liblinear is called directly, the group folds and the
  median imputation are computed without scikit-learn's per-call overhead (both bit-identical to
  scikit-learn's, tests/models/test_folds.py), and the resamples run on J worker processes.

The resamples are the same on both sides (one seed, drawn up front). Reported: seconds per
resample of each path, the ratios, the projection to B = 1000, and the optimism-corrected AUC of
both (they must agree within 0.005). Runs are interleaved (reference, fast, fast 1 worker, then
again) and the fastest of each kept, since the machine may be shared; the load average is
sampled around every run.

    python benchmarks/bench_bootstrap.py [--n 400] [--resamples 16] [--jobs 2] [--repeats 2]
        [--reference-commit b4e3a13] [--profile]
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


_REFERENCE_RUN = """
import json, pickle, sys, time
sys.path.insert(0, sys.argv[1])
import her2core
assert her2core.__file__.startswith(sys.argv[1]), her2core.__file__
from her2core.metrics.validation import bootstrap_validate
from her2core.models.recipes import build_model
X, y, recipe = pickle.load(open(sys.argv[2], "rb"))   # today's recipe: the same model spec
model = build_model(recipe, X.columns, random_state=int(sys.argv[4]))
t = time.perf_counter()
r = bootstrap_validate(model, X, y, B=int(sys.argv[3]), seed=int(sys.argv[4]))
print(json.dumps({"seconds": time.perf_counter() - t, "corrected": r.corrected,
                  "apparent": r.apparent, "failed": r.n_failed}))
"""


def reference_tree(commit: str, work: Path) -> Path:
    """her2core as of ``commit`` (git archive), under work/reference-<commit>."""
    import subprocess
    dest = work / f"reference-{commit}"
    if not (dest / "her2core" / "__init__.py").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[1]
        archive = subprocess.run(["git", "-C", str(root), "archive", commit, "her2core"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_reference(tree: Path, table_file: Path, B: int, seed: int) -> dict:
    import subprocess
    out = subprocess.run([sys.executable, "-c", _REFERENCE_RUN, str(tree), str(table_file), str(B),
                          str(seed)], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=16, help="resamples timed on each path")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the fast path")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds (fastest kept)")
    ap.add_argument("--reference-commit", default="b4e3a13",
                    help="the code measured as the reference (before the speed-up work)")
    ap.add_argument("--profile", action="store_true", help="cProfile one fast resample and stop")
    ap.add_argument("--work", default="/tmp/her2_bench_bootstrap")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "bootstrap_cpu.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    recipe, X, y = table(args.n, args.seed, work)
    log.info("table: %d cases (%d positive), %d columns", len(y), int(y.sum()), X.shape[1])
    model = build_model(recipe, X.columns, random_state=args.seed)
    if args.profile:
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
        bootstrap_validate(model, X, y, B=1, seed=args.seed)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(30)
        return 0
    import pickle
    table_file = work / f"table_n{args.n}_s{args.seed}.pkl"   # our own table, for the subprocess
    with open(table_file, "wb") as fh:
        pickle.dump((X, y, recipe), fh)
    tree = reference_tree(args.reference_commit, work)
    B = args.resamples
    runs = {"reference": [], "fast": [], "fast_one_worker": []}
    loads = [os.getloadavg()]
    results = {}
    for r in range(args.repeats):
        ref = run_reference(tree, table_file, B, args.seed)
        runs["reference"].append(ref["seconds"])
        results["reference"] = ref["corrected"]["auc"]
        loads.append(os.getloadavg())
        t, fast = timed(lambda: bootstrap_validate(model, X, y, B=B, seed=args.seed,
                                                   n_jobs=args.jobs))
        runs["fast"].append(t)
        loads.append(os.getloadavg())
        t, fast1 = timed(lambda: bootstrap_validate(model, X, y, B=B, seed=args.seed, n_jobs=1))
        runs["fast_one_worker"].append(t)
        loads.append(os.getloadavg())
        log.info("round %d: %s", r, {k: round(v[-1], 1) for k, v in runs.items()})
    best = {k: min(v) for k, v in runs.items()}
    per = {k: v / B for k, v in best.items()}
    out = {
        "what": "optimism bootstrap of the demo recipe, every selection step refitted per resample; "
                "reference = the code before the speed-up work, fast = today's",
        "reference_code": f"git {args.reference_commit} (her2core exported, run in a subprocess)",
        "n": int(len(y)), "positives": int(y.sum()), "columns": int(X.shape[1]), "resamples": B,
        "jobs": args.jobs, "cpu_count": os.cpu_count(), "repeats": args.repeats,
        "seconds_runs": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "reference_s_per_resample": round(per["reference"], 3),
        "fast_s_per_resample": round(per["fast"], 3),
        "fast_one_worker_s_per_resample": round(per["fast_one_worker"], 3),
        "ratio_reference_over_fast": round(per["reference"] / per["fast"], 2),
        "ratio_reference_over_fast_one_worker": round(per["reference"] / per["fast_one_worker"], 2),
        "projected_B1000_reference_min": round(per["reference"] * 1000 / 60, 1),
        "projected_B1000_fast_min": round(per["fast"] * 1000 / 60, 1),
        "corrected_auc_reference": results["reference"],
        "corrected_auc_fast": fast.corrected["auc"],
        "corrected_auc_fast_one_worker": fast1.corrected["auc"],
        "abs_difference": abs(results["reference"] - fast.corrected["auc"]),
        "apparent_auc": fast.apparent["auc"],
        "failed": [ref["failed"], fast.n_failed],
        "load_average": [[round(x, 2) for x in la] for la in loads],
        "note": "shared 2-core machine: rounds interleaved, fastest of each kept; load_average "
                "(1, 5, 15 min) sampled before and after every run",
        "versions": library_versions("numpy", "scipy", "scikit-learn", "torch"),
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps({k: v for k, v in out.items() if k != "versions"}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
