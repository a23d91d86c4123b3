"""`python -m her2core extract`: fill the feature cache of a cohort (here or on Ray).

    python -m her2core extract --cohort DIR --recipe demo --random-init
    python -m her2core extract --cohort DIR --config features.json --ray            # local Ray
    python -m her2core extract --cohort DIR --recipe 000 --ray HEAD:6379           # a cluster

The features of every case missing from the cache are computed (load, crop,
radiomics, backbone forward) and written to ``--cache-dir`` (default
``$HER2_CACHE/features``, else ``~/.cache/her2/features``), one file per case as
soon as it is done: a re-run computes only what is still missing, and `train` /
`predict` with the same ``--cache-dir`` read the rows. A case whose files are
broken is reported (case and file) and skipped; the others finish. ``--config``
is merged over the recipe as in `train`; a plain FeatureConfig JSON (it has
"sequences") is used as it is.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from her2core.errors import Her2Error

NAME = "extract"
HELP = "compute the image features of a cohort into the feature cache (locally or on Ray)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from her2core.features.distributed import add_ray_argument
    parser.add_argument("--cohort", required=True, help="cohort folder (cohort.csv + cases/)")
    parser.add_argument("--recipe", default=None,
                        help="recipe whose features to compute: 000-004, demo or a recipe file "
                             "(default demo)")
    parser.add_argument("--config", default=None,
                        help="JSON/YAML merged over the recipe, or a FeatureConfig JSON")
    parser.add_argument("--cache-dir", default=None,
                        help="feature cache folder (default $HER2_CACHE/features or "
                             "~/.cache/her2/features)")
    parser.add_argument("--random-init", action="store_true",
                        help="use randomly initialised backbones (explicit; recorded)")
    parser.add_argument("--weights-dir", default=None, help="folder with local backbone weights")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default=None,
                        help="also write the feature table (.parquet or .csv)")
    parser.add_argument("--json", default=None, help="write the run summary as JSON")
    add_ray_argument(parser)


def feature_config_from_args(args):
    """The FeatureConfig that --recipe / --config / --random-init / --weights-dir / --device ask for."""
    from her2core.models.recipes import load_config_over, load_recipe
    from her2core.models.workflow import feature_config_for
    recipe = None
    if args.config and not args.recipe and Path(args.config).suffix.lower() == ".json":
        try:
            data = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise Her2Error(f"cannot read the config: {exc}", file=args.config) from None
        if isinstance(data, dict) and "sequences" in data and "features" not in data:
            recipe = {"name": Path(args.config).stem, "features": data}  # a FeatureConfig
    if recipe is None:
        recipe = load_recipe(args.recipe or "demo")
        if args.config:
            recipe = load_config_over(recipe, args.config)
    config = feature_config_for(recipe, random_init=args.random_init,
                                weights_dir=args.weights_dir, device=args.device)
    if config is None:
        raise Her2Error(f"recipe {recipe.get('name')!r} uses no image features: nothing to extract",
                        hint="choose a recipe with images (000-004, demo)")
    return config


def run(args) -> int:
    from her2core.cohort import read_cohort
    from her2core.features.distributed import executor_from_args
    from her2core.features.extract import fill_feature_cache
    from her2core.models.workflow import ProgressLog
    from her2core.synthetic import default_cache_dir

    config = feature_config_from_args(args)
    cohort = read_cohort(args.cohort)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir() / "features"
    executor = executor_from_args(args)
    try:
        res = fill_feature_cache(cohort, config, cache_dir, executor=executor,
                                 progress=ProgressLog("features"))
    finally:
        if executor is not None:
            executor.close()
    where = "on Ray" if executor is not None else "here"
    if res.features.attrs.get("warning"):
        print("WARNING: " + res.features.attrs["warning"])
    print(f"features: {len(res.features)} of {len(cohort.case_ids)} cases in {cache_dir} "
          f"({res.computed} computed {where}, {res.cached} from the cache, "
          f"{res.features.shape[1]} features, {res.seconds:.1f} s)")
    if res.errors:
        print(f"{len(res.errors)} case(s) skipped:")
        for e in res.errors:
            print(f"  {e}")
    if args.out:
        out = Path(args.out)
        table = res.features.copy()
        table.attrs = {}
        if out.suffix.lower() == ".csv":
            table.to_csv(out)
        else:
            table.to_parquet(out)
        print(f"feature table: {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(res.to_dict(), indent=1, default=str) + "\n",
                                   encoding="utf-8")
    return 1 if res.errors else 0
