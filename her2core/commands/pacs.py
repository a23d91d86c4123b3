"""`python -m her2core pacs find --url URL [--patient-id ID] [--study-date RANGE]`
`python -m her2core pacs fetch --url URL --study UID [--series UID ...] --out DIR`
`python -m her2core pacs store --url URL [--relink FETCHED_DIR] FILE ...`

DICOMweb (QIDO-RS / WADO-RS / STOW-RS) with her2core.pacs. `find` prints one line per
study: StudyInstanceUID, date, modalities, description, number of series (tab
separated). `fetch` writes the study's image series de-identified, one folder per
series, and lists them as the series picker does.
"""
from __future__ import annotations

NAME = "pacs"
HELP = "search, retrieve (de-identified) and store studies on a DICOMweb server"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="pacs_command", metavar="SUBCOMMAND", required=True)
    f = sub.add_parser("find", help="search studies (QIDO-RS)")
    f.add_argument("--url", required=True, help="DICOMweb root, e.g. http://host:8042/dicom-web")
    f.add_argument("--patient-id", default=None)
    f.add_argument("--study-date", default=None, metavar="RANGE",
                   help="YYYYMMDD or YYYYMMDD-YYYYMMDD (either end may be left open)")
    f.add_argument("--limit", type=int, default=200)
    g = sub.add_parser("fetch", help="retrieve a study's series de-identified (WADO-RS)")
    g.add_argument("--url", required=True)
    g.add_argument("--study", required=True, metavar="UID")
    g.add_argument("--series", nargs="*", default=None, metavar="UID",
                   help="only these series (default: every image series)")
    g.add_argument("--out", required=True, metavar="DIR", help="new folder to write")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty folder")
    s = sub.add_parser("store", help="store DICOM files, e.g. a DICOM SEG (STOW-RS)")
    s.add_argument("--url", required=True)
    s.add_argument("--relink", default=None, metavar="DIR",
                   help="folder written by `pacs fetch`: file the SEG into the server's original "
                        "study (UIDs and patient attributes restored in memory only)")
    s.add_argument("files", nargs="+", metavar="FILE")


def run(args) -> int:
    from her2core import pacs
    if args.pacs_command == "find":
        studies = pacs.find_studies(args.url, patient_id=args.patient_id,
                                    study_date=args.study_date, limit=args.limit)
        for st in studies:
            print(st.line())
        if not studies:
            print("no study found")
        return 0
    if args.pacs_command == "fetch":
        from her2core.commands.series import print_series
        from her2core.imaging.series import list_series
        res = pacs.fetch_study(args.url, args.study, args.out, series=args.series,
                               overwrite=args.overwrite)
        print(f"retrieved {res.n_files} files in {len(res.series)} series into {res.out_dir} "
              f"(de-identified) in {res.seconds:.1f} s"
              + (f"; skipped {len(res.skipped)} non-image series" if res.skipped else ""))
        print_series(list_series(res.out_dir))
        return 0
    n = pacs.store_instances(args.url, args.files, relink=args.relink)
    print(f"stored {n} instance(s)")
    return 0
