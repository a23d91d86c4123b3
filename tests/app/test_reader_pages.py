"""Reader-study pages through AppTest: sign-in, what a reader may see, saving, resume, owner screen.

Each test uses its own SQLite file (HER2_DB_URL); studies are made on a few demo-cohort
cases, through the service (reader tests) or through the owner's creation form.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import pytest
from numpy.testing import assert_allclose

from streamlit.testing.v1 import AppTest

from her2core.reader_study import ReaderStudyService
from her2core.reader_study.db import sqlite_url

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
DEMO = ROOT / "assets" / "demo_cohort"
TIMEOUT = 240
CASES = ["syn-0000", "syn-0001", "syn-0002", "syn-0003"]


def _demo() -> Path:
    if not (DEMO / "cohort.csv").exists():
        pytest.skip("assets/demo_cohort is not in this checkout")
    return DEMO


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = sqlite_url(tmp_path / "rs.db")
    monkeypatch.setenv("HER2_DB_URL", url)
    svc = ReaderStudyService.open(url)
    yield svc
    svc.db.dispose()


def _nomogram():
    from her2core.nomogram import Nomogram
    return Nomogram.from_coefficients(-3.0, {"age": 0.03, "DCE score": 0.8},
                                      ranges={"age": (30.0, 80.0), "DCE score": (-2.0, 2.0)})


def _model_outputs() -> dict:
    """case -> model output (probability and points of a small nomogram, as a bundle run gives)."""
    nom = _nomogram()
    out = {}
    for i, cid in enumerate(CASES):
        pp = nom.patient_points({"age": 40.0 + 5 * i, "DCE score": -1.0 + 0.5 * i})
        out[cid] = {"p_her2": pp["probability"], "total_points": pp["total_points"],
                    "points": pp["points"]}
    return out


def _study(svc, design="sequential", ask_low=False, name="S1"):
    from her2core.reader_study.inputs import cases_from_cohort
    root = _demo()
    cases = cases_from_cohort(root, CASES, _model_outputs())
    readers = [{"name": "Ann", "level": "junior", "years": 2},
               {"name": "Bo", "level": "senior", "years": 15}]
    return svc.create_study(name, cases, readers, design=design, seed=7, ask_her2_low=ask_low,
                            washout_days=(1.0 if design == "two_sessions" else 0.0),
                            model_info={"source": "test nomogram", "nomogram": _nomogram().to_dict()},
                            cohort_root=str(root))


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _reader_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    _run(at)
    at.switch_page("app_pages/reader_study.py")
    return _run(at)


def _button(at, label):
    hits = [b for b in at.button if b.label == label]
    assert hits, (label, [b.label for b in at.button])
    return hits[0]


def _sign_in(at, study, code) -> AppTest:
    at.text_input(key="rs_signin_study").input(study)
    at.text_input(key="rs_signin_code").input(code)
    _button(at, "Sign in").click()
    return _run(at)


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.info] + [m.value for m in at.error]
    parts += [m.value for m in at.subheader] + [m.label for m in at.metric] + [m.value for m in at.metric]
    parts += [c.value for c in at.caption] + [m.value for m in at.success]
    return "\n".join(str(p) for p in parts)


def _progress_text(at) -> str:
    return at.get("progress")[0].proto.text


def _read(at, qid, call="HER2-positive", conf=80, notes=""):
    at.radio(key=f"rs_call_{qid}").set_value(call)
    at.slider(key=f"rs_conf_{qid}").set_value(conf)
    if notes:
        at.text_area(key=f"rs_notes_{qid}").input(notes)
    _button(at, "Save read").click()
    return _run(at)


def _frame(at, column):
    """The first st.dataframe of the page with this column (AppTest does not keep their keys)."""
    hits = [d.value for d in at.dataframe if column in d.value.columns]
    assert hits, (column, [list(d.value.columns) for d in at.dataframe])
    return hits[0]


def _current_qid(at) -> int:
    keys = [r.key for r in at.radio if r.key and r.key.startswith("rs_call_")]
    assert len(keys) == 1, keys
    return int(keys[0].rsplit("_", 1)[1])


def test_sign_in_refused_with_a_wrong_code(db):
    made = _study(db)
    at = _reader_page()
    _sign_in(at, "S1", "R1-AAAA-BBBB-CCCC")
    assert any("wrong access code" in e.value for e in at.error)
    assert "rs_reader" not in at.session_state
    _sign_in(at, "no such study", made.reader_codes["Ann"])
    assert any("wrong access code" in e.value for e in at.error)
    # an owner code is not a reader code
    _sign_in(at, "S1", made.owner_code)
    assert "rs_reader" not in at.session_state
    assert not [r for r in at.radio if (r.key or "").startswith("rs_call_")]


def test_model_output_absent_before_the_unaided_read_then_shown_and_queue_moves_on(db):
    made = _study(db)
    at = _sign_in(_reader_page(), "S1", made.reader_codes["Ann"])
    assert _progress_text(at) == "Case 1 of 8, unaided"
    qid = _current_qid(at)
    text = _texts(at)
    case_id = at.subheader[0].value.split()[1]
    assert case_id in CASES
    # unaided: no model output, no truth
    assert "Model output" not in text and "model)" not in text
    assert not at.metric
    assert "her2_ihc" not in text and "HER2 truth" not in text
    assert not db.model_output_allowed(at.session_state["rs_reader"], case_id)
    # images from the cohort are on screen (the viewer's slice charts)
    assert len(at.get("plotly_chart")) >= 1

    _read(at, qid, "HER2-negative", 70, notes="smooth margin")
    assert _progress_text(at) == "Case 2 of 8, aided"
    assert at.subheader[0].value.startswith(f"Case {case_id} - aided")
    expected = _model_outputs()[case_id]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["HER2-positive (model)"] == f"{expected['p_her2']:.1%}"
    pts = at.table[0].value["points"]
    assert_allclose(pts.loc[["age", "DCE score"]].to_numpy(),
                    [round(expected["points"]["age"], 1), round(expected["points"]["DCE score"], 1)])
    # the nomogram itself is drawn with the patient's points marked
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("Total points" in json.dumps(f.get("layout", {})) + json.dumps(f.get("data", []))
               for f in figs)
    # the saved read is in the database, committed, with its content
    owner = db.owner_sign_in("S1", made.owner_code)
    reads = db.reads_table(owner)
    assert len(reads) == 1
    r = reads.iloc[0]
    assert (r["reader"], r["case_id"], r["arm"], bool(r["call_positive"])) == ("Ann", case_id, "unaided", False)
    assert_allclose(r["confidence"], 70.0)
    assert r["notes"] == "smooth margin"
    assert json.loads(r["shown"])["model_output"] is None

    qid2 = _current_qid(at)
    _read(at, qid2, "HER2-positive", 90)
    assert _progress_text(at) == "Case 3 of 8, unaided"
    reads = db.reads_table(owner)
    aided = reads[reads["arm"] == "aided"].iloc[0]
    shown = json.loads(aided["shown"])
    assert_allclose(shown["model_output"]["p_her2"], expected["p_her2"])
    assert shown["client"]["panels"] == ["probability", "nomogram_points", "roi_outline"]
    assert not db.model_output_allowed(at.session_state["rs_reader"],
                                       at.subheader[0].value.split()[1])


def test_resume_in_a_new_session_and_correct_the_last_read(db):
    made = _study(db)
    at = _sign_in(_reader_page(), "S1", made.reader_codes["Bo"])
    for _ in range(3):
        at = _read(at, _current_qid(at), "HER2-positive", 60)
    assert _progress_text(at) == "Case 4 of 8, aided"
    # a new browser session (no session state): sign in again, carry on at the next step
    at2 = _sign_in(_reader_page(), "S1", made.reader_codes["Bo"])
    assert _progress_text(at2) == "Case 4 of 8, aided"
    assert len(at2.metric) >= 1                      # the aided step shows the model again
    # the last read (step 3, unaided) cannot be corrected: the model of that case is on screen
    assert any("can no longer be corrected" in i.value for i in at2.info)
    at2 = _read(at2, _current_qid(at2), "HER2-positive", 95)
    assert _progress_text(at2) == "Case 5 of 8, unaided"
    # the aided read can: a new read supersedes it, the old one stays
    at2.radio(key=[r.key for r in at2.radio if (r.key or "").startswith("rs_ccall_")][0]).set_value("HER2-negative")
    at2.text_input(key=[t.key for t in at2.text_input if (t.key or "").startswith("rs_creason_")][0]).input("misclick")
    _button(at2, "Save the correction").click()
    _run(at2)
    owner = db.owner_sign_in("S1", made.owner_code)
    all_reads = db.reads_table(owner, effective_only=False)
    assert len(all_reads) == 5 and all_reads["superseded"].sum() == 1
    new = all_reads.iloc[-1]
    assert not bool(new["call_positive"]) and new["supersedes_id"] == all_reads.iloc[3]["read_id"]
    assert bool(all_reads.iloc[3]["call_positive"]) and all_reads.iloc[3]["arm"] == "aided"
    assert_allclose(new["confidence"], 95.0)
    assert _progress_text(at2) == "Case 5 of 8, unaided"   # a correction does not move the queue


def test_two_session_design_withholds_the_model_until_the_washout(db):
    made = _study(db, design="two_sessions", ask_low=True, name="S2")
    at = _sign_in(_reader_page(), "S2", made.reader_codes["Ann"])
    for k in range(4):
        qid = _current_qid(at)
        assert _progress_text(at) == f"Case {k + 1} of 8, unaided"
        assert not at.metric
        at.radio(key=f"rs_call_{qid}").set_value("HER2-negative")
        _button(at, "Save read").click()
        _run(at)
        assert any("HER2-low or HER2-zero" in e.value for e in at.error)   # asked, not answered
        at.radio(key=f"rs_low_{qid}").set_value("HER2-low")
        _button(at, "Save read").click()
        _run(at)
    assert _progress_text(at) == "4 of 8 read; washout"
    assert any("Washout" in i.value for i in at.info)
    assert not at.metric


def test_owner_creates_a_study_sees_codes_once_progress_export_and_analysis(db):
    _demo()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    _run(at)
    at.switch_page("app_pages/study_owner.py")
    _run(at)
    # wrong owner code refused (no study yet -> unknown study)
    at.text_input(key="rs_owner_study").input("nope")
    at.text_input(key="rs_owner_code").input("OWNER-AAAA")
    _button(at, "Open").click()
    _run(at)
    assert any("wrong owner code" in e.value for e in at.error)
    at.radio(key="rs_new_model").set_value("None")
    _run(at)
    at.text_input(key="rs_new_name").input("Owner study")
    at.number_input(key="rs_new_limit").set_value(4)
    _button(at, "Create the study").click()
    _run(at)
    codes = at.code[0].value
    assert "owner code: OWNER-" in codes and codes.count("reader ") == 3
    reader_codes = dict(l.split(": ", 1) for l in codes.splitlines() if l.startswith("reader "))
    st_ = db.study_status(db.owner_sign_in("Owner study", codes.split("owner code: ")[1].split()[0]))
    assert (st_.n_cases, len(st_.readers), st_.design) == (4, 3, "sequential")
    assert 0 < st_.n_positive < 4                       # both classes in a small study
    _button(at, "I have saved the codes - hide them").click()
    _run(at)
    assert not at.code                                  # shown once
    # fill every queue through the service, then analyse on the page
    for rname, code in reader_codes.items():
        r = db.sign_in("Owner study", code.strip())
        k = 0
        while (n := db.next_case(r)).status == "case":
            db.save_read(r, n.case.queue_item_id, call_positive=bool(k % 2), confidence=30 + 5 * k)
            k += 1
    _run(at)
    prog = _frame(at, "done")
    assert list(prog["done"]) == ["8/8"] * 3
    _button(at, "Prepare the export").click()
    _run(at)
    assert at.session_state["rs_export"][2].count("\n") == 1 + 24
    _button(at, "Run the analysis").click()
    _run(at)
    per = _frame(at, "AUC")
    assert len(per) == 6 and set(per["arm"]) == {"unaided", "aided"}
    mrmc = _frame(at, "covariance")
    ref = db.analyze(db.owner_sign_in("Owner study", codes.split("owner code: ")[1].split()[0]))
    rr = mrmc[(mrmc["covariance"] == "jackknife") & (mrmc["analysis"] == "RRRC")].iloc[0]
    assert_allclose(rr["p"], round(ref["mrmc"]["jackknife"]["rrrc"]["p_value"], 4))
    assert len(at.get("plotly_chart")) >= 4


# ----------------------------------------------------------------------------- with a model bundle
@pytest.fixture(scope="module")
def tiny_bundle(tiny_cohort_ro, tmp_path_factory):
    """A random-init bundle trained on the tiny synthetic cohort (as tests/explain builds it)."""
    pytest.importorskip("timm")
    pytest.importorskip("pytorch_grad_cam")
    import pandas as pd
    import torch
    from her2core.bundle import save_bundle
    from her2core.cohort import read_cohort
    from her2core.features.config import FeatureConfig
    from her2core.features.extract import FeatureExtractor
    from her2core.models.deepscore import DeepScore
    from her2core.models.nomogram_model import StackedNomogram
    clinical = ["age", "er", "enhancement_curve"]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # MRI only: the app's single-case adapter takes one ROI (on DCE) for 3-D sequences
        cfg = FeatureConfig(sequences=["T1", "DCE"],
                            backbones={"T1": ["resnet18"], "DCE": ["resnet18"]},
                            default_weights="random-init", input_size=32, device="cpu", num_workers=0,
                            margin_px=3)
        cohort = read_cohort(tiny_cohort_ro)
        F, errors = FeatureExtractor(cfg).extract_cohort(cohort)
        assert not errors
        y = cohort.labels("her2").loc[F.index].to_numpy()
        X = pd.concat([F, cohort.table.loc[F.index, clinical]], axis=1)
        scorer = DeepScore(block="resnet18", univariate=None, corr_threshold=None, lasso=False, C=0.05)
        model = StackedNomogram(scorers=[("resnet18", scorer)], clinical_predictors=clinical,
                                clinical_selection="none", cv=2, C=1.0,
                                score_selection="force").fit(X, y)
        path = save_bundle(tmp_path_factory.mktemp("rs_bundle") / "b", {"her2": model},
                           model_card={"name": "reader-study test"}, feature_config=cfg.to_dict(),
                           backbones=F.attrs["provenance"]["backbones"],
                           backgrounds={"her2": model.out_of_fold_second_level(X)})
    finally:
        torch.set_num_threads(n)
    return path


@pytest.mark.slow
def test_aided_arm_with_a_bundle_shows_probability_nomogram_shap_and_gradcam(db, tiny_bundle,
                                                                              tiny_cohort_ro, monkeypatch):
    from webapp import reader_study as R
    from webapp import services as S
    from her2core.reader_study.inputs import cases_from_cohort
    monkeypatch.setenv("HER2_BUNDLE", str(tiny_bundle))
    S.reset_for_tests()
    try:
        root = str(tiny_cohort_ro)
        ids = R.pick_cases(root, "", 2, 0)
        preds, info = R.predictions_from_bundle(root, ids)
        assert info["bundle_checksum"].startswith("sha256:") and info["random_init"]
        for cid in ids:
            rec = preds[cid]
            assert 0.0 < rec["p_her2"] < 1.0
            # the stacked model's SHAP contributions (log-odds) over its second-level inputs
            assert len(rec["shap"]) >= 2 and all(np.isfinite(list(rec["shap"].values())))
            # this bundle has no nomogram: no points are made up
            assert ("points" in rec) == ("nomogram" in info)
        made = db.create_study("Bundle study", cases_from_cohort(root, ids, preds),
                               [{"name": "Eve", "level": "senior", "years": 20}], seed=1,
                               model_info=info, cohort_root=root)
        at = _sign_in(_reader_page(), "Bundle study", made.reader_codes["Eve"])
        assert not at.metric and "Model output" not in _texts(at)
        case_id = at.subheader[0].value.split()[1]
        _read(at, _current_qid(at), "HER2-positive", 65)
        assert _progress_text(at) == "Case 2 of 4, aided"
        assert any("random-initialised" in w.value for w in at.warning)   # banner with model output
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["HER2-positive (model)"] == f"{preds[case_id]['p_her2']:.1%}"
        md = [m.value for m in at.markdown]
        assert "#### Grad-CAM" in md
        assert "#### SHAP contributions (log-odds)" in md
        assert any(type(x).__name__ == "Image" for x in at.main)         # the Grad-CAM overlays
        assert not [i.value for i in at.info if "No Grad-CAM" in i.value]
        _read(at, _current_qid(at), "HER2-positive", 75)
        owner = db.owner_sign_in("Bundle study", made.owner_code)
        aided = db.reads_table(owner).query("arm == 'aided'").iloc[0]
        panels = json.loads(aided["shown"])["client"]["panels"]
        assert panels == ["probability", "shap", "gradcam", "roi_outline"]
    finally:
        S.reset_for_tests()


def test_signed_in_reader_sees_only_the_reading_screen(db):
    """While a reader is signed in, no other page (case labels, model output) is reachable."""
    _demo()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    at.session_state["rs_reader"] = object()          # any truthy session locks the navigation
    at.switch_page("app_pages/case.py")
    at.run()
    # the Case page was asked for (as a direct URL would): the navigation holds only the
    # reading screen, so that is what opens
    assert not at.exception
    assert [t.value for t in at.title] == ["Reader study"]


# ----------------------------------------------------------------------------- issue 15 / 17 (reader screens)
def _png_pixels(fig_json) -> np.ndarray:
    import base64
    import io

    from PIL import Image
    src = fig_json["data"][0]["source"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def _slice_figures(at) -> list[dict]:
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return [f for f in figs if f.get("data") and f["data"][0].get("type") == "image"]


ROI_GREEN = (0, 255, 120)


def test_reader_screen_has_no_dead_controls_and_outlines_the_scored_roi_when_aided(db):
    """Issue 17 item 13: the reader saw 'Draw the ROI on' and the opacity sliders (which do
    nothing for them) and never the ROI the model scored; item 11: the reader's nomogram
    had black axes on the dark theme."""
    made = _study(db)
    at = _sign_in(_reader_page(), "S1", made.reader_codes["Ann"])
    labels = [w.label for w in list(at.slider) + list(at.selectbox)]
    assert "Slice" in labels and "Zoom" in labels
    assert not {"Mask opacity", "Heat-map opacity", "Draw the ROI on"} & set(labels)
    # unaided: no outline (the scored region belongs to the model output)
    slices = _slice_figures(at)
    assert slices and not any((_png_pixels(f) == ROI_GREEN).all(-1).any() for f in slices)
    assert "region the model scored" not in _texts(at)
    _read(at, _current_qid(at), "HER2-negative", 70)
    assert _progress_text(at) == "Case 2 of 8, aided"
    slices = _slice_figures(at)
    green = [int((_png_pixels(f) == ROI_GREEN).all(-1).sum()) for f in slices]
    assert max(green) > 0, green                        # the outline is on the image
    assert "Green outline: the region the model scored (on DCE)" in _texts(at)
    # the nomogram: no black ink, light text
    nomo = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    nomo = [f for f in nomo if "Total points" in json.dumps(f.get("layout", {})) + json.dumps(f.get("data", []))]
    assert nomo
    inks = {str(t.get(k, {}).get("color", "")).lower() for t in nomo[0]["data"]
            for k in ("line", "marker", "textfont")}
    assert not inks & {"black", "#000", "#000000"}, inks
    assert nomo[0]["layout"]["font"]["color"] == "#e6e6e6"
    _read(at, _current_qid(at), "HER2-positive", 90)
    owner = db.owner_sign_in("S1", made.owner_code)
    aided = db.reads_table(owner).query("arm == 'aided'").iloc[0]
    assert "roi_outline" in json.loads(aided["shown"])["client"]["panels"]


def _study_with_low(svc, ask_low, name):
    from her2core.reader_study.inputs import cases_from_cohort
    outs = _model_outputs()
    for i, cid in enumerate(CASES):
        outs[cid]["p_low"] = 0.2 + 0.1 * i
    return svc.create_study(name, cases_from_cohort(_demo(), CASES, outs),
                            [{"name": "Ann", "level": "junior", "years": 2}], seed=7,
                            ask_her2_low=ask_low, cohort_root=str(_demo()),
                            model_info={"source": "test"})


def test_her2_low_model_output_only_where_asked_and_its_confidence_is_saved(db):
    """Issue 17 item 13: "HER2-low vs zero (model)" was shown in studies that do not ask
    about HER2-low; issue 15: a HER2-low read carries a confidence."""
    plain = _study_with_low(db, False, "Plain")
    at = _sign_in(_reader_page(), "Plain", plain.reader_codes["Ann"])
    assert not [s for s in at.slider if (s.key or "").startswith("rs_lowconf_")]
    _read(at, _current_qid(at), "HER2-negative", 60)
    metrics = {m.label for m in at.metric}
    assert "HER2-positive (model)" in metrics and "HER2-low vs zero (model)" not in metrics

    low = _study_with_low(db, True, "Low")
    at = _sign_in(_reader_page(), "Low", low.reader_codes["Ann"])
    qid = _current_qid(at)
    at.radio(key=f"rs_call_{qid}").set_value("HER2-negative")
    at.radio(key=f"rs_low_{qid}").set_value("HER2-low")
    at.slider(key=f"rs_lowconf_{qid}").set_value(85)
    _button(at, "Save read").click()
    _run(at)
    assert _progress_text(at) == "Case 2 of 8, aided"
    assert "HER2-low vs zero (model)" in {m.label for m in at.metric}
    reads = db.reads_table(db.owner_sign_in("Low", low.owner_code))
    r = reads.iloc[0]
    assert bool(r["her2_low_call"]) and r["her2_low_confidence"] == 85.0
    assert_allclose(r["her2_low_rating"], 50 + 85 / 2)


def test_reload_resumes_the_reader_from_a_url_token_until_sign_out(db):
    """Issue 17 item 13: a reload signed the reader out and showed the full navigation."""
    made = _study(db)
    code = made.reader_codes["Bo"]
    at = _sign_in(_reader_page(), "S1", code)
    _read(at, _current_qid(at), "HER2-positive", 60)
    assert _progress_text(at) == "Case 2 of 8, aided"
    token = at.query_params["resume"]
    token = token[0] if isinstance(token, list) else token
    assert token and code not in token and "Bo" not in token
    assert not any(c in token for c in CASES)
    # a reload: a new session with nothing but the URL
    again = AppTest.from_file(APP, default_timeout=TIMEOUT)
    again.query_params["resume"] = token
    _run(again)
    assert again.session_state["rs_reader"].reader_name == "Bo"
    assert _progress_text(again) == "Case 2 of 8, aided"      # the same step, model shown
    assert len(again.metric) >= 1
    assert not again.text_input                                # no sign-in form
    # the navigation of the resumed session holds the reading screen only
    with pytest.raises(ValueError, match=r"Known pages: \['[^,]*app_pages/reader_study.py'\]"):
        again.switch_page("app_pages/case.py")
    # sign-out revokes the token: the same URL now shows the sign-in form
    _button(again, "Sign out").click()
    _run(again)
    assert "rs_reader" not in again.session_state
    third = AppTest.from_file(APP, default_timeout=TIMEOUT)
    third.query_params["resume"] = token
    _run(third)
    assert "rs_reader" not in third.session_state
    third.switch_page("app_pages/reader_study.py")
    _run(third)
    assert third.text_input(key="rs_signin_code") is not None


def _owner_page(study, owner_code) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    _run(at)
    at.switch_page("app_pages/study_owner.py")
    _run(at)
    at.text_input(key="rs_owner_study").input(study)
    at.text_input(key="rs_owner_code").input(owner_code)
    _button(at, "Open").click()
    return _run(at)


def _downloads(at) -> dict:
    return {d.proto.label: d for d in at.get("download_button")}


def test_owner_interim_analysis_of_a_partly_read_study_and_its_report(db):
    """Issue 17 item 4: with two reads saved the analysis failed (TypeError in level_figure)
    and the figures and download disappeared; issue 15: the owner's report as HTML / PDF."""
    made = _study(db)
    r = db.sign_in("S1", made.reader_codes["Ann"])
    for k in range(2):
        n = db.next_case(r)
        db.save_read(r, n.case.queue_item_id, call_positive=bool(k), confidence=70)
    at = _owner_page("S1", made.owner_code)
    _button(at, "Run the analysis").click()
    _run(at)
    warn = " ".join(w.value for w in at.warning)
    assert "Interim analysis" in warn and "14 reads are still missing" in warn
    assert "Ann: 3 unaided, 3 aided, Bo: 4 unaided, 4 aided" in warn
    miss = [d.value for d in at.dataframe if list(d.value.columns) == ["reader", "level", "unaided",
                                                                       "aided", "status"]]
    assert miss and miss[0].set_index("reader").loc["Bo", "aided"] == 4
    assert len(at.get("plotly_chart")) >= 4                    # the figures are drawn
    assert "Download the analysis (JSON)" in _downloads(at)
    _button(at, "Prepare the report").click()
    _run(at)
    dl = _downloads(at)
    assert {"Download the report (HTML)", "Download the report (PDF)"} <= set(dl)
    _, html, pdf = at.session_state["rs_report"]
    assert "14 reads are still missing" in html and pdf[:5] == b"%PDF-"
    # planning needs an MRMC analysis: with one reader so far it says why, no traceback
    _button(at, "Plan the study").click()
    _run(at)
    assert any("no OR analysis yet" in e.value for e in at.error)


def test_owner_plans_a_sample_size_from_the_studys_variance_components(db):
    from her2core.reader_study import report as RP
    cases = [{"case_id": f"C{i}", "her2": i % 2, "model_output": {"p_her2": 0.3 + 0.05 * i}}
             for i in range(10)]
    made = db.create_study("S1", cases, [{"name": n, "level": lv} for n, lv in
                                         (("Ann", "junior"), ("Bo", "senior"), ("Cy", "junior"))],
                           seed=5)
    for name, code in made.reader_codes.items():
        r = db.sign_in("S1", code)
        k = 0
        while (n := db.next_case(r)).status == "case":
            db.save_read(r, n.case.queue_item_id, call_positive=bool(k % 2),
                         confidence=(20 + 9 * k + (7 if name == "Bo" else 0)) % 100)
            k += 1
    at = _owner_page("S1", made.owner_code)
    _button(at, "Run the analysis").click()
    _run(at)
    assert not [w for w in at.warning if "Interim" in w.value]
    at.number_input(key="rs_plan_effect").set_value(0.1)
    at.text_input(key="rs_plan_readers").input("4, 8")
    at.text_input(key="rs_plan_cases").input("100, 300")
    _button(at, "Plan the study").click()
    _run(at)
    assert not at.error, [e.value for e in at.error]
    plan = next(d.value for d in at.dataframe
                if list(d.value.columns) == ["readers", "cases", "power", "note"])
    ref = RP.sample_size_plan(at.session_state["rs_result"][1], effect=0.1, readers=[4, 8])
    assert plan["readers"].tolist() == [4, 8]
    assert plan["cases"].tolist() == ref["cases"].tolist()
    grid = _frame(at, "300 cases")
    assert grid["readers"].tolist() == [4, 8]
    assert (grid["300 cases"] >= grid["100 cases"]).all()
