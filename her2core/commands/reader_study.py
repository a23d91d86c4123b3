"""`python -m her2core reader-study <create|status|export|analyze>`: run a reader study.

create   make a study from a cohort folder (truth from cohort.csv: her2, her2_ihc) and a
         readers CSV (name, level junior/senior, years); optional predictions CSV
         (case_id, p_her2, ...) whose row is shown in the aided arm, and a model bundle
         folder whose checksum is recorded. Prints the owner code and one access code per
         reader ONCE: they are stored only as salted hashes.
status   progress per reader (owner code needed).
export   effective reads as csv (all fields), imrmc (iMRMC input) or mrmcaov (CSV data
         frame for MRMCaov).
analyze  per-reader AUC / sensitivity / specificity / accuracy / PPV / NPV per arm, junior
         vs senior, aided - unaided per reader, and the Obuchowski-Rockette MRMC analysis
         (jackknife and DeLong covariance) -> JSON, optionally an HTML report.

Database: --db URL, else the environment variable HER2_DB_URL, else the SQLite file
her2_reader_study.db in the per-user data folder (her2core.reader_study.db.user_data_dir). The owner code is read from --owner-code,
else from the environment variable HER2_OWNER_CODE, else asked for on the terminal.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

NAME = "reader-study"
HELP = "reader study with and without the model: create, status, export, analyze"

log = logging.getLogger(__name__)


DB_HELP = ("database URL (default: $HER2_DB_URL, else her2_reader_study.db in the per-user "
           "data folder, e.g. ~/.local/share/her2-workbench)")


def add_arguments(parser) -> None:
    import argparse

    parser.add_argument("--db", metavar="URL", default=None, help=DB_HELP)
    sub = parser.add_subparsers(dest="rs_command", metavar="SUBCOMMAND", required=True)

    def add(name, helptext):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--db", metavar="URL", default=argparse.SUPPRESS, help=DB_HELP)
        return p

    c = add("create", "create a study; prints access codes once")
    c.add_argument("--name", required=True, help="study name (unique in the database)")
    c.add_argument("--cohort", required=True, metavar="DIR", help="cohort folder (cohort.csv)")
    c.add_argument("--readers", required=True, metavar="CSV",
                   help="CSV with columns name, level (junior/senior), years")
    c.add_argument("--cases", metavar="ID", nargs="+",
                   help="only these case_ids (default: every case with a known her2)")
    c.add_argument("--design", choices=("sequential", "two_sessions"), default="sequential",
                   help="sequential: unaided then aided right after; two_sessions: all unaided, "
                        "washout, all aided")
    c.add_argument("--washout-days", type=float, default=0.0, help="washout for two_sessions")
    c.add_argument("--seed", type=int, default=None, help="case-order seed (default: random, recorded)")
    c.add_argument("--ask-her2-low", action="store_true",
                   help="also ask HER2-low vs HER2-zero for HER2-negative calls")
    c.add_argument("--predictions", metavar="CSV",
                   help="model output shown in the aided arm: case_id, p_her2 (+ other columns)")
    c.add_argument("--bundle", metavar="DIR", help="model bundle folder; its checksum is recorded")
    c.add_argument("--codes-out", metavar="FILE",
                   help="also write the codes to this file (created with mode 600)")

    for name, helptext in (("status", "progress per reader"),
                           ("export", "export the effective reads"),
                           ("analyze", "accuracy per reader and arm + MRMC analysis")):
        p = add(name, helptext)
        p.add_argument("--study", required=True, help="study name")
        p.add_argument("--owner-code", default=None,
                       help="owner code (default: $HER2_OWNER_CODE, else asked for)")
        if name == "export":
            p.add_argument("--format", choices=("csv", "imrmc", "mrmcaov"), default="csv")
            p.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
        if name == "analyze":
            p.add_argument("--json", required=True, metavar="OUT", help="results as JSON")
            p.add_argument("--html", metavar="OUT",
                           help="also the owner's report as HTML (her2core.reader_study.report)")
            p.add_argument("--pdf", metavar="OUT", help="also the owner's report as PDF")
            p.add_argument("--alpha", type=float, default=0.05)


def run(args) -> int:
    from her2core.reader_study.service import ReaderStudyService

    svc = ReaderStudyService.open(args.db)
    try:
        return {"create": _create, "status": _status, "export": _export,
                "analyze": _analyze}[args.rs_command](svc, args)
    finally:
        svc.db.dispose()


# --------------------------------------------------------------------------- create

def _create(svc, args) -> int:
    from her2core.reader_study.inputs import (bundle_checksum, cases_from_cohort, load_predictions,
                                              load_readers)

    readers = load_readers(args.readers)
    preds = load_predictions(args.predictions) if args.predictions else None
    model_info = None
    if args.bundle and preds is None:
        # the aided arm's model output computed now, on the runtime the app uses
        from her2core.bundle import load_bundle
        from her2core.cohort import read_cohort
        from her2core.workflows.study_inputs import model_outputs
        cohort = read_cohort(args.cohort)
        ids = list(args.cases) if args.cases else [str(c) for c in cohort.labels("her2").index]
        preds, model_info = model_outputs(load_bundle(args.bundle), cohort, ids)
    cases = cases_from_cohort(args.cohort, args.cases, preds)
    if (args.bundle or args.predictions) and model_info is None:
        model_info = {}
        if args.bundle:
            model_info["bundle"] = Path(args.bundle).name
            model_info["bundle_checksum"] = bundle_checksum(args.bundle)
        if args.predictions:
            model_info["predictions_sha256"] = hashlib.sha256(Path(args.predictions).read_bytes()).hexdigest()
    created = svc.create_study(args.name, cases, readers, design=args.design,
                               washout_days=args.washout_days, seed=args.seed,
                               ask_her2_low=args.ask_her2_low, model_info=model_info,
                               cohort_root=str(Path(args.cohort).resolve()))
    lines = [f"study: {created.name}",
             f"owner code: {created.owner_code}"]
    lines += [f"reader {name}: {code}" for name, code in created.reader_codes.items()]
    text = "\n".join(lines) + "\n"
    print("Access codes are shown only now; they are stored as salted hashes and cannot be "
          "recovered.", file=sys.stderr)
    sys.stdout.write(text)
    if args.codes_out:
        fd = os.open(args.codes_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return 0


# --------------------------------------------------------------------------- owner commands

def _owner(svc, args):
    code = args.owner_code or os.environ.get("HER2_OWNER_CODE")
    if not code:
        if not sys.stdin.isatty():
            from her2core.reader_study.service import AccessDenied
            raise AccessDenied("owner code needed", hint="--owner-code or HER2_OWNER_CODE")
        code = getpass.getpass("owner code: ")
    return svc.owner_sign_in(args.study, code)


def _status(svc, args) -> int:
    owner = _owner(svc, args)
    st = svc.study_status(owner)
    print(f"study {st.name}: design {st.design}"
          + (f", washout {st.washout_days:g} days" if st.design == "two_sessions" else "")
          + f", seed {st.seed}, {st.n_cases} cases ({st.n_positive} HER2-positive), "
          f"{st.n_reads} reads ({st.n_corrections} corrections)")
    for p in st.readers:
        extra = f", next session from {p.available_at:%Y-%m-%d %H:%M} UTC" if p.available_at else ""
        print(f"  R{p.reader_number} {p.reader_name} ({p.level}"
              + (f", {p.years:g} y" if p.years is not None else "")
              + f"): {p.done}/{p.total} (unaided {p.done_unaided}, aided {p.done_aided}) "
              f"{p.status}{extra}")
    return 0


def _export(svc, args) -> int:
    owner = _owner(svc, args)
    text = svc.export(owner, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        log.info("wrote %s", args.out)
    else:
        sys.stdout.write(text)
    return 0


def _analyze(svc, args) -> int:
    from her2core.reader_study import report

    owner = _owner(svc, args)
    res = svc.analyze(owner, alpha=args.alpha)
    Path(args.json).write_text(json.dumps(res, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    log.info("wrote %s", args.json)
    r = res["mrmc"].get("jackknife", {})
    if "rrrc" in r:
        t = r["rrrc"]
        print(f"AUC unaided {r['auc_mean'][0]:.3f}, aided {r['auc_mean'][1]:.3f}; "
              f"difference {t['difference']:+.3f} (95% CI {t['ci_lower']:+.3f} to {t['ci_upper']:+.3f}), "
              f"F({t['df1']:g}, {t['df2']:.2f}) = {t['value']:.3f}, p = {t['p_value']:.4f} "
              "[OR, random readers and cases, jackknife]")
    else:
        print(f"MRMC analysis not available: {r.get('error')}")
    for note in report.interim_notes(res):
        print(note)
    if args.html:
        Path(args.html).write_text(report.report_html(res), encoding="utf-8")
        log.info("wrote %s", args.html)
    if args.pdf:
        Path(args.pdf).write_bytes(report.report_pdf(res))
        log.info("wrote %s", args.pdf)
    return 0
