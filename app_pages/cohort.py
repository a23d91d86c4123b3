"""Cohort: evaluate a bundle (or a predictions file) on a cohort; train a new bundle."""
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from webapp.state import init_state
from webapp import services as S
from webapp import predict as P
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
    usable, problems, notes = S.validate_cohort_cached(root, Path(root, "cohort.csv").stat().st_mtime)
    if problems:
        with st.expander(f"{len(problems)} problems found by validation"):
            for p in problems[:200]:
                st.write("- " + p)
    st.caption(f"{len(usable)} cases usable")

tab_eval, tab_train, tab_ft = st.tabs(["Evaluate", "Train a bundle", "Fine-tune networks"])
with tab_eval:
    mode = st.radio("Scores from", ["The model in use", "A predictions file (CSV)"], horizontal=True,
                    key="eval_mode")
    task = st.selectbox("Task", ["her2", "her2_low"], key="eval_task",
                        format_func=lambda t: {"her2": "HER2-positive vs negative",
                                               "her2_low": "HER2-low vs HER2-zero"}[t])
    thr = st.slider("Threshold of the metrics table", 0.05, 0.95, 0.5, 0.05, key="eval_thr")
    preds = None
    if mode == "The model in use":
        with W.user_errors():
            bundle = S.current_bundle()
            if bundle is None:
                st.info(S.NO_BUNDLE, icon=":material/block:")
            else:
                W.model_output_banner(bundle)
                with st.expander("The model's own validation (from the bundle)", expanded=False):
                    P.dca_panel(task, thr, key="cohort_dca")
                if st.button("Predict every case of this cohort", key="eval_bundle", type="primary"):
                    from her2core.cohort import read_cohort
                    from her2core.workflows.predict import predict_cohort
                    with st.status("Predicting every case ...") as status:
                        bar = st.progress(0.0)
                        res = predict_cohort(
                            bundle, read_cohort(root),
                            cache_dir=str(S.session_upload_dir() / "feature_cache"),
                            progress=lambda d, n, m="": bar.progress(min(d / max(n, 1), 1.0), m))
                        status.update(label=f"{len(res.table)} cases predicted", state="complete")
                    st.session_state["cohort_eval"] = (root, bundle.checksum, res)
                prev = st.session_state.get("cohort_eval")
                if prev and prev[0] == root and prev[1] == bundle.checksum:
                    res = prev[2]
                    for e in res.errors:
                        st.caption(f"skipped: {e}")
                    for n in res.notes:
                        st.caption(n)
                    if res.n_imputed:
                        st.caption(f"{res.n_imputed} case(s) had missing predictors replaced by "
                                   "the training value (column imputed)")
                    preds = res.table
    else:
        pf = st.file_uploader("Predictions CSV (case_id + score / probability columns)", type=["csv"],
                              key="pred_csv")
        if pf is not None:
            with W.user_errors():
                from her2core.workflows.evaluate import read_predictions
                path, _ = S.save_upload_any(pf, "predictions", (".csv",))
                preds = read_predictions(path).reset_index()
    if preds is not None:
        with W.user_errors():
            from her2core.workflows.evaluate import evaluate_predictions
            from her2core.workflows.predict import prediction_columns
            pcol = prediction_columns(task)["p"]
            sfx = prediction_columns(task)["suffix"]
            cols = [c for c in preds.columns if c != "case_id" and
                    pd.api.types.is_numeric_dtype(preds[c]) and not c.endswith(("_lo", "_hi"))]
            if mode == "The model in use":
                cols = [c for c in cols if c == pcol or (c.startswith("dscore_") and
                                                       (c.endswith(sfx) if sfx else not c.endswith("_her2_low")))]
            ev = evaluate_predictions(preds[["case_id"] + cols], root, task=task, threshold=thr,
                                      n_boot=500, with_figures=True, predictions_name="predictions")
            summ = ev.summary
            st.caption(f"{summ['n']} cases with label and score ({summ['positives']} positive); "
                       f"excluded: {summ['excluded']['counts']}")
            rows = []
            for name, e in summ["scores"].items():
                rows.append({"score": name, "AUC": e.get("auc"),
                             "95 % CI (DeLong)": None if "auc_ci_delong" not in e else
                             f"{e['auc_ci_delong'][0]:.3f}-{e['auc_ci_delong'][1]:.3f}",
                             "Brier": e.get("brier"), "calibration slope": e.get("calibration_slope"),
                             "HL p": (e.get("hosmer_lemeshow") or {}).get("p")})
            st.dataframe(pd.DataFrame(rows), hide_index=True)
            if summ["comparisons"]:
                st.markdown("**Paired DeLong tests**")
                st.dataframe(pd.DataFrame(summ["comparisons"]), hide_index=True)
            from her2core import plots
            f = ev.figures
            g1, g2 = st.columns(2)
            theme = P.figure_theme()
            if f["roc"]:
                g1.plotly_chart(plots.roc_figure(f["roc"], f["band"], f["ci"], f["youden"], theme=theme),
                                key="ev_roc", **P.CHART)
            if f["binned"]:
                g2.plotly_chart(plots.calibration_figure(f["binned"], f["smooth"], f["fits"], theme=theme),
                                key="ev_cal", **P.CHART)
            if f.get("dca") is not None:
                st.plotly_chart(plots.decision_curve_figure(f["dca"], theme=theme), key="ev_dca",
                                **P.CHART)
            d1, d2, d3 = st.columns(3)
            from her2core.jsonutil import jsonable
            d1.download_button("Metrics (JSON)", json.dumps(jsonable(summ), indent=1),
                               file_name="cohort_metrics.json", key="dl_metrics")
            d2.download_button("Report (HTML)", ev.html(), file_name="cohort_evaluation.html",
                               key="dl_eval_html")
            d3.download_button("Predictions (CSV)", preds.to_csv(index=False),
                               file_name="cohort_predictions.csv", key="dl_scores")

with tab_train:
    from webapp import training as TR
    TR.train_section(root)

with tab_ft:
    from webapp import finetune_tab as FT
    FT.finetune_tab(root)
