"""Reader study end to end in real headless Chromium (Playwright, Debian chromium).

The owner creates a study on the Study owner page (4 demo-cohort cases, three readers,
sequential design, model output from a predictions CSV uploaded in the form); two readers
sign in in their own browser contexts and read their whole queue (unaided, then aided with
the model panels); the third reader's reads go through the service so the design is fully
crossed. Then every read is checked in the database against what was entered in the
browser, and the analysis is run on the owner page and through the service.
Screenshots of the reading screen (unaided, aided) go to the pytest tmp dir and, with
HER2_SCREENSHOTS=1, to benchmarks/results/screenshots/.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from numpy.testing import assert_allclose

from . import browser as B

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

DEMO = B.ROOT / "assets" / "demo_cohort"
N_CASES = 4


def _shots_target() -> Path | None:
    """benchmarks/results/screenshots/ when HER2_SCREENSHOTS=1 (or the folder it names)."""
    v = os.environ.get("HER2_SCREENSHOTS")
    if not v:
        return None
    return B.ROOT / "benchmarks" / "results" / "screenshots" if v in ("1", "true", "yes") else Path(v)


def _save(page, tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    page.screenshot(path=str(p), full_page=True)
    target = _shots_target()
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, target / name)
    return p


def predictions_csv(path: Path) -> pd.DataFrame:
    """A model-output file for every demo case: p_her2, total points and points per predictor
    (deterministic numbers, so the test can check what the aided arm shows)."""
    table = pd.read_csv(DEMO / "cohort.csv", dtype={"case_id": str})
    rows = []
    for i, cid in enumerate(table["case_id"]):
        p = round(0.05 + 0.9 * ((i * 37) % 100) / 100, 3)
        rows.append({"case_id": cid, "p_her2": p, "total_points": round(100 * p, 1),
                     "points_DCE score": round(60 * p, 1), "points_ki67": round(40 * p, 1)})
    df = pd.DataFrame(rows)
    df.to_csv(path, index=False)
    return df.set_index("case_id")


def _progress(page) -> str:
    return page.locator('[data-testid="stProgress"]').first.inner_text()


def _wait_text(page, pattern: str, timeout=60_000) -> None:
    """Wait for the text, then for the run to end and no element of the last run to be left."""
    page.wait_for_function("(p) => new RegExp(p).test(document.body.innerText)", arg=pattern,
                           timeout=timeout)
    B.wait_idle(page)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=timeout)


def create_study(page, url: str, name: str, preds_path: Path) -> dict[str, str]:
    B.goto_page(page, url, "")                 # through the app's navigation (app.py PAGES)
    page.get_by_role("link", name="Study owner").first.click()
    B.wait_idle(page)
    page.get_by_role("tab", name="Create a study").click()
    page.locator('.st-key-rs_new_pred input[type="file"]').set_input_files(str(preds_path))
    B.wait_idle(page)
    page.wait_for_selector(f'text={preds_path.name}')
    page.locator(".st-key-rs_new_name input").fill(name)
    page.locator(".st-key-rs_new_limit input").fill(str(N_CASES))
    page.get_by_role("button", name="Create the study").click()
    page.wait_for_selector('[data-testid="stCode"]', timeout=120_000)
    B.wait_idle(page)
    text = page.locator('[data-testid="stCode"]').first.inner_text()
    codes = dict(re.findall(r"^(owner code|reader [^:]+): (\S+)$", text, flags=re.M))
    assert len(codes) == 4, text
    return codes


def sign_in(page, url: str, study: str, code: str) -> None:
    B.goto_page(page, url, "reader_study")
    page.locator(".st-key-rs_signin_study input").fill(study)
    page.locator(".st-key-rs_signin_code input").fill(code)
    page.get_by_role("button", name="Sign in").click()
    _wait_text(page, r"Case \d+ of \d+")


def read_step(page, k: int, call: str, presses: int, note: str) -> None:
    # one call radio once the rerun has replaced the previous step's form
    page.wait_for_function(
        "() => document.querySelectorAll('[class*=\"st-key-rs_call_\"]').length === 1", timeout=30_000)
    radios = page.locator('[class*="st-key-rs_call_"]')
    form = page.locator('[data-testid="stForm"]').filter(has=radios)
    radios.get_by_text(call, exact=True).click()
    thumb = form.get_by_role("slider")
    thumb.focus()
    for _ in range(presses):
        thumb.press("ArrowRight")
    form.locator("textarea").fill(note)
    page.wait_for_timeout(150)
    form.get_by_role("button", name="Save read").click()


def read_queue(page, tmp_path, reader_no: int, preds: pd.DataFrame, shots: bool) -> list[dict]:
    """Read every step; returns what was entered (to check against the database)."""
    from playwright.sync_api import expect
    entered = []
    total = 2 * N_CASES
    for k in range(total):
        assert _progress(page).startswith(f"Case {k + 1} of {total}, "), _progress(page)
        arm = "unaided" if k % 2 == 0 else "aided"
        assert _progress(page) == f"Case {k + 1} of {total}, {arm}"
        head = page.locator("h3").filter(has_text=re.compile(r"^Case \S+ - ")).first.inner_text()
        case_id = re.search(r"Case (\S+) - ", head).group(1)
        page.wait_for_selector(".stPlotlyChart .main-svg", timeout=60_000)   # the case images
        prob = page.locator(".st-key-rs_panel_probability")
        if arm == "unaided":
            assert prob.count() == 0 and "Model output" not in page.inner_text("body")
            if shots and k == 0:
                _save(page, tmp_path, "reader_unaided.png")
        else:
            expect(prob).to_contain_text(f"{preds.loc[case_id, 'p_her2']:.1%}", timeout=30_000)
            page.locator(".st-key-rs_panel_nomogram .stPlotlyChart .main-svg").first.wait_for(state="visible")
            expect(page.locator(".st-key-rs_panel_nomogram table")).to_contain_text(
                f"{preds.loc[case_id, 'points_DCE score']:.1f}", timeout=30_000)
            if shots and k == 1:
                _save(page, tmp_path, "reader_aided.png")
        call = "HER2-positive" if (k + reader_no) % 3 else "HER2-negative"
        presses = (7 * k + 11 * reader_no) % 45
        note = f"R{reader_no} step {k + 1}"
        read_step(page, k, call, presses, note)
        if k + 1 < total:
            _wait_text(page, rf"Case {k + 2} of {total}, ")
        else:
            _wait_text(page, r"You have read all")
        entered.append({"case_id": case_id, "arm": arm, "call_positive": call == "HER2-positive",
                        "confidence": 50.0 + presses, "notes": note})
    return entered


def test_two_readers_read_their_queue_in_the_browser_then_analysis(tmp_path, monkeypatch):
    if B.chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api")
    if not (DEMO / "cohort.csv").exists():
        pytest.skip("assets/demo_cohort is not in this checkout")
    from her2core.reader_study import ReaderStudyService
    from her2core.reader_study.db import sqlite_url

    t0 = time.time()
    db_url = sqlite_url(tmp_path / "study.db")
    monkeypatch.setenv("HER2_DB_URL", db_url)
    preds = predictions_csv(tmp_path / "predictions.csv")
    study = "Browser study"
    entered: dict[str, list[dict]] = {}
    with B.running_app(log_path=tmp_path / "streamlit.log") as url, B.browser_page() as page:
        codes = create_study(page, url, study, tmp_path / "predictions.csv")
        browser = page.context.browser
        for no, rname in ((1, "Reader 1"), (2, "Reader 3")):
            ctx = browser.new_context(viewport={"width": 1600, "height": 1500})
            rp = ctx.new_page()
            sign_in(rp, url, study, codes[f"reader {rname}"])
            if no == 1:
                # a reload resumes the reader from the URL's random token (issue 17 item 13):
                # the reading screen again, no sign-in form, the reading screen only in the
                # navigation; the URL holds neither the access code nor a case id
                assert "resume=" in rp.url and codes[f"reader {rname}"] not in rp.url
                assert not any(c in rp.url for c in pd.read_csv(DEMO / "cohort.csv")["case_id"])
                rp.reload()
                rp.wait_for_selector('[data-testid="stApp"]')
                _wait_text(rp, r"Case 1 of \d+, unaided")
                assert rp.locator(".st-key-rs_signin_code").count() == 0
                assert rp.get_by_role("link", name="Study owner").count() == 0
            entered[rname] = read_queue(rp, tmp_path, no, preds, shots=(no == 1))
            print(f"{rname} done after {time.time() - t0:.0f} s")
            assert "Traceback" not in rp.inner_text("body")
            ctx.close()
        # the third reader (junior) through the service: a fully crossed design
        svc = ReaderStudyService.open(db_url)
        r2 = svc.sign_in(study, codes["reader Reader 2"])
        k = 0
        while (n := svc.next_case(r2)).status == "case":
            svc.save_read(r2, n.case.queue_item_id, call_positive=bool(k % 3), confidence=20 + 7 * k)
            k += 1
        # the owner page shows the progress and runs the analysis
        page.reload()          # a new session: the owner signs in with the owner code
        page.wait_for_selector('[data-testid="stApp"]')
        B.wait_idle(page)
        page.locator(".st-key-rs_owner_study input").fill(study)
        page.locator(".st-key-rs_owner_code input").fill(codes["owner code"])
        page.get_by_role("button", name="Open", exact=True).and_(
            page.get_by_test_id("stBaseButton-primaryFormSubmit")).click()
        _wait_text(page, r"Reads saved")
        body = page.inner_text("body")
        assert "Progress" in body and re.search(r"Reads saved\s+24\b", body), body[-800:]
        print(f"readers done after {time.time() - t0:.0f} s")
        page.get_by_role("tab", name="Analysis").click()
        page.get_by_role("button", name="Run the analysis").click()
        _wait_text(page, r"Obuchowski-Rockette", timeout=120_000)
        page.locator(".stPlotlyChart .main-svg").first.wait_for(state="visible")
        assert "Traceback" not in page.inner_text("body")
        _save(page, tmp_path, "study_owner_analysis.png")
        page.get_by_role("tab", name="Report").click()
        page.get_by_role("button", name="Prepare the report").click()
        _wait_text(page, r"Download the report \(PDF\)", timeout=120_000)
        page.get_by_role("tab", name="Sample size").click()
        page.get_by_role("button", name="Plan the study").click()
        _wait_text(page, r"Cases needed for power", timeout=120_000)
        assert "Traceback" not in page.inner_text("body")
        _save(page, tmp_path, "study_owner_sample_size.png")

    owner = svc.owner_sign_in(study, codes["owner code"])
    reads = svc.reads_table(owner)
    assert len(reads) == 3 * 2 * N_CASES and svc.study_status(owner).n_reads == 24
    for rname, rows in entered.items():
        mine = reads[reads["reader"] == rname].sort_values("read_id")
        assert len(mine) == 2 * N_CASES
        assert list(mine["case_id"]) == [r["case_id"] for r in rows]
        assert list(mine["arm"]) == [r["arm"] for r in rows]
        assert list(mine["call_positive"]) == [r["call_positive"] for r in rows]
        assert_allclose(mine["confidence"].to_numpy(float), [r["confidence"] for r in rows])
        assert list(mine["notes"]) == [r["notes"] for r in rows]
        for _, r in mine.iterrows():
            shown = json.loads(r["shown"])
            if r["arm"] == "aided":
                assert_allclose(shown["model_output"]["p_her2"], preds.loc[r["case_id"], "p_her2"])
                # the case's mask is the region the model scored: outlined in the aided arm
                assert shown["client"]["panels"] == ["probability", "nomogram_points", "roi_outline"]
            else:
                assert shown["model_output"] is None
        assert (mine["time_on_case_s"] > 0).all()
    # each reader read the same 4 cases, once per arm
    assert reads.groupby(["reader", "arm"])["case_id"].nunique().eq(N_CASES).all()
    res = svc.analyze(owner)
    assert res["study"]["complete"] and res["study"]["n_reads_effective"] == 24
    rrrc = res["mrmc"]["jackknife"]["rrrc"]
    assert rrrc["df1"] == 1.0 and 0.0 <= rrrc["p_value"] <= 1.0
    assert_allclose(rrrc["difference"], res["mrmc"]["jackknife"]["auc_mean"][1]
                    - res["mrmc"]["jackknife"]["auc_mean"][0])
    svc.db.dispose()
    print(f"whole study in {time.time() - t0:.0f} s")   # speed lives in benchmarks/
