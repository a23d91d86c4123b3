"""Home: what the tool is and is not, which bundle / weights are loaded, CUDA, where to start."""
import streamlit as st

from webapp.state import init_state

from her2core import DISCLAIMER
from webapp import services as S
from webapp import widgets as W

init_state()
st.title("HER2 second-opinion workbench")
st.error(f"**{DISCLAIMER}**", icon=":material/gpp_maybe:")
st.markdown(
    "This workbench predicts the **HER2 status** of a breast cancer (HER2-positive vs negative, "
    "and HER2-low vs HER2-zero) from MRI sequences or an ultrasound image together with clinical "
    "data, and shows *why*: the probability, the nomogram points, SHAP contributions, the decision "
    "curve and Grad-CAM maps, side by side. It reproduces published pipelines (deep features + "
    "radiomics + clinical nomograms) on your own cohort and is meant for **research and teaching**.\n\n"
    "It is **not** a diagnostic device, has not been validated for clinical use, and its output "
    "must never replace immunohistochemistry / in-situ hybridisation.")

env = S.environment()
c1, c2 = st.columns(2)
with c1:
    st.subheader("Model")
    with W.user_errors():
        b = S.current_bundle()
        if b is None:
            st.warning(S.NO_BUNDLE, icon=":material/block:")
        else:
            W.model_card(b)
            if b.weights:
                st.table({"backbone": list(b.weights), "weights": list(b.weights.values())})
            W.model_output_banner(b)
            st.caption("Choose another model (or upload one) in the sidebar.")
with c2:
    st.subheader("Compute")
    if env.get("cuda"):
        st.success(f"CUDA in use: {env.get('device')}", icon=":material/memory:")
    else:
        st.info("CUDA is not available: networks run on the CPU.", icon=":material/memory:")
    st.caption(f"torch {env.get('torch')} - streamlit {env.get('streamlit')} - her2core {env.get('her2core')}")

st.subheader("Where to start")
st.page_link("app_pages/case.py", label="Case - open a demo case or upload one, draw the ROI",
             icon=":material/radiology:")
st.page_link("app_pages/prediction.py", label="Prediction - probability, nomogram, SHAP, decision curve, Grad-CAM",
             icon=":material/analytics:")
st.page_link("app_pages/cohort.py", label="Cohort - evaluate a bundle or train a new one",
             icon=":material/groups:")
st.page_link("app_pages/teaching.py", label="Teaching - a guided synthetic case", icon=":material/school:")
st.page_link("app_pages/export.py", label="Export - one-case report (PDF, HTML, JSON)",
             icon=":material/picture_as_pdf:")
st.page_link("app_pages/reader_study.py", label="Reader study - read the cases of a study with "
             "your reader code, without and with the model", icon=":material/assignment_ind:")
st.page_link("app_pages/study_owner.py", label="Study owner - set up a reader study, follow it "
             "and analyse the reads (MRMC)", icon=":material/admin_panel_settings:")
