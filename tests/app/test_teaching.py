"""The Teaching page's prediction responds to the phenotypes the way its text says
(issue 17 item 9): a teaching model in which rim enhancement, oedema and size carry the
signal, its features measured on the regenerated images, with the points that move."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from her2core import synthetic
from her2core import teaching as T

ROOT = Path(__file__).resolve().parents[2]


def _case_prediction(model, **phenotype):
    kw = dict(size_mm=25.0, rim=0.2, edema=0.2, irregularity=0.3)
    kw.update(phenotype)
    case = synthetic.synth_case(seed=3, index=0, centre="A", modalities="mri",
                                shape=T.TEACHING_SHAPE, case_id="teaching", **kw)
    return model.predict(T._synthetic_features(case))


def test_shipped_teaching_model_is_verified_and_its_phenotypes_carry_the_signal():
    model = T.load_teaching_model(fit_if_missing=False)
    assert model.checksum.startswith("sha256:")
    assert all(model.coefficients[k] > 0 for k in T.FEATURES)
    start = _case_prediction(model)
    raised = _case_prediction(model, size_mm=40.0, rim=0.9, edema=0.8)
    assert raised.probability - start.probability > 0.10          # a clear margin
    for name in ("rim_index", "oedema_index", "tumour_size_mm"):
        assert raised.points[name] > start.points[name]
    # each phenotype alone moves it the same way
    assert _case_prediction(model, rim=0.9).probability > start.probability
    assert _case_prediction(model, edema=0.8).probability > start.probability
    assert _case_prediction(model, size_mm=40.0).probability > start.probability
    assert model.decision_curve() is not None


def test_a_refit_recovers_the_known_effects():
    m = T.fit_teaching_model(n=80, n_validation=40, seed=5)
    assert all(m.coefficients[k] > 0 for k in T.FEATURES)
    assert m.training["heldout_auc"] > 0.7
    p = m.predict({"tumour_size_mm": 20.0, "rim_index": 1.0, "oedema_index": 1.2}).probability
    q = m.predict({"tumour_size_mm": 35.0, "rim_index": 1.25, "oedema_index": 1.8}).probability
    assert q > p


def _metric(at) -> float:
    m = [x for x in at.metric if x.label.startswith("HER2-positive (teaching model)")]
    assert m, [x.label for x in at.metric]
    return float(m[0].value.rstrip("%")) / 100


def test_teaching_page_prediction_and_points_move_with_rim_oedema_and_size():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.run()
    at.switch_page("app_pages/teaching.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    p0 = _metric(at)
    table0 = at.dataframe[0].value.set_index("predictor")
    at.slider(key="teach_rim").set_value(0.9)
    at.slider(key="teach_edema").set_value(0.8)
    at.slider(key="teach_size").set_value(40.0)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    p1 = _metric(at)
    assert p1 - p0 > 0.10, (p0, p1)                 # before: 0.8 % -> 0.9 %
    table1 = at.dataframe[0].value.set_index("predictor")
    for name in T.FEATURES:
        label = T.FEATURE_LABELS[name]
        assert table1.loc[label, "points now"] > table0.loc[label, "points now"]
        assert table1.loc[label, "points at the start"] == table0.loc[label, "points now"]
        assert float(table1.loc[label, "change"]) > 0
    assert any("What moved the prediction" in m.value for m in at.markdown)
