"""The Case page's clinical form is generated from the one cohort schema: paper 002's
predictors appear with their levels, and a demo case's DCE kinetics are computed from
its DCE_phases inside its ROI (issue 13)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from her2core.cohort import CLINICAL_BY_NAME, read_cohort
from her2core.models.workflow import computed_columns

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo_cohort"


def _run(at):
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_case_page_form_shows_the_002_fields_and_computed_kinetics():
    if not (DEMO / "cohort.csv").is_file():
        pytest.skip("assets/demo_cohort is not in this checkout")
    at = _run(AppTest.from_file(str(ROOT / "app.py"), default_timeout=240))
    at.switch_page("app_pages/case.py")
    _run(at)
    at.selectbox(key="demo_pick").set_value("syn-0001")
    at.button(key="open_demo").click()
    _run(at)
    boxes = {sb.label: sb for sb in at.selectbox}
    for name in ("n_category", "quadrant", "fgt", "bpe", "t2_signal", "mass_margin",
                 "internal_enhancement", "lesion_number", "dce_curve"):
        f = CLINICAL_BY_NAME[name]
        assert f.label in boxes, (f.label, sorted(boxes))
        assert list(boxes[f.label].options) == ["missing", *f.levels]
    assert CLINICAL_BY_NAME["accompanying_signs"].label in boxes     # 0/1 -> no / yes
    row = read_cohort(DEMO).table.loc["syn-0001"]
    assert boxes["Regional N category"].value == row["n_category"]
    # the demo cohort.csv leaves the kinetics empty: the form shows them computed
    comp = computed_columns(read_cohort(DEMO), ["dce_curve", "dce_eer"], ["syn-0001"]).iloc[0]
    assert boxes[CLINICAL_BY_NAME["dce_curve"].label].value == comp["dce_curve"]
    eer = [n for n in at.number_input if n.label.startswith("Early enhancement rate (computed)")]
    assert len(eer) == 1 and abs(eer[0].value - comp["dce_eer"]) < 1e-9
