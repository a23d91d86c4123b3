"""Reusable page pieces: banners, error boxes, the slice viewer with ROI drawing, clinical inputs."""
from __future__ import annotations

import hashlib
import logging
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


def model_output_banner(info: "S.BundleInfo | None" = None) -> None:
    """Banner shown on every page that shows model output."""
    info = info or S.bundle_info()
    if info.available and info.random_init:
        st.warning(RANDOM_INIT_TEXT, icon=":material/science:")
    elif info.available:
        st.caption(f"Model bundle: {info.name} ({info.checksum[:19]})")


def show_error(err: BaseException) -> None:
    """A user-facing error: the message in a box, never a traceback."""
    if isinstance(err, Her2Error):
        st.error(str(err), icon=":material/error:")
    else:
        log.exception("unexpected error in the app")
        st.error(f"Unexpected problem ({type(err).__name__}): {err}. The rest of the session is "
                 "unaffected; please report this message.", icon=":material/error:")


@contextmanager
def user_errors():
    """Show Her2Error (and any other failure) of the block in the page and carry on."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - shown in the page
        if type(err).__name__ in ("StopException", "RerunException"):  # streamlit control flow
            raise
        show_error(err)


def not_available(what: str, modules: list[str]) -> None:
    av = S.availability()
    reasons = "; ".join(f"{m}: {av.get(m)}" for m in modules)
    st.info(f"{what} is not available in this build ({reasons}).", icon=":material/block:")


# ----------------------------------------------------------------------------- viewer
def _editor_for(case: "S.CaseData", sequence: str) -> V.MaskEditor:
    """The session's ROI editor for (case, sequence), created empty when new."""
    ref = (case.key, sequence)
    ed = st.session_state.get("editor")
    if ed is None or st.session_state.get("editor_ref") != ref:
        _, can = S.canonical_for(case, sequence)
        ed = V.MaskEditor.empty(can.array.shape)
        st.session_state["editor"] = ed
        st.session_state["editor_ref"] = ref
        st.session_state["roi_source"] = None
    return ed


def current_mask(case: "S.CaseData") -> tuple[str | None, np.ndarray | None]:
    """(sequence, canonical mask) of the case's ROI when one has voxels."""
    ref = st.session_state.get("editor_ref")
    ed = st.session_state.get("editor")
    if ed is None or ref is None or ref[0] != case.key or ed.voxels == 0:
        return None, None
    return ref[1], ed.mask


def _heat_canonical(heat_image, can: V.Canonical, reference) -> np.ndarray | None:
    """A heat map Image (or array on the grid) -> canonical array, or None if on another grid."""
    arr = getattr(heat_image, "array", heat_image)
    arr = np.asarray(arr, float)
    if hasattr(heat_image, "same_grid") and not heat_image.same_grid(reference):
        try:
            from her2core.imaging.ops import resample_to_reference
            arr = np.asarray(resample_to_reference(heat_image, reference).array, float)
        except Exception:  # noqa: BLE001
            return None
    if arr.shape != tuple(can.original_shape):
        return None
    hi = float(np.nanmax(arr)) if arr.size else 0.0
    if hi > 0:
        arr = arr / hi
    return can.to_canonical(arr)


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
        drawn = V.MaskEditor(mask_can).drawn_slices(view)
        if drawn:
            default_slice = drawn[len(drawn) // 2]
    k1, k2, k3, k4 = st.columns(4)
    with k1:
        if n > 1:
            idx = st.slider("Slice", 0, n - 1, min(default_slice, n - 1), key=f"{key}_slice_{view}")
        else:   # st.slider refuses min == max: a one-slice view has nothing to scroll
            idx = 0
            st.caption("Slice: 1 of 1")
    presets = V.window_presets(ref_can.array, mask_can)
    with k2:
        preset = st.selectbox("Window / level preset", list(presets) + ["Manual"], key=f"{key}_preset")
    with k3:
        zoom = st.slider("Zoom", 1.0, 4.0, 1.0, 0.25, key=f"{key}_zoom")
    with k4:
        mask_op = st.slider("Mask opacity", 0.0, 1.0, 0.35, 0.05, key=f"{key}_maskop")
        heat_op = st.slider("Heat-map opacity", 0.0, 1.0, 0.45, 0.05, key=f"{key}_heatop",
                            disabled=not heat)
    manual = None
    if preset == "Manual":
        lo, hi = float(np.min(ref_can.array)), float(np.max(ref_can.array))
        m1, m2 = st.columns(2)
        w0, l0 = presets["Auto (1-99 %)"]
        manual = (m1.slider("Window", 1.0, max(hi - lo, 2.0), float(min(max(w0, 1.0), max(hi - lo, 2.0))),
                            key=f"{key}_win"),
                  m2.slider("Level", lo, max(hi, lo + 1), float(np.clip(l0, lo, max(hi, lo + 1))),
                            key=f"{key}_lev"))
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
                wl = manual or presets.get(preset, presets["Auto (1-99 %)"])
            else:
                p = V.window_presets(can.array)
                wl = p.get(preset, p["Auto (1-99 %)"])
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
                    h = can.get_slice(v, j, hc)
            rgb = V.compose_rgb(grey, mask=m, mask_opacity=mask_op, heat=h, heat_opacity=heat_op)
            title = f"{seq} - {v} slice {j} (0-{ns - 1})"
            if seq != draw_seq and not can.is_2d and not img.same_grid(ref_img):
                title += " (own grid)"
            fig = V.slice_figure(rgb, can.pixel_size(v), title=title, labels=V.axis_labels(v),
                                 selectable=draw and seq == draw_seq, zoom=zoom,
                                 zoom_center=zoom_center if seq == draw_seq else None,
                                 height=420 if len(shown) < 3 else 340)
            if draw and seq == draw_seq:
                event = st.plotly_chart(fig, key=f"{key}_roi_{st.session_state['roi_nonce']}",
                                        on_select="rerun", selection_mode=("lasso", "box"),
                                        config={"displaylogo": False, "scrollZoom": False})
                _apply_selection(event, editor, view, idx, grey.shape, key)
            else:
                st.plotly_chart(fig, key=f"{key}_img_{seq}", config={"displaylogo": False})
    if ref_can.oblique:
        st.caption("This image is stored obliquely; the display is snapped to the nearest axes "
                   "(saved masks keep the exact geometry).")
    if draw:
        roi_tools(case, draw_seq, editor, ref_img, ref_can, view, idx, key)


def _apply_selection(event, editor: V.MaskEditor, view: str, idx: int, shape, key: str) -> None:
    sel = None
    try:
        sel = event.selection if event is not None else None
    except AttributeError:
        sel = (event or {}).get("selection")
    if not sel:
        return
    lasso = list(sel.get("lasso") or [])
    box = list(sel.get("box") or [])
    if not lasso and not box:
        return
    sig = hashlib.sha1(repr((view, idx, lasso, box)).encode()).hexdigest()
    if st.session_state.get("roi_last") == sig:
        return
    mode = "subtract" if st.session_state.get(f"{key}_roimode", "Add") == "Erase" else "add"
    changed = 0
    for poly in lasso:
        changed += editor.apply_polygon(view, idx, poly.get("x", []), poly.get("y", []), mode)
    for b in box:
        region = V.box_to_mask(b.get("x", [0, 0]), b.get("y", [0, 0]), shape)
        changed += editor.apply(view, idx, region, mode)
    st.session_state["roi_last"] = sig
    st.session_state["roi_source"] = "drawn"
    st.session_state["roi_nonce"] += 1
    st.session_state["prediction"] = None if changed else st.session_state.get("prediction")
    st.rerun()


def roi_tools(case, seq, editor: V.MaskEditor, ref_img, can: V.Canonical, view: str, idx: int,
              key: str) -> None:
    st.markdown("**ROI** - choose the lasso (or box) in the chart's toolbar and draw on the slice; "
                "each closed shape is added to (or erased from) this slice.")
    t1, t2, t3, t4, t5, t6 = st.columns([1.3, 1, 1.3, 1.6, 1, 1.4])
    with t1:
        st.radio("Mode", ["Add", "Erase"], horizontal=True, key=f"{key}_roimode")
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
            try:
                data = V.mask_to_nifti_bytes(editor.mask, can, ref_img)
                st.download_button("Save mask (NIfTI)", data, file_name=f"{case.case_id}_{seq}_mask.nii.gz",
                                   mime="application/gzip", key=f"{key}_dl",
                                   icon=":material/download:")
            except Exception as err:  # noqa: BLE001
                show_error(err)
    sp = can.spacing
    vox_ml = editor.voxels * sp[0] * sp[1] * sp[2] / 1000.0
    st.caption(f"ROI on {seq}: {editor.voxels} voxels"
               + ("" if can.is_2d else f" ({vox_ml:.2f} mL)")
               + f", on {view} slices {drawn}" + (f"; source: {st.session_state.get('roi_source')}"
                                                  if st.session_state.get("roi_source") else ""))
    l1, l2 = st.columns(2)
    mkey = case.mask_key_for(seq)
    with l1:
        if mkey in case.files and st.button(f"Use the case's {mkey} file", key=f"{key}_usecase"):
            with user_errors():
                arr = S.load_mask_array(case, seq, case.files[mkey], case.hashes[mkey])
                editor.set_mask(arr)
                st.session_state["roi_source"] = "case"
                st.session_state["roi_nonce"] += 1
                st.rerun()
    with l2:
        up = st.file_uploader("Load a mask file", type=["nii", "gz", "nrrd", "mha", "png"],
                              key=f"{key}_maskup")
        if up is not None and st.button("Apply the uploaded mask", key=f"{key}_maskapply"):
            with user_errors():
                path, sha = S.save_upload(up, "mask")
                arr = S.load_mask_array(case, seq, path, sha)
                editor.set_mask(arr)
                st.session_state["roi_source"] = "file"
                st.session_state["roi_nonce"] += 1
                st.rerun()


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
                if val is not None and not (f.lo <= val <= f.hi):
                    st.warning(f"{f.label} = {val:g} {f.unit} is outside {f.lo:g}-{f.hi:g}; left missing")
                    val = None
                out[name] = st.number_input(label, min_value=float(f.lo), max_value=float(f.hi),
                                            value=val, step=float(f.step), key=f"{key}_{name}",
                                            placeholder="missing", help=f.help or None)
            elif f.kind == "binary":
                opts = ["missing", "no", "yes"]
                cur = 0 if clin.is_missing(v) else (2 if int(float(v)) == 1 else 1)
                ch = st.selectbox(label, opts, index=cur, key=f"{key}_{name}", help=f.help or None)
                out[name] = None if ch == "missing" else int(ch == "yes")
            else:
                opts = ["missing"] + list(f.options)
                sv = None if clin.is_missing(v) else (str(int(float(v))) if name == "grade" else str(v))
                cur = opts.index(sv) if sv in opts else 0
                ch = st.selectbox(label, opts, index=cur, key=f"{key}_{name}")
                out[name] = None if ch == "missing" else (int(ch) if name == "grade" else ch)
    return out
