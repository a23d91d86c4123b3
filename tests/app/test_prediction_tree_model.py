"""The Prediction page with a tree final model (recipe 003 deploying LightGBM): the plain
note that there is no nomogram, no nomogram panel, exact TreeExplainer SHAP, no crash."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NO_NOMOGRAM = "This model has no nomogram (its final level is not a logistic model)."


@pytest.fixture(scope="module")
def tree_bundle(tmp_path_factory) -> Path:
    """Recipe 003 with final_model lightgbm on a tiny synthetic MRI + US cohort (its
    fine-tuned network left out, the DLR block = ultrasound radiomics without filters)."""
    from her2core.models.recipes import load_recipe
    from her2core.synthetic import make_cohort
    from her2core.workflows.train import TrainSettings, train_bundle
    if not (ROOT / "assets" / "demo_cohort" / "cohort.csv").is_file():
        pytest.skip("assets/demo_cohort is not in this checkout")
    r = load_recipe("003")
    r["networks"], r["compare_zoo"], r["final_model"] = [], [], "lightgbm"
    r["features"].update(radiomics_params={"US": "us"}, device="cpu", batch_size=16)
    for s in r["scorers"]:
        s["block"], s["classifiers"] = ["radiomics"], ["lr"]
        s.pop("pca", None)
    r["scorer_settings"]["lasso_n_Cs"] = 6
    base = tmp_path_factory.mktemp("tree_app")
    cohort = make_cohort(base / "cohort", n=24, seed=5, centres=2, modalities="both",
                         shape=(24, 24, 6), us_size=48, prevalence=0.5, signal=2.0)
    return train_bundle(TrainSettings(cohort=cohort, out=base / "bundle", recipe=r, bootstrap=0,
                                      random_init=True, device="cpu", oof_folds=2)).path


def test_prediction_page_says_a_tree_model_has_no_nomogram(tree_bundle, monkeypatch):
    import streamlit as st
    monkeypatch.setenv("HER2_BUNDLE", str(tree_bundle))
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
        at.run()
        at.switch_page("app_pages/case.py")
        at.run()
        at.selectbox(key="demo_pick").set_value("syn-0000")
        at.button(key="open_demo").click()
        at.run()
        at.switch_page("app_pages/prediction.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        at.button(key="run_prediction").click()
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        infos = [i.value for i in at.info]
        assert NO_NOMOGRAM in infos
        md = [m.value for m in at.markdown]
        assert "#### Nomogram" not in md and "#### SHAP contributions" in md
        assert "no interval (the final model is not a logistic nomogram)" in \
            [c.value for c in at.caption]
        assert not any(c.value.startswith("Total points") for c in at.caption)
        # the page's probability and SHAP are the predictor's: exact TreeExplainer values
        from her2core.bundle import load_bundle
        from her2core.predictor import CasePredictor
        part = at.session_state["prediction"]
        cp = CasePredictor(load_bundle(tree_bundle)).clinical_part(part,
                                                                   at.session_state["clinical"])
        assert at.metric[0].value == f"{cp.probability:.1%}"
        pc = cp.contributions
        assert pc.method == "tree" and not pc.approximate
        assert abs(pc.base_value + float(np.sum(pc.contributions)) - pc.prediction) < 1e-6
        assert any(c.value.startswith(pc.note) for c in at.caption)
        charts = [ch.proto.id for ch in at.get("plotly_chart")]
        assert charts    # the SHAP waterfall (and the decision curve) are drawn
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()
