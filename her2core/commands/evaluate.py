"""`python -m her2core evaluate`: discrimination, calibration and decision curves of predictions.

Joins a predictions CSV (case_id + score columns) with the labels of a cohort
(cohort.csv or its folder) on case_id. Every numeric column of the
predictions except case_id is a score unless --score names some. A score is
taken as "higher = HER2-positive" (pROC direction "<"). Cases without a label
or without a score are counted in the JSON under "excluded" and on stderr.
Calibration, Brier, Hosmer-Lemeshow and decision curves are computed only for
columns whose values all lie in [0, 1]; other columns are scores, not
probabilities, and the JSON says so.

--compare A B gives the paired DeLong test of two scores on the cases that
have both (default: every pair); --compare-groups COLUMN the unpaired DeLong
test (pROC roc.test, paired=FALSE) of each score between the two groups of a
cohort column such as center.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from her2core.jsonutil import jsonable as _json_safe

NAME = "evaluate"
HELP = ("ROC/AUC with DeLong and bootstrap CIs, DeLong tests, Youden and threshold metrics, "
        "calibration, Hosmer-Lemeshow and decision curves of a predictions file against a cohort")

log = logging.getLogger(__name__)
def add_arguments(p) -> None:
    p.add_argument("--predictions", required=True, metavar="P.csv",
                   help="CSV with case_id and one or more score / probability columns")
    p.add_argument("--truth", required=True, metavar="COHORT",
                   help="cohort.csv or a cohort folder (labels from the her2 / her2_ihc columns)")
    p.add_argument("--score", nargs="+", metavar="COL",
                   help="score columns to evaluate (default: every numeric column but case_id)")
    p.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"),
                   help="paired DeLong test of score A against score B (repeatable; default: "
                        "every pair of scores)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="also report the metrics at this threshold (score >= T is positive)")
    p.add_argument("--task", choices=("her2", "her2_low"), default="her2",
                   help="her2: positive vs negative; her2_low: HER2-low vs HER2-zero")
    p.add_argument("--json", required=True, metavar="OUT.json", help="where to write the results")
    p.add_argument("--html", metavar="OUT.html", help="also write a report with the figures")
    p.add_argument("--n-boot", type=int, default=2000,
                   help="bootstrap resamples for the AUC CI and the F1 CI (default 2000)")
    p.add_argument("--seed", type=int, default=20240601, help="bootstrap seed")
    p.add_argument("--hl-groups", type=int, default=10,
                   help="Hosmer-Lemeshow groups, at least 3 (default 10)")
    p.add_argument("--dca-thresholds", default="0.01:0.99:0.01", metavar="START:STOP:STEP",
                   help="decision-curve thresholds (default 0.01:0.99:0.01)")
    p.add_argument("--prevalence", type=float,
                   help="population prevalence for decision curves on case-control data")
    p.add_argument("--compare-groups", metavar="COLUMN",
                   help="unpaired DeLong test of each score's AUC between the two groups of "
                        "this cohort column (e.g. center)")
    p.add_argument("--ci-method", choices=("wilson", "clopper-pearson"), default="wilson",
                   help="CI for sensitivity, specificity, PPV, NPV, accuracy (default wilson)")


def run(args) -> int:
    from her2core.workflows.evaluate import evaluate_predictions

    res = evaluate_predictions(
        Path(args.predictions), Path(args.truth), task=args.task, scores=args.score,
        threshold=args.threshold, n_boot=args.n_boot, seed=args.seed, hl_groups=args.hl_groups,
        dca_thresholds=args.dca_thresholds, prevalence=args.prevalence, ci_method=args.ci_method,
        compare=args.compare, compare_groups_by=args.compare_groups, with_figures=bool(args.html),
        report=lambda msg: print(msg, file=sys.stderr))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_json_safe(res.summary), indent=1), encoding="utf-8")
    log.info("wrote %s (%d cases, %d scores)", out, res.summary["n"], len(res.summary["scores"]))
    if args.html:
        Path(args.html).write_text(res.html(), encoding="utf-8")
        log.info("wrote %s", args.html)
    return 0
