"""Prediction: probability, nomogram, SHAP, decision curve and Grad-CAM on one screen."""
import streamlit as st

from webapp.state import init_state
from webapp import clinical as clin
from webapp import predict as P
from webapp import widgets as W
from webapp.state import require

init_state()
st.title("Prediction")
W.disclaimer()

case = require("case", "Open a case on the Case page first (a demo case or your own files).",
               "pages/case.py", "Go to the Case page")
seq, mask = W.current_mask(case)
if mask is None:
    st.info("Draw or load the tumour ROI on the Case page first: the networks look inside it.")
    st.page_link("pages/case.py", label="Go to the Case page", icon=":material/arrow_forward:")
    st.stop()
ad, why = P.adapter()
if ad is None:
    st.info(f"Prediction is not available in this build: {why}", icon=":material/block:")
    st.stop()
W.model_output_banner()

rh = P.roi_hash(seq, mask)
part = st.session_state.get("prediction")
fresh = part is not None and part.case_key == case.key and part.roi_hash == rh
c_run, c_info = st.columns([1, 4])
run = c_run.button("Run prediction", type="primary", key="run_prediction",
                   icon=":material/play_arrow:")
info_slot = c_info.empty()
if run:
    with st.status("Running the networks on the case ...", expanded=False) as status:
        bar = st.progress(0.0, text="starting")

        def progress(frac, text=""):
            bar.progress(min(max(float(frac), 0.0), 1.0), text=text)

        try:
            part = P.run_image_part(case, seq, mask, progress=progress)
            st.session_state["prediction"] = part
            fresh = True
            status.update(label=f"Networks done in {part.timings.get('total_s', 0):.1f} s",
                          state="complete")
        except Exception as err:  # noqa: BLE001 - shown in the page
            status.update(label="The prediction failed", state="error")
            W.show_error(err)
            st.stop()
info_slot.caption(f"Case {case.case_id} - ROI on {seq}: {int(mask.sum())} voxels"
                  + ("" if fresh else " - not run yet for this ROI"))
if not fresh:
    st.info("Press **Run prediction** to run the loaded bundle on this case.")
    st.stop()

left, right = st.columns([1, 3])
with left:
    with st.expander("What if: clinical values", expanded=True):
        st.caption("Changing a value recomputes the nomogram only (the networks are not re-run).")
        edited = W.clinical_inputs(st.session_state["clinical"], key=f"wi_{case.key}", columns=1,
                                   fields=ad.clinical_fields() or None)
        if edited != st.session_state["clinical"] and not clin.validate(edited):
            st.session_state["clinical"] = edited
    st.session_state["threshold"] = st.slider("Decision threshold", 0.05, 0.95,
                                              float(st.session_state["threshold"]), 0.01,
                                              key="pred_threshold")
try:
    cp = P.run_clinical_part(part, st.session_state["clinical"])
except Exception as err:  # noqa: BLE001
    W.show_error(err)
    st.stop()
with left:
    P.probability_panel(cp)
with right:
    r1a, r1b = st.columns(2)
    with r1a:
        P.nomogram_panel(cp)
    with r1b:
        P.shap_panel(cp)
    r2a, r2b = st.columns(2)
    with r2a:
        with W.user_errors():
            P.dca_panel(ad, st.session_state["threshold"])
    with r2b:
        P.gradcam_panel(case, part, seq, mask)
st.page_link("pages/export.py", label="Export this case as a report", icon=":material/picture_as_pdf:")
