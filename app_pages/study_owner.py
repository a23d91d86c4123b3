"""Reader study - the owner's screen: create a study, follow progress, export, analyse.

Creating a study needs no code; it shows the owner code and one access code per reader
ONCE (they are stored only as salted hashes). Everything else needs the owner code.
"""
import shutil

import pandas as pd
import streamlit as st

from webapp import reader_study as R
from webapp import services as S
from webapp import widgets as W
from webapp.state import init_state

init_state()
st.title("Study owner")
W.disclaimer()
svc = R.service()

# ----------------------------------------------------------------------------- codes, once
created = st.session_state.get(R.CODES_KEY)
if created is not None:
    with st.container(border=True, key="rs_codes"):
        st.success(f"Study **{created.name}** created. Copy these codes now: they are shown only "
                   "once and cannot be recovered.", icon=":material/key:")
        st.code(R.codes_text(created), language=None)
        st.download_button("Download the codes (text)", R.codes_text(created),
                           file_name=f"{created.name}_codes.txt", key="rs_codes_dl")
        if st.button("I have saved the codes - hide them", key="rs_codes_hide"):
            st.session_state[R.CODES_KEY] = None
            st.rerun()

owner = st.session_state.get(R.OWNER_KEY)
tab_open, tab_new = st.tabs(["Open a study", "Create a study"])

# ----------------------------------------------------------------------------- create
with tab_new:
    src = st.radio("Cohort", ["Demo cohort", "Upload a cohort (zip with cohort.csv + cases/, or cohort.csv)"],
                   key="rs_new_src", horizontal=True)
    up_cohort = None
    if src != "Demo cohort":
        up_cohort = st.file_uploader("Cohort zip or cohort.csv", type=["zip", "csv"], key="rs_new_cohort")
        st.caption("An uploaded cohort is unpacked in a temporary folder of this server. For a study "
                   "that runs for weeks, create it from a permanent folder with "
                   "`python -m her2core reader-study create --cohort DIR ...`; a cohort.csv alone "
                   "has no images to show the readers.")
    model_src = st.radio("Model output shown in the aided arm", R.MODEL_SOURCES, key="rs_new_model",
                         horizontal=True)
    up_pred = None
    if model_src == R.MODEL_SOURCES[0]:
        up_pred = st.file_uploader("Predictions CSV (case_id, p_her2, optional total_points and "
                                   "points_<predictor> columns)", type=["csv"], key="rs_new_pred")
    with st.form("rs_new_form"):
        name = st.text_input("Study name", key="rs_new_name")
        c1, c2 = st.columns(2)
        ids_text = c1.text_input("Case IDs (comma-separated; empty = every case with known HER2)",
                                 key="rs_new_ids")
        limit = c2.number_input("Keep only this many cases (0 = all; positives and negatives "
                                "alternate)", 0, 10_000, 0, key="rs_new_limit")
        st.markdown("**Readers** (name, level, years of experience)")
        readers_df = st.data_editor(
            pd.DataFrame(R.DEFAULT_READERS), num_rows="dynamic", key="rs_new_readers",
            column_config={"level": st.column_config.SelectboxColumn("level", options=["junior", "senior"],
                                                                     required=True),
                           "years": st.column_config.NumberColumn("years", min_value=0, max_value=60)},
            hide_index=True)
        d1, d2, d3 = st.columns(3)
        design = d1.radio("Design", ["sequential", "two_sessions"], key="rs_new_design",
                          help="sequential: the aided read follows the unaided read of each case; "
                               "two_sessions: all unaided, a washout, then all aided")
        washout = d2.number_input("Washout (days, two sessions only)", 0.0, 365.0, 28.0,
                                  key="rs_new_washout")
        seed = d3.number_input("Seed (case order)", 0, 2 ** 31 - 1, 2026, key="rs_new_seed")
        ask_low = st.checkbox("Also ask HER2-low / HER2-zero for HER2-negative calls",
                              key="rs_new_asklow",
                              help="readers then give a confidence in that call too, so the "
                                   "HER2-low task gets AUCs and its own MRMC analysis")
        go = st.form_submit_button("Create the study", type="primary")
    if go:
        with W.user_errors():
            if src == "Demo cohort":
                root = str(S.demo_cohort_root())
            elif up_cohort is None:
                raise R.ReaderStudyError("upload a cohort zip or cohort.csv first")
            elif up_cohort.name.lower().endswith(".zip"):
                root = S.extract_cohort_zip(up_cohort)
            else:
                # a table only: the study has truth but no images to show the readers
                path, sha = S.save_upload_any(up_cohort, "cohort", (".csv",))
                root = S.session_upload_dir() / f"cohort_csv_{sha[:12]}"
                root.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, root / "cohort.csv")
                root = str(root)
            ids = R.pick_cases(root, ids_text, int(limit), int(seed))
            preds, info = None, None
            if model_src == R.MODEL_SOURCES[0]:
                if up_pred is None:
                    raise R.ReaderStudyError("upload the predictions CSV (or choose another model source)")
                preds, info = R.predictions_from_upload(up_pred)
            elif model_src == R.MODEL_SOURCES[1]:
                with st.status("Running the model on each study case ...") as stat:
                    bar = st.progress(0.0)
                    preds, info = R.predictions_from_bundle(root, ids, lambda f, t: bar.progress(f, text=t))
                    stat.update(state="complete")
            cases = R.cases_for_study(root, ids, preds)
            made = svc.create_study(name, cases, R.readers_from_table(readers_df), design=design,
                                    washout_days=float(washout) if design == "two_sessions" else 0.0,
                                    seed=int(seed), ask_her2_low=bool(ask_low), model_info=info,
                                    cohort_root=root)
            st.session_state[R.CODES_KEY] = made
            st.session_state[R.OWNER_KEY] = svc.owner_sign_in(made.name, made.owner_code)
            st.rerun()

# ----------------------------------------------------------------------------- open
with tab_open:
    if owner is None:
        with st.form("rs_owner_signin"):
            studies = svc.list_studies()
            study = st.text_input("Study name", value=studies[0] if len(studies) == 1 else "",
                                  key="rs_owner_study")
            code = st.text_input("Owner code", type="password", key="rs_owner_code")
            ok = st.form_submit_button("Open", type="primary")
        if ok:
            try:
                st.session_state[R.OWNER_KEY] = svc.owner_sign_in(study, code)
                st.rerun()
            except R.AccessDenied:
                st.error("Unknown study or wrong owner code.", icon=":material/lock:")
            except Exception as err:  # noqa: BLE001
                W.show_error(err)
        st.stop()

    h1, h2 = st.columns([4, 1])
    if h2.button("Sign out", key="rs_owner_out", icon=":material/logout:"):
        R.sign_out(R.OWNER_KEY)
        for k in (R.RESULT_KEY, R.EXPORT_KEY, R.REPORT_KEY, R.PLAN_KEY):
            st.session_state.pop(k, None)
        st.rerun()
    try:
        status = svc.study_status(owner)
    except Exception as err:  # noqa: BLE001 - e.g. the database went away
        W.show_error(err)
        st.stop()
    h1.markdown(f"### {status.name}")
    m = st.columns(5)
    m[0].metric("Cases", status.n_cases)
    m[1].metric("HER2-positive", status.n_positive)
    m[2].metric("Readers", len(status.readers))
    m[3].metric("Reads saved", status.n_reads)
    m[4].metric("Corrections", status.n_corrections)
    st.caption(f"Design {status.design}"
               + (f" with a {status.washout_days:g}-day washout" if status.design == "two_sessions" else "")
               + f"; seed {status.seed}; HER2-low/zero asked: {'yes' if status.ask_her2_low else 'no'}")
    tab_prog, tab_an, tab_rep, tab_plan = st.tabs(["Progress and export", "Analysis", "Report",
                                                   "Sample size"])

    with tab_prog, W.user_errors():
        st.dataframe(pd.DataFrame([{
            "reader": f"R{p.reader_number} {p.reader_name}", "level": p.level, "years": p.years,
            "done": f"{p.done}/{p.total}", "unaided": p.done_unaided, "aided": p.done_aided,
            "status": p.status,
            "next session": f"{p.available_at:%Y-%m-%d %H:%M} UTC" if p.available_at else "",
            "last saved": f"{p.last_saved_at:%Y-%m-%d %H:%M:%S} UTC" if p.last_saved_at else ""}
            for p in status.readers]), hide_index=True, key="rs_progress")

        st.markdown("#### Export the reads")
        e1, e2 = st.columns([2, 3])
        fmt = e1.selectbox("Format", ["csv", "imrmc", "mrmcaov"], key="rs_exp_fmt",
                           format_func={"csv": "CSV (all fields)", "imrmc": "iMRMC input",
                                        "mrmcaov": "MRMCaov (CSV data frame)"}.get)
        if e1.button("Prepare the export", key="rs_exp_go"):
            st.session_state[R.EXPORT_KEY] = (status.name, fmt, svc.export(owner, fmt))
        prepared = st.session_state.get(R.EXPORT_KEY)
        if prepared and prepared[0] == status.name:
            ext = "imrmc" if prepared[1] == "imrmc" else "csv"
            e2.download_button(f"Download {prepared[1]}", prepared[2],
                               file_name=f"{status.name}_{prepared[1]}.{ext}", key="rs_exp_dl",
                               icon=":material/download:")
            e2.caption(f"{len(prepared[2].splitlines())} lines")

    def current_result():
        res = st.session_state.get(R.RESULT_KEY)
        return res[1] if res and res[0] == status.name else None

    with tab_an, W.user_errors():
        if st.button("Run the analysis", key="rs_analyze", type="primary",
                     disabled=status.n_reads == 0,
                     help="of every read saved so far: an interim analysis says what is missing"):
            st.session_state[R.RESULT_KEY] = (status.name, svc.analyze(owner))
            st.session_state.pop(R.REPORT_KEY, None)
            st.session_state.pop(R.PLAN_KEY, None)
        result = current_result()
        if result is not None:
            R.analysis_panels(result)
            st.download_button("Download the analysis (JSON)", R.analysis_json(result),
                               file_name=f"{status.name}_analysis.json", key="rs_res_dl")
        elif status.n_reads == 0:
            st.info("No read saved yet.")

    with tab_rep, W.user_errors():
        st.caption("The owner's report: every table and figure of the analysis (interim "
                   "analyses say which reads are missing), as HTML or PDF.")
        if st.button("Prepare the report", key="rs_report_go", type="primary",
                     disabled=status.n_reads == 0):
            if current_result() is None:
                st.session_state[R.RESULT_KEY] = (status.name, svc.analyze(owner))
            html_doc, pdf_doc = R.owner_report(current_result())
            st.session_state[R.REPORT_KEY] = (status.name, html_doc, pdf_doc)
            svc.log_event(owner, "report", {"n_reads": current_result()["study"]["n_reads_effective"]})
        rep = st.session_state.get(R.REPORT_KEY)
        if rep and rep[0] == status.name:
            d1, d2 = st.columns(2)
            d1.download_button("Download the report (HTML)", rep[1], file_name=f"{status.name}_report.html",
                               mime="text/html", key="rs_report_html", icon=":material/download:")
            d2.download_button("Download the report (PDF)", rep[2], file_name=f"{status.name}_report.pdf",
                               mime="application/pdf", key="rs_report_pdf", icon=":material/download:")

    with tab_plan, W.user_errors():
        st.caption("Readers x cases for a target power, with this study as the pilot: its "
                   "Obuchowski-Rockette variance components (jackknife) scaled to the planned "
                   "numbers of readers and cases (Hillis, Obuchowski and Berbaum 2011; as "
                   "RJafroc SsPowerGivenJK).")
        result = current_result()
        if result is None:
            st.info("Run the analysis first (Analysis tab): its variance components are the pilot.")
        else:
            p1, p2, p3, p4 = st.columns(4)
            effect = p1.number_input("AUC difference to detect", 0.005, 0.5, 0.05, 0.005,
                                     format="%.3f", key="rs_plan_effect")
            power = p2.number_input("Target power", 0.5, 0.99, 0.8, 0.05, key="rs_plan_power")
            alpha = p3.number_input("Alpha (two-sided)", 0.001, 0.2, 0.05, 0.005, format="%.3f",
                                    key="rs_plan_alpha")
            analysis = p4.selectbox("Analysis", ["RRRC", "FRRC", "RRFC"], key="rs_plan_analysis",
                                    help="RRRC: readers and cases random (generalises to both)")
            q1, q2 = st.columns(2)
            readers_txt = q1.text_input("Numbers of readers", "3, 5, 8, 10", key="rs_plan_readers")
            cases_txt = q2.text_input("Numbers of cases (power grid)", "50, 100, 200, 400",
                                      key="rs_plan_cases")
            if st.button("Plan the study", key="rs_plan_go", type="primary"):
                st.session_state[R.PLAN_KEY] = (status.name, *R.plan(
                    result, effect=effect, power=power, alpha=alpha, analysis=analysis,
                    readers_text=readers_txt, cases_text=cases_txt))
            plan = st.session_state.get(R.PLAN_KEY)
            if plan and plan[0] == status.name:
                st.markdown(f"**Cases needed for power {power:.0%}**")
                st.dataframe(plan[1], hide_index=True, key="rs_plan_table")
                st.markdown("**Power by readers (rows) and cases (columns)**")
                st.dataframe(plan[2], hide_index=True, key="rs_plan_grid")
