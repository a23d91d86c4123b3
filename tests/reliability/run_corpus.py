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
    from her2core.cohort import validate_cohort
    if item.kind == "upload":
        return "skip", ""
    code, text = _cli(["validate", "--cohort", str(path)])
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


# Sequences the demo bundle reads: a broken file it does not read may be ignored by
# predict / explain (the case is still refused by validate); one it reads must be named.
ROOT = HERE.parents[1]
DEMO_BUNDLE = ROOT / "assets" / "demo_bundle"


def _bundle_reads(item: Item) -> bool:
    import json
    cfg = json.loads((DEMO_BUNDLE / "feature_config.json").read_text(encoding="utf-8"))
    used = set(cfg.get("sequences", [])) | {"mask"}
    stem = item.file.split(".")[0]
    return stem in used


def _cli(args: list[str]) -> tuple[int, str]:
    """Run a command as a user would and return (exit code, everything it said: stdout,
    stderr and its log records, which a user reads on stderr)."""
    import logging
    from her2core import cli
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(args)
    finally:
        root.removeHandler(handler)
    return code, out.getvalue() + err.getvalue()


def entry_predict(item: Item, path: Path) -> tuple[str, str]:
    """predict: the bad case is reported (case and file named) and skipped; the good one is predicted."""
    import pandas as pd
    if item.kind == "upload":
        return "skip", ""
    out_csv = path.parent / f"{path.name}-pred.csv"
    code, text = _cli(["predict", "--bundle", str(DEMO_BUNDLE), "--cohort", str(path),
                       "--out", str(out_csv)])
    if "Traceback" in text:
        return "crash", text[-400:]
    rows = set(pd.read_csv(out_csv)["case_id"]) if out_csv.exists() else set()
    if item.kind == "table":
        if item.expect == "ok":
            return ("clean" if code == 0 and {GOOD, BAD} <= rows else "wrong"), text[-300:]
        refused = code != 0 or rows != {GOOD, BAD}       # a faulty row is left out, or all is
        return ("clean" if refused and "cohort.csv" in text else "wrong"), text[-300:]
    if not _bundle_reads(item) or item.expect in ("ok", "either"):
        return ("clean" if GOOD in rows else "wrong"), text[-300:]
    # a readable file on the wrong grid (one voxel) is refused through its mask check
    named = BAD in text and (item.file in text or (item.file_loads and "mask" in text))
    return ("clean" if named and GOOD in rows and BAD not in rows else "wrong"), text[-300:]


def entry_explain(item: Item, path: Path) -> tuple[str, str]:
    """explain on the bad case: a one-line error naming case and file (when the bundle reads it)."""
    if item.kind != "case":
        return "skip", ""
    code, text = _cli(["explain", "--bundle", str(DEMO_BUNDLE), "--cohort", str(path),
                       "--case", BAD, "--out", str(path.parent / f"{path.name}-explain")])
    if "Traceback" in text:
        return "crash", text[-400:]
    if not _bundle_reads(item) or item.expect in ("ok", "either"):
        return ("clean" if code in (0, 2) else "wrong"), text[-300:]
    named = BAD in text and (item.file in text or (item.file_loads and "mask" in text))
    return ("clean" if code == 2 and named else "wrong"), text[-300:]


def entry_train(item: Item, path: Path) -> tuple[str, str]:
    """train (clinical recipe) on a broken cohort.csv: refused or the bad row left out, named."""
    if item.kind != "table":
        return "skip", ""
    from her2core.synthetic import make_cohort
    root = path.parent / f"{path.name}-train"
    make_cohort(root, n=30, seed=3, modalities="none")
    rows = (root / "cohort.csv").read_text(encoding="utf-8").splitlines()
    good = (path / "cohort.csv").read_bytes()
    # the broken table's first data rows replace the head of a 30-row clinical table
    try:
        text = good.decode("utf-8-sig")
        head = text.splitlines()
        if head and head[0] == rows[0]:
            keep = [r for r in rows[1:] if r.split(",")[0] not in (GOOD, BAD)]
            body = text.rstrip("\n") + "\n" + "\n".join(keep) + "\n"
            data = (b"\xef\xbb\xbf" if good.startswith(b"\xef\xbb\xbf") else b"") + body.encode()
        else:
            data = good
    except UnicodeDecodeError:
        data = good
    (root / "cohort.csv").write_bytes(data)
    code, text = _cli(["train", "--cohort", str(root), "--recipe", "clinical", "--bootstrap", "0",
                       "--out", str(root / "bundle")])
    if "Traceback" in text:
        return "crash", text[-400:]
    if item.expect == "ok":
        return ("clean" if code == 0 else "wrong"), text[-300:]
    return ("clean" if "cohort.csv" in text else "wrong"), text[-300:]


class _Upload:
    """The app's Case page, driven by streamlit's AppTest: one session for the whole corpus."""
    at = None

    @classmethod
    def page(cls):
        from streamlit.testing.v1 import AppTest
        if cls.at is None:
            cls.at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
            cls.at.run()
            cls.at.switch_page("app_pages/case.py")
            cls.at.run()
        return cls.at


def entry_upload(item: Item, path: Path) -> tuple[str, str]:
    """The app's upload: an error box naming the file, no exception, and the session survives."""
    if item.kind == "table" or (item.kind == "case" and "mask" in item.file):
        return "skip", ""
    if item.kind == "case":
        target = path / "cases" / BAD / item.file
        if not target.is_file():
            return "skip", ""              # DICOM folders are uploaded as zips (upload items)
        seq = item.file.split(".")[0]
    else:
        target, seq = path, item.sequence
    if seq not in ("T1", "T2", "DCE", "US"):
        return "skip", ""
    at = _Upload.page()
    at.file_uploader(key=f"up_{seq}").set_value((target.name, target.read_bytes(), "application/octet-stream"))
    at.run()
    at.button(key="load_upload").click()
    at.run()
    if at.exception:
        return "crash", str([e.value for e in at.exception])[-400:]
    errors = [e.value for e in at.error]
    at.file_uploader(key=f"up_{seq}").set_value(None)
    at.run()
    unexpected = any("Unexpected problem" in e for e in errors)
    if unexpected:
        return "crash", "; ".join(errors)[-400:]
    if item.expect == "ok" or item.file_loads:
        return ("clean" if not errors or item.file_loads else "wrong"), "; ".join(errors)[-300:]
    if item.expect == "either":
        return "clean", "; ".join(errors)[-300:]
    return ("clean" if any(target.name in e for e in errors) else "wrong"), "; ".join(errors)[-300:]


ENTRIES = {"validate": entry_validate, "load": entry_load, "predict": entry_predict,
           "explain": entry_explain, "train": entry_train, "upload": entry_upload}


def _peak_mb() -> float:
    """This process's own peak resident memory, in MB.

    ``getrusage().ru_maxrss`` is not that on Linux: the kernel carries the high-water mark over
    ``execve``, so a corpus started by a test inherits the peak of the pytest process that forked it
    (seen in CI: 3008 MB reported for a run whose own peak is 1600 MB). ``VmHWM`` belongs to the
    address space, which exec replaces, so it counts this run only.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
                                "peak_rss_mb": round(_peak_mb(), 1), "detail": detail})
    peak_mb = _peak_mb()
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
