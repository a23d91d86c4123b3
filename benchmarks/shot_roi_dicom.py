#!/usr/bin/env python3
"""Screenshots of the Case page's ROI and DICOM tools (issue 14), driven in headless Chromium
(tests/app/browser.py) as a user would, each step checked before it is photographed.

1. series_picker.png - a DICOM study zip (a demo-cohort case written as T1, T2 and four DCE
   phase series with fake patient identifiers) uploaded on the "DICOM study" tab: the
   series table and the T1 / T2 / DCE / DCE-phases mapping controls.
2. roi_seeded.png (+ roi_seeded_coronal.png) - the chosen series opened, the ROI mode set to
   Seed and one click on the lesion: the 3-D mask's outline on the axial slice (and on the
   coronal view, which shows it spans slices) with the "Assisted ROI" caption.
3. seg_roundtrip.png - "Make a DICOM SEG of the ROI", the SEG downloaded (checked here with
   her2core: it references the DCE series and imports onto it voxel for voxel), the ROI
   cleared, the SEG uploaded back and "Use the SEG as the ROI": the same voxel count.
4. second_reader_icc.png - five demo cases with a second reader's mask (mask_reader2):
   each opened, reader 2's file given, its radiomics computed; the panel with Dice and the
   per-feature ICC(3,1) over the five cases.

  python benchmarks/shot_roi_dicom.py [--out benchmarks/results/screenshots] [--json FILE]

Writes the figures read off the page (voxel counts, Dice, ICC line) to
benchmarks/results/roi_dicom_shots.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READER2_CASES = 5          # agreement.MIN_ICC_CASES: fewer is shown as a rough figure


def make_study(tmp: Path) -> dict:
    """A 128 x 128 x 32 demo-cohort case and the same case as a DICOM study zip."""
    from her2core.imaging import load_image
    from her2core.imaging.dicom_synth import write_case_study
    from her2core.synthetic import make_cohort
    make_cohort(tmp / "demo", n=2, seed=1, centres=1, modalities="mri", shape=(128, 128, 32))
    case = tmp / "demo" / "cases" / "syn-0001"
    written = write_case_study(case, tmp / "study", zip_path=tmp / "breast_mri_study.zip")
    return {"case": case, "zip": tmp / "breast_mri_study.zip", "series": written,
            "mask": load_image(case / "mask.nii.gz")}


def caption_voxels(page) -> int:
    for t in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts():
        m = re.search(r"ROI on \w+: (\d+) voxels", t)
        if m:
            return int(m.group(1))
    return 0


def wait_caption(page, pattern: str, timeout: float = 120_000) -> str:
    page.wait_for_function(
        "(p) => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"],"
        " [data-testid=\"stMarkdownContainer\"]')].some(e => new RegExp(p).test(e.innerText))",
        arg=pattern, timeout=timeout)
    for t in page.locator('[data-testid="stCaptionContainer"], [data-testid="stMarkdownContainer"]'
                          ).all_inner_texts():
        if re.search(pattern, t):
            return t
    return ""


def click_pixel(page, chart, row: float, col: float, shape) -> None:
    """Click display pixel (row, col) of a slice chart at zoom 1 (axes -0.5 .. n - 0.5)."""
    area = chart.locator(".nsewdrag").first
    area.wait_for(state="visible", timeout=60_000)
    chart.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(600)
    box = area.bounding_box()
    h, w = shape
    x = box["x"] + (col + 0.5) / w * box["width"]
    y = box["y"] + (row + 0.5) / h * box["height"]
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)


def choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox with widget key ``key``."""
    box = page.locator(f".st-key-{key}")
    box.locator("input").first.click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).first.click()
    from tests.app.browser import wait_idle
    wait_idle(page)


def expander(page, title: str):
    exp = page.locator('[data-testid="stExpander"]').filter(has=page.get_by_text(title))
    summary = exp.locator("summary").first
    if exp.locator("details").first.get_attribute("open") is None:
        summary.click()
        page.wait_for_timeout(600)
    return exp


def shoot(page, top, bottom, path: Path, pad: int = 14) -> None:
    """Screenshot from the top of locator ``top`` to the bottom of ``bottom``, across the
    main column. Streamlit scrolls its main block, not the page, so the region is brought
    to the top of the (tall) window and clipped there."""
    top.evaluate("e => { e.scrollIntoView({block: 'start'});"
                 " for (let p = e.parentElement; p; p = p.parentElement)"
                 "   if (p.scrollTop > 0) { p.scrollTop -= 70; break; } }")
    page.wait_for_timeout(700)
    t, b = top.bounding_box(), bottom.bounding_box()
    main = page.locator('[data-testid="stMainBlockContainer"]').first.bounding_box()
    vp = page.viewport_size
    y0 = max(t["y"] - pad, 0)
    y1 = min(b["y"] + b["height"] + pad, vp["height"])
    x0 = max(main["x"] - pad, 0)
    page.screenshot(path=str(path), clip={"x": x0, "y": y0, "height": y1 - y0,
                                          "width": min(main["width"] + 2 * pad, vp["width"] - x0)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "screenshots"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "roi_dicom_shots.json"))
    a = ap.parse_args()
    from her2core import viewer as V
    from her2core.imaging import load_image
    from her2core.imaging.dicom_seg import import_dicom_seg
    from tests.app import browser as B

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="shot_roi_"))
    data = make_study(tmp)
    facts: dict = {"loadavg_start": os.getloadavg()}
    dce_img = data["series"]["DCE_1"]["image"]          # the DCE shown = phase 1
    can = V.canonical(dce_img)
    truth = can.to_canonical(np.asarray(data["mask"].array) > 0)
    with B.running_app(log_path=Path("/tmp/shot_roi_app.log")) as url, \
            B.browser_page(1400, 1900) as page:
        try:
            steps(page, url, out, tmp, data, can, truth, facts)
        except Exception:
            page.screenshot(path="/tmp/shot_roi_fail.png", full_page=True)
            Path("/tmp/shot_roi_fail.txt").write_text(page.locator(
                '[data-testid="stMain"]').inner_text(), encoding="utf-8")
            raise
    facts["icc_offline"] = icc_offline(facts["reader2_cases"])
    facts["loadavg_end"] = os.getloadavg()
    Path(a.json).write_text(json.dumps(facts, indent=1, default=str) + "\n", encoding="utf-8")
    print(json.dumps(facts, indent=1, default=str))
    return 0


def icc_offline(ids) -> dict:
    """The same two-reader ICC computed with her2core directly from the demo files (the
    app's figure is this one)."""
    import pandas as pd

    from her2core.imaging import agreement, load_image
    demo = ROOT / "assets" / "demo_cohort" / "cases"
    one, two, dice = {}, {}, {}
    for cid in ids:
        img = load_image(demo / cid / "DCE.nii.gz", sequence="DCE")
        m1, m2 = load_image(demo / cid / "mask.nii.gz"), load_image(demo / cid / "mask_reader2.nii.gz")
        one[cid] = agreement.reader_features(img, m1, "mri", case_id=cid)
        two[cid] = agreement.reader_features(img, m2, "mri", case_id=cid)
        dice[cid] = round(agreement.mask_agreement(m1, m2)["dice"], 3)
    icc = agreement.reader_icc(pd.DataFrame(one).T, pd.DataFrame(two).T)
    return {"n_cases": len(ids), "features": len(icc), "reach_0.9": int((icc["icc"] >= 0.9).sum()),
            "median_icc": round(float(icc["icc"].median()), 3),
            "lowest": {k: round(float(v), 3) for k, v in icc["icc"].head(3).items()},
            "dice": dice}


def steps(page, url, out, tmp, data, can, truth, facts) -> None:
    from her2core.imaging.dicom_seg import import_dicom_seg
    from tests.app import browser as B
    dce_img = data["series"]["DCE_1"]["image"]
    if True:
        # ---------------------------------------------------------------- 1 series picker
        B.goto_page(page, url, "case")
        page.get_by_role("tab", name="DICOM study (series picker)").click()
        page.locator(".st-key-up_study input[type=file]").set_input_files(str(data["zip"]))
        B.wait_idle(page)
        page.get_by_role("button", name="List the series").click()
        page.get_by_text(re.compile(r"\d+ image series in breast_mri_study\.zip")).wait_for(
            timeout=120_000)
        B.wait_idle(page)
        page.wait_for_timeout(1500)
        head = page.get_by_text(re.compile(r"\d+ image series in breast_mri_study\.zip"))
        facts["picker_heading"] = head.inner_text()
        panel = page.locator('[role="tabpanel"]').filter(has=head).first
        shoot(page, page.get_by_role("tablist").first,
              page.get_by_role("button", name="Open the chosen series"), out / "series_picker.png")
        # ---------------------------------------------------------------- 2 seeded ROI
        page.get_by_role("button", name="Open the chosen series").click()
        page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=180_000)
        B.wait_idle(page)
        page.wait_for_timeout(1500)
        facts["case_caption"] = page.get_by_text(re.compile(r"sequences: ")).first.inner_text()
        # one sequence at full width: the DCE the ROI is drawn on
        large = page.locator(".st-key-case_large")
        if large.count():
            large.get_by_text("Large view", exact=True).click()
            B.wait_idle(page)
            page.wait_for_timeout(1000)
        n_axial = can.array.shape[0]
        idx = n_axial // 2
        sl = can.get_slice("axial", idx, truth)
        assert sl.any(), "the lesion is not on the middle slice"
        dist = __import__("scipy.ndimage", fromlist=["x"]).distance_transform_edt(sl)
        r, c = np.unravel_index(int(np.argmax(dist)), sl.shape)
        page.locator(".st-key-case_roimode").get_by_text("Seed", exact=True).click()
        B.wait_idle(page)
        page.wait_for_timeout(1200)
        chart = page.locator(".stPlotlyChart").first
        for attempt in range(3):
            click_pixel(page, chart, r, c, sl.shape)
            try:
                cap = wait_caption(page, r"Assisted ROI: \d+ voxels", timeout=60_000)
                break
            except Exception:  # noqa: BLE001 - plotly still mounting: click again
                page.wait_for_timeout(1500)
        else:
            raise RuntimeError("the seed click gave no assisted ROI")
        B.wait_idle(page)
        page.wait_for_timeout(1500)
        facts["seed_display_rc"] = [int(r), int(c)]
        facts["assisted_caption"] = cap
        facts["roi_voxels_after_seed"] = caption_voxels(page)
        chart = page.locator(".stPlotlyChart").first
        shoot(page, chart, page.get_by_text(re.compile(r"Assisted ROI: \d+")).first,
              out / "roi_seeded.png")
        page.locator(".st-key-case_view").get_by_text("coronal", exact=True).click()
        B.wait_idle(page)
        page.wait_for_timeout(1500)
        chart = page.locator(".stPlotlyChart").first
        shoot(page, chart, page.get_by_text(re.compile(r"ROI on DCE: \d+ voxels")).first,
              out / "roi_seeded_coronal.png")
        page.locator(".st-key-case_view").get_by_text("axial", exact=True).click()
        B.wait_idle(page)
        # ---------------------------------------------------------------- 3 SEG round trip
        n_roi = caption_voxels(page)
        exp = expander(page, "DICOM SEG (export / import)")
        exp.get_by_role("button", name="Make a DICOM SEG of the ROI").click()
        B.wait_idle(page)
        dl = page.get_by_role("button", name="Download the DICOM SEG")
        dl.wait_for(timeout=60_000)
        with page.expect_download() as info:
            dl.click()
        seg_path = tmp / "from_app_seg.dcm"
        info.value.save_as(str(seg_path))
        dce_dir = tmp / "study" / data["series"]["DCE_1"]["folder"]
        back = import_dicom_seg(seg_path, dce_dir)
        facts["seg_download_bytes"] = seg_path.stat().st_size
        facts["seg_references_dce_series"] = \
            back.meta.get("referenced_series_uid") == data["series"]["DCE_1"]["uid"]
        facts["seg_voxels_on_series"] = int((back.array > 0).sum())
        facts["seg_same_grid_as_series"] = bool(back.same_grid(dce_img))
        m = np.asarray(data["mask"].array) > 0
        facts["seeded_dice_vs_drawn_mask"] = round(float(
            2 * ((back.array > 0) & m).sum() / ((back.array > 0).sum() + m.sum())), 4)
        facts["roi_voxels_before_seg"] = n_roi
        page.get_by_role("button", name="Clear", exact=True).click()
        B.wait_idle(page)
        page.wait_for_timeout(800)
        facts["roi_voxels_after_clear"] = caption_voxels(page)
        exp = expander(page, "DICOM SEG (export / import)")
        exp.locator("input[type=file]").set_input_files(str(seg_path))
        B.wait_idle(page)
        page.get_by_role("button", name="Use the SEG as the ROI").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')]"
            ".some(e => /ROI on \\w+: [1-9]\\d* voxels/.test(e.innerText))", timeout=60_000)
        B.wait_idle(page)
        page.wait_for_timeout(1200)
        facts["roi_voxels_after_seg_import"] = caption_voxels(page)
        facts["roi_caption_after_seg_import"] = next(
            t for t in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
            if re.search(r"ROI on \w+: \d+ voxels", t))
        exp = expander(page, "DICOM SEG (export / import)")
        exp.get_by_role("button", name="Make a DICOM SEG of the ROI").click()  # download shown again
        B.wait_idle(page)
        page.wait_for_timeout(800)
        exp = expander(page, "DICOM SEG (export / import)")
        shoot(page, page.get_by_text(re.compile(r"ROI on \w+: \d+ voxels")).first, exp,
              out / "seg_roundtrip.png")
        # ---------------------------------------------------------------- 4 second reader
        demo = ROOT / "assets" / "demo_cohort" / "cases"
        ids = sorted(p.name for p in demo.iterdir() if (p / "mask_reader2.nii.gz").is_file())
        ids = ids[:READER2_CASES]
        facts["reader2_cases"] = ids
        dices = {}
        for k, cid in enumerate(ids, start=1):
            page.get_by_role("tab", name="Demo case").click()
            choose(page, "demo_pick", cid)
            page.get_by_role("button", name="Open demo case").click()
            page.get_by_text(f"Case {cid}", exact=True).wait_for(timeout=120_000)
            page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=120_000)
            B.wait_idle(page)
            page.wait_for_timeout(800)
            for attempt in range(3):
                exp = expander(page, "Second reader (agreement, ICC)")
                exp.locator("input[type=file]").set_input_files(
                    str(demo / cid / "mask_reader2.nii.gz"))
                B.wait_idle(page)
                page.wait_for_timeout(1500)
                exp = expander(page, "Second reader (agreement, ICC)")
                btn = exp.get_by_role("button", name="Use as reader 2")
                try:
                    btn.wait_for(timeout=20_000)
                    break
                except Exception:  # noqa: BLE001 - the upload's rerun was lost: again
                    continue
            btn.click()
            exp = page.locator('[data-testid="stExpander"]').filter(
                has=page.get_by_text("Second reader (agreement, ICC)"))
            metric = exp.locator('[data-testid="stMetricValue"]').first
            metric.wait_for(timeout=60_000)
            B.wait_idle(page)
            dices[cid] = float(metric.inner_text())
            exp.get_by_role("button", name="Compute the features of both ROIs (radiomics)").click()
            wait_caption(page, "this session has 1\\." if k == 1 else
                         f"between readers over {k} cases", timeout=300_000)
            B.wait_idle(page, timeout=300_000)
            page.wait_for_timeout(800)
        facts["dice_per_case"] = dices
        exp = expander(page, "Second reader (agreement, ICC)")
        line = wait_caption(page, r"Per-feature ICC\(3,1\) between readers over \d+ cases")
        facts["icc_line"] = line
        page.wait_for_timeout(1500)
        shoot(page, exp, exp, out / "second_reader_icc.png")


if __name__ == "__main__":
    raise SystemExit(main())
