"""`python -m her2core validate --cohort DIR [--json OUT]`: check a cohort folder.

Prints one block per case (files found with their geometry, every problem
naming the case and the file) and a usable / not-usable summary. Exit code 0
when every case is usable, 1 otherwise. The checks live in her2core.cohort.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

NAME = "validate"
HELP = "check a cohort folder (cohort.csv + cases/) and report every problem per case"

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--cohort", required=True, metavar="DIR",
                        help="cohort folder holding cohort.csv (and cases/)")
    parser.add_argument("--json", metavar="OUT", default=None,
                        help="also write the full report as JSON to this file")
    parser.add_argument("--problems-only", action="store_true",
                        help="list only cases with problems or notes")


def run(args) -> int:
    from her2core.cohort import validate_cohort
    try:
        report = validate_cohort(Path(args.cohort))
    except Exception as exc:  # noqa: BLE001 - the user sees one line, -v shows the traceback
        log.debug("validate failed", exc_info=True)
        print(f"error: validation stopped unexpectedly: {exc}", file=sys.stderr)
        return 1
    print(report.to_text(verbose=not args.problems_only))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(report.to_dict(), indent=1) + "\n",
                                       encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0 if report.ok else 1
