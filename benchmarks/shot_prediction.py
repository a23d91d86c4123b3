"""Screenshot of the Prediction page at a laptop viewport (default 1366 x 768).

Starts the app of the checkout ``--root`` (default: this one) with the shipped
demo bundle, opens the demo case (its own mask is the ROI), runs the
prediction and saves two PNGs: the first screen (what the user sees without
scrolling) as ``<out>`` and the whole page (same width, a tall viewport) as
``<out stem>_full.png``.

    python3 benchmarks/shot_prediction.py --out benchmarks/results/screenshots/prediction_1366_after.png
    git archive HEAD | tar -x -C /tmp/before && \\
        python3 benchmarks/shot_prediction.py --root /tmp/before --out .../prediction_1366_before.png
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from tests.app import browser as B  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=HERE, help="checkout whose app.py is run")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--width", type=int, default=1366)
    ap.add_argument("--height", type=int, default=768)
    a = ap.parse_args(argv)
    root = a.root.resolve()
    B.ROOT = root                      # running_app starts streamlit in this folder
    os.environ["HER2_BUNDLE"] = str(root / "assets" / "demo_bundle")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with B.running_app(log_path=a.out.with_suffix(".log")) as url, \
            B.browser_page(width=a.width, height=a.height) as page:
        B.open_demo_and_predict(page, url)
        page.wait_for_selector(".st-key-panel_probability", timeout=600_000, state="visible")
        page.wait_for_selector(".st-key-panel_nomogram .stPlotlyChart .main-svg",
                               timeout=600_000, state="visible")
        B.wait_idle(page, timeout=600_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(a.out), full_page=False)
        box = page.locator(".st-key-panel_probability").first.bounding_box()
        print(f"probability panel at y = {box['y']:.0f} .. {box['y'] + box['height']:.0f} px "
              f"(viewport height {a.height})" if box else "probability panel not found")
        # Streamlit scrolls inside its own container: a tall viewport shows the whole page
        page.set_viewport_size({"width": a.width, "height": 3000})
        B.wait_idle(page, timeout=600_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(a.out.with_name(a.out.stem + "_full.png")), full_page=True)
    a.out.with_suffix(".log").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
