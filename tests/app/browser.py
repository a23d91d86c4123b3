"""Helpers for the real-browser test and the app benchmark: start the app, drive Chromium."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("HER2_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(port: int | None = None, timeout: float = 120.0, log_path: Path | None = None,
                extra_args: tuple[str, ...] = (), procs: list | None = None):
    """Start ``streamlit run app.py`` on a free local port; yield its URL; stop it.

    ``extra_args``: more ``streamlit run`` options (``--server.disconnectedSessionTTL 5``);
    ``procs``: a list the server's ``Popen`` is appended to (its pid, for memory readings).
    """
    port = port or free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", *extra_args],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if procs is not None:
        procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() - t0 > timeout:
                raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path:
            log.close()


@contextlib.contextmanager
def browser_page(width: int = 1600, height: int = 1100):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS,
                                    headless=True)
        try:
            ctx = browser.new_context(viewport={"width": width, "height": height})
            page = ctx.new_page()
            yield page
        finally:
            browser.close()


def wait_idle(page, timeout: float = 180_000) -> None:
    """Wait until the app is not running a script (the status widget is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(200)


def goto_page(page, url: str, name: str) -> None:
    page.goto(f"{url}/{name}")
    page.wait_for_selector('[data-testid="stApp"]')
    wait_idle(page)


def open_demo_and_predict(page, url: str) -> None:
    """Home -> Case -> "Open demo case" -> Prediction -> "Run prediction" (returns at once:
    the caller waits for the panels it needs)."""
    goto_page(page, url, "")
    page.get_by_role("link", name="Case").first.click()
    wait_idle(page)
    page.get_by_role("button", name="Open demo case").click()
    wait_idle(page)
    page.get_by_role("link", name="Prediction").first.click()
    wait_idle(page)
    page.get_by_role("button", name="Run prediction").click()


def lasso(page, chart, points) -> None:
    """Drag the mouse along points (fractions of the chart's plot area) with the lasso tool."""
    area = chart.locator(".nsewdrag").first
    area.wait_for(state="visible", timeout=60_000)
    box = area.bounding_box()
    if box is None:
        raise RuntimeError("the chart has no drag area yet")
    xs = [box["x"] + fx * box["width"] for fx, _ in points]
    ys = [box["y"] + fy * box["height"] for _, fy in points]
    page.mouse.move(xs[0], ys[0])
    page.mouse.down()
    for x, y in zip(xs[1:], ys[1:]):
        page.mouse.move(x, y, steps=6)
    page.mouse.move(xs[0], ys[0], steps=6)
    page.mouse.up()


def roi_voxels(page) -> int:
    """Voxel count in the ROI caption of the Case page (0 when none)."""
    import re
    els = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    for t in els:
        m = re.search(r"ROI on \w+: (\d+) voxels", t)
        if m:
            return int(m.group(1))
    return 0


def lasso_until_roi(page, points, attempts: int = 3, timeout_ms: int = 30_000) -> int:
    """Draw the lasso on the first chart until the ROI caption shows voxels; returns the count.

    A drag that starts while plotly is still mounting a freshly keyed chart is
    lost, so the drag is repeated (after a pause) when nothing arrived.
    """
    before = roi_voxels(page)
    for _ in range(attempts):
        page.wait_for_selector(".stPlotlyChart .nsewdrag", timeout=120_000)
        page.wait_for_timeout(800)
        try:
            lasso(page, page.locator(".stPlotlyChart").first, points)
            page.wait_for_function(
                "(b) => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')]"
                ".some(e => { const m = /ROI on \\w+: (\\d+) voxels/.exec(e.innerText);"
                " return m && +m[1] > 0 && +m[1] !== b; })", arg=before, timeout=timeout_ms)
        except Exception:  # noqa: BLE001 - try the drag again
            continue
        wait_idle(page)
        return roi_voxels(page)
    raise TimeoutError("the lasso drag did not produce an ROI")
