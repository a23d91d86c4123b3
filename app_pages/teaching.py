"""Teaching: a guided walk through a synthetic case; phenotype sliders regenerate it, and the
teaching model (her2core.teaching, trained where these phenotypes carry the signal) scores it."""
import streamlit as st

from her2core import teaching as T
from webapp.state import DEFAULTS, init_state
from webapp import services as S
from webapp import widgets as W

init_state()
st.title("Teaching")
W.disclaimer()
st.markdown("A **synthetic** tumour with a known phenotype. Move the sliders: the case is "
            "regenerated (same seed, same anatomy), and the images, the ROI, the measured "
            "features, their points and the prediction move with it.")

START = {k: v for k, v in DEFAULTS["teach"][0].items() if k != "seed"}


@st.cache_resource(show_spinner="Loading the teaching model ...")
def _model() -> T.TeachingModel:
    return T.load_teaching_model()


@st.cache_data(show_spinner=False, max_entries=64)
def _features(seed: int, size_mm: float, rim: float, edema: float, irregularity: float) -> dict:
    """The teaching features measured on the regenerated case's images and ROI."""
    case = S.teaching_case(seed, size_mm, rim, edema, irregularity)
    img_dce, can = S.canonical_for(case, "DCE")
    img_t2, _ = S.canonical_for(case, "T2")
    m = S.load_mask_array(case, "DCE", case.files["mask"], case.hashes["mask"])
    return T.case_features({"DCE": img_dce, "T2": img_t2}, can.from_canonical(m))


def _points_table(now: T.TeachingPrediction, start: T.TeachingPrediction) -> dict:
    names = list(now.points)
    return {"predictor": [T.FEATURE_LABELS.get(n, n) for n in names],
            "measured now": [round(now.features[n], 3) for n in names],
            "points now": [round(now.points[n], 1) for n in names],
            "points at the start": [round(start.points[n], 1) for n in names],
            "change": [f"{now.points[n] - start.points[n]:+.1f}" for n in names]}


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
    model = _model()
    now = model.predict(_features(t["seed"], t["size_mm"], t["rim"], t["edema"], t["irregularity"]))
    start = model.predict(_features(t["seed"], START["size_mm"], START["rim"], START["edema"],
                                    START["irregularity"]))

    step1, step2, step3, step4, step5 = st.tabs(
        ["1 Sequences", "2 The ROI", "3 Features become points", "4 Reading the decision curve",
         "5 Prediction"])
    with step1:
        st.markdown(
            "- **DCE** (early post-contrast): the tumour enhances; a *rim* pattern (bright border, "
            "darker centre) is more frequent in HER2-positive tumours.\n"
            "- **T1** (pre-contrast): fat is bright, the tumour intermediate.\n"
            "- **T2**: a bright halo around the tumour is *peritumoral oedema*, also more "
            "frequent in HER2-positive tumours, which tend to be larger.\n"
            "Use the view buttons to see the tumour in three planes; the letters give the "
            "patient's orientation (radiological convention).")
        W.viewer(case, key="teach1", draw=False, mask=mask)
    with step2:
        st.markdown("The **region of interest** (green) outlines the tumour on the DCE grid. "
                    "The features are measured inside (or just around) it, so a careless ROI "
                    "changes them. On the Case page you draw it yourself.")
        if mask is not None:
            vol = mask[1].sum()
            _, can = S.canonical_for(case, "DCE")
            sx, sy, sz = can.spacing
            st.metric("ROI volume", f"{vol * sx * sy * sz / 1000:.2f} mL", help=f"{int(vol)} voxels")
    with step3:
        st.markdown(
            "Three features are **measured on the images**, not read from the sliders: the ROI's "
            "diameter, the *rim index* (DCE intensity of the ROI's outer shell over its core) and "
            "the *oedema index* (T2 just outside the ROI over the tissue further out). Each is "
            "mapped to **points** on its own axis of the nomogram; the points add up to a total, "
            "which maps to a probability. The table shows which points moved since the starting "
            f"case ({START['size_mm']:.0f} mm, rim {START['rim']:.1f}, oedema {START['edema']:.1f}).")
        fig = model.nomogram_figure(now)
        fig.update_layout(height=420, margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, key="teach_nomogram", config={"displaylogo": False})
        st.dataframe(_points_table(now, start), hide_index=True, key="teach_points")
        if now.out_of_range:
            st.caption("Outside the teaching cohort's range (points extrapolated): "
                       + ", ".join(T.FEATURE_LABELS.get(n, n) for n in now.out_of_range))
    with step4:
        st.markdown("A **decision curve** plots the *net benefit* of acting on the model against "
                    "the threshold probability at which you would act (e.g. order a confirmatory "
                    "test). The model is useful where its curve lies above both *treat all* and "
                    "*treat none* (zero). This one is the teaching model's, on held-out synthetic "
                    "cases.")
        thr = st.slider("Threshold probability", 0.05, 0.95, 0.35, 0.05, key="teach_thr")
        dfig = model.decision_curve_figure()
        if dfig is not None:
            dfig.add_vline(x=thr, line=dict(color="#e4572e", dash="dash"),
                           annotation_text=f"threshold {thr:.2f}")
            dfig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10))
            st.plotly_chart(dfig, key="teach_dca", config={"displaylogo": False})
        st.caption("At this threshold you accept treating (thr / (1 - thr)) false positives per "
                   "true positive; net benefit = TP/n - FP/n x thr / (1 - thr).")
    with step5:
        c1, c2 = st.columns([1, 2])
        with c1:
            st.metric("HER2-positive (teaching model)", f"{now.probability:.1%}",
                      delta=f"{100 * (now.probability - start.probability):+.1f} percentage points "
                            "since the start")
            st.caption(f"Total points {now.total_points:.1f} (start: {start.total_points:.1f}).")
        with c2:
            moved = sorted(now.points, key=lambda n: -abs(now.points[n] - start.points[n]))
            st.markdown("**What moved the prediction**\n\n" + "\n".join(
                f"- {T.FEATURE_LABELS.get(n, n)}: {start.points[n]:.1f} -> {now.points[n]:.1f} "
                f"points" for n in moved))
        tr = model.training
        st.info(
            f"The teaching model was fitted on {tr.get('n')} synthetic cases made with known, "
            "deliberately large effects: HER2-positive tumours larger, with stronger rim "
            "enhancement and oedema; margin irregularity was drawn the same in both groups, so "
            "it moves the images but not the prediction. Held-out AUC "
            f"{tr.get('heldout_auc', float('nan')):.2f}. Real effects are much weaker; a real "
            "model (Prediction page) also uses deep-network scores and clinical values.",
            icon=":material/school:")
