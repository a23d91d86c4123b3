#!/usr/bin/env python3
"""Train the demo bundle that the app opens on first start (CPU, a minute or two).

    python tools/make_demo_bundle.py                 # writes assets/demo_bundle/
    python tools/make_demo_bundle.py --bootstrap 200 # more resamples (slower)

Recipe "demo" (her2core/models/recipes/demo.json): ResNet18 with RANDOM
INITIALISATION (no pretrained weights; stated in model_card.json, backbones.json
and printed by `predict`) on the largest ROI slice of DCE and T2 at 64 px, a
DCE radiomics score, and clinical predictors, in one logistic nomogram; tasks
HER2-positive vs negative and HER2-low vs HER2-zero. Trained on
assets/demo_cohort (synthetic, no patient data). For demonstration and teaching
only: its numbers say nothing about real patients.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohort", default=str(REPO / "assets" / "demo_cohort"))
    ap.add_argument("--out", default=str(REPO / "assets" / "demo_bundle"))
    ap.add_argument("--bootstrap", type=int, default=50)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    import logging

    from her2core.workflows.train import TrainSettings, train_bundle
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cache = args.cache_dir or tempfile.mkdtemp(prefix="her2_demo_cache_")
    res = train_bundle(TrainSettings(cohort=args.cohort, out=args.out, recipe="demo",
                                     tasks=("her2", "her2_low"), bootstrap=args.bootstrap,
                                     random_init=True, device="cpu", cache_dir=cache, seed=0,
                                     overwrite=True))
    print("\n".join(res.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
