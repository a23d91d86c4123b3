"""`python -m her2core segment --image FILE (--seed-mm X,Y,Z | --seed-index I,J,K |
--box-mm X0,Y0,Z0,X1,Y1,Z1 | --box-index I0,J0,K0,I1,J1,K1) --out mask.nii.gz`

Assisted lesion segmentation (her2core.imaging.segment): a 3-D mask (2-D on
ultrasound) on the image's own grid, written with the image's geometry exactly.
Millimetres are physical LPS coordinates as SimpleITK reports them; indices are in
x, y, z voxel order. Prints the seed, polarity, border scores and lesion size.
"""
from __future__ import annotations

import json
import re

NAME = "segment"
HELP = "assisted lesion mask from a seed or a box (classical, no weights)"


def add_arguments(parser) -> None:
    # coordinates such as -40.5,12,30 start with '-': let argparse read them as values
    # (otherwise they need the --seed-mm=-40.5,12,30 form)
    if hasattr(parser, "_negative_number_matcher"):
        parser._negative_number_matcher = re.compile(r"^-\d[\d.,;eE+-]*$")
    parser.add_argument("--image", required=True, metavar="FILE",
                        help="image file, DICOM folder or zip (3-D MRI, 4-D DCE phases, 2-D US)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--seed-mm", metavar="X,Y,Z", help="seed in physical LPS mm")
    where.add_argument("--seed-index", metavar="I,J,K", help="seed voxel index (x, y, z order)")
    where.add_argument("--box-mm", metavar="X0,Y0,Z0,X1,Y1,Z1",
                       help="two opposite box corners in LPS mm (equal z: a box on one slice)")
    where.add_argument("--box-index", metavar="I0,J0,K0,I1,J1,K1",
                       help="two opposite box corners as voxel indices (x, y, z order)")
    parser.add_argument("--out", required=True, metavar="MASK", help="mask file to write")
    parser.add_argument("--polarity", default="auto", choices=("auto", "bright", "dark"),
                        help="lesion brighter (enhancing) or darker (hypoechoic) than its "
                             "surroundings; auto tries both (default)")
    parser.add_argument("--phase", default=None,
                        help="4-D DCE: a phase number, or 'subtraction' (phase 1 - phase 0, default)")
    parser.add_argument("--series-uid", default=None, help="series to use in a DICOM folder")
    parser.add_argument("--max-radius-mm", type=float, default=None,
                        help="search radius around a 3-D seed (default 40 mm)")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the result as JSON")


def _numbers(text: str, n: tuple[int, ...], flag: str) -> list[float]:
    from her2core.errors import Her2Error
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if len(values) not in n:
        raise Her2Error(f"{flag} needs {' or '.join(str(k) for k in n)} comma-separated numbers, "
                        f"got {text!r}")
    return values


def run(args) -> int:
    from her2core.imaging import load_image
    from her2core.imaging.segment import (DEFAULT_MAX_RADIUS_MM, box_index_from_mm, save_mask,
                                          seed_index_from_mm, segment_lesion)
    image = load_image(args.image, series_uid=args.series_uid)
    d = image.ndim
    kw = {"polarity": args.polarity,
          "max_radius_mm": args.max_radius_mm or DEFAULT_MAX_RADIUS_MM}
    if args.phase is not None:
        kw["phase"] = int(args.phase) if str(args.phase).isdigit() else args.phase
    if args.seed_mm:
        kw["seed_index"] = seed_index_from_mm(image, _numbers(args.seed_mm, (d,), "--seed-mm"))
    elif args.seed_index:
        kw["seed_index"] = _numbers(args.seed_index, (d,), "--seed-index")
    elif args.box_mm:
        v = _numbers(args.box_mm, (2 * d,), "--box-mm")
        kw["box_index"] = box_index_from_mm(image, v[:d], v[d:])
    else:
        v = _numbers(args.box_index, (2 * d,), "--box-index")
        kw["box_index"] = (v[:d], v[d:])
    result = segment_lesion(image, **kw)
    out = save_mask(result.mask, args.out, like=args.image)
    size = (f"{result.size_mm:.1f} mm{'^3' if d == 3 else '^2'}, equivalent diameter "
            f"{result.equivalent_diameter_mm:.1f} mm" if result.size_mm is not None
            else "spacing unknown")
    print(f"mask: {out} ({result.n_voxels} voxels, {size})")
    print(f"seed voxel {result.seed_index}, {result.polarity} lesion on {result.intensity}, "
          f"border consistency (RGI) {result.rgi:.2f}, contrast/spread {result.cnr:.2f}, "
          f"{result.seconds:.2f} s")
    if args.json:
        from pathlib import Path
        Path(args.json).write_text(json.dumps({"mask": str(out), **result.to_dict()}, indent=1)
                                   + "\n", encoding="utf-8")
    return 0
