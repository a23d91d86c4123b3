"""`python -m her2core demo-cohort --out DIR --n N --seed S`: write a synthetic cohort.

The cohort follows ../shared/cohort-format.md and carries a known ground truth
(truth.json, synthetic_* columns). Synthetic data: no patient is involved.
"""
from __future__ import annotations

import logging
import sys

NAME = "demo-cohort"
HELP = "write a synthetic demo cohort with known ground truth (no patient data)"

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    parser.add_argument("--n", type=int, default=40, help="number of cases (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--centres", "--centers", type=int, default=2, choices=(1, 2, 3),
                        help="number of acquisition centres (default 2)")
    parser.add_argument("--modalities", default="mri", choices=("mri", "us", "both", "none"),
                        help="images to write; none = clinical table only (default mri)")
    parser.add_argument("--prevalence", type=float, default=0.35,
                        help="fraction of HER2-positive cases (default 0.35)")
    parser.add_argument("--signal", type=float, default=1.0,
                        help="effect size: 1 = papers' rates, 0 = no signal (default 1)")
    parser.add_argument("--low-signal", type=float, default=None,
                        help="effect size of the HER2-low vs HER2-zero differences (default: "
                             "--signal)")
    parser.add_argument("--low-fraction", type=float, default=0.75,
                        help="share of HER2-low among the negatives (default 0.75, paper 002)")
    parser.add_argument("--random-labels", action="store_true",
                        help="labels independent of images and table (null test)")
    parser.add_argument("--size", default="48x48x12", metavar="XxYxZ",
                        help="MRI grid in voxels (default 48x48x12)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")


def run(args) -> int:
    from her2core.synthetic import make_cohort
    try:
        shape = tuple(int(v) for v in args.size.lower().split("x"))
        if len(shape) != 3 or min(shape[:2]) < 16 or shape[2] < 4 or max(shape) > 512:
            raise ValueError
    except ValueError:
        print(f"error: --size must look like 48x48x12 (x, y 16..512, z 4..512), not "
              f"{args.size!r}", file=sys.stderr)
        return 2
    if args.n < 1 or args.n > 100000 or not 0 < args.prevalence < 1:
        print("error: --n must be 1..100000 and --prevalence strictly between 0 and 1",
              file=sys.stderr)
        return 2
    try:
        out = make_cohort(args.out, n=args.n, seed=args.seed, centres=args.centres,
                          prevalence=args.prevalence, modalities=args.modalities, shape=shape,
                          signal=args.signal, random_labels=args.random_labels,
                          overwrite=args.overwrite, low_signal=args.low_signal,
                          low_fraction=args.low_fraction)
    except FileExistsError:
        print(f"error: {args.out} exists and is not empty (use --overwrite to replace a "
              "previous demo cohort)", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} synthetic cases to {out} (seed {args.seed}); "
          f"check it with: python -m her2core validate --cohort {out}")
    return 0
