"""Several sessions at once, in real browser contexts against one served app.

Each context is its own Streamlit session (own session state) on the same
process-wide caches (bundle, CasePredictor with its backbones, image parts).
The sessions open demo cases, press "Run prediction" one right after the other
(so the server works on them at the same time), then make a what-if edit. Every
session must finish without an error and show exactly the probability the
library gives for its case alone; no session sees another's case.
(AppTest cannot run in threads: each run creates and removes one global runtime.)
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from . import browser as B

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = B.ROOT
PLAN = ["syn-0003", "syn-0004", "syn-0003"]


def _expected(bundle_path: Path, case_id: str, **override) -> str:
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.features.extract import load_case
    from her2core.predictor import CasePredictor
    from her2core.workflows.explain import case_clinical_values
    b = load_bundle(bundle_path)
    coh = read_cohort(ROOT / "assets" / "demo_cohort")
    pred = CasePredictor(b)
    images, masks = load_case(coh.files(case_id), pred.config)
    part = pred.image_part(images, masks, case_id=case_id, gradcam=False)
    clin = case_clinical_values(coh, case_id)
    clin.update(override)
    return f"{pred.clinical_part(part, clin).probability:.1%}"


def _metric(page) -> str:
    page.wait_for_selector('[data-testid="stMetricValue"]', timeout=600_000)
    return page.locator('[data-testid="stMetricValue"]').first.inner_text().strip()


def test_simultaneous_browser_sessions_predict_and_what_if_each_on_its_own_case(demo_bundle, monkeypatch):
    if B.chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api")
    if not (ROOT / "assets" / "demo_cohort" / "cohort.csv").is_file():
        pytest.skip("assets/demo_cohort is not in this checkout")
    monkeypatch.setenv("HER2_BUNDLE", str(demo_bundle))
    from playwright.sync_api import sync_playwright
    with B.running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=B.chromium_path(), args=B.CHROMIUM_ARGS,
                                    headless=True)
        try:
            pages = [browser.new_context(viewport={"width": 1500, "height": 1400}).new_page()
                     for _ in PLAN]
            for page, case_id in zip(pages, PLAN):
                B.goto_page(page, url, "")            # the app's own navigation (not page URLs)
                page.get_by_role("link", name="Case").first.click()
                B.wait_idle(page)
                pick = page.locator(".st-key-demo_pick [role=combobox], .st-key-demo_pick input").first
                pick.wait_for(state="visible", timeout=120_000)
                pick.click()
                page.get_by_role("option", name=case_id, exact=True).click()
                B.wait_idle(page)
                page.get_by_role("button", name="Open demo case").click()
                B.wait_idle(page)
                page.wait_for_function("() => document.body.innerText.includes('Case " + case_id + "')",
                                       timeout=120_000)
                for _ in range(3):                   # a click during a rerun can be lost: retry
                    page.get_by_role("link", name="Prediction").first.click()
                    B.wait_idle(page)
                    try:
                        page.get_by_role("button", name="Run prediction").wait_for(timeout=30_000)
                        break
                    except Exception:  # noqa: BLE001
                        continue
            for i, page in enumerate(pages):        # all at once: the server runs them together
                try:
                    page.get_by_role("button", name="Run prediction").click()
                except Exception:
                    for j, pg in enumerate(pages):
                        pg.screenshot(path=f"/tmp/sessfail_{j}.png", full_page=True)
                    raise
            shown = [_metric(page) for page in pages]
            for page, case_id in zip(pages, PLAN):
                B.wait_idle(page, timeout=600_000)
                body = page.inner_text("body")
                assert "Traceback" not in body and "could not run" not in body
                assert f"Case {case_id}" in body                       # its own case only
                other = {c for c in PLAN if c != case_id}
                assert not any(f"Case {o}" in body for o in other)
            # what if: every session flips ER at the same time; only the second level reruns
            import pandas as pd
            t = pd.read_csv(ROOT / "assets" / "demo_cohort" / "cohort.csv", dtype={"case_id": str})
            ER = dict(zip(t["case_id"], t["er"]))
            flips = []
            for page, case_id in zip(pages, PLAN):
                page.get_by_text("What if: clinical values").click()
                page.wait_for_timeout(1500)                   # the expander opens
                box = next(el for el in page.locator('[class*="st-key-wi_"]').all()
                           if any(c.startswith("st-key-wi_") and c.endswith("_er")
                                  for c in (el.get_attribute("class") or "").split()))
                er = ER[case_id]
                new = "no" if er == 1 else "yes"
                for _ in range(3):                            # the list opens on a settled page
                    box.locator("[role=combobox], input").first.click()
                    try:
                        page.get_by_role("option", name=new, exact=True).click(timeout=10_000)
                        break
                    except Exception:  # noqa: BLE001
                        page.keyboard.press("Escape")
                        page.wait_for_timeout(1000)
                flips.append(new)
            for page in pages:
                B.wait_idle(page, timeout=600_000)
            after = [_metric(page) for page in pages]
        finally:
            browser.close()
    for case_id, value, new, value2 in zip(PLAN, shown, flips, after):
        assert re.fullmatch(r"\d+\.\d%", value)
        assert value == _expected(demo_bundle, case_id)
        assert value2 == _expected(demo_bundle, case_id, er=1 if new == "yes" else 0)


def test_simultaneous_sessions_never_see_an_upload_and_it_goes_with_its_session():
    """Three browser sessions open at once: U uploads a case under its own id while V and W
    have demo cases open; V and W never see U's case or files; U's upload folder is on disk
    while U is open and is deleted once U's browser is gone and the server ends its session
    (disconnectedSessionTTL set to 2 s here; the default keeps it 120 s for a reconnect)."""
    import os
    import tempfile
    import time
    if B.chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api")
    demo = ROOT / "assets" / "demo_cohort"
    if not (demo / "cohort.csv").is_file():
        pytest.skip("assets/demo_cohort is not in this checkout")
    from playwright.sync_api import sync_playwright
    uid = f"own-upload-{os.getpid()}"
    src = demo / "cases" / "syn-0002"
    tmp = Path(tempfile.gettempdir())

    def folders():
        return {d: sorted(p.name for p in d.rglob("*") if p.is_file())
                for d in tmp.glob("her2_upload_*") if d.is_dir()}

    before = set(folders())
    with B.running_app(extra_args=("--server.disconnectedSessionTTL", "2")) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=B.chromium_path(), args=B.CHROMIUM_ARGS,
                                    headless=True)
        try:
            ctxs = [browser.new_context(viewport={"width": 1500, "height": 1400}) for _ in range(3)]
            pu, pv, pw = [c.new_page() for c in ctxs]
            for page in (pu, pv, pw):                       # all three sessions open at once
                B.goto_page(page, url, "")
                page.get_by_role("link", name="Case").first.click()
                B.wait_idle(page)
            for page, case_id in ((pv, "syn-0003"), (pw, "syn-0004")):
                page.locator(".st-key-demo_pick [role=combobox], .st-key-demo_pick input").first.click()
                page.get_by_role("option", name=case_id, exact=True).click()
                B.wait_idle(page)
                page.get_by_role("button", name="Open demo case").click()
                page.wait_for_function(f"() => document.body.innerText.includes('Case {case_id}')",
                                       timeout=120_000)
            pu.get_by_role("tab", name="Upload files").click()
            up = pu.locator('[data-testid="stFileUploader"]')
            up.filter(has=pu.get_by_text("DCE", exact=True)).locator("input[type=file]") \
                .set_input_files(str(src / "DCE.nii.gz"))
            B.wait_idle(pu)
            up.filter(has=pu.get_by_text("ROI mask", exact=False)).locator("input[type=file]") \
                .set_input_files(str(src / "mask.nii.gz"))
            B.wait_idle(pu)
            box = pu.locator(".st-key-up_case_id input").first
            box.fill(uid)
            box.press("Enter")
            B.wait_idle(pu)
            pu.get_by_role("button", name="Load uploaded case").click()
            pu.wait_for_function(f"() => document.body.innerText.includes('Case {uid}')",
                                 timeout=120_000)
            B.wait_idle(pu)
            mine = {d: f for d, f in folders().items() if d not in before and f}
            assert len(mine) == 1 and set(next(iter(mine.values()))) == {"DCE.nii.gz", "mask.nii.gz"}
            folder = next(iter(mine))
            for page, case_id in ((pv, "syn-0003"), (pw, "syn-0004")):
                seen = []
                for name in ("Prediction", "Case"):
                    page.get_by_role("link", name=name).first.click()
                    B.wait_idle(page)
                    seen.append(page.inner_text("body"))
                page.wait_for_function(f"() => document.body.innerText.includes('Case {case_id}')",
                                       timeout=60_000)
                text = "\n".join(seen)
                assert uid not in text and str(folder) not in text and folder.name not in text
            assert f"Case {uid}" in pu.inner_text("body")
            ctxs[0].close()                                 # U's browser goes
            t0 = time.time()
            while folder.exists() and time.time() - t0 < 60:
                time.sleep(0.5)
            assert not folder.exists(), "the upload folder outlived its session"
            assert "Case syn-0003" in pv.inner_text("body")  # the others carry on
        finally:
            browser.close()
