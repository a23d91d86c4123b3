"""HER2 second-opinion workbench: Streamlit entry point (navigation only).

Run with ``python3 -m streamlit run app.py``. Pages live in app_pages/ (not pages/: a folder of that name puts Streamlit in its legacy multipage mode on a page reload); everything
they compute comes from her2core; session state is declared in webapp/state.py.
"""
import logging

import streamlit as st

from her2core import deid
from webapp.reader_study import READER_KEY, resume_from_url
from webapp.auth import require_sign_in
from webapp.state import init_state

st.set_page_config(page_title="HER2 workbench", page_icon=":material/biotech:", layout="wide")
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
deid.install_log_redaction()      # DICOM identifiers seen on upload never reach the server log
require_sign_in()                 # optional OpenID Connect sign-in ([auth] in secrets); off by default
init_state(allow_during_reading=True)
resume_from_url()                 # a reload keeps a reader signed in (random URL token)

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/case.py", title="Case", icon=":material/radiology:"),
    st.Page("app_pages/prediction.py", title="Prediction", icon=":material/analytics:"),
    st.Page("app_pages/cohort.py", title="Cohort", icon=":material/groups:"),
    st.Page("app_pages/teaching.py", title="Teaching", icon=":material/school:"),
    st.Page("app_pages/export.py", title="Export", icon=":material/picture_as_pdf:"),
    READER_PAGE := st.Page("app_pages/reader_study.py", title="Reader study", icon=":material/assignment_ind:"),
    st.Page("app_pages/study_owner.py", title="Study owner", icon=":material/admin_panel_settings:"),
]
# A signed-in reader sees only the reading screen: the other pages could show a demo
# case's label, the model output before the unaided read, or other cases' results.
nav = st.navigation([READER_PAGE] if st.session_state.get(READER_KEY) else PAGES)
with st.sidebar:
    st.caption("Research and teaching tool - not a medical device.")
    case = st.session_state.get("case")
    if case is not None:
        st.caption(f"Case: **{case.case_id}** ({case.source})")
    if not st.session_state.get(READER_KEY):
        from webapp.widgets import model_chooser
        model_chooser()
nav.run()
