"""`python -m her2core <command>`: one module per command in her2core/commands/.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Adding a command means adding a module and listing it in
COMMANDS; nothing else here changes. User errors (Her2Error) are printed as one
clear line and give exit code 2; no traceback reaches the user.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from her2core import DISCLAIMER, __version__, deid
from her2core.errors import Her2Error

COMMANDS = [
    "validate",
    "demo_cohort",
    "train",
    "predict",
    "evaluate",
    "explain",
    "reader_study",
    "report_study",
    "finetune",
    "weights",
    "segment",
    "dicom_seg",
    "series",
    "pacs",
    "extract",
]

log = logging.getLogger("her2core")


def _load_commands():
    mods = []
    for name in COMMANDS:
        try:
            mods.append(importlib.import_module(f"her2core.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name == f"her2core.commands.{name}":
                continue  # command not built yet
            raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m her2core",
        description="HER2 second-opinion workbench. " + DISCLAIMER,
    )
    parser.add_argument("--version", action="version", version=f"her2core {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _load_commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # pyradiomics validates its settings with pykwalify, which logs "validation.valid" at INFO
    logging.getLogger("pykwalify").setLevel(logging.WARNING)
    deid.install_log_redaction()
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except Her2Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
