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
REPORT_KEY = "rs_report"      # (study name, html, pdf bytes) of the last prepared owner report
PLAN_KEY = "rs_plan"          # (study name, plan table, power grid) of the last sample-size plan
RESUME_KEY = "rs_resume"      # the signed-in reader's resume token (also in the URL)
RESUME_PARAM = "resume"       # URL query parameter holding it: random, not the code, no patient id

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
    if key == READER_KEY:
        token = st.session_state.pop(RESUME_KEY, None) or st.query_params.get(RESUME_PARAM)
        if token:
            try:
                service().end_resume(token)
            except Her2Error as err:   # the database is gone: the token dies with it
                log.info("resume token not revoked: %s", err)
        st.query_params.pop(RESUME_PARAM, None)
    st.session_state.pop(key, None)


def resume_from_url() -> None:
    """A reload keeps the reader signed in: the reading screen's URL carries a random resume
    token (``?resume=...``, stored hashed in the database; neither the access code nor a
    patient or reader identifier), turned back into the reader's session here. Called by
    app.py before the navigation is built, so a resumed reader gets only the reading screen."""
    if st.session_state.get(READER_KEY):
        return
    token = st.query_params.get(RESUME_PARAM)
    if not token:
        return
    try:
        st.session_state[READER_KEY] = service().resume(token)
        st.session_state[RESUME_KEY] = token
    except AccessDenied:
        st.query_params.pop(RESUME_PARAM, None)   # expired or revoked: the sign-in form


def remember_reader(reader: ReaderSession) -> None:
    """After sign-in: a new resume token in the session and the URL."""
    token = service().resume_token(reader)
    st.session_state[RESUME_KEY] = token
    st.query_params[RESUME_PARAM] = token


def keep_resume_in_url() -> None:
    """The token back in the URL if a rerun dropped it (it stays out of every other link)."""
    token = st.session_state.get(RESUME_KEY)
    if token and st.query_params.get(RESUME_PARAM) != token:
        st.query_params[RESUME_PARAM] = token


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


def model_roi(cohort_root: str | None, case: "S.CaseData | None") -> "tuple[str, Any] | None":
    """(sequence, canonical mask) of the region the model scored: the case's mask file of the
    cohort (the one her2core.workflows.study_inputs reads), checked against its sequence."""
    if case is None or not cohort_root or not Path(cohort_root).is_dir():
        return None
    files = S.case_files(str(cohort_root), case.case_id)
    for mkey in S.MASK_KEYS:
        seq = case.mask_reference(mkey)
        if mkey in files and seq is not None:
            try:
                return seq, S.load_mask_array(case, seq, files[mkey], S.file_sha256(files[mkey]))
            except Her2Error as err:
                log.info("model ROI not shown: %s", err)
    return None


def reading_viewer(case: "S.CaseData", *, key: str, roi: "tuple[str, Any] | None" = None) -> None:
    """The reader's slice viewer: sequences, view, slice, window and zoom only (no ROI
    drawing and no overlay opacity, which do nothing for a reader). ``roi`` (sequence,
    canonical mask) is drawn as an outline on that sequence and on sequences sharing its
    grid, and the slice opens on it."""
    import numpy as np

    from her2core import viewer as V
    seqs = case.sequences
    if not seqs:
        st.info("This case has no image on this server. Tell the study owner.")
        return
    roi_seq, roi_mask = roi if roi is not None else (None, None)
    ref_seq = roi_seq if roi_seq in seqs else case.reference
    c1, c2 = st.columns([3, 1])
    shown = c1.multiselect("Sequences (side by side)", seqs, default=seqs[: min(3, len(seqs))],
                           key=f"{key}_seqs") or [ref_seq]
    view = c2.radio("View", V.VIEWS, horizontal=True, key=f"{key}_view")
    try:
        ref_img, ref_can = S.canonical_for(case, ref_seq)
    except Exception as err:  # noqa: BLE001
        W.show_error(err)
        return
    if ref_can.is_2d:
        view = "axial"
    n = ref_can.n_slices(view)
    start = V.MaskEditor(roi_mask).middle_slice(view, n // 2) if roi_mask is not None else n // 2
    k1, k2, k3 = st.columns(3)
    if n > 1:
        idx = k1.slider("Slice", 0, n - 1, min(start, n - 1), key=f"{key}_slice_{view}")
    else:
        idx = 0
        k1.caption("Slice: 1 of 1")
    presets = ref_can.window_presets(roi_mask)
    preset = k2.selectbox("Window / level preset", list(presets), key=f"{key}_preset")
    zoom = k3.slider("Zoom", 1.0, 4.0, 1.0, 0.25, key=f"{key}_zoom")
    frac = idx / max(n - 1, 1)
    cols = st.columns(len(shown))
    for col, seq in zip(cols, shown):
        with col:
            try:
                img, can = S.canonical_for(case, seq)
            except Exception as err:  # noqa: BLE001
                W.show_error(err)
                continue
            v = "axial" if can.is_2d else view
            ns = can.n_slices(v)
            j = idx if seq == ref_seq else int(round(frac * (ns - 1)))
            p = presets if seq == ref_seq else can.window_presets()
            grey = V.apply_window(can.get_slice(v, j), *p.get(preset, next(iter(p.values()))))
            m = None
            if roi_mask is not None and (seq == roi_seq or (img.same_grid(ref_img)
                                                             and not can.is_2d and not ref_can.is_2d)):
                m = can.get_slice(v, j, roi_mask)
            rgb = V.compose_rgb(grey, mask=m, mask_opacity=0.0, outline=True)
            centre = None
            if m is not None and np.asarray(m).any():
                rr, cc = np.nonzero(m)
                centre = (float(rr.mean()), float(cc.mean()))
            title = f"{seq}" + ("" if can.is_2d else f" - {v} slice {j + 1} of {ns}")
            fig = V.slice_figure(rgb, can.pixel_size(v), title=title,
                                 labels=None if can.is_2d else V.axis_labels(v), selectable=False,
                                 zoom=zoom, zoom_center=centre, height=420 if len(shown) < 3 else 340)
            st.plotly_chart(fig, key=f"{key}_img_{seq}", config={"displaylogo": False})
    if roi_mask is not None:
        st.caption(f"Green outline: the region the model scored (on {roi_seq}).")


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


def dark_nomogram(nom, patient) -> "Any":
    """The nomogram readable on the app's dark theme (light text and axes, not black):
    the library figure built with its dark theme, not repainted here."""
    from her2core.plots import nomogram_figure

    return nomogram_figure(nom, patient, theme="dark")


DARK_INK = "#e6e6e6"


def model_panels(model_output: dict | None, case: "S.CaseData | None" = None,
                 cohort_root: str | None = None, *, ask_her2_low: bool = False) -> list[str]:
    """Render the model output the service released for this aided step.

    The HER2-low vs zero probability is shown only in studies that ask the reader about
    HER2-low (``ask_her2_low``). Returns the names of the panels shown (recorded with the
    read)."""
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
            if ask_her2_low and isinstance(model_output.get("p_low"), (int, float)):
                st.metric("HER2-low vs zero (model)", f"{model_output['p_low']:.1%}")
                shown.append("probability_her2_low")
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
                    nom = Nomogram.from_dict(nom_d)
                    patient = {"points": pts, "total_points": float(total or sum(pts.values())),
                               "probability": float(p) if p is not None else None}
                    fig = dark_nomogram(nom, patient)
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
from her2core.reader_study import report as RP  # noqa: E402
from her2core.reader_study.report import (deltas_table, groups_table, mrmc_table,  # noqa: E402
                                          per_reader_table)


def analysis_panels(result: dict) -> None:
    """The analysis on the owner's screen: what an interim analysis is missing, the tables
    and the figures (all from her2core.reader_study.report / .plots)."""
    from her2core.reader_study.plots import all_figures
    notes = RP.interim_notes(result)
    if not result["study"]["complete"]:
        st.warning("**Interim analysis** of the reads saved so far.\n\n"
                   + "\n".join(f"- {n}" for n in notes), icon=":material/hourglass_top:")
        st.markdown("**Reads still missing**")
        st.dataframe(RP.missing_table(result), hide_index=True, key="rs_tab_missing")
    elif notes:
        st.info("\n".join(f"- {n}" for n in notes))
    for title, table in RP.report_tables(result):
        if title == "Reads still missing":
            continue
        st.markdown(f"**{title}**")
        st.dataframe(table, hide_index=True)
    figs = all_figures(result)
    g1, g2 = st.columns(2)
    for i, (k, fig) in enumerate(figs.items()):
        with (g1 if i % 2 == 0 else g2):
            st.plotly_chart(fig, key=f"rs_fig_{k}", config={"displaylogo": False})


def analysis_json(result: dict) -> str:
    import json

    from her2core.jsonutil import jsonable
    return json.dumps(jsonable(result), indent=2, default=str)


def owner_report(result: dict) -> tuple[str, bytes]:
    """(HTML, PDF) of the owner's report."""
    return RP.report_html(result), RP.report_pdf(result)


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(t) for t in text.replace(";", ",").replace(" ", ",").split(",") if t.strip()]
    except ValueError:
        raise ReaderStudyError(f"{what}: whole numbers separated by commas, got {text!r}",
                               hint="e.g. 3, 5, 8") from None
    if not vals:
        raise ReaderStudyError(f"{what}: give at least one number", hint="e.g. 3, 5, 8")
    return vals


def plan(result: dict, *, effect: float, power: float, alpha: float, analysis: str,
         readers_text: str, cases_text: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cases needed per number of readers, power grid) from the study's own components."""
    readers = _ints(readers_text, "Numbers of readers")
    table = RP.sample_size_plan(result, effect=effect, readers=readers, target_power=power,
                                alpha=alpha, analysis=analysis)
    grid = RP.power_grid(result, effect=effect, readers=readers,
                         cases=_ints(cases_text, "Numbers of cases"), alpha=alpha,
                         analysis=analysis).round(3).reset_index()
    table["power"] = table["power"].round(3)
    return table, grid


__all__ = ["service", "db_url", "reading_case", "queue_caption", "model_panels", "model_roi",
           "reading_viewer", "resume_from_url", "remember_reader", "keep_resume_in_url",
           "dark_nomogram", "analysis_panels", "analysis_json", "owner_report", "plan", "REPORT_KEY", "PLAN_KEY", "RESUME_KEY", "RESUME_PARAM",
           "readers_from_table", "pick_cases", "predictions_from_upload", "predictions_from_bundle",
           "cases_for_study", "codes_text", "per_reader_table", "deltas_table", "groups_table",
           "mrmc_table", "AccessDenied", "ReaderSession", "READER_KEY", "OWNER_KEY", "CODES_KEY",
           "RESULT_KEY", "EXPORT_KEY", "DEFAULT_READERS", "MODEL_SOURCES", "sign_out"]
