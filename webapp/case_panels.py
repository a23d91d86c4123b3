"""Case page panels around the viewer: a DICOM study's series picker, a PACS search,
assisted (seeded) segmentation, a second reader's ROI with the agreement between readers,
and the ROI as a DICOM SEG. Layout only: every step is a her2core call."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from her2core import viewer as V
from her2core.errors import Her2Error, ImageLoadError

from . import services as S
from . import widgets as W

log = logging.getLogger(__name__)

PICKER_KEY = "picker"               # session: {"path", "stamp", "name", "folder"} of a DICOM study
PACS_KEY = "pacs_studies"           # session: [StudyInfo] of the last PACS search
READER2_KEY = "reader2"             # session: {(case key, sequence): canonical mask of reader 2}
READER_PAIRS_KEY = "reader_pairs"   # session: {case id: (features reader 1, features reader 2)}
SEG_RESULT_KEY = "seg_result"       # session: (case key, sequence, SegmentResult.to_dict())
SEG_FILE_KEY = "seg_export"         # session: (case key, sequence, roi hash, DICOM SEG bytes)
ROLES = ("T1", "T2", "DCE")


# ----------------------------------------------------------------------------- open a case
def open_case(case: "S.CaseData") -> None:
    """Make ``case`` the session's case (the replaced case's uploads are removed)."""
    from webapp.state import reset_case
    S.adopt_case_folder(case)
    reset_case()
    st.session_state["case"] = case
    st.session_state["clinical"] = dict(case.clinical)
    problems = W.open_case_rois(case)
    st.session_state["last_error"] = problems[0] if problems else None


def study_upload_tab() -> None:
    """A zip of a whole DICOM study (several series): listed for the series picker."""
    st.caption("A zip (or DICOM folder zipped) holding several series: the series are listed "
               "and you choose which one is T1, T2 and DCE (or the DCE phases).")
    up = st.file_uploader("DICOM study (.zip)", type=["zip"], key="up_study")
    if up is not None and st.button("List the series", key="study_list"):
        folder = S.new_case_folder()
        try:
            path, sha = S.save_upload(up, "study", folder=folder)
            S.list_series(path, sha)                         # a zip without images fails here
        except Exception as err:  # noqa: BLE001 - shown in the page
            S.discard_folder(folder)
            W.show_error(err)
            return
        _set_picker({"path": path, "stamp": sha, "name": up.name, "folder": str(folder)})
    series_picker()


def _set_picker(value: dict | None) -> None:
    old = st.session_state.get(PICKER_KEY)
    case = st.session_state.get("case")
    if old and old.get("folder") and old.get("folder") != getattr(case, "folder", None) and \
            (value is None or old.get("folder") != value.get("folder")):
        S.discard_folder(old["folder"])                   # a study listed but never opened
    st.session_state[PICKER_KEY] = value


def _series_label(i: int, s) -> str:
    return (f"#{i} {s.description or 'no description'} ({s.modality or '?'}, "
            f"{s.rows} x {s.columns}, {s.n_slices} slices"
            + (f", {s.temporal_positions} phases" if s.temporal_positions > 1 else "")
            + (f", +{s.time_offset_s:g} s" if s.time_offset_s else "") + ")")


def series_picker() -> None:
    """The series of the listed study, the user's sequence for each, then open them."""
    pick = st.session_state.get(PICKER_KEY)
    if not pick:
        return
    from her2core.imaging.series import series_table, suggest_mapping
    try:
        infos = S.list_series(pick["path"], pick["stamp"])
    except Exception as err:  # noqa: BLE001
        W.show_error(err)
        return
    st.markdown(f"**{len(infos)} image series in {pick['name']}**")
    rows = pd.DataFrame(series_table(infos)).drop(columns=["uid"])
    st.dataframe(rows, hide_index=True, key="picker_table")
    guess = suggest_mapping(infos)
    uids = [s.uid for s in infos]
    labels = {s.uid: _series_label(i, s) for i, s in enumerate(infos, 1)}
    mapping: dict = {}
    cols = st.columns(3)
    for col, role in zip(cols, ROLES):
        default = guess.get(role)
        opts = ["none"] + uids
        mapping[role] = col.selectbox(f"{role} series", opts,
                                      index=opts.index(default) if default in opts else 0,
                                      format_func=lambda u: labels.get(u, u),
                                      key=f"picker_{role}")
    # the phases on their own row: four or more long series labels do not fit a quarter
    phases = st.multiselect("DCE phases (pre-contrast first)", uids,
                                 default=[u for u in guess.get("DCE_phases", []) if u in uids],
                                 format_func=lambda u: labels.get(u, u), key="picker_phases",
                                 help="two or more series of one dynamic acquisition, in time "
                                      "order; they become a 4-D DCE (phase 1 is the DCE shown)")
    mapping = {r: u for r, u in mapping.items() if u != "none"}
    if phases:
        mapping["DCE_phases"] = phases
    case_id = st.text_input("Case id", value="study-1", key="picker_case_id")
    if st.button("Open the chosen series", type="primary", key="picker_open",
                 disabled=not mapping):
        bar = st.progress(0.0, text="reading the series")
        try:
            case = S.open_series(pick["path"], pick["stamp"], mapping, case_id=case_id or "study",
                                 shown_name=pick["name"], folder=Path(pick["folder"]),
                                 progress=lambda d, t, m: bar.progress(min(d / max(t, 1), 1.0),
                                                                       text=m))
        except Exception as err:  # noqa: BLE001 - shown in the page; the open case is kept
            bar.empty()
            W.show_error(err)
            return
        bar.empty()
        open_case(case)
        st.session_state[PICKER_KEY] = None
        st.rerun()


def pacs_tab() -> None:
    """Search a DICOMweb server (QIDO-RS), retrieve a study (WADO-RS, de-identified) for the
    series picker."""
    from her2core import pacs
    st.caption("A PACS with DICOMweb (e.g. Orthanc with its DICOMweb plugin). Retrieved files "
               "are de-identified before they are written, like uploads.")
    url = st.text_input("DICOMweb URL", value=os.environ.get("HER2_PACS_URL", ""),
                        placeholder="http://pacs-host:8042/dicom-web", key="pacs_url")
    c1, c2, c3, c4 = st.columns(4)
    pid = c1.text_input("Patient ID (optional)", key="pacs_pid")
    date = c2.text_input("Study date or range (optional)", placeholder="20240101-20241231",
                         key="pacs_date")
    user = c3.text_input("User (optional)", key="pacs_user")
    password = c4.text_input("Password", type="password", key="pacs_password")

    def client():
        headers = None
        if user:
            import base64
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers = {"Authorization": f"Basic {token}"}
        return pacs.connect(url.strip(), headers=headers)

    if st.button("Search", key="pacs_search", disabled=not url.strip()):
        try:
            st.session_state[PACS_KEY] = pacs.find_studies(url.strip(), patient_id=pid or None,
                                                           study_date=date or None,
                                                           client=client())
        except Her2Error as err:
            st.session_state[PACS_KEY] = None
            W.show_error(err)
    studies = st.session_state.get(PACS_KEY)
    if studies is None:
        return
    if not studies:
        st.info("No study matches on this server.")
        return
    st.dataframe(pd.DataFrame([s.to_dict() for s in studies]).drop(columns=["study_uid"]),
                 hide_index=True, key="pacs_table")
    choice = st.selectbox("Study", [s.study_uid for s in studies], key="pacs_study",
                          format_func=lambda u: next(
                              f"{s.date or '-'} {'/'.join(s.modalities)} {s.description or ''} "
                              f"({s.n_series} series)" for s in studies if s.study_uid == u))
    if st.button("Retrieve this study", key="pacs_fetch", type="primary"):
        folder = S.new_case_folder()
        bar = st.progress(0.0, text="retrieving")
        try:
            res = pacs.fetch_study(url.strip(), choice, folder / "study", client=client(),
                                   progress=lambda d, t, m: bar.progress(min(d / max(t, 1), 1.0),
                                                                         text=m))
        except Her2Error as err:
            bar.empty()
            S.discard_folder(folder)
            W.show_error(err)
            return
        bar.empty()
        st.success(f"Retrieved {res.n_files} files in {len(res.series)} series "
                   f"({res.seconds:.1f} s), de-identified."
                   + (f" Skipped {len(res.skipped)} non-image series." if res.skipped else ""))
        _set_picker({"path": str(res.out_dir), "stamp": f"pacs-{choice}-{res.n_files}",
                     "name": "the retrieved study", "folder": str(folder)})
    if (st.session_state.get(PICKER_KEY) or {}).get("name") == "the retrieved study":
        series_picker()


# ----------------------------------------------------------------------------- assisted ROI
def _segmentation_image(case, seq: str, ref_img):
    """The image the assisted segmentation reads: the DCE phases (subtraction) when the case
    has them on the DCE grid, else the sequence's image."""
    if seq == "DCE" and "DCE_phases" in case.files:
        try:
            ph = S.load_image(case.files["DCE_phases"], case.hashes["DCE_phases"], "DCE_phases")
            if ph.spatial_template().same_grid(ref_img):
                return ph
        except Her2Error:
            pass
    return ref_img


def run_segmentation(case, seq: str, editor: V.MaskEditor, ref_img, can: V.Canonical, view: str,
                     idx: int, *, seed_rc=None, box_rc=None) -> None:
    """Seed (row, col) or box ((r0, c0), (r1, c1)) on the displayed slice -> her2core's
    seeded segmentation -> the ROI (undoable). A refusal leaves the ROI as it was."""
    from her2core.imaging.segment import segment_lesion
    image = _segmentation_image(case, seq, ref_img)
    if seed_rc is not None:
        zyx = can.display_to_canonical(view, idx, *seed_rc)
        res = segment_lesion(image, seed_index=can.canonical_to_index(zyx))
    else:
        (r0, c0), (r1, c1) = box_rc
        a = can.canonical_to_index(can.display_to_canonical(view, idx, r0, c0))
        b = can.canonical_to_index(can.display_to_canonical(view, idx, r1, c1))
        res = segment_lesion(image, box_index=(a, b))
    editor.set_mask(can.to_canonical(np.asarray(res.mask.array) > 0))
    st.session_state.setdefault("roi_source", {})[seq] = "assisted"
    st.session_state[SEG_RESULT_KEY] = (case.key, seq, res.to_dict())
    st.session_state["roi_nonce"] += 1
    st.session_state["prediction"] = None


def assisted_segmentation(case, seq: str, editor: V.MaskEditor, ref_img, can: V.Canonical,
                          view: str, idx: int, key: str) -> None:
    """One seed point or a box on this slice -> a 3-D (2-D on ultrasound) lesion mask."""
    rows, cols = can.get_slice(view, idx).shape
    with st.container(border=True, key=f"{key}_assist"):
        st.markdown("**Assisted segmentation** - choose *Seed* as the mode above and click the "
                    "lesion (or draw a box round it with the chart's box tool), or give the "
                    "point here; the mask is made in 3-D from this slice and stays editable.")
        a1, a2, a3, a4 = st.columns([1.2, 1, 1, 1.4])
        how = a1.radio("From", ["a seed point", "a box"], key=f"{key}_seg_how", horizontal=True)
        if how == "a seed point":
            r = a2.number_input("Row", 0, rows - 1, rows // 2, key=f"{key}_seed_row")
            c = a3.number_input("Column", 0, cols - 1, cols // 2, key=f"{key}_seed_col")
            args = {"seed_rc": (r, c)}
        else:
            r0 = a2.number_input("Top row", 0, rows - 1, max(rows // 2 - 10, 0), key=f"{key}_box_r0")
            c0 = a3.number_input("Left column", 0, cols - 1, max(cols // 2 - 10, 0),
                                 key=f"{key}_box_c0")
            r1 = a2.number_input("Bottom row", 0, rows - 1, min(rows // 2 + 10, rows - 1),
                                 key=f"{key}_box_r1")
            c1 = a3.number_input("Right column", 0, cols - 1, min(cols // 2 + 10, cols - 1),
                                 key=f"{key}_box_c1")
            args = {"box_rc": ((r0, c0), (r1, c1))}
        a4.write("")
        if a4.button("Segment", key=f"{key}_segment", icon=":material/auto_fix_high:",
                     type="primary"):
            with st.spinner("Segmenting ..."):
                try:
                    run_segmentation(case, seq, editor, ref_img, can, view, idx, **args)
                except Her2Error as err:
                    st.session_state["last_error"] = W.error_text(err)
                    st.session_state[SEG_RESULT_KEY] = None
                st.rerun()
        res = st.session_state.get(SEG_RESULT_KEY)
        # only while the ROI is still that assisted one (not cleared, undone, redrawn,
        # replaced by a file or a DICOM SEG)
        current = (st.session_state.get("roi_source") or {}).get(seq) == "assisted" and \
            editor.voxels > 0
        if res and res[0] == case.key and res[1] == seq and current:
            d = res[2]
            size = d.get("equivalent_diameter_mm")
            st.caption(f"Assisted ROI: {d['n_voxels']} voxels"
                       + (f", equivalent diameter {size:.1f} mm" if size else "")
                       + f"; {d['polarity']} lesion on the {d['intensity']}; border consistency "
                         f"(radial gradient index) {d['rgi']:.2f}; {d['seconds']:.1f} s. "
                         "Check it on every slice and correct it with Add / Erase.")


def seed_from_selection(sel: dict) -> dict | None:
    """A click (one point) or a box of a chart selection as run_segmentation arguments."""
    pts = list(sel.get("points") or [])
    boxes = list(sel.get("box") or [])
    if boxes:
        b = boxes[0]
        xs, ys = sorted(b.get("x", [0, 0])), sorted(b.get("y", [0, 0]))
        return {"box_rc": ((int(round(ys[0])), int(round(xs[0]))),
                           (int(round(ys[1])), int(round(xs[1]))))}
    if pts:
        p = pts[0]
        return {"seed_rc": (int(round(p.get("y", 0))), int(round(p.get("x", 0))))}
    return None


# ----------------------------------------------------------------------------- second reader
def second_reader(case, seq: str, editor: V.MaskEditor, ref_img, can: V.Canonical,
                  key: str) -> None:
    """Reader 2's ROI on the same sequence (a mask file, a DICOM SEG or a copy of reader 1's
    to edit), its overlap with reader 1's and the per-feature ICC over this session's
    two-reader cases."""
    from her2core.imaging import agreement
    store = st.session_state.setdefault(READER2_KEY, {})
    r2 = store.get((case.key, seq))
    with st.expander("Second reader (agreement, ICC)", expanded=r2 is not None):
        st.caption("A second reader's ROI of the same lesion on the same sequence. Saved as "
                   "mask_reader2 it feeds the ICC filter of training (features kept when "
                   "ICC >= 0.9 between readers).")
        up = st.file_uploader("Reader 2's mask (NIfTI / NRRD / MHA / PNG)",
                              type=["nii", "gz", "nrrd", "mha", "png"], key=f"{key}_r2up")
        b1, b2 = st.columns(2)
        if up is not None and b1.button("Use as reader 2", key=f"{key}_r2apply"):
            with W.user_errors():
                path, sha = S.save_upload(up, "mask_reader2", folder=_case_folder(case))
                store[(case.key, seq)] = S.load_mask_array(case, seq, path, sha)
                st.rerun()
        if r2 is None:
            return
        if b2.button("Remove reader 2", key=f"{key}_r2clear"):
            store.pop((case.key, seq), None)
            st.rerun()
        if not editor.voxels:
            st.info("Reader 1's ROI is empty: draw it (or segment it) to compare.")
            return
        try:
            ag = agreement.mask_agreement(editor.mask, r2, can.spacing)
        except Her2Error as err:
            W.show_error(err)
            return
        unit = "mm\u00b2" if can.is_2d else "mL"
        f = 1.0 if can.is_2d else 1e-3
        m1, m2, m3 = st.columns(3)
        m1.metric("Dice", f"{ag['dice']:.3f}")
        m2.metric(f"Reader 1 ({unit})", f"{ag['size_1'] * f:.2f}")
        m3.metric(f"Reader 2 ({unit})", f"{ag['size_2'] * f:.2f}",
                  f"{ag['size_difference_pct']:+.1f} %")
        try:
            data = V.mask_to_nifti_bytes(r2, can, ref_img)
            st.download_button("Save reader 2's mask as mask_reader2.nii.gz", data,
                               file_name="mask_reader2.nii.gz", mime="application/gzip",
                               key=f"{key}_r2dl", icon=":material/download:")
        except Exception as err:  # noqa: BLE001
            W.show_error(err)
        if st.button("Compute the features of both ROIs (radiomics)", key=f"{key}_r2feat"):
            with st.spinner("Radiomics of both ROIs ..."), W.user_errors():
                params = "us" if seq == "US" else "mri"
                one = agreement.reader_features(ref_img, S.mask_image(case, seq, editor.mask),
                                                params, case_id=case.case_id)
                two = agreement.reader_features(ref_img, S.mask_image(case, seq, r2), params,
                                                case_id=case.case_id)
                st.session_state.setdefault(READER_PAIRS_KEY, {})[case.case_id] = (one, two)
        pairs = st.session_state.get(READER_PAIRS_KEY) or {}
        if not pairs:
            return
        first = pd.DataFrame({c: p[0] for c, p in pairs.items()}).T
        second = pd.DataFrame({c: p[1] for c, p in pairs.items()}).T
        if case.case_id in pairs:
            one, two = pairs[case.case_id]
            diff = pd.DataFrame({"reader 1": pd.Series(one), "reader 2": pd.Series(two)})
            diff["difference %"] = 100 * (diff["reader 2"] - diff["reader 1"]) / \
                diff["reader 1"].abs().replace(0, np.nan)
            st.dataframe(diff.round(4), key=f"{key}_r2table")
        icc = agreement.reader_icc(first, second)
        n = int(icc["n_cases"].iloc[0]) if len(icc) else 0
        if n < 2:
            st.caption(f"Per-feature ICC between the readers needs two or more cases read by "
                       f"both; this session has {n}. Read more cases here (or train with the "
                       "cohort's mask_reader2 files) to see it.")
            return
        kept = int((icc["icc"] >= 0.9).sum())
        st.markdown(f"**Per-feature ICC(3,1) between readers over {n} cases**: {kept} of "
                    f"{len(icc)} features reach 0.9"
                    + ("" if n >= agreement.MIN_ICC_CASES else
                       f" (fewer than {agreement.MIN_ICC_CASES} cases: a rough figure)"))
        st.dataframe(icc.round(3), key=f"{key}_icc")


def _case_folder(case) -> Path:
    if case.folder and Path(case.folder).is_dir():
        return Path(case.folder)
    d = S.new_case_folder()
    case.folder = str(d)
    return d


# ----------------------------------------------------------------------------- DICOM SEG
def dicom_seg(case, seq: str, editor: V.MaskEditor, can: V.Canonical, key: str) -> None:
    """The ROI as a DICOM SEG referencing its source series (download), and a SEG read back
    as the ROI. Needs the case's DICOM series (opened from a DICOM study or the PACS)."""
    src = (case.dicom or {}).get(seq)
    with st.expander("DICOM SEG (export / import)", expanded=False):
        if src is None:
            st.caption(f"{seq} was not opened from DICOM series, so a DICOM SEG cannot reference "
                       "it: open the case from a DICOM study (series picker) or the PACS tab. "
                       "The NIfTI mask is saved with the button above.")
            return
        path, uid = src
        c1, c2 = st.columns(2)
        with c1:
            if st.button("Make a DICOM SEG of the ROI", key=f"{key}_segmake",
                         disabled=editor.voxels == 0):
                with W.user_errors(), st.spinner("Writing the DICOM SEG ..."):
                    data = _seg_bytes(case, seq, editor, path, uid)
                    st.session_state[SEG_FILE_KEY] = (case.key, seq, editor.voxels, data)
            made = st.session_state.get(SEG_FILE_KEY)
            if made and made[0] == case.key and made[1] == seq:
                st.download_button("Download the DICOM SEG", made[3],
                                   file_name=f"{case.case_id}_{seq}_seg.dcm",
                                   mime="application/dicom", key=f"{key}_segdl",
                                   icon=":material/download:")
                if made[2] != editor.voxels:
                    st.caption("The ROI changed since: make the SEG again.")
        with c2:
            up = st.file_uploader("A DICOM SEG of this series", type=["dcm"], key=f"{key}_segup")
            if up is not None and st.button("Use the SEG as the ROI", key=f"{key}_segapply"):
                with W.user_errors():
                    from her2core.imaging.dicom_seg import import_dicom_seg
                    p, _ = S.save_upload_any(up, "seg", (".dcm",))
                    try:
                        mask = import_dicom_seg(p, path)
                    except Her2Error as err:
                        raise type(err)(err.message, case_id=case.case_id, file=up.name,
                                        hint=err.hint) from None
                    ref_uid = mask.meta.get("referenced_series_uid")
                    if ref_uid != uid:
                        raise ImageLoadError(f"the SEG references another series of the study "
                                             f"than the {seq} shown", file=up.name,
                                             hint=f"choose the SEG made on {seq}")
                    editor.set_mask(can.to_canonical(np.asarray(mask.array) > 0))
                    st.session_state.setdefault("roi_source", {})[seq] = "DICOM SEG"
                    st.session_state["roi_nonce"] += 1
                    st.session_state["prediction"] = None
                    st.rerun()


def _seg_bytes(case, seq: str, editor: V.MaskEditor, path: str, uid: str) -> bytes:
    import tempfile
    from her2core.imaging.dicom_seg import export_dicom_seg
    from her2core.imaging.io import load_dicom_reference
    ref, _ = load_dicom_reference(path, uid)
    arr = S.mask_image(case, seq, editor.mask).array
    if arr.shape != ref.shape:
        raise ImageLoadError(f"the {seq} shown ({arr.shape}) is not its DICOM series "
                             f"({ref.shape})", case_id=case.case_id)
    mask = ref.spatial_template().with_array(arr, sequence="mask", modality="SEG")
    algo = "semiautomatic" if (st.session_state.get("roi_source") or {}).get(seq) == "assisted" \
        else "manual"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seg.dcm"
        export_dicom_seg(mask, path, out, series_uid=uid, algorithm=algo)
        return out.read_bytes()


# ----------------------------------------------------------------------------- model needs
def model_needs(case) -> None:
    """Which sequences, ROI and clinical values the session's model reads, against the case
    (before anything runs). A case the model cannot score is a warning here, not an error:
    the upload itself is fine; choose another model or assign the missing series."""
    try:
        pred = S.current_predictor()
    except Her2Error as err:
        W.show_error(err)
        return
    if pred is None:
        st.caption(S.NO_BUNDLE)
        return
    req = pred.required_inputs()
    rois = W.case_rois(case)
    missing = req.missing_sequences(case.files)
    have_mri_roi = any(q != "US" for q in rois)
    no_roi = [r for r in req.roi if (r == "US" and "US" not in rois) or
              (r == "MRI" and not have_mri_roi)]
    need = req.all_clinical()
    values = st.session_state.get("clinical") or {}
    filled = [c for c in need if values.get(c) not in (None, "")]
    with st.container(border=True, key="case_model_needs"):
        st.markdown("**What this model reads** - "
                    + ("images: " + ", ".join(f"{q} {'✓' if q in case.files else '✗ missing'}"
                                               for q in req.sequences)
                       if req.sequences else "no image (clinical model)")
                    + "; ROI: " + (", ".join(f"{r} {'✗ not drawn' if r in no_roi else '✓'}"
                                             for r in req.roi) or "none")
                    + f"; clinical values: {len(filled)} of {len(need)} filled")
        if missing:
            st.warning(f"This model reads {', '.join(req.sequences)}; the case has no "
                       f"{', '.join(missing)}. Open the case from a DICOM study and assign its "
                       "series (DICOM study tab), upload the missing sequence, or choose a model "
                       "for the sequences this case has in the sidebar.",
                       icon=":material/block:")
        elif len(filled) < len(need):
            st.caption("Missing clinical values take the training value: "
                       + ", ".join(c for c in need if c not in filled))
