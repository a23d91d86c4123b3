"""`python -m her2core predict`: apply a bundle to a cohort, write predictions.csv.

Argument parsing and printing only: the work (and the columns written) is
:func:`her2core.workflows.predict.predict_cohort`.
"""
from __future__ import annotations

import argparse
import logging

from her2core.errors import CohortError

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
    from her2core.features.distributed import add_ray_argument
    add_ray_argument(parser)


def run(args) -> int:
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.workflows.predict import predict_cohort

    bundle = load_bundle(args.bundle)
    cohort = read_cohort(args.cohort)
    if args.where:
        cohort = cohort.subset(args.where)
        if len(cohort) == 0:
            raise CohortError(f"no case matches --where {args.where}", file=args.cohort)
    if bundle.random_init:
        print("WEIGHTS: this bundle uses random-init backbones (demonstration only)")
    from her2core.features.distributed import executor_from_args
    executor = executor_from_args(args)
    try:
        res = predict_cohort(bundle, cohort, weights_dir=args.weights_dir, cache_dir=args.cache_dir,
                             device=args.device, executor=executor)
    finally:
        if executor is not None:
            executor.close()
    res.table.to_csv(args.out, index=False, float_format="%.10g")
    print(f"predictions: {args.out}  ({len(res.table)} cases, tasks {', '.join(bundle.tasks)})")
    for note in res.notes:
        print(f"note: {note}")
    for err in res.errors:
        print(f"skipped: {err}")
    if res.n_imputed:
        print(f"{res.n_imputed} case(s) had missing predictors, replaced by the training value "
              "(column imputed)")
    if res.n_out_of_range:
        print(f"{res.n_out_of_range} case(s) have predictors outside the training ranges "
              "(column out_of_range)")
    return 0
