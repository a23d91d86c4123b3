"""Cohort page, Train tab: recipe labels from the recipe files, the recipe editor checks an
edit with her2core's recipe validation and saves it as a new recipe offered for training."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def _cohort_page() -> AppTest:
    if not (ROOT / "assets" / "demo_cohort" / "cohort.csv").exists():
        pytest.skip("assets/demo_cohort is not in this checkout")
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("app_pages/cohort.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_labels_and_editor():
    from her2core.models.recipes import RECIPES, load_recipe
    at = _cohort_page()
    pick = at.selectbox(key="train_recipe")
    assert pick.options[:len(RECIPES)] == [f"{r} - {load_recipe(r)['paper']}" for r in RECIPES]
    pick.set_value("002")
    at.run()
    assert load_recipe("002")["description"] in [c.value for c in at.caption]
    text = at.text_area(key="recipe_text_002")
    assert "stepwise_p: 0.05" in text.value
    # a bad value: her2core's check names the key, nothing is saved
    text.set_value(text.value.replace("stepwise_p: 0.05", "stepwise_p: 5"))
    at.button(key="recipe_save").click()
    at.run()
    assert any("stepwise_p must be a number between" in e.value for e in at.error)
    at.text_area(key="recipe_text_002").set_value(
        at.text_area(key="recipe_text_002").value.replace("stepwise_p: 5", "stepwise_p: 0.01"))
    at.text_input(key="recipe_new_name").set_value("strict002")
    at.button(key="recipe_save").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Saved strict002.yaml" in m.value for m in at.success)
    at.run()                       # the list is drawn above the editor: next run shows it
    opts = at.selectbox(key="train_recipe").options
    mine = [o for o in opts if o.startswith("mine:strict002")]
    assert mine and "(saved here)" in mine[0]
    at.selectbox(key="train_recipe").set_value("mine:strict002")
    at.run()
    assert not at.exception
    assert "stepwise_p: 0.01" in at.text_area(key="recipe_text_strict002").value
