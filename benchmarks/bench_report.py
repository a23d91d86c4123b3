"""The one-case PDF report as the app makes it: page count, time to build, page screenshots.

    python3 benchmarks/bench_report.py [--tag after] [--bundle assets/demo_bundle]
        [--out benchmarks/results/report.json] [--screens benchmarks/results/screenshots]

Drives the real pages through streamlit.testing (AppTest): Case (open a demo case),
Prediction (run), Export; the PDF bytes the Export page offers are captured from
``her2core.report.to_pdf``. Two cases: the 40 x 40 demo case syn-0002 (assets/demo_cohort)
and a clinical-size case (448 x 448 x 120, her2core.synthetic.clinical_demo_cases, made
on first use into --cache). Each PDF is rendered at 1366 px wide with poppler's pdftoppm
(``apt-get install poppler-utils``) into <screens>/report[_clinical]_page<N>_<tag>.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pages(pdf: Path) -> int:
    out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in out.splitlines() if line.startswith("Pages:")))


def _render(pdf: Path, stem: str, screens: Path, max_pages: int) -> list[str]:
    tmp = Path(tempfile.mkdtemp(prefix="her2_pdfpng_"))
    subprocess.run(["pdftoppm", "-png", "-scale-to-x", "1366", "-scale-to-y", "-1", "-l",
                    str(max_pages), str(pdf), str(tmp / "p")], check=True)
    out = []
    for i, f in enumerate(sorted(tmp.glob("p-*.png")), 1):
        dest = screens / f"{stem}_page{i}.png"
        shutil.copyfile(f, dest)
        out.append(str(dest.relative_to(ROOT)))
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _report_via_app(case_id: str, demo_root: Path | None) -> tuple[bytes, float, float]:
    """(pdf bytes, seconds of the prediction run, seconds of to_pdf) through the pages."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from her2core import report as R
    from webapp import services as S

    st.cache_resource.clear()
    st.cache_data.clear()
    if demo_root is not None:
        S.demo_cohort_root = lambda: demo_root          # the clinical-size cohort as "demo"
    captured: dict = {}
    real = R.to_pdf

    def spy(rep, **kw):
        t = time.perf_counter()
        b = real(rep, **kw)
        captured["s"] = time.perf_counter() - t
        captured["pdf"] = b
        return b

    R.to_pdf = spy
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
        at.run()
        for page, act in (("case", None), ("prediction", "run_prediction"), ("export", None)):
            at.switch_page(f"app_pages/{page}.py")
            at.run()
            if page == "case":
                at.selectbox(key="demo_pick").set_value(case_id)
                at.button(key="open_demo").click()
                at.run()
            if act:
                t = time.perf_counter()
                at.button(key=act).click()
                at.run()
                captured["predict_s"] = time.perf_counter() - t
            assert not at.exception, [e.value for e in at.exception]
    finally:
        R.to_pdf = real
    if "pdf" not in captured:
        raise SystemExit(f"the Export page made no PDF for {case_id}")
    return captured["pdf"], captured.get("predict_s", float("nan")), captured["s"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tag", default="after")
    ap.add_argument("--bundle", default=str(ROOT / "assets" / "demo_bundle"))
    ap.add_argument("--cache", default=os.environ.get("HER2_CACHE", "/tmp/her2_report_cache"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "report.json"))
    ap.add_argument("--screens", default=str(ROOT / "benchmarks" / "results" / "screenshots"))
    ap.add_argument("--max-pages", type=int, default=3)
    ap.add_argument("--skip-clinical", action="store_true")
    a = ap.parse_args(argv)
    os.environ["HER2_BUNDLE"] = a.bundle
    screens = Path(a.screens)
    screens.mkdir(parents=True, exist_ok=True)
    from her2core.synthetic import clinical_demo_cases

    cases = [("report", "syn-0002", None)]
    if not a.skip_clinical:
        croot = clinical_demo_cases(a.cache, n=1)
        cid = sorted(p.name for p in (croot / "cases").iterdir())[0]
        cases.append(("report_clinical", cid, croot))
    results = {}
    work = Path(tempfile.mkdtemp(prefix="her2_report_bench_"))
    for stem, cid, root in cases:
        pdf, predict_s, pdf_s = _report_via_app(cid, root)
        f = work / f"{stem}.pdf"
        f.write_bytes(pdf)
        pngs = _render(f, stem, screens, a.max_pages)
        final = []
        for p in pngs:                                   # report_page1.png -> report_page1_<tag>.png
            dest = Path(ROOT / p).with_name(Path(p).stem + f"_{a.tag}.png")
            os.replace(ROOT / p, dest)
            final.append(str(dest.relative_to(ROOT)))
        results[stem] = {"case": cid, "pages": _pages(f), "pdf_bytes": len(pdf),
                         "to_pdf_seconds": round(pdf_s, 3), "prediction_seconds": round(predict_s, 2),
                         "screenshots": final}
        print(stem, json.dumps(results[stem]))
    out = Path(a.out)
    prev = json.loads(out.read_text()) if out.is_file() else {}
    prev[a.tag] = results
    out.write_text(json.dumps(prev, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
