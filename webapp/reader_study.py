"""UI helpers of the reader-study pages (no numerics: every number comes from her2core).

* :func:`service` -- the one :class:`ReaderStudyService` of the server process (database
  from ``HER2_DB_URL``, else the SQLite default), shared by all sessions; state lives in the
  database only, the page session holds nothing but the signed-in session token.
* reading screen pieces: :func:`reading_case` (images of a study case, never truth,
  clinical values or masks), :func:`model_panels` (what the service allows in the aided arm).
* owner screen pieces: study-creation inputs (cases, readers, model output) and the tables
  of the analysis result (formatting only).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from webapp.state import READING_LOCK_KEY

from her2core.errors import Her2Error
from her2core.reader_study import (AccessDenied, NextCase, ReaderSession, ReaderStudyError,
                                   ReaderStudyService)

from . import services as S
from . import widgets as W

log = logging.getLogger(__name__)

READER_KEY = READING_LOCK_KEY   # "rs_reader": ReaderSession of the signed-in reader (the only reader state)
OWNER_KEY = "rs_owner"        # OwnerSession of the signed-in owner
CODES_KEY = "rs_new_codes"    # CreatedStudy just made (codes shown once, until dismissed)
RESULT_KEY = "rs_result"      # (study name, analysis dict) of the last analysis run
EXPORT_KEY = "rs_export"      # (study name, format, text) of the last prepared export

DEFAULT_READERS = [
    {"name": "Reader 1", "level": "junior", "years": 2.0},
    {"name": "Reader 2", "level": "junior", "years": 4.0},
    {"name": "Reader 3", "level": "senior", "years": 12.0},
]
MODEL_SOURCES = ("Predictions CSV", "Model bundle (run on each case's ROI)", "None")


# ----------------------------------------------------------------------------- service
def db_url() -> str | None:
    return os.environ.get("HER2_DB_URL") or None


@st.cache_resource(show_spinner=False, max_entries=4)
def _service(url: str | None) -> ReaderStudyService:
    return ReaderStudyService.open(url)


def service() -> ReaderStudyService:
    """The process-wide service for the configured database (opened once per URL)."""
    return _service(db_url())


def sign_out(key: str) -> None:
    st.session_state.pop(key, None)


# ----------------------------------------------------------------------------- reading
def reading_case(cohort_root: str | None, case_id: str) -> "S.CaseData | None":
    """The case's images for reading: no truth, no clinical values, no masks."""
    if not cohort_root or not Path(cohort_root).is_dir():
        return None
    files = {k: v for k, v in S.case_files(str(cohort_root), case_id).items()
             if k in S.SEQUENCES and Path(v).exists()}
    if not files:
        return None
    return S.CaseData(case_id=case_id, source="reader study",
                      files=files, hashes={k: S.file_sha256(v) for k, v in files.items()
                                           if Path(v).is_file()},
                      clinical={}, label={}, note="")


def queue_caption(nxt: NextCase) -> str:
    """"Case 3 of 20, unaided" - the reader's own progress only."""
    if nxt.status == "case" and nxt.case is not None:
        c = nxt.case
        return f"Case {c.position} of {c.total}, {c.arm}" + (
            f" (session {c.session})" if c.session > 1 else "")
    if nxt.status == "washout":
        return f"{nxt.done} of {nxt.total} read; washout"
    return f"All {nxt.total} reads saved"


def _points(model_output: dict) -> dict[str, float]:
    pts = dict(model_output.get("points") or {})
    for k, v in model_output.items():
        if k.startswith("points_") and isinstance(v, (int, float)):
            pts.setdefault(k[len("points_"):], float(v))
    return pts


def model_panels(model_output: dict | None, case: "S.CaseData | None" = None,
                 cohort_root: str | None = None) -> list[str]:
    """Render the model output the service released for this aided step.

    Returns the names of the panels shown (recorded with the read)."""
    shown: list[str] = []
    if not model_output:
        st.info("This study has no model output for this case.", icon=":material/block:")
        return shown
    info = dict(model_output.get("model_info") or {})
    if info.get("random_init") or info.get("synthetic"):
        st.warning(W.RANDOM_INIT_TEXT, icon=":material/science:")
    p = model_output.get("p_her2")
    pts = _points(model_output)
    total = model_output.get("total_points")
    c1, c2 = st.columns([1, 2])
    with c1:
        with st.container(border=True, key="rs_panel_probability"):
            st.markdown("#### Model: probability")
            if isinstance(p, (int, float)):
                st.metric("HER2-positive (model)", f"{p:.1%}")
                shown.append("probability")
            if isinstance(model_output.get("p_low"), (int, float)):
                st.metric("HER2-low vs zero (model)", f"{model_output['p_low']:.1%}")
            if isinstance(total, (int, float)):
                st.caption(f"Total nomogram points: {total:.1f}")
            src = info.get("source") or info.get("bundle") or ""
            if src:
                st.caption(f"Model: {src}")
    with c2:
        with st.container(border=True, key="rs_panel_nomogram"):
            st.markdown("#### Nomogram points")
            nom_d = info.get("nomogram")
            drawn = False
            if nom_d and pts:
                try:
                    from her2core.nomogram import Nomogram
                    from her2core.plots import nomogram_figure
                    nom = Nomogram.from_dict(nom_d)
                    patient = {"points": pts, "total_points": float(total or sum(pts.values())),
                               "probability": float(p) if p is not None else None}
                    fig = nomogram_figure(nom, patient)
                    fig.update_layout(height=max(320, 40 * (len(nom.variables) + 3)),
                                      margin=dict(l=10, r=10, t=40, b=10))
                    st.plotly_chart(fig, key="rs_fig_nomogram", config={"displaylogo": False})
                    drawn = True
                except Exception as err:  # noqa: BLE001 - fall back to the table
                    log.info("nomogram figure not drawn: %s", err)
            if pts:
                tab = pd.DataFrame({"predictor": list(pts), "points": [round(v, 1) for v in pts.values()]})
                if not drawn:
                    import plotly.express as px
                    fig = px.bar(tab, x="points", y="predictor", orientation="h", text="points")
                    fig.update_layout(height=max(220, 34 * len(tab) + 80),
                                      margin=dict(l=10, r=10, t=10, b=10))
                    st.plotly_chart(fig, key="rs_fig_points", config={"displaylogo": False})
                st.table(tab.set_index("predictor"))
                shown.append("nomogram_points")
            else:
                st.caption("No per-predictor points for this case.")
    shap = model_output.get("shap")
    if isinstance(shap, dict) and shap:
        with st.container(border=True, key="rs_panel_shap"):
            st.markdown("#### SHAP contributions (log-odds)")
            import plotly.express as px
            tab = pd.DataFrame({"predictor": list(shap), "contribution": list(shap.values())})
            fig = px.bar(tab, x="contribution", y="predictor", orientation="h")
            fig.update_layout(height=max(220, 30 * len(tab) + 80), margin=dict(l=10, r=10, t=10, b=10))
            st.plotly_chart(fig, key="rs_fig_shap", config={"displaylogo": False})
            shown.append("shap")
    if _live_gradcam(info, case, cohort_root):
        shown.append("gradcam")
    return shown


def _live_gradcam(info: dict, case, cohort_root) -> bool:
    """Grad-CAM from the session's bundle, only when it is the bundle the study recorded."""
    if case is None or not cohort_root or not info.get("bundle_checksum"):
        return False
    try:
        bundle = S.current_bundle()
    except Her2Error:
        return False
    if bundle is None or bundle.checksum != info.get("bundle_checksum"):
        return False
    from . import predict as P
    files = S.case_files(str(cohort_root), case.case_id)
    with W.user_errors():
        full = S.CaseData(case.case_id, "reader study", files=files,
                          hashes={k: S.file_sha256(v) for k, v in files.items() if Path(v).is_file()})
        rois = {}
        for mkey in ("mask", "US_mask"):
            seq = full.mask_reference(mkey)
            if mkey in files and seq is not None:
                rois[seq] = S.load_mask_array(full, seq, files[mkey], full.hashes[mkey])
        if not rois:
            return False
        part = P.cohort_case_part(full, rois)
        P.gradcam_panel(full, part, "her2", rois=rois)
        return True
    return False


# ----------------------------------------------------------------------------- owner: creation
def readers_from_table(df: pd.DataFrame) -> list[dict]:
    out = []
    for _, row in pd.DataFrame(df).iterrows():
        name = str(row.get("name") or "").strip()
        if not name or name.lower() == "nan":
            continue
        yrs = row.get("years")
        out.append({"name": name, "level": str(row.get("level") or "").strip(),
                    "years": None if yrs is None or pd.isna(yrs) else float(yrs)})
    return out


def pick_cases(root: str, ids_text: str, limit: int, seed: int) -> list[str]:
    """Case ids with known HER2 truth: those listed, else all; ``limit`` > 0 keeps that many,
    alternating HER2-positive and -negative cases (in an order drawn with ``seed``) so a
    small study still has both classes."""
    from her2core.cohort import read_cohort
    her2 = read_cohort(root).labels("her2")
    ids = [t.strip() for t in ids_text.replace(";", ",").replace("\n", ",").split(",") if t.strip()]
    if ids:
        for cid in ids:
            if cid not in her2.index:
                raise ReaderStudyError("case has no known her2 truth or is not in the cohort",
                                       case_id=cid, file=Path(root) / "cohort.csv")
    else:
        ids = [str(c) for c in her2.index]
    if limit and limit < len(ids):
        import random
        rnd = random.Random(seed)
        pos = [c for c in ids if int(her2[c]) == 1]
        neg = [c for c in ids if int(her2[c]) == 0]
        rnd.shuffle(pos)
        rnd.shuffle(neg)
        chosen = []
        while len(chosen) < limit and (pos or neg):
            for grp in (pos, neg):
                if grp and len(chosen) < limit:
                    chosen.append(grp.pop(0))
        ids = sorted(chosen)
    return ids


def predictions_from_upload(uploaded) -> tuple[dict, dict]:
    """(case_id -> model output, model_info) from an uploaded predictions CSV."""
    import hashlib

    from her2core.reader_study.inputs import load_predictions
    data = uploaded.getvalue()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "predictions.csv"
        p.write_bytes(data)
        preds = load_predictions(p)
    for rec in preds.values():
        pts = {k[len("points_"):]: v for k, v in rec.items() if k.startswith("points_") and v is not None}
        if pts:
            rec["points"] = pts
    return preds, {"source": f"predictions file {uploaded.name}",
                   "predictions_sha256": hashlib.sha256(data).hexdigest()}


def predictions_from_bundle(root: str, case_ids: list[str], progress=None) -> tuple[dict, dict]:
    """Model output of the session's bundle for each case (her2core.workflows.study_inputs)."""
    from her2core.cohort import read_cohort
    from her2core.workflows.study_inputs import model_outputs
    bundle = S.current_bundle()
    if bundle is None:
        raise ReaderStudyError(S.NO_BUNDLE)
    return model_outputs(bundle, read_cohort(root), case_ids,
                         progress=(lambda d, n, m="": progress(d / max(n, 1), m)) if progress else None)


def cases_for_study(root: str, ids: list[str], preds: dict | None) -> list[dict]:
    from her2core.reader_study.inputs import cases_from_cohort
    return cases_from_cohort(root, ids, preds)


def codes_text(created) -> str:
    lines = [f"study: {created.name}", f"owner code: {created.owner_code}"]
    lines += [f"reader {n}: {c}" for n, c in created.reader_codes.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- owner: tables
# formatting of the analysis result lives in her2core (the owner's report uses the same tables)
from her2core.reader_study.report import (deltas_table, groups_table, mrmc_table,  # noqa: E402
                                          per_reader_table)


__all__ = ["service", "db_url", "reading_case", "queue_caption", "model_panels",
           "readers_from_table", "pick_cases", "predictions_from_upload", "predictions_from_bundle",
           "cases_for_study", "codes_text", "per_reader_table", "deltas_table", "groups_table",
           "mrmc_table", "AccessDenied", "ReaderSession", "READER_KEY", "OWNER_KEY", "CODES_KEY",
           "RESULT_KEY", "EXPORT_KEY", "DEFAULT_READERS", "MODEL_SOURCES", "sign_out"]
