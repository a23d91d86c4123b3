#!/usr/bin/env python3
"""Screenshots for issue 13: a readable nomogram and the three-way call on the Prediction page.

Trains a small clinical bundle with both tasks (HER2-positive vs negative, HER2-low vs
HER2-zero) on a synthetic clinical cohort (her2core.synthetic, 240 cases, signal 2,
stepwise p < 0.05 over eleven predictors), so that both models keep predictors and the
page can give positive / low / zero; then starts the app with it (HER2_BUNDLE), opens
the demo case syn-0000, runs the prediction and saves, at a 1366 px wide window:

* ``three_way_call.png``: the headline panel (probability, interval, the three-way call);
* ``nomogram_readable.png``: the HER2-low nomogram panel (binary predictors as no / yes,
  a categorical one with its level names, thinned numeric ticks, the probability's
  interval on the probability axis).

    python3 benchmarks/shot_recipes.py [--out benchmarks/results/screenshots]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from tests.app import browser as B  # noqa: E402

PREDICTORS = ["age", "er", "pr", "ki67", "aln_abnormal", "enhancement_curve", "rim_enhancement",
              "mass_shape", "peritumoral_edema", "adc_min", "eer"]


def train(work: Path) -> Path:
    from her2core.models.recipes import load_recipe
    from her2core.synthetic import make_cohort
    from her2core.workflows.train import TrainSettings, train_bundle
    cohort = make_cohort(work / "cohort", n=240, seed=11, centres=2, modalities="none",
                         signal=2.0)
    r = load_recipe("clinical")
    r.update(name="clinical_two_tasks", clinical_predictors=PREDICTORS, stepwise="p",
             stepwise_p=0.05,
             paper="clinical nomogram, both tasks (synthetic cohort, for the screenshots)")
    res = train_bundle(TrainSettings(cohort=cohort, out=work / "bundle", recipe=r,
                                     tasks=("her2", "her2_low"), bootstrap=0))
    for t in res.tasks:
        print(t, "keeps", ", ".join(res.training[t]["second_level_variables"]))
    return res.path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "benchmarks" / "results" / "screenshots")
    ap.add_argument("--width", type=int, default=1366)
    ap.add_argument("--height", type=int, default=768)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    bundle = train(Path(tempfile.mkdtemp(prefix="shot_recipes_")))
    os.environ["HER2_BUNDLE"] = str(bundle)
    with B.running_app(log_path=a.out / "shot_recipes.log") as url, \
            B.browser_page(width=a.width, height=a.height) as page:
        B.open_demo_and_predict(page, url)
        page.wait_for_selector(".st-key-panel_three_way", timeout=600_000, state="visible")
        B.wait_idle(page, timeout=600_000)
        page.wait_for_timeout(1000)
        head = page.locator(".st-key-panel_probability").first
        head.screenshot(path=str(a.out / "three_way_call.png"))
        print("three-way:", page.locator(".st-key-panel_three_way").first.inner_text())
        page.get_by_text("HER2-low vs HER2-zero").first.click()
        B.wait_idle(page, timeout=600_000)
        page.wait_for_selector(".st-key-panel_nomogram .stPlotlyChart .main-svg",
                               timeout=600_000, state="visible")
        page.wait_for_timeout(1500)
        panel = page.locator(".st-key-panel_nomogram").first
        panel.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        panel.screenshot(path=str(a.out / "nomogram_readable.png"))
    (a.out / "shot_recipes.log").unlink(missing_ok=True)
    print("wrote", a.out / "three_way_call.png", "and", a.out / "nomogram_readable.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
