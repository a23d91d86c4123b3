"""Every page through streamlit.testing.v1.AppTest: demo case flow, bad upload, missing prerequisites.

One AppTest script run per interaction; caches (images, demo cohort) are shared
by the process so the module stays quick after its first test.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 240


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _go(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


def _open_demo(at: AppTest, case_id: str = "syn-0000") -> AppTest:
    _go(at, "case")
    at.selectbox(key="demo_pick").set_value(case_id)
    at.button(key="open_demo").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _demo_root() -> Path:
    root = ROOT / "assets" / "demo_cohort"
    if not (root / "cohort.csv").exists():
        pytest.skip("assets/demo_cohort is not in this checkout")
    return root


def test_home_says_what_it_is_and_shows_the_model_and_compute():
    at = _app()
    assert at.title[0].value == "HER2 second-opinion workbench"
    assert any("not a medical device" in t for t in _texts(at.error))
    boxes = _texts(at.warning) + _texts(at.info) + _texts(at.success)
    assert any("CUDA" in t for t in boxes)
    # the bundle is either shown (with a random-init banner when so) or its absence explained
    assert any("bundle" in t.lower() or "random-initialised" in t for t in boxes + _texts(at.markdown))


def test_prerequisites_are_named():
    at = _app()
    _go(at, "prediction")
    assert any("Open a case" in t for t in _texts(at.info))
    assert at.get("page_link")[0].proto.page.endswith("case.py") or at.get("page_link")
    _go(at, "export")
    assert any("Open a case" in t for t in _texts(at.info))


def test_demo_case_flow_viewer_mask_and_clinical_values():
    root = _demo_root()
    table = pd.read_csv(root / "cohort.csv", dtype={"case_id": str}).set_index("case_id")
    at = _open_demo(_app(), "syn-0001")
    assert at.subheader[0].value == "Case syn-0001"
    charts = at.get("plotly_chart")
    assert len(charts) == 3                              # DCE, T1, T2 side by side
    assert at.number_input(key=next(k for k in _widget_keys(at) if k.endswith("_age"))).value == \
        pytest.approx(float(table.loc["syn-0001", "age"]))
    # the case's own mask is its ROI as soon as it opens (defect: it needed a button)
    import SimpleITK as sitk
    n_mask = int(sitk.GetArrayFromImage(sitk.ReadImage(str(root / "cases/syn-0001/mask.nii.gz"))).sum())
    cap = [t for t in _texts(at.caption) if t.startswith("ROI on DCE")]
    assert cap and cap[0].startswith(f"ROI on DCE: {n_mask} voxels") and "source: case" in cap[0]
    assert at.session_state["editors"]["DCE"].voxels == n_mask
    # clear / undo keep the count exact
    at.button(key="case_clear").click()
    at.run()
    assert at.session_state["editors"]["DCE"].voxels == 0
    # no ROI: the prediction page says so before anything runs
    _go(at, "prediction")
    assert any("ROI" in t for t in _texts(at.info))
    _go(at, "case")
    at.button(key="case_undo").click()
    at.run()
    assert at.session_state["editors"]["DCE"].voxels == n_mask
    at.button(key="case_clear").click()
    at.run()
    at.button(key="case_usecase").click()             # reload the case's mask file
    at.run()
    assert not at.exception
    assert at.session_state["editors"]["DCE"].voxels == n_mask
    # other views keep working
    at.radio(key="case_view").set_value("sagittal")
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 3


def _widget_keys(at: AppTest) -> list[str]:
    return [w.key for w in at.number_input if w.key]


def test_bad_upload_is_reported_and_the_session_survives():
    at = _go(_app(), "case")
    at.file_uploader(key="up_T1").set_value(("T1.nii.gz", b"this is not a NIfTI file", "application/gzip"))
    at.run()
    at.button(key="load_upload").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errs = _texts(at.error)
    assert errs and any("T1.nii.gz" in e for e in errs), errs
    assert at.session_state["case"] is None
    # the rest of the session still works
    _demo_root()
    at.button(key="open_demo").click()
    at.run()
    assert not at.exception
    assert at.session_state["case"].case_id == at.selectbox(key="demo_pick").value


def test_good_upload_of_a_nifti_and_a_png(tmp_path):
    import SimpleITK as sitk
    from PIL import Image as PILImage
    rng = np.random.default_rng(0)
    img = sitk.GetImageFromArray(rng.integers(0, 500, (6, 20, 24)).astype(np.int16))
    img.SetSpacing((0.8, 0.8, 3.0))
    p = tmp_path / "t1.nii.gz"
    sitk.WriteImage(img, str(p))
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (40, 50)).astype(np.uint8)).save(buf, format="PNG")
    at = _go(_app(), "case")
    at.file_uploader(key="up_T1").set_value(("t1.nii.gz", p.read_bytes(), "application/gzip"))
    at.file_uploader(key="up_US").set_value(("us.png", buf.getvalue(), "image/png"))
    at.run()
    at.button(key="load_upload").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    case = at.session_state["case"]
    assert case.source == "upload" and case.sequences == ["T1", "US"]
    assert len(at.get("plotly_chart")) == 2
    assert at.slider(key="case_slice_axial").max == 5


def test_export_builds_the_report_for_the_demo_case():
    _demo_root()
    at = _open_demo(_app(), "syn-0002")
    _go(at, "export")
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["PDF report", "HTML report", "JSON"]
    assert any("Burned-in text" in t for t in _texts(at.warning))


def test_cohort_evaluates_an_uploaded_predictions_file():
    root = _demo_root()
    from her2core.cohort import read_cohort
    from her2core.metrics.roc import auc
    y = read_cohort(root).labels("her2")
    rng = np.random.default_rng(1)
    score = y.astype(float) * 0.8 + rng.random(len(y))
    p = 1 / (1 + np.exp(-(score - 0.9) * 3))
    csv = pd.DataFrame({"case_id": y.index, "score": score.values, "p": p.values}).to_csv(index=False)
    at = _go(_app(), "cohort")
    at.radio(key="eval_mode").set_value("A predictions file (CSV)")
    at.run()
    at.file_uploader(key="pred_csv").set_value(("pred.csv", csv.encode(), "text/csv"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    df = at.dataframe[0].value
    assert list(df["score"]) == ["score", "p"]
    assert_allclose(df["AUC"].to_numpy(), [auc(y.values, score.values)] * 2, rtol=1e-12)
    assert len(at.get("plotly_chart")) >= 3          # ROC, calibration, decision curve


def test_teaching_sliders_regenerate_the_case():
    at = _go(_app(), "teaching")
    first = [t for t in _texts(at.caption) if t.startswith("synthetic teaching case")][0]
    assert "size_mm=25.00" in first
    at.slider(key="teach_size").set_value(40.0)
    at.run()
    assert not at.exception
    second = [t for t in _texts(at.caption) if t.startswith("synthetic teaching case")][0]
    assert "size_mm=40.00" in second


@pytest.mark.slow
def test_prediction_one_screen_and_what_if_without_rerunning_networks(with_bundle):
    _demo_root()
    at = _open_demo(_app(), "syn-0000")                # its mask is the ROI at once
    _go(at, "prediction")
    assert any("random-initialised" in w for w in _texts(at.warning))   # banner with model output
    at.button(key="run_prediction").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    part = at.session_state["prediction"]
    from her2core.bundle import load_bundle
    from her2core.predictor import CasePredictor
    cp = CasePredictor(load_bundle(with_bundle)).clinical_part(part, at.session_state["clinical"])
    assert at.metric[0].label == "HER2-positive"
    assert at.metric[0].value == f"{cp.probability:.1%}"
    assert f"95 % interval {cp.interval[0]:.1%} - {cp.interval[1]:.1%}" in _texts(at.caption)
    if cp.points:
        assert f"Total points: {cp.points['total_points']:.1f}" in _texts(at.caption)
        assert cp.points["probability"] == pytest.approx(cp.probability, abs=1e-9)
    if cp.contributions is not None:
        c = cp.contributions
        assert c.base_value + float(np.sum(c.contributions)) == pytest.approx(c.prediction, abs=1e-9)
    # what if: flip one binary clinical value of the final model; the networks are not re-run
    fields = [w for w in at.selectbox if w.key and w.key.startswith("wi_")]
    assert fields, "no what-if inputs"
    w = fields[0]
    w.set_value("no" if w.value == "yes" else "yes")
    at.run()
    assert not at.exception
    assert at.session_state["prediction"] is part
    cp2 = CasePredictor(load_bundle(with_bundle)).clinical_part(part, at.session_state["clinical"])
    assert at.metric[0].value == f"{cp2.probability:.1%}"


def test_cohort_trains_a_clinical_bundle_and_offers_it_for_download():
    _demo_root()
    at = _go(_app(), "cohort")
    at.selectbox(key="train_recipe").set_value("clinical")
    at.run()
    at.button(key="train_go").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, _texts(at.error)
    res = at.session_state["train_result"]
    from her2core.bundle import load_bundle
    b = load_bundle(res["path"])                       # a verified bundle, not just a folder
    assert b.tasks == ["her2"]
    assert "Download the bundle (.zip)" in [d.label for d in at.get("download_button")]
    # the new bundle is this session's model at once (no restart)
    assert at.session_state["bundle_path"] == str(b.path)
    at = _open_demo(at, "syn-0002")
    _go(at, "prediction")
    panel = " ".join(_texts(at.markdown))
    assert "Images: none (clinical model)" in panel and "ROI: none needed" in panel
    at.button(key="run_prediction").click()
    at.run()
    assert not at.exception and not at.error, _texts(at.error)
    from her2core.predictor import CasePredictor
    part = at.session_state["prediction"]
    cp = CasePredictor(b).clinical_part(part, at.session_state["clinical"])
    assert at.metric[0].value == f"{cp.probability:.1%}"
    # the sidebar's model choice lists it beside the shipped demo and switches back
    other = AppTest.from_file(APP, default_timeout=TIMEOUT)
    other.session_state["bundles"] = at.session_state["bundles"]
    other.run()
    pick = other.selectbox(key="model_pick")
    assert "clinical trained here (demo_cohort)" in pick.options
    assert "demo_bundle (shipped demo)" in pick.options
    demo = str(Path(with_demo := ROOT / "assets" / "demo_bundle"))
    assert with_demo.is_dir()
    pick.set_value(demo)
    other.run()
    assert not other.exception and other.session_state["bundle_path"] == demo


def _run_prediction(at: AppTest) -> None:
    at.button(key="run_prediction").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    failed = [s for s in at.get("expandable") if "failed" in str(getattr(s, "label", ""))]
    assert not failed, [s.label for s in failed]
    assert not at.error, _texts(at.error)


@pytest.mark.slow
def test_repeated_prediction_is_served_from_the_cache_in_this_and_another_session(with_bundle):
    """Blocker: a second "Run prediction" on the same case and ROI (same session, or another
    session) must be served from the cache, not fail with CacheReplayClosureError."""
    _demo_root()
    at = _open_demo(_app(), "syn-0001")
    _go(at, "prediction")
    _run_prediction(at)
    first = at.session_state["prediction"]
    p_first = at.metric[0].value
    _run_prediction(at)                        # same session, same case and ROI
    assert at.session_state["prediction"] is first   # the cached result, not a re-run
    assert at.metric[0].value == p_first
    other = _open_demo(_app(), "syn-0001")     # a second session on the same demo case
    _go(other, "prediction")
    _run_prediction(other)
    assert other.session_state["prediction"] is first
    assert other.metric[0].value == p_first


# --------------------------------------------------------------------------- issue 17, items 11 / 15 / three-way
def test_home_where_to_start_lists_the_reader_study_pages():
    at = _app()
    links = [(p.label, p.page) for p in at.get("page_link")]
    pages = [str(pg).removeprefix("app_pages/").removesuffix(".py") for _, pg in links]
    assert "reader_study" in pages and "study_owner" in pages, links


def test_streamlit_deploy_button_is_hidden_by_the_config():
    import tomllib
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["toolbarMode"] in ("viewer", "minimal")


def test_reader_study_database_defaults_to_a_per_user_folder(tmp_path, monkeypatch):
    from her2core.reader_study import db
    monkeypatch.delenv("HER2_DB_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    url = db.resolve_url()
    expected = tmp_path / "data" / "her2-workbench" / "her2_reader_study.db"
    assert url == f"sqlite:///{expected}"
    assert expected.parent.is_dir() and not (tmp_path / "her2_reader_study.db").exists()
    monkeypatch.setenv("HER2_DB_URL", "sqlite:///elsewhere.db")
    assert db.resolve_url() == "sqlite:///elsewhere.db"


@pytest.mark.slow
def test_prediction_headline_first_three_way_and_dark_figures(with_bundle):
    """The probability with its interval is the first panel after the banner; a bundle with
    both tasks shows positive / low / zero (or says the HER2-low split is not predicted);
    figures are built for the dark theme (no black ink), SHAP without dropped scores."""
    _demo_root()
    at = _open_demo(_app(), "syn-0000")
    _go(at, "prediction")
    at.button(key="run_prediction").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    part = at.session_state["prediction"]
    from her2core.bundle import load_bundle
    from her2core.predictor import CasePredictor
    pred = CasePredictor(load_bundle(with_bundle))
    # headline: the first metric, and no "What this model reads" panel above it after a run
    assert at.metric[0].label == "HER2-positive"
    md = _texts(at.markdown)
    three_md = [m for m in md if m.startswith("**Three-way call:**")]
    three = pred.three_way_call(part, at.session_state["clinical"])
    if three is None:
        assert not three_md
    elif three["low"] is None:
        assert three_md == [f"**Three-way call:** positive {three['positive']:.1%} · low / zero: "
                            "not predicted"]
    else:
        assert three_md == ["**Three-way call:** " + " · ".join(
            f"{k} **{three[k]:.1%}**" for k in ("positive", "low", "zero"))]
        assert sum(three[k] for k in ("positive", "low", "zero")) == pytest.approx(1.0, abs=1e-12)
    if three_md:                      # the headline comes before the inputs panel at once
        assert md.index(three_md[0]) < md.index("**What this model reads**")
    at.run()                          # any later run: the inputs panel moves below the figures
    assert not at.exception
    md = _texts(at.markdown)
    assert md.index("**What this model reads**") > md.index("#### Nomogram")
    assert at.session_state["prediction"] is part
    # dark figures, built with theme= (no post-hoc repainting left in the webapp)
    import json as _json
    import webapp.predict as wp
    assert not hasattr(wp, "readable")
    charts = at.get("plotly_chart")
    assert charts
    for ch in charts:
        spec = _json.loads(ch.proto.spec)
        assert spec["layout"]["paper_bgcolor"] == "rgba(0,0,0,0)"
        for tr in spec["data"]:
            assert (tr.get("line") or {}).get("color") not in ("black", "#000000")
            assert (tr.get("marker") or {}).get("color") not in ("black", "#000000")
    # Grad-CAM: one plain sentence when the model uses no image score
    ts = part.tasks["her2"]
    if not ts.gradcam:
        assert ts.gradcam_summary() in [i.value for i in at.info]
