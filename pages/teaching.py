"""Teaching: a guided walk through a synthetic case; phenotype sliders regenerate it."""
import streamlit as st

from webapp.state import init_state
from webapp import predict as P
from webapp import services as S
from webapp import widgets as W

init_state()
st.title("Teaching")
W.disclaimer()
st.markdown("A **synthetic** tumour with a known phenotype. Move the sliders: the case is "
            "regenerated (same seed, same anatomy), and the images, the ROI, the points and the "
            "prediction move with it.")

t = st.session_state["teach"]
c = st.columns(5)
t["size_mm"] = c[0].slider("Size (mm)", 8.0, 50.0, float(t["size_mm"]), 1.0, key="teach_size")
t["rim"] = c[1].slider("Rim enhancement", 0.0, 1.0, float(t["rim"]), 0.05, key="teach_rim")
t["edema"] = c[2].slider("Peritumoral oedema", 0.0, 1.0, float(t["edema"]), 0.05, key="teach_edema")
t["irregularity"] = c[3].slider("Margin irregularity", 0.0, 1.0, float(t["irregularity"]), 0.05,
                                key="teach_irr")
t["seed"] = c[4].number_input("Seed", 0, 999, int(t["seed"]), key="teach_seed")

with W.user_errors():
    case = S.teaching_case(t["seed"], t["size_mm"], t["rim"], t["edema"], t["irregularity"])
    st.caption(case.note)
    mask = None
    if "mask" in case.files:
        mask = ("DCE", S.load_mask_array(case, "DCE", case.files["mask"], case.hashes["mask"]))

    step1, step2, step3, step4, step5 = st.tabs(
        ["1 Sequences", "2 The ROI", "3 Features become points", "4 Reading the decision curve",
         "5 Prediction and Grad-CAM"])
    with step1:
        st.markdown(
            "- **DCE** (early post-contrast): the tumour enhances; a *rim* pattern (bright border, "
            "darker centre) is more frequent in HER2-positive tumours.\n"
            "- **T1** (pre-contrast): fat is bright, the tumour intermediate.\n"
            "- **T2**: a bright halo around the tumour is *peritumoral oedema*.\n"
            "Use the view buttons to see the tumour in three planes; the letters give the "
            "patient's orientation (radiological convention).")
        W.viewer(case, key="teach1", draw=False, mask=mask)
    with step2:
        st.markdown("The **region of interest** (green) outlines the tumour on the DCE grid. "
                    "Radiomics and the deep networks only look inside (or just around) it, so a "
                    "careless ROI changes the features. On the Case page you draw it yourself.")
        if mask is not None:
            vol = mask[1].sum()
            _, can = S.canonical_for(case, "DCE")
            sx, sy, sz = can.spacing
            st.metric("ROI volume", f"{vol * sx * sy * sz / 1000:.2f} mL", help=f"{int(vol)} voxels")
    with step3:
        st.markdown("Each predictor is mapped to **points** on its own axis of the nomogram; the "
                    "points add up to a total, which maps to a probability. A network's output "
                    "enters as one predictor (its *D-score*).")
        P.teaching_points(case, mask)
    with step4:
        st.markdown("A **decision curve** plots the *net benefit* of acting on the model against "
                    "the threshold probability at which you would act (e.g. order a confirmatory "
                    "test). The model is useful where its curve lies above both *treat all* and "
                    "*treat none* (zero).")
        P.teaching_decision_curve()
    with step5:
        P.teaching_prediction(case, mask)
