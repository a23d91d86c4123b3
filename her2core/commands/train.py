"""`python -m her2core train`: fit a recipe on a cohort and write a model bundle.

Argument parsing and printing only: the work is
:func:`her2core.workflows.train.train_bundle` (its docstring says how the bundle
is validated: out-of-fold predictions of the whole pipeline, the optimism
bootstrap, external validation on the ``--where`` cases).
"""
from __future__ import annotations

import argparse
import logging


NAME = "train"
HELP = "train a model (recipe 000-004, clinical, demo) on a cohort and write a bundle"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", required=True, help="cohort folder (cohort.csv + cases/)")
    parser.add_argument("--where", default=None,
                        help="hold out the cases matching COL=VALUE (e.g. center=B) for external "
                             "validation; train on the rest")
    parser.add_argument("--task", default="her2",
                        help="her2, her2_low, or both separated by a comma (default her2)")
    parser.add_argument("--recipe", default=None,
                        help="000, 001, 002, 003, 004, clinical, demo or a recipe file "
                             "(default: demo when the cohort has images, else clinical)")
    parser.add_argument("--config", default=None,
                        help="JSON/YAML merged over the recipe (features, scorer_settings, ...)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap resamples for optimism-corrected internal validation "
                             "(default 1000; 0 = none)")
    parser.add_argument("--oof-folds", type=int, default=5,
                        help="folds of the out-of-fold validation predictions stored in the bundle "
                             "(default 5)")
    parser.add_argument("--cv-repeats", type=int, default=0,
                        help="use repeated 5-fold CV with this many repeats instead of the bootstrap")
    parser.add_argument("--random-init", action="store_true",
                        help="use randomly initialised backbones (explicit; recorded in the bundle)")
    parser.add_argument("--weights-dir", default=None, help="folder with local backbone weights")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--n-jobs", type=int, default=1, help="worker processes for the bootstrap resamples (-1: every core; the answer does not depend on it)")
    parser.add_argument("--no-zoo", action="store_true",
                        help="skip the model-zoo comparison of recipes that list compare_zoo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    from her2core.features.distributed import add_ray_argument
    add_ray_argument(parser)


def run(args) -> int:
    from her2core.features.distributed import executor_from_args

    tasks = tuple(t.strip() for t in str(args.task).split(",") if t.strip())
    executor = executor_from_args(args)
    try:
        res = _train(args, tasks, executor)
    finally:
        if executor is not None:
            executor.close()
    for w in res.warnings:
        print(f"WARNING: {w}")
    for line in res.lines():
        print(line)
    if res.errors:
        bad = sorted({str(e.case_id) for e in res.errors if getattr(e, "case_id", None)})
        print(f"{len(bad)} case(s) skipped: {', '.join(bad)} (model_card.json data.skipped_cases)")
        for e in res.errors:
            print(f"  {e}")
    return 0


def _train(args, tasks, executor):
    from her2core.workflows.train import TrainSettings, train_bundle
    return train_bundle(TrainSettings(
        cohort=args.cohort, out=args.out, recipe=args.recipe, config=args.config, tasks=tasks,
        where=args.where, bootstrap=args.bootstrap, cv_repeats=args.cv_repeats,
        oof_folds=args.oof_folds, random_init=args.random_init, weights_dir=args.weights_dir,
        cache_dir=args.cache_dir, device=args.device, n_jobs=args.n_jobs,
        compare_zoo=not args.no_zoo, seed=args.seed, overwrite=args.overwrite,
        executor=executor))
