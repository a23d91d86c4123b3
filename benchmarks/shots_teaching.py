"""Teaching page screenshots at 1366 x 768 (tab 5, at the start and with rim 0.9, oedema 0.8, size 40 mm).

    HER2_BUNDLE=assets/demo_bundle python3 benchmarks/shots_teaching.py after
"""
import sys, os
sys.path.insert(0, "tests/app"); sys.path.insert(0, ".")
from browser import running_app, browser_page, goto_page, wait_idle
out = "benchmarks/results/screenshots"
tag = sys.argv[1]
with running_app(log_path=__import__("pathlib").Path("/tmp/teach_app.log")) as url:
    with browser_page(1366, 768) as page:
        goto_page(page, url, "teaching")
        def tab5():
            page.get_by_role("tab", name="5 Prediction").click(); wait_idle(page)
        tab5()
        page.screenshot(path=f"{out}/teaching_start_{tag}.png", full_page=False)
        sl = page.get_by_role("slider")
        for idx, n in ((1, 14), (2, 12), (0, 15)):   # rim 0.2->0.9, oedema 0.2->0.8, size 25->40
            s = sl.nth(idx); s.focus()
            for _ in range(n):
                page.keyboard.press("ArrowRight")
            page.wait_for_timeout(800); wait_idle(page)
        tab5()
        page.screenshot(path=f"{out}/teaching_raised_{tag}.png", full_page=False)
        print(page.get_by_test_id("stMetricValue").all_inner_texts())
