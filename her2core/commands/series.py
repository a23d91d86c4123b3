"""`python -m her2core series list --dicom PATH [--json OUT]`
`python -m her2core series build --dicom PATH --cohort DIR --case-id ID [--t1 S] [--t2 S]
[--dce S] [--dce-phases S S ...] [--overwrite]`

The series picker on the command line: list the series of a DICOM folder or zip
(number, description, modality, size, slices, temporal position, time offset), then
write a case in the cohort layout from a mapping. S is a SeriesInstanceUID or the
row number that `list` prints; `--dce-phases` lists the phase series pre-contrast
first (or one series holding several temporal positions) and makes DCE_phases.nii.gz.
"""
from __future__ import annotations

import json

NAME = "series"
HELP = "list the series of a DICOM folder / zip and build a cohort case from chosen series"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="series_command", metavar="SUBCOMMAND", required=True)
    ls = sub.add_parser("list", help="list the series (and a suggested mapping)")
    ls.add_argument("--dicom", required=True, metavar="PATH", help="DICOM folder or zip")
    ls.add_argument("--json", default=None, metavar="OUT", help="also write the list as JSON")
    b = sub.add_parser("build", help="write a cohort case from a series mapping")
    b.add_argument("--dicom", required=True, metavar="PATH")
    b.add_argument("--cohort", required=True, metavar="DIR", help="cohort folder (created if new)")
    b.add_argument("--case-id", required=True)
    b.add_argument("--t1", default=None, metavar="S")
    b.add_argument("--t2", default=None, metavar="S")
    b.add_argument("--dce", default=None, metavar="S")
    b.add_argument("--dce-phases", nargs="+", default=None, metavar="S")
    b.add_argument("--overwrite", action="store_true", help="replace the case's image files")


def print_series(infos) -> None:
    from her2core.imaging.series import series_table, suggest_mapping
    rows = series_table(infos)
    print("#\tseries\tmodality\tsize\tslices\ttemporal\ttime_s\tdescription\tSeriesInstanceUID")
    for r in rows:
        t = "" if r["time_offset_s"] is None else f"{r['time_offset_s']:g}"
        print(f"{r['#']}\t{r['series_number'] if r['series_number'] is not None else ''}\t"
              f"{r['modality']}\t{r['size']}\t{r['slices']}\t{r['temporal']}\t{t}\t"
              f"{r['description']}\t{r['uid']}")
    guess = suggest_mapping(infos)
    if guess:
        number = {s.uid: i for i, s in enumerate(infos, 1)}
        parts = []
        for role, v in guess.items():
            vals = v if isinstance(v, list) else [v]
            parts.append(f"--{role.lower().replace('_', '-')} " + " ".join(str(number[u]) for u in vals))
        print("suggested: " + " ".join(parts))


def run(args) -> int:
    from her2core.imaging.series import build_case_series, list_series, resolve_series, write_case
    infos = list_series(args.dicom)
    if args.series_command == "list":
        print_series(infos)
        if args.json:
            from pathlib import Path
            Path(args.json).write_text(json.dumps([s.to_dict() for s in infos], indent=1) + "\n",
                                       encoding="utf-8")
        return 0
    mapping = {}
    for role, value in (("T1", args.t1), ("T2", args.t2), ("DCE", args.dce)):
        if value:
            mapping[role] = resolve_series(value, infos)
    if args.dce_phases:
        mapping["DCE_phases"] = [resolve_series(v, infos) for v in args.dce_phases]
    built = build_case_series(args.dicom, mapping)
    written = write_case(args.cohort, args.case_id, built.images, overwrite=args.overwrite)
    for note in built.notes:
        print(f"note: {note}")
    for p in written:
        img = built.images[p.name.split(".")[0]]
        print(f"{p}: {img.array.shape} voxels, spacing {tuple(round(s, 4) for s in img.spacing)} mm")
    print(f"case {args.case_id} written to {args.cohort} (add its masks and clinical values)")
    return 0
