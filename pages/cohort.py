"""Cohort: evaluate a bundle (or a predictions file) on a cohort; train a new bundle."""
import io
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from webapp.state import init_state
from webapp import services as S
from webapp import widgets as W

init_state()
st.title("Cohort")
W.disclaimer()

src = st.radio("Cohort", ["Demo cohort", "Upload a cohort (.zip)"], horizontal=True, key="cohort_src")
root = None
with W.user_errors():
    if src == "Demo cohort":
        root = str(S.demo_cohort_root())
    else:
        up = st.file_uploader("Cohort zip (cohort.csv + cases/<case_id>/...)", type=["zip"],
                              key="cohort_zip")
        if up is not None:
            root = S.extract_cohort_zip(up)
if root is None:
    st.info("Choose the demo cohort or upload a zip of a cohort folder.")
    st.stop()

with W.user_errors():
    table = S.cohort_table(root)
    n_pos = int((table.get("her2") == 1).sum()) if "her2" in table else 0
    st.caption(f"{Path(root).name}: {len(table)} cases, {n_pos} HER2-positive")
    if not S.missing("cohort"):
        usable, problems, notes = S.validate_cohort_cached(root, Path(root, "cohort.csv").stat().st_mtime)
        if problems:
            with st.expander(f"{len(problems)} problems found by validation"):
                for p in problems[:200]:
                    st.write("- " + p)
        st.caption(f"{len(usable)} cases usable")

tab_eval, tab_train = st.tabs(["Evaluate", "Train a bundle"])
with tab_eval:
    mode = st.radio("Scores from", ["The loaded bundle", "A predictions file (CSV)"], horizontal=True,
                    key="eval_mode")
    task = st.selectbox("Task", ["her2", "her2_low"], key="eval_task",
                        format_func=lambda t: {"her2": "HER2-positive vs negative",
                                               "her2_low": "HER2-low vs HER2-zero"}[t])
    thr = st.slider("Threshold for the confusion table", 0.05, 0.95, 0.5, 0.05, key="eval_thr")
    scores = None
    cc = None
    if mode == "The loaded bundle":
        from webapp import predict as P
        ad, why = P.adapter()
        if ad is None:
            st.info(f"Evaluating a bundle is not available in this build: {why}",
                    icon=":material/block:")
        else:
            W.model_output_banner()
            if st.button("Evaluate the bundle on this cohort", key="eval_bundle", type="primary"):
                with st.status("Predicting every case ...") as status:
                    bar = st.progress(0.0)
                    with W.user_errors():
                        scores, cc = ad.predict_cohort(root, task=task,
                                                       progress=lambda f, t="": bar.progress(min(f, 1.0), t))
                        status.update(label=f"{len(scores)} cases predicted", state="complete")
                        st.session_state["cohort_eval"] = (root, task, scores, cc)
            prev = st.session_state.get("cohort_eval")
            if scores is None and prev and prev[0] == root and prev[1] == task:
                scores, cc = prev[2], prev[3]
    else:
        pf = st.file_uploader("Predictions CSV (case_id + score / probability columns)", type=["csv"],
                              key="pred_csv")
        if pf is not None:
            with W.user_errors():
                df = pd.read_csv(io.BytesIO(pf.getvalue()), dtype={"case_id": str})
                if "case_id" not in df:
                    raise ValueError("the predictions file has no case_id column")
                scores = df.set_index("case_id").select_dtypes("number")
    if scores is not None:
        with W.user_errors():
            from her2core.cohort import read_cohort
            from webapp.cohort_eval import evaluate
            labels = read_cohort(root).labels(task)
            ev = evaluate(labels, scores, threshold=thr)
            st.caption(f"{ev.n} cases with label and score ({ev.n_pos} positive); {ev.excluded} left out")
            st.dataframe(ev.table, hide_index=True)
            if len(ev.comparisons):
                st.markdown("**Paired DeLong tests**")
                st.dataframe(ev.comparisons, hide_index=True)
            from webapp.predict import readable
            for f in ev.figures.values():
                readable(f)
            g1, g2 = st.columns(2)
            g1.plotly_chart(ev.figures["roc"], key="ev_roc")
            if "calibration" in ev.figures:
                g2.plotly_chart(ev.figures["calibration"], key="ev_cal")
                g3, g4 = st.columns(2)
                g3.plotly_chart(ev.figures["dca"], key="ev_dca")
                with g4:
                    st.markdown("**Confusion table**")
                    st.dataframe(pd.DataFrame(ev.confusion).T)
            if cc is not None:
                from her2core.explain.figures import beeswarm_figure
                st.plotly_chart(readable(beeswarm_figure(cc)), key="ev_shap")
            out = {"n": ev.n, "n_pos": ev.n_pos, "metrics": ev.table.to_dict("records"),
                   "delong": ev.comparisons.to_dict("records"), "confusion": ev.confusion}
            d1, d2 = st.columns(2)
            d1.download_button("Metrics (JSON)", json.dumps(out, indent=1, default=float),
                               file_name="cohort_metrics.json", key="dl_metrics")
            d2.download_button("Scores (CSV)", scores.to_csv(), file_name="cohort_scores.csv",
                               key="dl_scores")

with tab_train:
    from webapp import training as TR
    TR.train_section(root)
