"""The app in a real browser: time to the one-screen prediction, and a clinical "what if" edit.

Run from the repository root (Debian chromium + Playwright for Python):

    python3 benchmarks/bench_app.py [--repeats 3] [--edits 5] [--out benchmarks/results/app.json]

Starts ``streamlit run app.py`` on a free port (the bundle is assets/demo_bundle,
or HER2_BUNDLE), opens the first demo case and then, ``--repeats`` times:
draws a new lasso ROI (a slightly different circle each time, so the cached
network outputs of the previous ROI cannot be reused), opens the Prediction
page, clicks "Run prediction" and times the wall clock until the nomogram,
SHAP, decision-curve and Grad-CAM panels are all visible. The first run also
loads the backbones ("cold"); the later ones are "networks loaded" (the
target: < 5 s on the 2-core CPU).

Then ``--edits`` times it changes the age in the "what if" form and times the
browser round trip until the probability shown changes, and reads the
server-side computation time the page prints ("nomogram recomputed in X ms";
target < 200 ms). Also records the server's resident memory after each run
(memory must stay flat: caches are bounded).

Screenshots of the last case page and prediction page go to
benchmarks/results/screenshots/ (bench_case_roi.png, bench_prediction.png).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app import browser as B  # noqa: E402
from tests.app.test_browser import PANEL_SELECTORS, demo_tumour_polygon  # noqa: E402


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def streamlit_pid(port: int) -> int | None:
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd:
            return int(p.name)
    return None


def draw(page, scale: float) -> int:
    k, fracs, _ = demo_tumour_polygon()
    cx = sum(f[0] for f in fracs) / len(fracs)
    cy = sum(f[1] for f in fracs) / len(fracs)
    pts = [(cx + (x - cx) * scale, cy + (y - cy) * scale) for x, y in fracs]
    return B.lasso_until_roi(page, pts)


#: what the page shows that depends on the clinical values: probability, points, compute time
SNAP_JS = ("() => [...document.querySelectorAll('[data-testid=\"stMetricValue\"],"
           " [data-testid=\"stCaptionContainer\"]')].map(e => e.innerText)"
           ".filter(t => /%|points|recomputed/.test(t)).join('|')")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app.json"))
    args = ap.parse_args()
    if B.chromium_path() is None:
        print("chromium is not installed: apt-get install -y chromium", file=sys.stderr)
        return 2
    shots = ROOT / "benchmarks" / "results" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    port = B.free_port()
    runs, edits, memory = [], [], []
    with B.running_app(port=port) as url, B.browser_page(width=1700, height=1900) as page:
        pid = streamlit_pid(port)
        B.goto_page(page, url, "")
        page.get_by_role("link", name="Case").first.click()
        B.wait_idle(page)
        page.get_by_role("button", name="Open demo case").click()
        B.wait_idle(page)
        page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=120_000)
        for i in range(args.repeats):
            if i:
                page.get_by_role("link", name="Case").first.click()
                B.wait_idle(page)
                page.get_by_role("button", name="Clear", exact=True).click()
                B.wait_idle(page)
                page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=60_000)
            voxels = draw(page, 1.0 + 0.12 * i)
            if i == args.repeats - 1:
                page.screenshot(path=str(shots / "bench_case_roi.png"), full_page=True)
            page.get_by_role("link", name="Prediction").first.click()
            B.wait_idle(page)
            t0 = time.perf_counter()
            page.get_by_role("button", name="Run prediction").click()
            for sel in PANEL_SELECTORS.values():
                page.wait_for_selector(sel, timeout=600_000, state="visible")
            dt = time.perf_counter() - t0
            B.wait_idle(page)
            status = page.get_by_text(re.compile(r"Networks done in [\d.]+ s")).first.inner_text()
            server = float(re.search(r"Networks done in ([\d.]+) s", status).group(1))
            runs.append({"run": i, "roi_voxels": voxels, "click_to_all_panels_s": round(dt, 3),
                         "server_networks_s": server, "kind": "cold" if i == 0 else "networks loaded"})
            memory.append(rss_mb(pid) if pid else None)
            print(f"run {i}: {dt:.2f} s to all panels (networks {server:.2f} s, ROI {voxels} voxels)",
                  flush=True)
        page.screenshot(path=str(shots / "bench_prediction.png"), full_page=True)
        box = page.locator('[data-testid="stExpander"]').filter(has_text="What if").first
        field = box.locator('[data-testid="stNumberInputField"]').first
        label = field.get_attribute("aria-label") or "first numeric clinical value"
        base = float(field.input_value() or 20)
        for j in range(args.edits):
            before = page.locator('[data-testid="stMetricValue"]').first.inner_text()
            snap = page.evaluate(SNAP_JS)
            new = round(base + 3.0 * (j + 1), 2)
            t0 = time.perf_counter()
            field.fill(str(new))
            field.press("Enter")
            page.wait_for_function(f"(b) => ({SNAP_JS})() !== b", arg=snap, timeout=60_000)
            dt = time.perf_counter() - t0
            B.wait_idle(page)
            cap = page.get_by_text(re.compile(r"nomogram recomputed in [\d.]+ ms")).first.inner_text()
            ms = float(re.search(r"recomputed in ([\d.]+) ms", cap).group(1))
            after = page.locator('[data-testid="stMetricValue"]').first.inner_text()
            edits.append({"field": label, "value": new, "p_before": before, "p_after": after,
                          "browser_round_trip_s": round(dt, 3), "server_compute_ms": ms})
            print(f"edit {label}={new}: {before} -> {after} in {dt * 1000:.0f} ms round trip, "
                  f"{ms:.1f} ms computation", flush=True)
    warm = [r["click_to_all_panels_s"] for r in runs[1:]] or [runs[0]["click_to_all_panels_s"]]
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]},
        "bundle": os.environ.get("HER2_BUNDLE", "assets/demo_bundle"),
        "runs": runs, "edits": edits, "server_rss_mb_after_each_run": memory,
        "summary": {
            "cold_click_to_all_panels_s": runs[0]["click_to_all_panels_s"],
            "warm_click_to_all_panels_s_median": round(statistics.median(warm), 3),
            "what_if_server_compute_ms_median": round(statistics.median(e["server_compute_ms"] for e in edits), 1)
            if edits else None,
            "what_if_round_trip_s_median": round(statistics.median(e["browser_round_trip_s"] for e in edits), 3)
            if edits else None,
            "targets": {"warm_click_to_all_panels_s": 5.0, "what_if_compute_ms": 200.0},
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
