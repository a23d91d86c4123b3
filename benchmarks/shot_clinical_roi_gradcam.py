#!/usr/bin/env python3
"""Screenshot: a clinical-size demo case in the Case viewer with its ROI and a Grad-CAM overlay.

The case (448 x 448 x 100 at 0.75 x 0.75 x 1.5 mm, her2core.synthetic.clinical_demo_cases)
is uploaded as a user would (DCE, T2, T1 and its mask), the prediction is run on the
Prediction page (the app's model: random-init networks, so the map shows mechanics, not
meaning), then the Case page shows the DCE slice through the ROI with the ROI outline and
the Grad-CAM heat map chosen in "Heat-map overlay". Headless Chromium (tests/app/browser.py).

Writes benchmarks/results/screenshots/clinical_roi_gradcam.png (the window, viewer at the
top) and clinical_roi_gradcam_chart.png (the chart alone).

  python benchmarks/shot_clinical_roi_gradcam.py [--cache DIR]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_bundle(out: Path) -> Path:
    """Recipe "demo" narrowed to a ResNet18 D-score on the DCE slice (random-init, 64 px,
    no radiomics, no bootstrap) with the score forced into the nomogram, trained on
    assets/demo_cohort: a model whose prediction has a DCE Grad-CAM map to overlay (the
    shipped demo model keeps no image score, so it has none)."""
    import json
    import tempfile
    from her2core.workflows.train import TrainSettings, train_bundle
    if (out / "MANIFEST").is_file():
        return out
    cfg = Path(tempfile.mkdtemp(prefix="her2_force_")) / "dce_force.json"
    cfg.write_text(json.dumps({
        "score_selection": "force",
        "features": {"sequences": ["DCE"], "backbones": {"DCE": ["resnet18"]}, "input_size": 64,
                     "radiomics": False, "batch_size": 16, "device": "cpu"},
        "scorers": [{"name": "resnet18", "block": "resnet18"}]}))
    train_bundle(TrainSettings(cohort=ROOT / "assets" / "demo_cohort", out=out, recipe="demo",
                               config=cfg, tasks=("her2",), bootstrap=0, random_init=True,
                               device="cpu", cache_dir=str(out.parent / (out.name + "_cache")),
                               seed=0, overwrite=True))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None, help="cache folder of the clinical demo cohort")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "screenshots"))
    ap.add_argument("--width", type=int, default=1366)
    ap.add_argument("--height", type=int, default=1150)
    ap.add_argument("--zoom", type=float, default=2.0, help="viewer zoom (1-4, steps of 0.25)")
    ap.add_argument("--bundle", default=None,
                    help="model bundle for the app (HER2_BUNDLE); its final model must keep an "
                         "image score for a Grad-CAM map (the shipped demo bundle keeps none: "
                         "make one with --make-bundle)")
    ap.add_argument("--make-bundle", default=None, metavar="DIR",
                    help="train the demo recipe with its image scores forced into the final "
                         "model (score_selection 'force') into DIR and use it")
    a = ap.parse_args()
    import os
    if a.make_bundle:
        a.bundle = str(make_bundle(Path(a.make_bundle)))
    if a.bundle:
        os.environ["HER2_BUNDLE"] = str(a.bundle)
    from her2core.synthetic import clinical_demo_cases
    from tests.app import browser as B
    case = clinical_demo_cases(a.cache) / "cases" / "clin-000"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with B.running_app(log_path=Path("/tmp/shot_clinical_roi_gradcam.log")) as url, \
            B.browser_page(a.width, a.height) as page:
        B.goto_page(page, url, "")
        page.get_by_role("link", name="Case").first.click()
        B.wait_idle(page)
        page.get_by_role("tab", name="Upload files").click()

        def uploader(label: str, exact: bool = True):
            return page.locator('[data-testid="stFileUploader"]').filter(
                has=page.get_by_text(label, exact=exact)).locator("input[type=file]")
        for seq in ("DCE", "T2", "T1"):
            uploader(seq).set_input_files(str(case / f"{seq}.nii.gz"))
            B.wait_idle(page)
        uploader("ROI mask", exact=False).set_input_files(str(case / "mask.nii.gz"))
        B.wait_idle(page)
        box = page.locator(".st-key-up_case_id input").first
        box.fill("clin-000")
        box.press("Enter")
        B.wait_idle(page)
        page.get_by_role("button", name="Load uploaded case").click()
        page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=300_000)
        B.wait_idle(page, timeout=300_000)
        t0 = time.perf_counter()
        for _ in range(3):
            page.get_by_role("link", name="Prediction").first.click()
            B.wait_idle(page)
            try:
                page.get_by_role("button", name="Run prediction").first.wait_for(timeout=30_000)
                break
            except Exception:  # noqa: BLE001 - a click during a rerun can be lost
                continue
        page.get_by_role("button", name="Run prediction").first.click()
        page.wait_for_function(
            "() => document.body.innerText.includes('Second level recomputed in')", timeout=900_000)
        B.wait_idle(page, timeout=900_000)
        print(f"prediction drawn in {time.perf_counter() - t0:.1f} s")
        page.get_by_role("link", name="Case").first.click()
        B.wait_idle(page)
        pick = page.locator(".st-key-case_heat [role=combobox], .st-key-case_heat input").first
        pick.wait_for(state="visible", timeout=120_000)
        for _ in range(3):
            pick.click()
            try:
                page.get_by_role("option").first.wait_for(timeout=10_000)
                names = [t.strip() for t in page.get_by_role("option").all_inner_texts()]
                choice = next(n for n in names if n and n != "none")
                page.get_by_role("option", name=choice, exact=True).click(timeout=10_000)
                B.wait_idle(page, timeout=300_000)
                box = page.locator(".st-key-case_heat")
                shown = box.inner_text() + " ".join(
                    i.input_value() for i in box.locator("input").all())
                if choice in shown:
                    print("heat-map overlay:", choice)
                    break
            except Exception:  # noqa: BLE001
                page.keyboard.press("Escape")
                B.wait_idle(page)
        else:
            raise RuntimeError("could not choose a heat-map overlay")
        B.wait_idle(page, timeout=300_000)
        if a.zoom > 1:           # the Zoom slider (steps of 0.25), centred on the ROI by the page
            thumb = page.locator(".st-key-case_zoom input[type=range]").first
            thumb.focus()
            for _ in range(int(round((a.zoom - 1) / 0.25))):
                thumb.press("ArrowRight")
            B.wait_idle(page, timeout=300_000)
        page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=300_000)
        page.wait_for_timeout(1500)
        chart = page.locator(".stPlotlyChart").first
        page.locator(".st-key-case_heat").first.evaluate(   # the overlay chooser at the top
            "e => { e.scrollIntoView({block: 'start'});"
            " for (let p = e.parentElement; p; p = p.parentElement)"
            "   if (p.scrollTop > 0) { p.scrollTop -= 72; break; } }")
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "clinical_roi_gradcam.png"))
        chart.screenshot(path=str(out / "clinical_roi_gradcam_chart.png"))
        page.screenshot(path="/tmp/shot_clinical_roi_gradcam_full.png", full_page=True)
        caps = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
        print("captions:", [c for c in caps if "ROI on" in c or "pixels of" in c])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
