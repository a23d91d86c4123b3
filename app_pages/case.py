"""Case: pick a demo case or upload one, assign sequences, clinical values, viewer and ROI."""
import streamlit as st

from webapp.state import init_state

from webapp import clinical as clin
from webapp import services as S
from webapp import widgets as W
from webapp import case_panels as CP
from webapp import predict as P

from her2core.errors import Her2Error, ImageLoadError

init_state()
st.title("Case")
W.disclaimer()

tab_demo, tab_up, tab_study, tab_pacs = st.tabs(
    ["Demo case", "Upload files", "DICOM study (series picker)", "PACS (DICOMweb)"])
with tab_demo:
    with W.user_errors():
        root = S.demo_cohort_root()
        table = S.cohort_table(str(root))
        ids = list(table.index)
        c1, c2 = st.columns([3, 1])
        pick = c1.selectbox("Demo case (synthetic, no patient)", ids, key="demo_pick")
        c2.write("")
        if c2.button("Open demo case", type="primary", key="open_demo"):
            CP.open_case(S.demo_case(pick))
            st.rerun()

with tab_up:
    st.caption("Files are kept in a temporary folder of this session (removed when the session "
               "ends or another case is opened) and read with her2core's image readers (nothing "
               "is unpickled). One file per sequence: NIfTI / NRRD / MHA, a zip of one DICOM "
               "series, or an ultrasound PNG / JPG. A zip with several series: use the DICOM "
               "study tab.")
    ups = {}
    cols = st.columns(4)
    for col, seq in zip(cols, S.SEQUENCES):
        ups[seq] = col.file_uploader(seq, key=f"up_{seq}",
                                     type=["nii", "gz", "nrrd", "mha", "zip", "png", "jpg", "jpeg",
                                           "bmp", "dcm"])
    up_mask = st.file_uploader("ROI mask (optional, on the DCE grid, or T1 without DCE; US_mask for US)",
                               key="up_mask", type=["nii", "gz", "nrrd", "mha", "png"])
    case_id = st.text_input("Case id", value="upload-1", key="up_case_id")
    if st.button("Load uploaded case", key="load_upload", type="primary"):
        chosen = {s: f for s, f in ups.items() if f is not None}
        if not chosen:
            st.error("Choose at least one image file first.")
        else:
            ok = True
            folder = S.new_case_folder()
            files, hashes, names = {}, {}, {}
            for seq, f in chosen.items():
                try:
                    path, sha = S.save_upload(f, seq, folder=folder)
                    S.load_image(path, sha, seq)   # read now: a bad file is reported here
                    files[seq], hashes[seq], names[seq] = path, sha, f.name
                except Exception as err:  # noqa: BLE001 - shown in the page
                    ok = False
                    W.show_error(err)
            if ok:
                case = S.CaseData(case_id=case_id or "upload", source="upload", files=files,
                                  hashes=hashes, clinical=clin.normalise({}), names=names,
                                  folder=str(folder))
                mask_ok = True
                if up_mask is not None:
                    try:   # validated now, like an image: a corrupt or misplaced mask is refused
                        mpath, msha = S.save_upload(up_mask, "mask", folder=folder)
                        mk = "US_mask" if case.reference == "US" else "mask"
                        ref = case.mask_reference(mk) if mk == "US_mask" else \
                            next((s for s in ("DCE", "T1") if s in case.files), None)
                        if ref is None:
                            raise ImageLoadError("the mask needs its reference image (DCE or T1 "
                                                 "for MRI, US for ultrasound)", file=up_mask.name)
                        case.files[mk], case.hashes[mk] = mpath, msha
                        S.load_mask_array(case, ref, mpath, msha)
                    except Her2Error as err:
                        mask_ok = False
                        case.files.pop("mask", None), case.files.pop("US_mask", None)
                        W.show_error(type(err)(err.message, case_id=case.case_id, file=up_mask.name,
                                               hint=err.hint))
                if mask_ok:
                    CP.open_case(case)
                    st.rerun()
            S.discard_folder(folder)          # nothing of a refused upload is kept

with tab_study:
    CP.study_upload_tab()

with tab_pacs:
    CP.pacs_tab()

case = st.session_state.get("case")
problem = st.session_state.get("last_error")
if problem:
    st.error(problem, icon=":material/error:")
    st.session_state["last_error"] = None       # shown once
if case is None:
    st.info("Open a demo case or upload one to start.")
    st.stop()

st.subheader(f"Case {case.case_id}")
st.caption(f"{case.note or case.source} - sequences: "
           + (", ".join(f"{q} ({case.names[q]})" if q in case.names else q for q in case.sequences)
              or "none")
           + (f" - ROI file: {', '.join(k for k in S.MASK_KEYS if k in case.files)}"
              if any(k in case.files for k in S.MASK_KEYS) else ""))
CP.model_needs(case)
heat = None
part = P.cached_part(case) if st.session_state.get("prediction") is not None else None
maps = part.maps(st.session_state.get("task") or "her2") if part is not None else {}
if maps:                         # the prediction of this case and these ROIs has Grad-CAM maps
    bbs = sorted({b for _, b in maps})
    pick = st.selectbox("Heat-map overlay (Grad-CAM of the last prediction)", ["none"] + bbs,
                        key="case_heat")
    if pick != "none":
        heat = {s: m for (s, b), m in maps.items() if b == pick}
W.viewer(case, key="case", draw=True, heat=heat)

st.subheader("Clinical values")
st.caption("Leave a value missing when it is unknown (it is never treated as zero).")
new = W.clinical_inputs(st.session_state["clinical"], key=f"clin_{case.key}_{case.case_id}", columns=4)
problems = clin.validate(new)
for p in problems:
    st.error(p)
if new != st.session_state["clinical"] and not problems:
    st.session_state["clinical"] = new

st.page_link("app_pages/prediction.py", label="Run the prediction", icon=":material/analytics:")
