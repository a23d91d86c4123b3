#!/usr/bin/env python3
"""Screenshot of the Case page with a clinical-size case (448 x 448 x 120 DCE) and its ROI,
at 1366 x 768 in headless Chromium (tests/app/browser.py), uploaded as a user would.

Writes benchmarks/results/screenshots/case_clinical_1366.png (the window as the user sees
it) and case_clinical_1366_full.png (the whole page).

  python benchmarks/shot_case_clinical.py [--cache /tmp/her2_clin]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None, help="cache folder of the clinical demo cohort")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "screenshots"))
    a = ap.parse_args()
    from her2core.synthetic import clinical_demo_cases
    from tests.app import browser as B
    cohort = clinical_demo_cases(a.cache, n=1, shape=(448, 448, 120), phases=3)
    case = cohort / "cases" / "clin-000"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with B.running_app(log_path=Path("/tmp/shot_case_app.log")) as url, \
            B.browser_page(1366, 768) as page:
        B.goto_page(page, url, "case")
        page.get_by_role("tab", name="Upload files").click()
        def uploader(label: str):
            return page.locator('[data-testid="stFileUploader"]').filter(
                has=page.get_by_text(label, exact=True)).locator("input[type=file]")
        uploader("DCE").set_input_files(str(case / "DCE.nii.gz"))
        B.wait_idle(page)
        uploader("T2").set_input_files(str(case / "T2.nii.gz"))
        B.wait_idle(page)
        uploader("ROI mask (optional, on the DCE grid, or T1 without DCE; US_mask for US)"
                 ).set_input_files(str(case / "mask.nii.gz"))
        B.wait_idle(page)
        page.wait_for_timeout(1500)
        t0 = time.perf_counter()
        page.get_by_role("button", name="Load uploaded case").click()
        page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=300_000)
        B.wait_idle(page, timeout=300_000)
        page.wait_for_timeout(1500)
        print(f"case opened and drawn in {time.perf_counter() - t0:.1f} s")
        # the viewer at the top of the window, as after scrolling to it
        page.locator(".stPlotlyChart").first.evaluate(
            "e => { e.scrollIntoView({block: 'start'});"
            " for (let p = e.parentElement; p; p = p.parentElement)"
            "   if (p.scrollTop > 0) { p.scrollTop -= 64; break; } }")
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "case_clinical_1366.png"))
        page.screenshot(path=str(out / "case_clinical_1366_full.png"), full_page=True)
        box = page.locator(".stPlotlyChart").first.bounding_box()
        print("chart box (px):", box)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
