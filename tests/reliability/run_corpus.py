"""Feed every bad-input corpus item through every entry point; count the outcomes.

    python tests/reliability/run_corpus.py [--entry validate,load,...] [--json OUT]

Outcomes per (item, entry point):
- clean:    refused with a her2core error whose text names the case and the file
            (or, for "ok" items, accepted), the good case of the cohort untouched;
- wrong:    a clean, traceback-free answer but not the right one (a valid input
            refused, a broken one accepted, or a message that does not name the file);
- crash:    any other exception, a traceback in the output, a time-out, or memory
            beyond the bound. Must be 0.
Each item runs under a wall-clock alarm; peak memory of the whole run is reported.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from corpus import BAD, GOOD, Item, base_cohort, items, make_template  # noqa: E402

TIME_LIMIT_S = 60


class TimeLimit(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    def handler(signum, frame):
        raise TimeLimit(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _names(text: str, item: Item) -> bool:
    file_ok = item.file in text
    if item.kind == "case":
        return file_ok and BAD in text
    return file_ok


# ------------------------------------------------------------------ entry points
def entry_validate(item: Item, path: Path) -> tuple[str, str]:
    from her2core import cli
    from her2core.cohort import validate_cohort
    if item.kind == "upload":
        return "skip", ""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["validate", "--cohort", str(path)])
    text = out.getvalue() + err.getvalue()
    if "Traceback" in text:
        return "crash", text[-400:]
    report = validate_cohort(path)
    if item.expect == "ok":
        return ("clean" if code == 0 and report.ok else "wrong"), text[-300:]
    if code == 0:
        return ("clean" if item.expect == "either" else "wrong"), "accepted: " + text[-200:]
    problems = [str(p) for p in report.all_problems()]
    named = any(_names(p, item) for p in problems)
    if item.kind == "case" and GOOD not in report.usable:
        return "wrong", "the good case was lost: " + "; ".join(problems)[:300]
    return ("clean" if named else "wrong"), "; ".join(problems)[:300]


def entry_load(item: Item, path: Path) -> tuple[str, str]:
    """What the app's upload and every command call first: imaging.load_image."""
    from her2core.errors import Her2Error
    from her2core.imaging.io import load_image
    if item.kind == "table":
        return "skip", ""
    if item.kind == "case":
        target = path / "cases" / BAD / item.file
        seq = item.file.split(".")[0].replace("_mask", "")
        if "mask" in item.file:
            return "skip", ""          # masks are checked against their image by validate
        sequence = seq if seq in ("T1", "T2", "DCE", "DCE_phases", "US") else None
    else:
        target, sequence = path, item.sequence
    try:
        load_image(target, sequence=sequence, case_id=BAD if item.kind == "case" else None)
    except Her2Error as err:
        text = str(err)
        if item.expect == "ok":
            return "wrong", "refused: " + text
        return ("clean" if item.file in text else "wrong"), text
    ok = item.expect in ("ok", "either") or item.file_loads
    return ("clean" if ok else "wrong"), "accepted"


ENTRIES = {"validate": entry_validate, "load": entry_load}


def run(entries: list[str], workdir: Path) -> dict:
    template = make_template(workdir / "template")
    results = []
    for k, item in enumerate(items()):
        for entry in entries:
            dest = workdir / f"{k:03d}-{entry}"
            t0 = time.perf_counter()
            try:
                with time_limit(TIME_LIMIT_S):
                    if item.kind == "upload":
                        dest.mkdir()
                        path = item.build(dest)
                    else:
                        path = item.build(base_cohort(dest, template))
                    outcome, detail = ENTRIES[entry](item, path)
            except TimeLimit as exc:
                outcome, detail = "crash", str(exc)
            except Exception:  # noqa: BLE001 - anything escaping an entry point is a crash
                outcome, detail = "crash", traceback.format_exc()[-800:]
            if outcome != "skip":
                results.append({"item": item.name, "entry": entry, "expect": item.expect,
                                "outcome": outcome, "seconds": round(time.perf_counter() - t0, 3),
                                "detail": detail})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = {o: sum(r["outcome"] == o for r in results) for o in ("clean", "wrong", "crash")}
    return {"items": len(items()), "runs": len(results), **counts,
            "peak_rss_mb": round(peak_mb, 1), "results": results}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entry", default=",".join(ENTRIES))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(args.entry.split(","), Path(tmp))
    for r in summary["results"]:
        if r["outcome"] != "clean":
            print(f"{r['outcome'].upper():6s} [{r['entry']}] {r['item']}: {r['detail'][:300]}")
    print(f"corpus: {summary['items']} items, {summary['runs']} runs: {summary['clean']} clean, "
          f"{summary['wrong']} wrong, {summary['crash']} crashes; peak RSS {summary['peak_rss_mb']} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 1 if summary["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
