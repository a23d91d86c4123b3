"""Session state of the app, declared in one place.

Every key the pages read or write is listed in DEFAULTS with its meaning;
``init_state()`` runs at the top of app.py on every rerun; ``require()`` is
the guard a page uses when a prerequisite is missing (it says what to do
first and stops the page).
"""
from __future__ import annotations

import copy
from typing import Any

import streamlit as st

#: key -> (default, meaning)
DEFAULTS: dict[str, tuple[Any, str]] = {
    "case": (None, "webapp.services.CaseData of the case being looked at, or None"),
    "clinical": ({}, "clinical values entered for the case (column -> value or None)"),
    "editors": ({}, "sequence -> her2core.viewer.MaskEditor: the case's ROIs (canonical orientation)"),
    "editor_ref": (None, "(case key, sequence) of the ROI being drawn now"),
    "roi_nonce": (0, "bumped after each applied lasso/box so the chart's selection resets"),
    "roi_last": (None, "signature of the last selection applied (never applied twice)"),
    "roi_source": ({}, "sequence -> where its ROI came from: 'drawn', 'file', 'case'"),
    "roi_hash_memo": (None, "((case key, editor tokens), hash) of the ROIs: hashed once per change"),
    "prediction": (None, "her2core.predictor.ImagePart of the case's last run, or None"),
    "task": ("her2", "task shown on the Prediction / Export pages: her2 or her2_low"),
    "bundle_path": (None, "path of the model bundle this session uses (None: the default)"),
    "bundles": ([], "webapp.services.BundleChoice of bundles trained or uploaded in this session"),
    "threshold": (0.35, "decision threshold (probability) shown on the decision curve"),
    "upload_dir": (None, "per-session temporary folder for uploaded files"),
    "cohort_eval": (None, "result of the last cohort evaluation"),
    "train_result": (None, "result of the last training run"),
    "teach": ({"size_mm": 25.0, "rim": 0.2, "edema": 0.2, "irregularity": 0.3, "seed": 3},
              "phenotype sliders of the teaching case"),
    "last_error": (None, "last user-facing error message (shown once)"),
    "upload_owner": (None, "webapp.services.UploadFolder: removes the upload folder with the session"),
    "upload_names": ({}, "temp path of an upload -> the user's own file name (for messages)"),
    "picker": (None, "DICOM study listed for the series picker: {path, stamp, name, folder}"),
    "pacs_studies": (None, "her2core.pacs.StudyInfo list of the last PACS search"),
    "reader2": ({}, "(case key, sequence) -> canonical ROI of the second reader"),
    "reader_pairs": ({}, "case id -> (radiomics of reader 1's ROI, of reader 2's) for the ICC"),
    "seg_result": (None, "(case key, sequence, SegmentResult dict) of the last assisted ROI"),
    "seg_export": (None, "(case key, sequence, ROI voxels, DICOM SEG bytes) made for download"),
}


READING_LOCK_KEY = "rs_reader"   # set by the reader-study sign-in (webapp.reader_study.READER_KEY)


def init_state(*, allow_during_reading: bool = False) -> None:
    """Create missing keys with their defaults (copies, never shared objects).

    While a reader-study reader is signed in, every page but the reading screen
    stops here: the Case / Prediction / Export pages could show a case's label or
    the model output before the reader's unaided read (the blinding of the study).
    """
    for key, (default, _) in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = copy.deepcopy(default)
    _uploads_in_use()
    if not allow_during_reading and st.session_state.get(READING_LOCK_KEY):
        st.warning("A reader-study reading session is open in this browser: other pages are "
                   "closed until you sign out of the reading screen.")
        st.page_link("app_pages/reader_study.py", label="Back to the reading screen",
                     icon=":material/assignment_ind:")
        st.stop()


def _uploads_in_use() -> None:
    """Every rerun: the session's uploads are in use (not idle). When the sweeper has
    deleted them meanwhile (idle timeout), an uploaded case is closed with a message."""
    from . import services as S
    why = S.touch_session_uploads()
    if why is None:
        return
    case = st.session_state.get("case")
    if case is not None and getattr(case, "folder", None):
        reset_case()
        minutes = S.upload_idle_s() / 60
        st.session_state["last_error"] = (
            f"Your uploaded case {case.case_id} was closed and its files deleted after "
            f"{minutes:g} minutes without use ({why}). Upload the files again to go on.")
    st.session_state["picker"] = None


def reset_case() -> None:
    """Forget everything that belongs to the current case."""
    for key in ("case", "clinical", "editors", "editor_ref", "roi_last", "roi_source", "prediction"):
        st.session_state[key] = copy.deepcopy(DEFAULTS[key][0])
    st.session_state["roi_nonce"] = st.session_state.get("roi_nonce", 0) + 1


def require(key: str, message: str, page: str | None = None, label: str | None = None) -> Any:
    """Return st.session_state[key]; if it is empty, say what to do first and stop."""
    value = st.session_state.get(key)
    if value is None or (hasattr(value, "__len__") and not isinstance(value, str) and len(value) == 0
                         and not hasattr(value, "case_id")):
        st.info(message)
        if page:
            st.page_link(page, label=label or "Go there", icon=":material/arrow_forward:")
        st.stop()
    return value
