"""Reusable page pieces: banners, error boxes, the slice viewer with ROI drawing, clinical inputs."""
from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from pathlib import Path
from contextlib import contextmanager
from typing import Any

import numpy as np
import streamlit as st

from her2core import DISCLAIMER
from her2core import viewer as V
from her2core.errors import Her2Error

from . import clinical as clin
from . import services as S

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- banners
def disclaimer() -> None:
    st.caption(":warning: " + DISCLAIMER)


RANDOM_INIT_TEXT = ("Demo model: the networks have **random-initialised weights** and the bundle "
                    "was trained on **synthetic data**. The numbers below show how the tool works; "
                    "they carry no clinical meaning.")


def model_output_banner(bundle=None) -> None:
    """Banner shown on every page that shows model output."""
    if bundle is None:
        try:
            bundle = S.current_bundle()
        except Her2Error:
            return
    if bundle is None:
        return
    if bundle.random_init:
        st.warning(RANDOM_INIT_TEXT, icon=":material/science:")
    else:
        st.caption(f"Model bundle: {bundle.name} ({bundle.checksum[:19]})")


def error_text(err: BaseException) -> str:
    """What the page shows for an error: what is wrong (with the user's own file name, never a
    server temp path), then what to do in the app's terms. The CLI keeps ``str(err)``."""
    if isinstance(err, Her2Error):
        what, where, hint = S.user_error(err)
        text = (f"{where}: " if where else "") + (what or "")
        if hint:
            text += f"  \n**What to do:** {hint}"
        return text
    return (f"Unexpected problem: this step failed ({type(err).__name__}: "
            f"{S.user_text(str(err))}). "
            "Nothing already entered or drawn is lost; try again, or open the case again. "
            "The details are in the server log.")


def show_error(err: BaseException) -> None:
    """A user-facing error: the reason in a visible box, never a traceback."""
    if not isinstance(err, Her2Error):
        log.exception("unexpected error in the app", exc_info=err)
    st.error(error_text(err), icon=":material/error:")


@contextmanager
def user_errors():
    """Show Her2Error (and any other failure) of the block in the page and carry on."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - shown in the page
        if type(err).__name__ in ("StopException", "RerunException"):  # streamlit control flow
            raise
        show_error(err)


# ----------------------------------------------------------------------------- viewer
def _editors(case: "S.CaseData") -> dict[str, V.MaskEditor]:
    """The case's ROI editors by sequence (a new case starts with none)."""
    eds = st.session_state.get("editors") or {}
    ref = st.session_state.get("editor_ref")
    if ref is None or ref[0] != case.key:
        eds = {}
        st.session_state["editors"] = eds
        st.session_state["roi_source"] = {}
    return eds


def _editor_for(case: "S.CaseData", sequence: str) -> V.MaskEditor:
    """The session's ROI editor for (case, sequence); a new one starts from the case's own
    mask file when it lies on this sequence's grid (mask.nii.gz on DCE/T1, US_mask on US)."""
    eds = _editors(case)
    st.session_state["editor_ref"] = (case.key, sequence)
    ed = eds.get(sequence)
    if ed is None:
        _, can = S.canonical_for(case, sequence)
        ed = V.MaskEditor.empty(can.array.shape)
        mkey = case.mask_key_for(sequence)
        if mkey in case.files and sequence == case.mask_reference(mkey):
            ed.set_mask(S.load_mask_array(case, sequence, case.files[mkey], case.hashes[mkey]))
            st.session_state.setdefault("roi_source", {})[sequence] = "case"
        eds[sequence] = ed
        st.session_state["editors"] = eds
    return ed


def current_mask(case: "S.CaseData") -> tuple[str | None, np.ndarray | None]:
    """(sequence, canonical mask) of the ROI being drawn now, when it has voxels."""
    ref = st.session_state.get("editor_ref")
    eds = st.session_state.get("editors") or {}
    if ref is None or ref[0] != case.key or ref[1] not in eds or eds[ref[1]].voxels == 0:
        rois = case_rois(case)
        return next(iter(rois.items())) if rois else (None, None)
    return ref[1], eds[ref[1]].mask


def case_editors(case: "S.CaseData") -> dict[str, V.MaskEditor]:
    """The editors of the case's ROIs that have voxels: sequence -> MaskEditor (MRI first)."""
    ref = st.session_state.get("editor_ref")
    if ref is None or ref[0] != case.key:
        return {}
    eds = st.session_state.get("editors") or {}
    return {s: e for s, e in sorted(eds.items(), key=lambda kv: kv[0] == "US") if e.voxels}


def case_rois(case: "S.CaseData") -> dict[str, np.ndarray]:
    """Every ROI of the case with voxels: sequence -> canonical mask (MRI first)."""
    return {s: e.mask for s, e in case_editors(case).items()}


def open_case_rois(case: "S.CaseData") -> list[str]:
    """Apply the case's own mask files as its ROIs when it opens; returns the problems
    (a corrupt or misplaced mask is reported, the case still opens)."""
    problems = []
    for mkey in ("mask", "US_mask"):
        seq = case.mask_reference(mkey)
        if mkey in case.files and seq is not None:
            try:
                _editor_for(case, seq)
            except Her2Error as err:
                problems.append(str(err))
    ref = case.reference
    if ref is not None:
        st.session_state["editor_ref"] = (case.key, ref)
    return problems


#: heat map Image -> {id(Canonical): (weakref to it, HeatVolume)}; entries go with the maps
_HEAT_VIEWS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_HEAT_LOCK = threading.Lock()      # sessions run in their own threads


def _heat_canonical(heat_image, can: V.Canonical, reference) -> V.HeatVolume | None:
    """A heat map Image (or array on the grid) -> its canonical HeatVolume (scaled 0..1 for
    display), or None if on another grid. A map Image's view is made once, not per rerun
    (its maximum scans the whole volume; the view copies nothing)."""
    cacheable = hasattr(heat_image, "same_grid")
    if cacheable:
        with _HEAT_LOCK:
            hit = _HEAT_VIEWS.get(heat_image, {}).get(id(can))
        if hit is not None and hit[0]() is can:
            return hit[1]
    arr = getattr(heat_image, "array", heat_image)
    if cacheable and not heat_image.same_grid(reference):
        try:
            from her2core.imaging.ops import resample_to_reference
            arr = resample_to_reference(heat_image, reference).array
        except Exception:  # noqa: BLE001
            return None
    arr = np.asarray(arr)
    if arr.shape != tuple(can.original_shape):
        return None
    hv = can.heat(arr)
    if cacheable:
        with _HEAT_LOCK:
            _HEAT_VIEWS.setdefault(heat_image, {})[id(can)] = (weakref.ref(can), hv)
    return hv


def viewer(case: "S.CaseData", *, key: str = "case", draw: bool = True,
           heat: dict[str, Any] | None = None, default_sequences: list[str] | None = None,
           mask: tuple[str, np.ndarray] | None = None) -> None:
    """Slice viewer: sequences side by side, views, window/level, zoom, overlays, ROI drawing.

    heat: sequence -> heat map Image (Grad-CAM) shown with the heat opacity.
    mask: (sequence, canonical mask) shown when ``draw`` is False (read-only ROI).
    """
    seqs = case.sequences
    if not seqs:
        st.info("This case has no image yet: upload at least one sequence.")
        return
    ref_seq = case.reference
    c1, c2, c3 = st.columns([2, 2, 1])
    with c1:
        shown = st.multiselect("Sequences (side by side)", seqs,
                               default=default_sequences or seqs[: min(3, len(seqs))],
                               key=f"{key}_seqs")
    with c2:
        draw_seq = st.selectbox("Draw the ROI on", seqs, index=seqs.index(ref_seq),
                                key=f"{key}_drawseq", disabled=not draw,
                                help="the mask is stored on this sequence's grid")
    with c3:
        view = st.radio("View", V.VIEWS, horizontal=False, key=f"{key}_view")
        try:
            big = max(S.canonical_for(case, draw_seq)[1].array.shape[1:]) >= CLINICAL_PX
        except Exception:  # noqa: BLE001 - reported below when the image is read
            big = False
        large = st.toggle("Large view", value=big, key=f"{key}_large",
                          help="one sequence (the one the ROI is drawn on) at full width, "
                               "drawn at least at the image's own size; clinical-size images "
                               "open so (turn it off for the sequences side by side)")
    if large:
        shown = [draw_seq]
    if draw_seq not in shown:
        shown = [draw_seq] + list(shown)
    try:
        ref_img, ref_can = S.canonical_for(case, draw_seq)
    except Exception as err:  # noqa: BLE001
        show_error(err)
        return
    if ref_can.is_2d:
        view = "axial"
    if draw:
        editor = _editor_for(case, draw_seq)
        mask_can = editor.mask if editor.voxels else None
    else:
        editor = None
        mask_can = mask[1] if (mask is not None and mask[0] == draw_seq) else None
    n = ref_can.n_slices(view)
    default_slice = n // 2
    if mask_can is not None:
        default_slice = (editor if editor is not None else V.MaskEditor(mask_can)
                         ).middle_slice(view, default_slice)
    k1, k2, k3, k4 = st.columns(4)
    with k1:
        if n > 1:
            idx = st.slider("Slice", 0, n - 1, min(default_slice, n - 1), key=f"{key}_slice_{view}")
        else:   # st.slider refuses min == max: a one-slice view has nothing to scroll
            idx = 0
            st.caption("Slice: 1 of 1")
    # the volume's percentiles computed once; the ROI's once per change of the ROI
    presets = ref_can.window_presets(editor if mask_can is not None and editor is not None
                                     else mask_can)
    auto = next(k for k in presets if k.startswith("Auto"))
    with k2:
        preset = st.selectbox("Window / level preset", list(presets) + ["Manual"],
                              key=f"{key}_preset",
                              help="the first entry is the scanner's own window when the DICOM "
                                   "header has one (WindowCenter / WindowWidth)")
    with k3:
        zoom = st.slider("Zoom", 1.0, 4.0, 1.0, 0.25, key=f"{key}_zoom")
    with k4:
        mask_op = st.slider("Mask opacity", 0.0, 1.0, 0.35, 0.05, key=f"{key}_maskop")
        heat_op = st.slider("Heat-map opacity", 0.0, 1.0, 0.45, 0.05, key=f"{key}_heatop",
                            disabled=not heat)
    manual = None
    if preset == "Manual":
        manual = _manual_window(ref_can, presets[auto], key)
    frac = idx / max(n - 1, 1)
    zoom_center = None
    if mask_can is not None:
        sl = ref_can.get_slice(view, idx, mask_can)
        if sl.any():
            rr, cc = np.nonzero(sl)
            zoom_center = (float(rr.mean()), float(cc.mean()))
    cols = st.columns(len(shown))
    for col, seq in zip(cols, shown):
        with col:
            try:
                img, can = S.canonical_for(case, seq)
            except Exception as err:  # noqa: BLE001
                show_error(err)
                continue
                
            v = "axial" if can.is_2d else view
            ns = can.n_slices(v)
            j = idx if seq == draw_seq else int(round(frac * (ns - 1)))
            grey_src = can.get_slice(v, j)
            if seq == draw_seq:
                wl = manual or presets.get(preset, presets[auto])
            else:
                p = can.window_presets()
                wl = p.get(_same_preset(preset, p), p[next(k for k in p if k.startswith("Auto"))])
            grey = V.apply_window(grey_src, *wl)
            m = None
            if mask_can is not None and seq == draw_seq:
                m = ref_can.get_slice(view, idx, mask_can)
            elif mask_can is not None and img.same_grid(ref_img) and not can.is_2d:
                m = can.get_slice(v, j, mask_can)
            h = None
            if heat and seq in heat and heat[seq] is not None:
                hc = _heat_canonical(heat[seq], can, img)
                if hc is not None:
                    h = hc.get_slice(v, j)
            rgb = V.compose_rgb(grey, mask=m, mask_opacity=mask_op, heat=h, heat_opacity=heat_op)
            title = V.view_title(can, seq, v, j)
            if seq != draw_seq and not can.is_2d and not img.same_grid(ref_img):
                title += " (own grid)"
            editing = draw and seq == draw_seq
            # Seed mode: a click must select the pixel under it, which Streamlit allows only
            # when the chart's drag mode is not lasso / box; the box stays in the toolbar
            seed_mode = editing and st.session_state.get(f"{key}_roimode") == "Seed"
            fig = V.slice_figure(rgb, can.pixel_size(v), title=title, labels=V.view_labels(can, v),
                                 selectable=editing, zoom=zoom,
                                 zoom_center=zoom_center if seq == draw_seq else None,
                                 height=figure_height(grey.shape, can.pixel_size(v), len(shown),
                                                     large),
                                 dragmode="pan" if seed_mode else None)
            if draw and seq == draw_seq:
                event = st.plotly_chart(fig, key=f"{key}_roi_{st.session_state['roi_nonce']}",
                                        on_select="rerun",
                                        selection_mode=("points", "lasso", "box"),
                                        config={"displaylogo": False, "scrollZoom": False})
                _apply_selection(event, editor, view, idx, grey.shape, key,
                                 seg=(case, draw_seq, ref_img, ref_can))
            else:
                st.plotly_chart(fig, key=f"{key}_img_{seq}", config={"displaylogo": False})
            st.caption(V.geometry_caption(can, v))
    if ref_can.oblique:
        st.caption("This image is stored obliquely; the display is snapped to the nearest axes "
                   "(saved masks keep the exact geometry).")
    if draw:
        roi_tools(case, draw_seq, editor, ref_img, ref_can, view, idx, key)


#: figure margins of V.slice_figure (title, letters) around the image, in px
_FIG_MARGIN = 88
#: layout width (px) of the main column at 1366 px with the sidebar open (measured: 704)
_MAIN_WIDTH = 720
#: slices this wide or wider (px) open in the large view (one sequence, full width)
CLINICAL_PX = 384


def figure_height(shape, pixel_size, n_shown: int, large: bool = False) -> int:
    """Figure height (px) that draws a slice at its own size when the column is wide enough:
    a 448 px slice alone gets 448 px plus margins (not the 270-340 px of a third of the
    page); side by side, as large as its column allows; ``large``: the full width, up to
    720 px high."""
    rows, cols = shape
    cw, rh = (float(v) for v in pixel_size)
    aspect = (rows * rh) / max(cols * cw, 1e-9)          # displayed height / width
    col_w = _MAIN_WIDTH / max(n_shown, 1) - 24
    h_fit = col_w * aspect                                # the image fills its column
    natural = rows * max(rh / cw, 1.0) if cw > 0 else rows
    if large:
        img_h = max(natural, min(h_fit, 560.0))
    elif n_shown == 1:
        img_h = min(max(natural, 300.0), 640.0)
    else:
        img_h = min(h_fit, max(natural, 300.0))
    return int(round(max(img_h, 300.0) + _FIG_MARGIN))


def _same_preset(preset: str, presets: dict) -> str:
    """The preset of another sequence with the same name (the header one by its prefix)."""
    if preset in presets:
        return preset
    if preset.startswith(V.HEADER_PRESET):
        return next((k for k in presets if k.startswith(V.HEADER_PRESET)), preset)
    return preset


def _manual_window(can: V.Canonical, start: tuple[float, float], key: str) -> tuple[float, float]:
    """Window and level sliders over the volume's range, stepping by 1 on integer images and
    by about range / 200 otherwise (never 0.01 on a 1-1653 range)."""
    lo, hi = can.value_range()
    step = V.window_step(can)
    span = max(hi - lo, step * 2)
    if can.integer:
        lo, hi, span = float(np.floor(lo)), float(np.ceil(hi)), float(np.ceil(span))
    w0, l0 = start
    q = lambda v: float(np.round(v / step) * step)      # noqa: E731 - on the slider's grid
    m1, m2 = st.columns(2)
    win = m1.slider("Window", step, span, float(np.clip(q(w0), step, span)), step,
                    key=f"{key}_win")
    lev = m2.slider("Level", q(lo), max(q(hi), q(lo) + step), float(np.clip(q(l0), q(lo), q(hi))),
                    step, key=f"{key}_lev")
    return float(win), float(lev)


def _apply_selection(event, editor: V.MaskEditor, view: str, idx: int, shape, key: str,
                     seg=None) -> None:
    sel = None
    try:
        sel = event.selection if event is not None else None
    except AttributeError:
        sel = (event or {}).get("selection")
    if not sel:
        return
    lasso = list(sel.get("lasso") or [])
    box = list(sel.get("box") or [])
    points = list(sel.get("points") or [])
    if not lasso and not box and not points:
        return
    sig = hashlib.sha1(repr((view, idx, lasso, box, points)).encode()).hexdigest()
    if st.session_state.get("roi_last") == sig:
        return
    roimode = st.session_state.get(f"{key}_roimode", "Add")
    if roimode == "Seed" and seg is not None:
        from . import case_panels
        args = case_panels.seed_from_selection(sel)
        st.session_state["roi_last"] = sig
        if args is not None:
            case, seq, ref_img, can = seg
            with st.spinner("Segmenting ..."):
                try:
                    case_panels.run_segmentation(case, seq, editor, ref_img, can, view, idx, **args)
                except (Her2Error, IndexError) as err:
                    st.session_state["last_error"] = error_text(err) if isinstance(err, Her2Error) \
                        else "The click is outside the image."
                    st.session_state["roi_nonce"] += 1
            st.rerun()
        return
    if not lasso and not box:
        return
    mode = "subtract" if roimode == "Erase" else "add"
    changed = 0
    for poly in lasso:
        changed += editor.apply_polygon(view, idx, poly.get("x", []), poly.get("y", []), mode)
    for b in box:
        region = V.box_to_mask(b.get("x", [0, 0]), b.get("y", [0, 0]), shape)
        changed += editor.apply(view, idx, region, mode)
    st.session_state["roi_last"] = sig
    ref = st.session_state.get("editor_ref")
    if ref is not None:
        st.session_state.setdefault("roi_source", {})[ref[1]] = "drawn"
    st.session_state["roi_nonce"] += 1
    st.session_state["prediction"] = None if changed else st.session_state.get("prediction")
    st.rerun()


def roi_tools(case, seq, editor: V.MaskEditor, ref_img, can: V.Canonical, view: str, idx: int,
              key: str) -> None:
    st.markdown("**ROI** - choose the lasso (or box) in the chart's toolbar and draw on the slice; "
                "each closed shape is added to (or erased from) this slice. In *Seed* mode a "
                "click on the lesion (or a box round it, with the toolbar's box tool) segments "
                "it in 3-D.")
    t1, t2, t3, t4, t5, t6 = st.columns([1.6, 1, 1.3, 1.6, 1, 1.4])
    with t1:
        st.radio("Mode", ["Add", "Erase", "Seed"], horizontal=True, key=f"{key}_roimode")
    with t2:
        if st.button("Undo", key=f"{key}_undo", disabled=not editor.history,
                     icon=":material/undo:"):
            editor.undo()
            st.session_state["roi_nonce"] += 1
            st.rerun()
    with t3:
        if st.button("Copy to +/-1 slice", key=f"{key}_copy", disabled=can.is_2d):
            if editor.copy_to_neighbours(view, idx, 1):
                st.session_state["roi_nonce"] += 1
                st.rerun()
            else:
                st.toast("nothing to copy on this slice")
    drawn = editor.drawn_slices(view)
    with t4:
        if st.button("Interpolate between drawn slices", key=f"{key}_interp",
                     disabled=can.is_2d or len(drawn) < 2):
            try:
                editor.interpolate(view, drawn[0], drawn[-1])
                st.session_state["roi_nonce"] += 1
                st.rerun()
            except ValueError as err:
                st.error(str(err))
    with t5:
        if st.button("Clear", key=f"{key}_clear", disabled=editor.voxels == 0):
            editor.clear()
            st.session_state["roi_nonce"] += 1
            st.rerun()
    with t6:
        if editor.voxels:
            # written when the button is pressed (a .nii.gz of the whole grid costs tens of
            # ms at clinical size: not on every slice change); the ROI as it is then
            mask = editor.mask
            st.download_button("Save mask (NIfTI)", lambda: V.mask_to_nifti_bytes(mask, can, ref_img),
                               file_name=f"{case.case_id}_{seq}_mask.nii.gz",
                               mime="application/gzip", key=f"{key}_dl",
                               icon=":material/download:")
    st.caption(V.roi_caption(can, editor, seq, view,
                             (st.session_state.get("roi_source") or {}).get(seq)))
    l1, l2 = st.columns(2)
    mkey = case.mask_key_for(seq)
    with l1:
        if mkey in case.files and st.button(f"Use the case's {mkey} file", key=f"{key}_usecase"):
            with user_errors():
                arr = S.load_mask_array(case, seq, case.files[mkey], case.hashes[mkey])
                editor.set_mask(arr)
                st.session_state.setdefault("roi_source", {})[seq] = "case"
                st.session_state["roi_nonce"] += 1
                st.rerun()
    with l2:
        up = st.file_uploader("Load a mask file", type=["nii", "gz", "nrrd", "mha", "png"],
                              key=f"{key}_maskup")
        if up is not None and st.button("Apply the uploaded mask", key=f"{key}_maskapply"):
            with user_errors():
                path, sha = S.save_upload(up, "mask", folder=Path(case.folder) if case.folder
                                          and Path(case.folder).is_dir() else None)
                arr = S.load_mask_array(case, seq, path, sha)
                editor.set_mask(arr)
                st.session_state.setdefault("roi_source", {})[seq] = "file"
                st.session_state["roi_nonce"] += 1
                st.rerun()
    from . import case_panels
    case_panels.assisted_segmentation(case, seq, editor, ref_img, can, view, idx, key)
    # one above the other, at full width: the second reader's feature and ICC tables are
    # unreadable in half the page
    case_panels.dicom_seg(case, seq, editor, can, key)
    case_panels.second_reader(case, seq, editor, ref_img, can, key)


# ----------------------------------------------------------------------------- clinical
def clinical_inputs(values: dict[str, Any], *, key: str, columns: int = 2,
                    fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Inputs for the clinical fields (missing allowed); returns the edited values.

    Values outside a field's range are shown as a warning and left missing.
    """
    out = dict(values)
    names = fields or tuple(f.name for f in clin.FIELDS)
    cols = st.columns(columns)
    for i, name in enumerate(names):
        f = clin.BY_NAME[name]
        v = values.get(name)
        label = f.label + (f" ({f.unit})" if f.unit else "")
        with cols[i % columns]:
            if f.kind == "number":
                val = None if clin.is_missing(v) else float(v)
                if val is not None and f.problem(val):
                    st.warning(f"{f.label}: {f.problem(val)}; left missing")
                    val = None
                out[name] = st.number_input(label, min_value=None if f.lo is None else float(f.lo),
                                            max_value=None if f.hi is None else float(f.hi),
                                            value=val, step=float(f.step), key=f"{key}_{name}",
                                            placeholder="missing", help=f.help or None)
            elif f.kind == "binary":
                opts = ["missing", "no", "yes"]
                cur = 0 if clin.is_missing(v) else (2 if int(float(v)) == 1 else 1)
                ch = st.selectbox(label, opts, index=cur, key=f"{key}_{name}", help=f.help or None)
                out[name] = None if ch == "missing" else int(ch == "yes")
            else:
                opts = ["missing"] + list(f.levels)
                sv = None if clin.is_missing(v) else (str(int(float(v))) if f.kind == "grade" else str(v))
                cur = opts.index(sv) if sv in opts else 0
                ch = st.selectbox(label, opts, index=cur, key=f"{key}_{name}", help=f.help or None)
                out[name] = None if ch == "missing" else (int(ch) if f.kind == "grade" else ch)
    return out


# ----------------------------------------------------------------------------- model choice
def model_chooser() -> None:
    """The session's model: the shipped demo, HER2_BUNDLE, bundles trained or uploaded here.

    A switch takes effect at once, for this session only (no restart); an uploaded zip is
    verified (checksums, trusted types; nothing is unpickled) before it is offered.
    """
    choices = S.bundle_choices()
    if choices:
        paths = [c.path for c in choices]
        cur = S.current_bundle_path()
        # the widget shows the session's model, whoever set it (a bundle trained or uploaded on
        # another page too); the user's own pick is applied by the callback, before the rerun
        if cur in paths:
            st.session_state["model_pick"] = cur
        elif st.session_state.get("model_pick") not in paths:
            st.session_state["model_pick"] = paths[0]
        st.selectbox("Model", paths,
                     format_func=lambda p: next(c.label for c in choices if c.path == p),
                     key="model_pick",
                     on_change=lambda: S.select_bundle(st.session_state["model_pick"]))
        if st.session_state.get(S.BUNDLE_KEY) != st.session_state["model_pick"]:
            S.select_bundle(st.session_state["model_pick"])   # first run: record the default
    else:
        st.caption(S.NO_BUNDLE)
    up = st.file_uploader("Use a bundle (.zip)", type=["zip"], key="bundle_zip")
    if up is not None and st.button("Verify and use", key="bundle_zip_use"):
        with user_errors():
            S.upload_bundle(up)
            st.rerun()
    with user_errors():
        b = S.current_bundle()
        if b is not None:
            with st.expander("Model card", expanded=False):
                model_card(b)


def model_card(bundle) -> None:
    """What a user must know before trusting an output (bundle.summary(), laid out)."""
    sm = bundle.summary()
    st.markdown(f"**{sm['name']}**")
    st.caption(f"`{sm['checksum'][:23]}...` - tasks: {', '.join(sm['tasks'])}")
    if sm["random_init"]:
        st.caption(":warning: random-initialised networks: demonstration only")
    for t, tr in sm["training"].items():
        v = sm["validation"].get(t, {})
        line = f"{t}: trained on n = {tr.get('n')} ({tr.get('positives')} positive)"
        if v.get("out_of_fold"):
            line += f"; out-of-fold AUC {v['out_of_fold']['auc']:.3f}"
        if v.get("internal"):
            line += f"; optimism-corrected AUC {v['internal']['auc']:.3f}"
        if v.get("external"):
            line += f"; external AUC {v['external']['auc']:.3f} ({v['external']['where']})"
        st.caption(line)
        if not tr.get("second_level_variables"):
            st.caption(f":warning: {t}: the model kept no predictor (prevalence only)")
    if sm["weights"]:
        st.caption("Weights: " + ", ".join(f"{k} {v[:19]}" for k, v in sm["weights"].items()))
    st.caption(sm.get("intended_use") or "")
