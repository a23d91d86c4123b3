#!/usr/bin/env python3
"""N simultaneous browser sessions on the served app: slowest session, peak server memory,
and isolation of uploads.

One ``streamlit run app.py`` per N (tests/app/browser.py starts it on a free port), warmed
by one session first (bundle, networks and imports loaded, as a server that has been up a
while). Then N headless-Chromium sessions, each its own browser context (its own Streamlit
session), are driven *at the same time* (asyncio, one Chromium) through:

  open a demo case (Case page, the viewer drawn) -> Run prediction (every panel of the
  Prediction page drawn: probability, nomogram, SHAP, decision curve, Grad-CAM) ->
  a what-if edit (ER flipped; the second level recomputed, the new probability shown).

Each session works on its own demo case, so no session is served from another's cached
result. Recorded per session: the seconds of each step and to all panels; per N: the
slowest session, the median, peak server memory (VmHWM of the server process tree: its
high-water mark, and the peak of the tree's summed VmRSS sampled every 0.25 s) and the
ratio of the slowest session to the 1-session run of the same benchmark run (the
reference). ``os.getloadavg()`` before and after each N: the machine is shared.

Isolation (on the server of the largest N, after the timed run): session U uploads a case
(the files of a demo case, under a case id no other session uses) while session V has a
demo case open; V's Case and Prediction pages must never show U's case id or file names;
U's upload folder must exist while U is open and be deleted once U's browser context is
closed and the server ends its session (``--server.disconnectedSessionTTL`` set short
here so the bench need not wait the default 120 s).

Writes benchmarks/results/sessions.json.

  python benchmarks/bench_sessions.py [--sessions 1,2,4] [--ttl 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app import browser as B  # noqa: E402

DEMO = ROOT / "assets" / "demo_cohort"
UPLOAD_PREFIX = "her2_upload_"
IDLE_JS = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


# ----------------------------------------------------------------------------- memory
def _tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _status_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemorySampler:
    """Summed VmRSS of a process tree every ``every`` s; its peak and the tree's VmHWM."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every = pid, every
        self.peak_rss = 0.0
        self.hwm = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def read(self) -> tuple[float, float]:
        pids = _tree(self.pid)
        return (sum(_status_mb(p, "VmRSS") for p in pids),
                sum(_status_mb(p, "VmHWM") for p in pids))

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, hwm = self.read()
            self.peak_rss = max(self.peak_rss, rss)
            self.hwm = max(self.hwm, hwm)
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        rss, hwm = self.read()
        self.peak_rss, self.hwm = max(self.peak_rss, rss), max(self.hwm, hwm)


# ----------------------------------------------------------------------------- driving
async def wait_idle(page, timeout: float = 600_000) -> None:
    await page.wait_for_timeout(300)
    await page.wait_for_function(IDLE_JS, timeout=timeout)
    await page.wait_for_timeout(200)


async def retry_click(page, locator, until, attempts: int = 4, timeout: float = 30_000):
    """Click (a click during a rerun can be lost) until ``until()`` resolves."""
    for i in range(attempts):
        await locator.click()
        try:
            await until(timeout)
            return
        except Exception:  # noqa: BLE001 - try again on a settled page
            if i == attempts - 1:
                raise
            await wait_idle(page)


async def open_app(browser, url: str):
    ctx = await browser.new_context(viewport={"width": 1500, "height": 1400})
    page = await ctx.new_page()
    await page.goto(url + "/")
    await page.wait_for_selector('[data-testid="stApp"]', timeout=120_000)
    await wait_idle(page)
    return ctx, page


async def goto(page, name: str) -> None:
    link = page.get_by_role("link", name=name).first
    await link.click()
    await wait_idle(page)


async def open_demo_case(page, case_id: str) -> None:
    await goto(page, "Case")
    pick = page.locator(".st-key-demo_pick [role=combobox], .st-key-demo_pick input").first
    await pick.wait_for(state="visible", timeout=120_000)
    for _ in range(3):
        await pick.click()
        try:
            await page.get_by_role("option", name=case_id, exact=True).click(timeout=15_000)
            break
        except Exception:  # noqa: BLE001
            await page.keyboard.press("Escape")
            await wait_idle(page)
    await wait_idle(page)
    await page.get_by_role("button", name="Open demo case").click()
    await page.wait_for_function(
        "(c) => document.body.innerText.includes('Case ' + c)", arg=case_id, timeout=600_000)
    await page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=600_000)
    await wait_idle(page)


async def metric(page) -> str:
    await page.wait_for_selector('[data-testid="stMetricValue"]', timeout=600_000)
    return (await page.locator('[data-testid="stMetricValue"]').first.inner_text()).strip()


async def predict(page) -> str:
    for _ in range(3):                       # a click during a rerun can be lost: retry
        await goto(page, "Prediction")
        try:
            await page.get_by_role("button", name="Run prediction").wait_for(timeout=30_000)
            break
        except Exception:  # noqa: BLE001
            continue
    await page.get_by_role("button", name="Run prediction").first.click()
    # every panel drawn: the last caption of the page comes after the Grad-CAM grid
    await page.wait_for_function(
        "() => document.body.innerText.includes('Second level recomputed in')", timeout=900_000)
    await wait_idle(page)
    return await metric(page)


async def what_if(page, er: int, before: str) -> str:
    await page.get_by_text("What if: clinical values").click()
    await page.wait_for_timeout(1000)
    box = None
    for el in await page.locator('[class*="st-key-wi_"]').all():
        classes = (await el.get_attribute("class") or "").split()
        if any(c.startswith("st-key-wi_") and c.endswith("_er") for c in classes):
            box = el
            break
    if box is None:
        raise RuntimeError("the what-if ER input is not on the page")
    new = "no" if er == 1 else "yes"
    changed_js = ("(b) => { const e = document.querySelector('[data-testid=\"stMetricValue\"]');"
                  " return e && e.innerText.trim() !== b; }")
    for _ in range(4):                       # a pick made during a rerun can be lost: retry
        await box.locator("[role=combobox], input").first.click()
        try:
            await page.get_by_role("option", name=new, exact=True).click(timeout=10_000)
        except Exception:  # noqa: BLE001
            await page.keyboard.press("Escape")
            await page.wait_for_timeout(1000)
            continue
        try:   # the new probability is on the page (the second level recomputed)
            await page.wait_for_function(changed_js, arg=before, timeout=120_000)
            break
        except Exception:  # noqa: BLE001
            await wait_idle(page)
    await wait_idle(page)
    await page.wait_for_function(
        "() => document.body.innerText.includes('Second level recomputed in')", timeout=600_000)
    return await metric(page)


async def one_session(browser, url: str, case_id: str, er: int, others: list[str]) -> dict:
    t0 = time.perf_counter()
    ctx, page = await open_app(browser, url)
    steps = {"app_s": time.perf_counter() - t0}
    try:
        t = time.perf_counter()
        await open_demo_case(page, case_id)
        steps["open_case_s"] = time.perf_counter() - t
        t = time.perf_counter()
        prob = await predict(page)
        steps["predict_all_panels_s"] = time.perf_counter() - t
        body = await page.inner_text("body")
        t = time.perf_counter()
        prob2 = await what_if(page, er, prob)
        steps["what_if_s"] = time.perf_counter() - t
        body2 = await page.inner_text("body")
        total = time.perf_counter() - t0
        problems = [w for w in ("Traceback", "could not run", "Unexpected problem") if w in body + body2]
        foreign = [o for o in others if f"Case {o}" in body + body2]
        return {"case": case_id, "seconds": steps, "total_s": total, "probability": prob,
                "probability_what_if": prob2, "what_if_changed": prob2 != prob,
                "own_case_shown": f"Case {case_id}" in body, "other_cases_shown": foreign,
                "errors": problems}
    finally:
        await ctx.close()


async def run_sessions(url: str, plan: list[tuple[str, int]]) -> list[dict]:
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=B.chromium_path(), args=B.CHROMIUM_ARGS,
                                          headless=True)
        try:
            ids = [c for c, _ in plan]
            return list(await asyncio.gather(*[
                one_session(browser, url, c, er, [o for o in ids if o != c]) for c, er in plan]))
        finally:
            await browser.close()


# ----------------------------------------------------------------------------- isolation
def _upload_dirs() -> dict[str, list[str]]:
    out = {}
    for d in Path(tempfile.gettempdir()).glob(UPLOAD_PREFIX + "*"):
        try:
            out[str(d)] = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
        except OSError:
            continue
    return out


async def isolation(url: str, upload_case: str, other_case: str, ttl: float) -> dict:
    """U uploads a case under a unique id; V (open at the same time) never sees it; U's
    folder goes when U's session ends."""
    from playwright.async_api import async_playwright
    uid = f"iso-{os.getpid()}-{int(time.time())}"
    src = DEMO / "cases" / upload_case
    res: dict = {"upload_case_id": uid, "uploaded_from": f"assets/demo_cohort/cases/{upload_case}"}
    before = _upload_dirs()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=B.chromium_path(), args=B.CHROMIUM_ARGS,
                                          headless=True)
        try:
            (cu, pu), (cv, pv) = await asyncio.gather(open_app(browser, url), open_app(browser, url))
            await open_demo_case(pv, other_case)
            await goto(pu, "Case")
            await pu.get_by_role("tab", name="Upload files").click()

            def uploader(label: str):
                return pu.locator('[data-testid="stFileUploader"]').filter(
                    has=pu.get_by_text(label, exact=True)).locator("input[type=file]")
            for seq in ("DCE", "T2", "T1"):
                f = next(src.glob(f"{seq}.*"), None)
                if f is not None:
                    await uploader(seq).set_input_files(str(f))
                    await wait_idle(pu)
            await pu.locator('[data-testid="stFileUploader"]').filter(
                has=pu.get_by_text("ROI mask", exact=False)).locator("input[type=file]"
                                                                     ).set_input_files(str(src / "mask.nii.gz"))
            await wait_idle(pu)
            cid = pu.locator(".st-key-up_case_id input").first
            await cid.fill(uid)
            await cid.press("Enter")
            await wait_idle(pu)
            await pu.get_by_role("button", name="Load uploaded case").click()
            await pu.wait_for_function("(c) => document.body.innerText.includes('Case ' + c)",
                                       arg=uid, timeout=300_000)
            await wait_idle(pu)
            res["uploader_sees_its_case"] = True
            during = _upload_dirs()
            made = {d: f for d, f in during.items() if d not in before}
            new = {d: f for d, f in made.items() if f}           # U's: it holds the files
            kept = [d for d, f in made.items() if not f]         # V's (empty) session folder
            res["upload_folders_while_open"] = new
            names = [Path(f).name for fs in new.values() for f in fs]
            # V, at the same time: its Case page, sidebar and Prediction page
            seen_v = []
            for name in ("Case", "Prediction", "Case"):
                await goto(pv, name)
                seen_v.append(await pv.inner_text("body"))
            try:
                await pv.wait_for_function("(c) => document.body.innerText.includes('Case ' + c)",
                                           arg=other_case, timeout=120_000)
                still = True
            except Exception:  # noqa: BLE001
                still = False
            seen_v.append(await pv.inner_text("body"))
            text_v = "\n".join(seen_v)
            res["other_session_sees_upload_id"] = uid in text_v
            res["other_session_sees_upload_folder"] = any(d in text_v for d in new)
            res["other_session_still_on_its_case"] = still
            res["uploaded_file_names"] = sorted(set(names))
            await cu.close()
            t_closed = time.time()
            gone_after = None
            while time.time() - t_closed < ttl + 90:
                await asyncio.sleep(1.0)
                now = _upload_dirs()
                if not any(d in now for d in new):
                    gone_after = time.time() - t_closed
                    break
            res["upload_folder_deleted_after_close_s"] = gone_after
            res["upload_folder_deleted"] = gone_after is not None
            res["other_session_folders_kept"] = all(Path(d).is_dir() for d in kept)
            await cv.close()
        finally:
            await browser.close()
    res["disconnected_session_ttl_s"] = ttl
    res["isolated"] = bool(res.get("uploader_sees_its_case") and not res["other_session_sees_upload_id"]
                           and not res["other_session_sees_upload_folder"]
                           and res["other_session_still_on_its_case"] and res["upload_folder_deleted"])
    return res


# ----------------------------------------------------------------------------- main
def load_average():
    return [round(v, 2) for v in os.getloadavg()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", default="1,2,4", help="comma-separated N")
    ap.add_argument("--ttl", type=int, default=5,
                    help="server.disconnectedSessionTTL (s) for the isolation check")
    ap.add_argument("--no-isolation", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sessions.json"))
    a = ap.parse_args(argv)
    if B.chromium_path() is None:
        print("chromium is not installed", file=sys.stderr)
        return 2
    import pandas as pd
    table = pd.read_csv(DEMO / "cohort.csv", dtype={"case_id": str}).set_index("case_id")
    ids = list(table.index)
    ns = [int(v) for v in a.sessions.split(",")]
    warm_case = ids[0]
    pool = ids[1:]
    runs = []
    for n in ns:
        plan = [(c, int(table.loc[c, "er"])) for c in pool[:n]]
        procs: list = []
        log = Path(tempfile.gettempdir()) / f"bench_sessions_app_{n}.log"
        extra = ("--server.disconnectedSessionTTL", str(a.ttl))
        with B.running_app(log_path=log, extra_args=extra, procs=procs) as url:
            pid = procs[0].pid
            t = time.perf_counter()
            warm = asyncio.run(run_sessions(url, [(warm_case, int(table.loc[warm_case, "er"]))]))[0]
            warm_s = time.perf_counter() - t
            sampler = MemorySampler(pid)
            rss0, _ = sampler.read()
            load0 = load_average()
            with sampler:
                t = time.perf_counter()
                res = asyncio.run(run_sessions(url, plan))
                wall = time.perf_counter() - t
            load1 = load_average()
            iso = None
            if n == max(ns) and not a.no_isolation:
                iso = asyncio.run(isolation(url, pool[n % len(pool)], pool[0], a.ttl))
        totals = [r["total_s"] for r in res]
        runs.append({
            "sessions": n, "cases": [c for c, _ in plan], "wall_s": wall,
            "slowest_session_s": max(totals), "median_session_s": statistics.median(totals),
            "per_session": res,
            "server_rss_mb": {"after_warm_up": rss0, "peak_sampled": sampler.peak_rss,
                              "vm_hwm_tree": sampler.hwm},
            "warm_up": {"case": warm_case, "seconds": warm_s, "session": warm},
            "all_ok": all(not r["errors"] and r["own_case_shown"] and not r["other_cases_shown"]
                          and r["what_if_changed"] for r in res),
            "load_average": {"before": load0, "after": load1},
            **({"isolation": iso} if iso is not None else {}),
        })
        print(f"N={n}: slowest {max(totals):.1f} s, median {statistics.median(totals):.1f} s, "
              f"peak RSS {sampler.peak_rss:.0f} MB (HWM {sampler.hwm:.0f} MB), ok={runs[-1]['all_ok']}"
              + (f", isolation ok={iso['isolated']}" if iso else ""), flush=True)
    ref = next((r for r in runs if r["sessions"] == 1), None)
    if ref is not None:
        for r in runs:
            r["ratio_slowest_over_1_session"] = r["slowest_session_s"] / ref["slowest_session_s"]
            r["ratio_peak_rss_over_1_session"] = (r["server_rss_mb"]["peak_sampled"]
                                                  / ref["server_rss_mb"]["peak_sampled"])
            r["ratio_added_rss_over_1_session"] = (
                (r["server_rss_mb"]["peak_sampled"] - r["server_rss_mb"]["after_warm_up"])
                / max(ref["server_rss_mb"]["peak_sampled"] - ref["server_rss_mb"]["after_warm_up"], 1e-9))
    out = {
        "what": "N simultaneous headless-Chromium sessions (one browser context each) through "
                "open demo case -> Run prediction (all panels) -> what-if ER flip, on one "
                "served app warmed by one session; reference: the 1-session run of this run",
        "steps": ["app_s", "open_case_s", "predict_all_panels_s", "what_if_s"],
        "runs": runs,
        "all_ok": all(r["all_ok"] for r in runs),
        "isolated": all(r["isolation"]["isolated"] for r in runs if "isolation" in r),
        "bundle": os.environ.get("HER2_BUNDLE") or "assets/demo_bundle (the app's default)",
        "cases": "assets/demo_cohort (the app's demo list), one case per session",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "note": "browsers and server share these CPUs (and other jobs: see load)"},
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=float) + "\n", encoding="utf-8")
    print(f"bench_sessions: all_ok={out['all_ok']} isolated={out['isolated']} -> {a.out}")
    return 0 if out["all_ok"] and out["isolated"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
