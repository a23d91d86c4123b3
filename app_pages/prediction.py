"""Prediction: probability with its interval, nomogram, SHAP, decision curve and Grad-CAM.

Layout for a laptop screen (1366 x 768): the headline (probability, interval, three-way
call) comes first, beside the task, threshold and what-if controls; what the model reads
and the Run button sit above it only until a prediction exists.
"""
import streamlit as st

from webapp import clinical as clin
from webapp import predict as P
from webapp import widgets as W
from webapp.state import init_state, require

init_state()
st.title("Prediction")
W.disclaimer()

case = require("case", "Open a case on the Case page first (a demo case or your own files).",
               "app_pages/case.py", "Go to the Case page")
W.model_output_banner()
head = st.container(key="prediction_head")     # the headline, filled once a prediction exists

part = P.cached_part(case)
run_drawn = False
if part is None:
    if not P.required_inputs_panel(case):
        st.page_link("app_pages/case.py", label="Go to the Case page", icon=":material/arrow_forward:")
        st.stop()
    run = st.button("Run prediction", type="primary", key="run_prediction",
                    icon=":material/play_arrow:")
    run_drawn = True
    failure = None
    if run:
        with st.status("Running the networks on the case ...", expanded=False) as status:
            bar = st.progress(0.0, text="starting")

            def progress(done, total, message=""):
                bar.progress(min(max(done / max(total, 1), 0.0), 1.0), text=message)

            try:
                part = P.run_image_part(case, progress=progress)
                status.update(label=f"Networks done in {part.timings.get('total_s', 0):.1f} s",
                              state="complete")
            except Exception as err:  # noqa: BLE001 - shown in the page, visible without expanding
                status.update(label="The prediction could not run", state="error")
                part = None
                failure = err
        if failure is not None:
            W.show_error(failure)
            st.stop()
    if part is None:
        st.info("Press **Run prediction** to run the model on this case.")
        st.stop()
st.session_state["prediction"] = part
rois = W.case_rois(case)

with head:
    h_prob, h_ctl = st.columns([2, 3], gap="medium")
    with h_ctl:
        task = P.task_selector("pred_task")
        st.session_state["threshold"] = st.slider("Decision threshold", 0.05, 0.95,
                                                  float(st.session_state["threshold"]), 0.01,
                                                  key="pred_threshold")
        with st.expander("What if: clinical values", expanded=False):
            st.caption("Changing a value recomputes the second level only (the networks are "
                       "not re-run).")
            fields = P.S.current_predictor().required_inputs().clinical.get(task) or None
            edited = W.clinical_inputs(st.session_state["clinical"], key=f"wi_{case.key}",
                                       columns=3, fields=tuple(fields) if fields else None)
            if edited != st.session_state["clinical"] and not clin.validate(edited):
                st.session_state["clinical"] = edited
        c_run, c_info = st.columns([1, 2])
        if not run_drawn:     # a repeat is served from the cache at once
            c_run.button("Run prediction", key="run_prediction", icon=":material/refresh:",
                         help="Same case and ROI: the stored result is shown at once.")
        c_info.caption(f"Case {case.case_id} - ROI on " + ", ".join(
            f"{s} ({int(m.sum())} voxels)" for s, m in rois.items()))
    try:
        cp = P.run_clinical_part(part, st.session_state["clinical"], task)
        three = P.three_way(part, st.session_state["clinical"])
    except Exception as err:  # noqa: BLE001
        W.show_error(err)
        st.stop()
    with h_prob:
        P.probability_panel(cp, task, three=three)

P.nomogram_panel(cp)
r1a, r1b = st.columns(2)
with r1a:
    P.shap_panel(cp)
with r1b:
    with W.user_errors():
        P.dca_panel(task, st.session_state["threshold"])
P.gradcam_panel(case, part, task)
for note in cp.notes:
    if "nomogram" not in note and "SHAP" not in note:
        st.caption(note)
st.caption(f"Second level recomputed in {cp.seconds * 1000:.1f} ms; networks "
           f"{part.timings.get('total_s', 0):.1f} s (stored for this case and ROI).")
if not run_drawn:
    with st.expander("What this model reads", expanded=False):
        P.required_inputs_panel(case)
st.page_link("app_pages/export.py", label="Export this case as a report", icon=":material/picture_as_pdf:")
