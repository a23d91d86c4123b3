"""Prediction panels: her2core.predictor.CasePredictor behind a cache, laid out for the page.

* :func:`run_image_part` - the networks (features, block scores, Grad-CAM) of the
  case and its ROIs, cached process-wide by bundle checksum, file hashes and ROI
  hashes (a repeat, in this session or another, is served at once);
* :func:`run_clinical_part` - the second level for the clinical values (what-if);
* panels that only place what those return.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import streamlit as st

from her2core import viewer as V
from her2core.errors import Her2Error

from . import services as S
from . import widgets as W

log = logging.getLogger(__name__)

TASK_LABELS = {"her2": "HER2-positive vs negative", "her2_low": "HER2-low vs HER2-zero"}
POSITIVE_LABEL = {"her2": "HER2-positive", "her2_low": "HER2-low (vs HER2-zero)"}


# ----------------------------------------------------------------------------- inputs
def roi_hash(rois: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for seq in sorted(rois):
        m = np.asarray(rois[seq], bool)
        h.update(f"{seq}{m.shape}".encode())
        h.update(np.packbits(m).tobytes())
    return h.hexdigest()[:16]


def case_inputs(case, predictor) -> tuple[dict, dict]:
    """(images, masks) for the sequences the bundle reads, each mask on its image's grid."""
    from her2core.predictor import case_masks
    need = predictor.required_inputs().sequences
    missing = [s for s in need if s not in case.files]
    if missing:
        raise Her2Error(f"the model reads {', '.join(need)}; this case has no "
                        f"{', '.join(missing)}", case_id=case.case_id,
                        hint="assign the series on the Case page, or choose a model for the "
                             "sequences this case has (sidebar)")
    images = {s: S.canonical_for(case, s)[0] for s in need}
    rois = {}
    for seq, m in W.case_rois(case).items():
        img, can = S.canonical_for(case, seq)
        rois[seq] = img.spatial_template().with_array(can.from_canonical(m).astype(np.uint8),
                                                      sequence="mask", modality="SEG")
    return images, case_masks(images, rois, case_id=case.case_id, sequences=need)


def part_nbytes(part) -> int:
    """Bytes an ImagePart holds in arrays: its Grad-CAM maps (each a float32 volume on its
    sequence's grid: 80 MB at 448 x 448 x 100) and its feature rows."""
    n = 0
    for ts in getattr(part, "tasks", {}).values():
        for r in getattr(ts, "gradcam", []):
            for a in (getattr(getattr(r, "map_image", None), "array", None),
                      getattr(r, "image_slice", None), getattr(r, "map_slice", None)):
                n += int(getattr(a, "nbytes", 0) or 0)
    feats = getattr(part, "features", None)
    if feats is not None:
        n += int(feats.memory_usage(index=False, deep=False).sum())
    return n


#: bytes of image parts the process keeps (HER2_PART_CACHE_MB, default 2048)
PART_CACHE_MB_ENV = "HER2_PART_CACHE_MB"


def _part_cache_bytes() -> int:
    try:
        return int(float(os.environ.get(PART_CACHE_MB_ENV, 2048)) * 2**20)
    except ValueError:
        return 2048 * 2**20


class _BoundedCache:
    """Thread-safe LRU of finished results (read-only once stored), bounded by count and,
    with ``weigh``, by bytes: clinical-size Grad-CAM maps make one result weigh a GB, so a
    count alone bounded nothing. The newest result is always kept."""

    def __init__(self, size: int, max_bytes: int | None = None, weigh=None):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()
        self.max_bytes, self._weigh, self._w = max_bytes, weigh, {}

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
            return None

    def put(self, key, value):
        with self._lock:
            if key in self._d:            # another session finished first: keep one object
                return self._d[key]
            self._d[key] = value
            self._w[key] = int(self._weigh(value)) if self._weigh else 0
            while len(self._d) > 1 and (len(self._d) > self.size or (
                    self.max_bytes is not None and sum(self._w.values()) > self.max_bytes)):
                old, _ = self._d.popitem(last=False)
                self._w.pop(old, None)
            return value

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(self._w.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._d)


@st.cache_resource(show_spinner=False)
def _image_parts() -> _BoundedCache:
    return _BoundedCache(16, max_bytes=_part_cache_bytes(), weigh=part_nbytes)


def case_roi_hash(case) -> str:
    """roi_hash of the case's ROIs, computed once per change of an ROI (hashing a clinical
    -size mask costs tens of ms; this runs on every rerun of the Case and Prediction pages)."""
    eds = W.case_editors(case)
    tok = (case.key, tuple((s, e.token) for s, e in sorted(eds.items())))
    memo = st.session_state.get("roi_hash_memo")
    if memo is not None and memo[0] == tok:
        return memo[1]
    h = roi_hash({s: e.mask for s, e in eds.items()})
    st.session_state["roi_hash_memo"] = (tok, h)
    return h


def part_key(case) -> tuple:
    pred = S.current_predictor()
    return (pred.bundle.checksum if pred else "", case.key, case_roi_hash(case))


def run_image_part(case, progress=None):
    """The networks on the case, served from the process-wide cache when the same bundle,
    files and ROIs were run before. ``progress(done, total, message)`` is called from this
    thread (it may draw on the page): the cache holds results only and draws nothing."""
    pred = S.current_predictor()
    if pred is None:
        raise Her2Error(S.NO_BUNDLE)
    key = part_key(case)
    cache = _image_parts()
    hit = cache.get(key)
    if hit is not None:
        return hit
    images, masks = case_inputs(case, pred)
    part = pred.image_part(images, masks, case_id=case.case_id, progress=progress)
    return cache.put(key, part)


def cached_part(case):
    """The image part of the case's current ROIs if it was computed (no computation)."""
    if S.current_predictor() is None:
        return None
    return _image_parts().get(part_key(case))


def run_clinical_part(part, clinical: dict[str, Any], task: str = "her2"):
    return S.current_predictor().clinical_part(part, clinical, task)


def available_tasks() -> list[str]:
    pred = S.current_predictor()
    return list(pred.tasks) if pred is not None else []


def task_selector(key: str) -> str:
    """Task switch (HER2-positive vs negative / HER2-low vs zero) kept in the session."""
    tasks = available_tasks()
    if not tasks:
        return "her2"
    cur = st.session_state.get("task", "her2")
    if cur not in tasks:
        cur = tasks[0]
    if len(tasks) > 1:
        cur = st.radio("Task", tasks, index=tasks.index(cur), horizontal=True, key=key,
                       format_func=lambda t: TASK_LABELS.get(t, t))
    st.session_state["task"] = cur
    return cur


# ----------------------------------------------------------------------------- rendering
#: Streamlit's own chart theme is switched off: her2core figures are built for the app's
#: background with their ``theme`` argument.
CHART = {"theme": None, "config": {"displaylogo": False}}


def figure_theme() -> str:
    """The her2core figure theme ("light" / "dark") of the app's background."""
    ctx = getattr(getattr(st, "context", None), "theme", None)
    kind = getattr(ctx, "type", None) if ctx is not None else None
    if kind not in ("light", "dark"):
        kind = st.get_option("theme.base") or "light"
    return "dark" if kind == "dark" else "light"


def main_width_px() -> int:
    """Width of the page's main column at a laptop size (1366 px wide, sidebar open): the
    width figures are laid out for (they stretch where there is more room)."""
    return 900


def required_inputs_panel(case) -> bool:
    """What the model reads and what the case has, before anything runs. True when it can run."""
    pred = S.current_predictor()
    if pred is None:
        st.info(S.NO_BUNDLE, icon=":material/block:")
        return False
    req = pred.required_inputs()
    rois = W.case_rois(case)
    missing_seq = req.missing_sequences(case.files)
    have_mri_roi = any(s != "US" for s in rois)
    need_roi = [r for r in req.roi if (r == "US" and "US" not in rois) or (r == "MRI" and not have_mri_roi)]
    clin_need = req.all_clinical()
    filled = [c for c in clin_need if st.session_state.get("clinical", {}).get(c) not in (None, "")]
    with st.container(border=True, key="panel_inputs"):
        st.markdown("**What this model reads**")
        cols = st.columns(3)
        cols[0].markdown("Images: " + (", ".join(
            f"{s} {'✓' if s in case.files else '✗ missing'}" for s in req.sequences) or "none "
            "(clinical model)"))
        cols[1].markdown("ROI: " + (", ".join(f"{r} {'✗ not drawn' if r in need_roi else '✓'}"
                                              for r in req.roi) or "none needed"))
        cols[2].markdown(f"Clinical values: {len(filled)} of {len(clin_need)} filled"
                         + (f" (missing ones take the training value: "
                            f"{', '.join(c for c in clin_need if c not in filled)})"
                            if len(filled) < len(clin_need) else ""))
    if missing_seq:
        st.error(f"This model reads {', '.join(req.sequences)}; the case has no "
                 f"{', '.join(missing_seq)}. Assign the series on the Case page, or choose a model "
                 "for the sequences this case has in the sidebar.", icon=":material/block:")
        return False
    if need_roi:
        st.info("Draw or load the tumour ROI on " + " and ".join(
            "the ultrasound image" if r == "US" else "an MRI sequence" for r in need_roi)
            + " on the Case page first: the networks look inside it.", icon=":material/draw:")
        return False
    return True


def probability_panel(cp, task: str, three=None) -> None:
    """The headline: probability with its interval (and the three-way call when given)."""
    with st.container(border=True, key="panel_probability"):
        label = POSITIVE_LABEL.get(task, task)
        if cp.no_predictors:
            st.metric(label, "no prediction")
            st.warning("This model kept no predictor: it gives every case the training "
                       f"prevalence ({cp.probability:.1%}). It says nothing about this patient.")
            return
        iv = f"95 % interval {cp.interval[0]:.1%} - {cp.interval[1]:.1%}" if cp.interval else \
            "no interval (the final model is not a logistic nomogram)"
        st.metric(label, f"{cp.probability:.1%}", help=cp.interval_method or None)
        st.caption(iv)
        if three:
            three_way_line(three)
        if cp.points:
            st.caption(f"Total points: {cp.points['total_points']:.1f}")
        if cp.imputed:
            st.warning("Missing, replaced by the training value: " + ", ".join(cp.imputed),
                       icon=":material/edit_off:")
        if cp.out_of_range:
            st.caption("Outside the training range: " + ", ".join(cp.out_of_range))


def three_way_line(three: dict) -> None:
    """Positive / low / zero class probabilities (her2core.predictor.three_way_call)."""
    with st.container(key="panel_three_way"):
        if three.get("low") is None:
            st.markdown(f"**Three-way call:** positive {three['positive']:.1%} · low / zero: "
                        "not predicted")
            st.caption(three["note"].capitalize() + ".")
            return
        st.markdown("**Three-way call:** " + " · ".join(
            f"{k} **{three[k]:.1%}**" for k in ("positive", "low", "zero")))
        st.caption(three["note"] + ".")


def three_way(part, clinical: dict[str, Any]):
    pred = S.current_predictor()
    return None if pred is None else pred.three_way_call(part, clinical)


def nomogram_panel(cp, width: int | None = None) -> None:
    if cp.nomogram is None:      # a non-logistic final level: one plain line, no empty panel
        st.info(" ".join(n for n in cp.notes if "no nomogram" in n)
                or "This model has no nomogram.", icon=":material/info:")
        return
    with st.container(border=True, key="panel_nomogram"):
        st.markdown("#### Nomogram")
        from her2core.plots import nomogram_figure
        fig = nomogram_figure(cp.nomogram, cp.points, interval=cp.interval, theme=figure_theme(),
                              width=width or main_width_px(), title="")
        fig.update_layout(height=max(360, 44 * (len(cp.nomogram.variables) + 3) + 90))
        st.plotly_chart(fig, key="fig_nomogram", **CHART)


def shap_panel(cp) -> None:
    with st.container(border=True, key="panel_shap"):
        st.markdown("#### SHAP contributions")
        if cp.contributions is None:
            st.info(" ".join(n for n in cp.notes if "SHAP" in n) or "No SHAP contributions.")
            return
        from her2core.explain.figures import waterfall_figure
        fig = waterfall_figure(cp.contributions, max_rows=10, theme=figure_theme())
        st.plotly_chart(fig, key="fig_shap", **CHART)
        left = cp.contributions.left_out
        st.caption(cp.contributions.note + " Reference: the model's training cases "
                   "(out-of-fold scores)." + (f" Not in the final model (not shown): "
                                               f"{', '.join(left)}." if left else ""))


@st.cache_data(show_spinner=False, max_entries=16)
def _validation(checksum: str, task: str, _bundle=None):
    from her2core.workflows.validation import bundle_validation
    return bundle_validation(_bundle, task)


def validation_sets(task: str):
    b = S.current_bundle()
    return [] if b is None else _validation(b.checksum, task, _bundle=b)


def dca_panel(task: str, threshold: float, key: str = "dca") -> None:
    """Decision curve and calibration from the bundle's own validation predictions."""
    with st.container(border=True, key=f"panel_{key}"):
        sets = validation_sets(task)
        st.markdown("#### Decision curve and calibration")
        if not sets:
            st.info("This bundle carries no validation predictions for this task (it was trained "
                    "by an older version, or without enough cases): no decision curve is shown.")
            return
        names = [s.set for s in sets]
        pick = st.radio("Validation set", names, horizontal=True, key=f"{key}_set",
                        format_func=lambda n: next(s.title for s in sets if s.set == n)) \
            if len(sets) > 1 else names[0]
        sv = next(s for s in sets if s.set == pick)
        from her2core.plots import calibration_figure, decision_curve_figure
        t1, t2 = st.tabs(["Decision curve", "Calibration"])
        theme = figure_theme()
        with t1:
            fig = decision_curve_figure(sv.dca, theme=theme)
            fig.add_vline(x=threshold, line=dict(color="#e4572e", dash="dash"),
                          annotation_text=f"threshold {threshold:.2f}")
            fig.update_layout(height=380, title=f"Decision curve: {sv.title}")
            st.plotly_chart(fig, key=f"fig_{key}", **CHART)
        with t2:
            fig = calibration_figure(binned={"model": sv.binned},
                                     smooth={"model": sv.smooth} if sv.smooth else None,
                                     fits={"model": sv.calibration} if sv.calibration else None,
                                     theme=theme)
            fig.update_layout(height=380, title=f"Calibration: {sv.title}")
            st.plotly_chart(fig, key=f"fig_{key}_cal", **CHART)
        st.caption(f"{sv.label}; n = {sv.n}, prevalence {sv.positives / sv.n:.2f}, AUC {sv.auc:.3f} "
                   f"(95 % CI {sv.auc_ci[0]:.3f}-{sv.auc_ci[1]:.3f})")


def gradcam_panel(case, part, task: str, rois: dict | None = None, key: str = "cam") -> None:
    """Grad-CAM maps of the scores the final model uses (inferno, zoomed to the ROI with its
    outline), or one sentence saying why there are none; ``rois`` (sequence -> canonical
    mask) outlines them (default: the session's ROIs of the case). "Larger view" draws one
    map at 640 px."""
    with st.container(border=True, key="panel_gradcam"):
        st.markdown("#### Grad-CAM")
        ts = part.tasks.get(task)
        if ts is None or not ts.gradcam:
            st.info(ts.gradcam_summary() if ts is not None else
                    "No Grad-CAM map: the final model uses no image score.",
                    icon=":material/info:")
            return
        seqs = sorted({r.sequence for r in ts.gradcam})
        bbs = sorted({r.backbone for r in ts.gradcam})
        by = {(r.sequence, r.backbone): r for r in ts.gradcam}
        large = st.toggle("Larger view", key=f"{key}_large",
                          help="One map at a time, drawn large")
        if large:
            pick = st.selectbox("Map", list(by), key=f"{key}_pick",
                                format_func=lambda k: f"{k[0]} / {k[1]}")
            r = by[pick]
            with W.user_errors():
                side = "raises" if r.direction == "positive" else "lowers"
                st.image(cam_overlay_rgb(case, r.sequence, r.map_image, size=640, rois=rois),
                         caption=f"{r.sequence} / {r.backbone}: what {side} its D-score",
                         width=640)
        else:
            for bb in bbs:                   # one row per backbone, one column per sequence
                cols = st.columns(max(len(seqs), 1))
                for col, s in zip(cols, seqs):
                    with col:
                        r = by.get((s, bb))
                        if r is None:
                            st.caption(f"{s} / {bb}: not used by the model")
                            continue
                        with W.user_errors():
                            rgb = cam_overlay_rgb(case, s, r.map_image, rois=rois)
                            side = "raises" if r.direction == "positive" else "lowers"
                            st.image(rgb, caption=f"{s} / {bb}: what {side} its D-score",
                                     width="stretch")
        notes = list(ts.gradcam_notes)
        if part.random_init:
            notes.append("Random-init weights: the maps show mechanics, not meaning.")
        st.caption("Inferno colour map (dark: low, bright: high), zoomed to the ROI, its "
                   "outline in green. " + " ".join(notes))


def cam_overlay_rgb(case, seq: str, cam, size: int = 320, rois: dict | None = None) -> np.ndarray:
    """Axial slice of ``seq`` through the ROI with the map, zoomed to the ROI, outlined."""
    img, can = S.canonical_for(case, seq)
    hc = W._heat_canonical(cam, can, img)
    rois = W.case_rois(case) if rois is None else rois
    roi = rois.get(seq)
    if roi is None:
        roi_seq = next((s for s in rois if s != "US" and seq != "US"), None)
        if roi_seq is not None and S.canonical_for(case, roi_seq)[0].same_grid(img):
            roi = rois[roi_seq]
    if roi is not None and roi.any():
        k = V.MaskEditor(roi).middle_slice("axial", 0)  # roi.any(): never the default
    elif hc is not None:
        k = hc.peak_slice("axial")
    else:
        k = can.n_slices("axial") // 2
    wl = can.window_presets()["Auto (1-99 %)"]        # the volume's percentiles once
    grey = V.apply_window(can.get_slice("axial", k), *wl)
    heat = hc.get_slice("axial", k) if hc is not None else None
    m_sl = can.get_slice("axial", k, roi) if roi is not None else None
    rgb = V.compose_rgb(grey, mask=m_sl, mask_opacity=0.0, heat=heat, heat_opacity=0.5,
                        heat_threshold=0.2)
    return V.zoom_to_roi(rgb, m_sl, can.pixel_size("axial"), out_px=size)


def cohort_case_part(case, rois: dict[str, np.ndarray]):
    """The image part of a cohort case with the ROIs given (canonical masks by sequence),
    through the same cache as the Prediction page."""
    from her2core.predictor import case_masks
    pred = S.current_predictor()
    key = (pred.bundle.checksum, case.key, roi_hash(rois))
    cache = _image_parts()
    hit = cache.get(key)
    if hit is not None:
        return hit
    need = pred.required_inputs().sequences
    images = {s: S.canonical_for(case, s)[0] for s in need}
    masks_img = {}
    for seq, m in rois.items():
        img, can = S.canonical_for(case, seq)
        masks_img[seq] = img.spatial_template().with_array(can.from_canonical(m).astype(np.uint8),
                                                           sequence="mask", modality="SEG")
    part = pred.image_part(images, case_masks(images, masks_img, case_id=case.case_id,
                                              sequences=need), case_id=case.case_id)
    return cache.put(key, part)
