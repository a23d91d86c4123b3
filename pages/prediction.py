"""Prediction: probability with its interval, nomogram, SHAP, decision curve and Grad-CAM."""
import streamlit as st

from webapp import clinical as clin
from webapp import predict as P
from webapp import widgets as W
from webapp.state import init_state, require

init_state()
st.title("Prediction")
W.disclaimer()

case = require("case", "Open a case on the Case page first (a demo case or your own files).",
               "pages/case.py", "Go to the Case page")
W.model_output_banner()
if not P.required_inputs_panel(case):
    st.page_link("pages/case.py", label="Go to the Case page", icon=":material/arrow_forward:")
    st.stop()

part = P.cached_part(case)
c_run, c_info = st.columns([1, 4])
run = c_run.button("Run prediction", type="primary", key="run_prediction",
                   icon=":material/play_arrow:")
failure = None
if run and part is None:
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
if part is not None:
    st.session_state["prediction"] = part
rois = W.case_rois(case)
c_info.caption(f"Case {case.case_id} - ROI on " + ", ".join(
    f"{s} ({int(m.sum())} voxels)" for s, m in rois.items()))
if part is None:
    st.info("Press **Run prediction** to run the model on this case.")
    st.stop()

task = P.task_selector("pred_task")
top_l, top_r = st.columns([1, 2])
with top_r:
    with st.expander("What if: clinical values", expanded=False):
        st.caption("Changing a value recomputes the second level only (the networks are not re-run).")
        fields = P.S.current_predictor().required_inputs().clinical.get(task) or None
        edited = W.clinical_inputs(st.session_state["clinical"], key=f"wi_{case.key}", columns=3,
                                   fields=tuple(fields) if fields else None)
        if edited != st.session_state["clinical"] and not clin.validate(edited):
            st.session_state["clinical"] = edited
    st.session_state["threshold"] = st.slider("Decision threshold", 0.05, 0.95,
                                              float(st.session_state["threshold"]), 0.01,
                                              key="pred_threshold")
try:
    cp = P.run_clinical_part(part, st.session_state["clinical"], task)
except Exception as err:  # noqa: BLE001
    W.show_error(err)
    st.stop()
with top_l:
    P.probability_panel(cp, task)
r1a, r1b = st.columns(2)
with r1a:
    P.nomogram_panel(cp)
with r1b:
    P.shap_panel(cp)
r2a, r2b = st.columns(2)
with r2a:
    with W.user_errors():
        P.dca_panel(task, st.session_state["threshold"])
with r2b:
    P.gradcam_panel(case, part, task)
for note in cp.notes:
    if "nomogram" not in note and "SHAP" not in note:
        st.caption(note)
st.page_link("pages/export.py", label="Export this case as a report", icon=":material/picture_as_pdf:")
