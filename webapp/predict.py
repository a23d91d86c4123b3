"""Prediction for one case: networks once (cached by file + ROI hash), nomogram per edit.

Split in two on purpose:

* ``image_part(case, roi)``: everything that needs the networks (features,
  D-scores, Grad-CAM maps placed in the image geometry). Cached with
  a bounded process-wide cache keyed by bundle checksum, file hashes and ROI hash.
* ``clinical_part(image_part, clinical)``: the logistic second level (nomogram
  points, probability, SHAP of the second level). Milliseconds; recomputed on
  every clinical edit ("what if") without touching the networks.

The bundle-specific calls live in :mod:`webapp.adapter` (``BundleAdapter``),
so this module only orchestrates and renders.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from her2core import viewer as V

from . import services as S
from . import widgets as W

log = logging.getLogger(__name__)

PANELS = ("Probability", "Nomogram", "SHAP", "Decision curve", "Grad-CAM")


@dataclass
class ImagePart:
    """Network outputs for one case and ROI (read-only once computed)."""
    case_key: str
    roi_hash: str
    scores: dict[str, float] = field(default_factory=dict)       # dscore_* -> log-odds
    scores_by_task: dict[str, dict[str, float]] = field(default_factory=dict)  # other tasks' D-scores
    features: Any = None                                          # pandas row (1 x n)
    gradcam: dict[tuple[str, str], Any] = field(default_factory=dict)  # (seq, backbone) -> Image
    gradcam_note: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ClinicalPart:
    """Second level for one clinical setting."""
    p_her2: float
    p_interval: tuple[float, float] | None = None
    interval_method: str = ""
    p_low: float | None = None
    low_note: str = ""
    patient_points: dict[str, Any] | None = None
    nomogram: Any = None
    nomogram_note: str = ""
    contributions: Any = None      # explain.PatientContributions
    shap_note: str = ""
    point_values: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def roi_hash(seq: str | None, mask: np.ndarray | None) -> str:
    if mask is None:
        return "none"
    h = hashlib.sha256(np.packbits(np.asarray(mask, bool)).tobytes())
    h.update(f"{seq}{mask.shape}".encode())
    return h.hexdigest()[:16]


def adapter():
    """The loaded bundle's adapter, or None with the reason shown by the caller."""
    info = S.bundle_info()
    if not info.available:
        return None, info.message
    try:
        from .adapter import get_adapter
        return get_adapter(), ""
    except ImportError as err:
        return None, f"prediction is not available in this build ({err})"


# ----------------------------------------------------------------------------- orchestration
def run_image_part(case, seq: str, mask_canonical: np.ndarray, progress=None) -> ImagePart:
    """Networks on the case, served from the process-wide cache when the same bundle, files
    and ROI were run before (in this session or another one).

    The cache is a plain bounded dictionary (``st.cache_resource``), not ``st.cache_data``
    around the computation: the computation reports progress through widgets that belong
    to the calling page, and a cached function must draw nothing (Streamlit would replay
    those widgets on a hit and fail).
    """
    ad, why = adapter()
    if ad is None:
        raise RuntimeError(why)
    rh = roi_hash(seq, mask_canonical)
    key = (ad.info.checksum, case.key, rh)
    cache = _image_parts()
    hit = cache.get(key)
    if hit is not None:
        return hit
    img, can = S.canonical_for(case, seq)
    mask_arr = can.from_canonical(mask_canonical).astype(np.uint8)
    t0 = time.perf_counter()
    part = ad.image_part(case, seq, mask_arr, progress=progress)
    part.case_key, part.roi_hash = case.key, rh
    part.timings.setdefault("total_s", time.perf_counter() - t0)
    return cache.put(key, part)


class _BoundedCache:
    """Thread-safe LRU of finished results (read-only once stored)."""

    def __init__(self, size: int):
        import threading
        from collections import OrderedDict
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

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
            while len(self._d) > self.size:
                self._d.popitem(last=False)
            return value


@st.cache_resource(show_spinner=False)
def _image_parts() -> _BoundedCache:
    return _BoundedCache(16)


def run_clinical_part(part: ImagePart, clinical: dict[str, Any]) -> ClinicalPart:
    from .adapter import get_adapter
    t0 = time.perf_counter()
    out = get_adapter().clinical_part(part, clinical)
    out.seconds = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- rendering
_DARK_INK = {"black", "#000", "#000000", "rgb(0,0,0)"}


def readable(fig, height: int | None = None):
    """Black lines / markers / text of her2core.plots figures -> light grey (the app theme is dark)."""
    ink = "#c8c8c8"
    for tr in fig.data:
        line = getattr(tr, "line", None)
        if line is not None and str(getattr(line, "color", "")).lower() in _DARK_INK:
            line.color = ink
        marker = getattr(tr, "marker", None)
        if marker is not None and isinstance(getattr(marker, "color", None), str) \
                and marker.color.lower() in _DARK_INK:
            marker.color = ink
        tf = getattr(tr, "textfont", None)
        if tf is not None and str(getattr(tf, "color", "")).lower() in _DARK_INK:
            tf.color = ink
    if height:
        fig.update_layout(height=height)
    return fig


def probability_panel(cp: ClinicalPart) -> None:
    with st.container(border=True, key="panel_probability"):
        st.markdown("#### Probability")
        st.metric("HER2-positive", f"{cp.p_her2:.1%}")
        if cp.p_interval:
            st.caption(f"{cp.interval_method or 'interval'}: {cp.p_interval[0]:.1%} - {cp.p_interval[1]:.1%}")
        else:
            st.caption("No uncertainty interval: this bundle does not offer one.")
        if cp.p_low is not None:
            st.metric("HER2-low (vs HER2-zero)", f"{cp.p_low:.1%}")
        else:
            st.caption(cp.low_note or "HER2-low vs HER2-zero: not offered by this bundle.")
        if cp.patient_points:
            st.caption(f"Total points: {cp.patient_points['total_points']:.1f}")
        st.caption(f"nomogram recomputed in {cp.seconds * 1000:.1f} ms")


def nomogram_panel(cp: ClinicalPart) -> None:
    with st.container(border=True, key="panel_nomogram"):
        st.markdown("#### Nomogram")
        if cp.nomogram is None:
            st.info(cp.nomogram_note or "This bundle's model has no nomogram.")
            return
        from her2core.plots import nomogram_figure
        fig = readable(nomogram_figure(cp.nomogram, cp.patient_points))
        fig.update_layout(height=max(380, 46 * (len(cp.nomogram.variables) + 3)),
                          margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, key="fig_nomogram", config={"displaylogo": False})


def shap_panel(cp: ClinicalPart) -> None:
    with st.container(border=True, key="panel_shap"):
        st.markdown("#### SHAP contributions")
        if cp.contributions is None:
            st.info(cp.shap_note or "No SHAP contributions for this model.")
            return
        from her2core.explain.figures import waterfall_figure
        fig = readable(waterfall_figure(cp.contributions, max_rows=12))
        fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, key="fig_shap", config={"displaylogo": False})
        if cp.shap_note:
            st.caption(cp.shap_note)


def dca_panel(ad, threshold: float) -> None:
    """Decision curve of the model on its validation predictions, threshold marked.

    While the predictions are being computed (first start, background thread)
    the panel polls every 2 s on its own (a fragment), without rerunning the page.
    """
    @st.fragment(run_every=None if _dca_ready(ad) else 2.0)
    def body():
        with st.container(border=True, key="panel_dca"):
            st.markdown("#### Decision curve (validation cohort)")
            dca, label = ad.validation_dca()
            if dca is None:
                st.info(label)
                if "computing" not in label:
                    return
                return
            from her2core.plots import decision_curve_figure
            fig = readable(decision_curve_figure(dca))
            fig.add_vline(x=threshold, line=dict(color="#e4572e", dash="dash"),
                          annotation_text=f"threshold {threshold:.2f}")
            fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
            st.plotly_chart(fig, key="fig_dca", config={"displaylogo": False})
            st.caption(f"{label}; n = {dca.n}, prevalence {dca.prevalence:.2f}")
    body()


def _dca_ready(ad) -> bool:
    return ad.validation_dca()[0] is not None


def gradcam_panel(case, part: ImagePart, seq: str | None, mask_canonical) -> None:
    with st.container(border=True, key="panel_gradcam"):
        st.markdown("#### Grad-CAM (sequence x backbone)")
        if not part.gradcam:
            st.info(part.gradcam_note or "No Grad-CAM maps for this bundle.")
            return
        seqs = sorted({s for s, _ in part.gradcam})
        bbs = sorted({b for _, b in part.gradcam})
        for bb in bbs:                       # one row per backbone, one column per sequence
            cols = st.columns(max(len(seqs), 1))
            for col, s in zip(cols, seqs):
                with col:
                    cam = part.gradcam.get((s, bb))
                    if cam is None:
                        st.caption(f"{s} / {bb}: no map")
                        continue
                    try:
                        rgb = cam_overlay_rgb(case, s, cam, seq, mask_canonical)
                        st.image(rgb, caption=f"{s} / {bb}", width="stretch")
                    except Exception as err:  # noqa: BLE001
                        W.show_error(err)
        if part.gradcam_note:
            st.caption(part.gradcam_note)


def cam_overlay_rgb(case, s: str, cam, roi_seq: str | None, mask_canonical) -> np.ndarray:
    """Axial slice through the ROI centre of sequence s with the map and the ROI outline."""
    img, can = S.canonical_for(case, s)
    hc = W._heat_canonical(cam, can, img)
    k = can.n_slices("axial") // 2
    m_sl = None
    if mask_canonical is not None and roi_seq is not None:
        rimg, rcan = S.canonical_for(case, roi_seq)
        if rimg.same_grid(img) or s == roi_seq:
            drawn = V.MaskEditor(mask_canonical).drawn_slices("axial")
            if drawn:
                k = drawn[len(drawn) // 2]
            m_sl = can.get_slice("axial", k, mask_canonical)
    if hc is not None and (m_sl is None):
        k = int(np.argmax(hc.reshape(hc.shape[0], -1).max(axis=1)))
    wl = V.window_presets(can.array)["Auto (1-99 %)"]
    grey = V.apply_window(can.get_slice("axial", k), *wl)
    heat = can.get_slice("axial", k, hc) if hc is not None else None
    rgb = V.compose_rgb(grey, mask=m_sl, mask_opacity=0.0, heat=heat, heat_opacity=0.5,
                        heat_threshold=0.2)
    # upscale small slices so they are readable (nearest, aspect from spacing)
    sx, sy = can.pixel_size("axial")
    f = max(1, int(round(256 / max(rgb.shape[:2]))))
    rgb = np.repeat(np.repeat(rgb, max(1, int(round(f * sy / min(sx, sy)))), axis=0),
                    max(1, int(round(f * sx / min(sx, sy)))), axis=1)
    return rgb


# ----------------------------------------------------------------------------- teaching hooks
def teaching_points(case, mask) -> None:
    ad, why = adapter()
    if ad is None:
        W.not_available("The nomogram", ["bundle"]) if "bundle" in why else st.info(why)
        return
    with W.user_errors():
        part = run_image_part(case, "DCE", mask[1]) if mask else None
        if part is None:
            st.info("This case has no ROI.")
            return
        cp = run_clinical_part(part, case.clinical)
        nomogram_panel(cp)
        if cp.patient_points:
            st.dataframe({"predictor": list(cp.patient_points["points"]),
                          "points": [round(v, 1) for v in cp.patient_points["points"].values()]},
                         hide_index=True)


def teaching_decision_curve() -> None:
    ad, why = adapter()
    if ad is None:
        st.info(why)
        return
    with W.user_errors():
        thr = st.slider("Threshold probability", 0.05, 0.95, 0.35, 0.05, key="teach_thr")
        dca_panel(ad, thr)
        st.caption("At this threshold you accept treating (thr / (1 - thr)) false positives per "
                   "true positive; net benefit = TP/n - FP/n x thr / (1 - thr).")


def teaching_prediction(case, mask) -> None:
    ad, why = adapter()
    if ad is None:
        st.info(why)
        return
    W.model_output_banner()
    with W.user_errors():
        if not mask:
            st.info("This case has no ROI.")
            return
        part = run_image_part(case, "DCE", mask[1])
        cp = run_clinical_part(part, case.clinical)
        c1, c2 = st.columns([1, 2])
        with c1:
            probability_panel(cp)
        with c2:
            gradcam_panel(case, part, "DCE", mask[1])
