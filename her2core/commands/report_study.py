"""`python -m her2core report-study`: the study report of a bundle on a cohort.

Writes into --out: table1.csv (and table1_her2_low.csv), odds ratios, ROC / DeLong,
calibration (Hosmer-Lemeshow, val.prob, bias-corrected curve), decision curves, NRI / IDI,
threshold metrics (CSV each), PNG figures, report.html, report.pdf and report.json.
The work is her2core.study_report.report_study; this only parses and prints.
"""
from __future__ import annotations

import argparse

NAME = "report-study"
HELP = "study report (Table 1, odds ratios, ROC/DeLong, calibration, DCA, NRI/IDI) as HTML/PDF/CSV"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle folder made by `train`")
    parser.add_argument("--cohort", required=True, help="cohort folder")
    parser.add_argument("--where", default=None, help="only cases matching COL=VALUE")
    parser.add_argument("--out", required=True, help="folder to write the report into")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="probability threshold for the metrics besides Youden's (default 0.5)")
    parser.add_argument("--nri-cutoffs", default="0.3,0.7",
                        help="risk-category cut-offs of the categorical NRI (default 0.3,0.7)")
    parser.add_argument("--calibrate-b", type=int, default=200,
                        help="bootstrap resamples of the bias-corrected calibration curve")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--cache-dir", default=None, help="feature cache folder")
    parser.add_argument("--weights-dir", default=None, help="folder with local backbone weights")


def run(args) -> int:
    from her2core.study_report import report_study

    cuts = tuple(float(x) for x in str(args.nri_cutoffs).split(",") if x.strip())

    def progress(done, total, message):
        print(f"[{done}/{total}] {message}", flush=True)

    res = report_study(args.bundle, args.cohort, args.out, where=args.where,
                       threshold=args.threshold, nri_cutoffs=cuts, n_calibrate=args.calibrate_b,
                       seed=args.seed, cache_dir=args.cache_dir, weights_dir=args.weights_dir,
                       progress=progress)
    for task, sets in res.sets.items():
        print(f"{task}: " + ", ".join(f"{s} {n} cases" for s, n in sets.items()))
    for k, v in res.summary.items():
        for name, auc in (v.get("auc") or {}).items():
            print(f"  {k} AUC {name}: {auc:.3f}")
    for p in res.problems:
        print(f"problem: {p}")
    print(f"report: {res.files.get('pdf')}  {res.files.get('html')}  (+ CSVs in {res.out_dir})")
    return 0
