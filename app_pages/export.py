"""Export: one-case report as PDF, HTML and JSON (her2core.report)."""
import streamlit as st

from her2core import report as R
from webapp.state import init_state, require
from webapp import export as E
from webapp import predict as P
from webapp import widgets as W

init_state()
st.title("Export")
W.disclaimer()
case = require("case", "Open a case on the Case page first.", "app_pages/case.py", "Go to the Case page")
if "US" in case.sequences:                      # the burned-in-text notice: ultrasound cases only
    st.warning(R.US_TEXT_NOTE, icon=":material/text_fields:")

part = P.cached_part(case)
cp = None
task = "her2"
if part is not None:
    task = P.task_selector("export_task")
    with W.user_errors():
        cp = P.run_clinical_part(part, st.session_state["clinical"], task)
        W.model_output_banner()
else:
    st.info("The report will contain the case, the images and the ROI but no prediction: run it on "
            "the Prediction page first to include it.")

with W.user_errors():
    rep = E.build_report(case, st.session_state["clinical"], st.session_state["threshold"], part, cp,
                         task=task)
    c1, c2, c3 = st.columns(3)
    c1.download_button("PDF report", R.to_pdf(rep), file_name=f"{case.case_id}_her2_report.pdf",
                       mime="application/pdf", key="dl_pdf", icon=":material/picture_as_pdf:")
    c2.download_button("HTML report", R.to_html(rep), file_name=f"{case.case_id}_her2_report.html",
                       mime="text/html", key="dl_html", icon=":material/html:")
    c3.download_button("JSON", R.to_json(rep), file_name=f"{case.case_id}_her2_report.json",
                       mime="application/json", key="dl_json", icon=":material/data_object:")
    with st.expander("Preview (JSON)"):
        st.json(rep.as_dict(), expanded=1)
