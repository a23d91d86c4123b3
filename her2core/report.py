"""One-case report: the same content as JSON (machine-readable), HTML and PDF.

:func:`build_case_report` assembles it from plain library objects (no streamlit): the
case (source, sequences, clinical values with the imputed ones marked, ROI summary and
hashes), the prediction (probability with its interval and the call at the chosen
threshold, HER2-low vs zero with its caveat, nomogram points, SHAP contributions), the
model (the bundle's model card summary, checksum, weights identity), software versions,
and figures: the nomogram with the patient marked, the SHAP contributions and the decision
curve of the bundle's own validation predictions (her2core.plots / the bars here, drawn
by :func:`figure_png` with matplotlib, the project's PDF figure renderer), and up to
three key slices zoomed to the ROI, with the Grad-CAM map of each score the final model
uses.

:func:`to_pdf` lays it out on one or two A4 pages, as a clinician would file it:
page 1 the result and its explanation, page 2 the images, the clinical values, the
model card summary and provenance. Every report carries the disclaimer; outputs of
random-init weights say so; the ultrasound burned-in-text notice is on ultrasound
cases only.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from her2core import DISCLAIMER, __version__
from her2core.jsonutil import jsonable

log = logging.getLogger(__name__)

US_TEXT_NOTE = ("Burned-in text in ultrasound images (names, dates, annotations) is NOT removed "
                "automatically: check the images before sharing this report.")
RANDOM_INIT_NOTE = ("Random-init weights: the networks of this model started from random "
                    "weights and were trained on synthetic data. The numbers carry no clinical "
                    "meaning.")
HER2_LOW_CAVEAT = ("HER2-low vs HER2-zero applies only if the tumour is HER2-negative; it is "
                   "exploratory: IHC 0 vs 1+ is poorly reproducible between pathologists, and "
                   "the model was trained on few HER2-zero cases.")
IMPUTED_MARK = "imputed"
SCHEMA = "her2-case-report/2"
MAX_SLICES = 3
POSITIVE = {"her2": ("HER2-positive", "HER2-negative"), "her2_low": ("HER2-low", "HER2-zero")}

__all__ = ["ReportFigure", "CaseReport", "build_case_report", "key_slice_figures",
           "roi_crop_box", "figure_png", "to_json", "to_html", "to_pdf", "contributions_png",
           "US_TEXT_NOTE", "RANDOM_INIT_NOTE", "HER2_LOW_CAVEAT", "IMPUTED_MARK", "SCHEMA"]


@dataclass
class ReportFigure:
    """A PNG figure of the report; ``kind`` places it ("slice", "gradcam", "nomogram",
    "shap", "dca" or "figure"), ``meta`` says what it shows (e.g. the crop box)."""
    title: str
    png: bytes
    caption: str = ""
    kind: str = "figure"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        from PIL import Image as PILImage
        return PILImage.open(io.BytesIO(self.png)).size


@dataclass
class CaseReport:
    """Everything one report shows (see module docstring)."""
    case_id: str
    case: dict[str, Any] = field(default_factory=dict)
    prediction: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    software: dict[str, Any] = field(default_factory=dict)
    figures: list[ReportFigure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created_utc: str = ""
    ultrasound: bool | None = None        # None: from the case's sequences ("US")

    def __post_init__(self) -> None:
        if not self.created_utc:
            self.created_utc = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        self.software.setdefault("her2core", __version__)
        if self.ultrasound is None:
            self.ultrasound = "US" in (self.case.get("sequences") or [])
        if self.ultrasound and US_TEXT_NOTE not in self.notes:
            self.notes.append(US_TEXT_NOTE)
        if self.random_init and RANDOM_INIT_NOTE not in self.notes:
            self.notes.insert(0, RANDOM_INIT_NOTE)

    @property
    def random_init(self) -> bool:
        return bool(self.model.get("random_init"))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (figures by title and sha256, not their pixels)."""
        return {
            "schema": SCHEMA,
            "created_utc": self.created_utc,
            "disclaimer": DISCLAIMER,
            "case_id": self.case_id,
            "case": _jsonable(self.case),
            "prediction": _jsonable(self.prediction),
            "model": _jsonable(self.model),
            "software": _jsonable(self.software),
            "figures": [{"title": f.title, "kind": f.kind, "caption": f.caption,
                         "png_sha256": f.sha256, "png_bytes": len(f.png), "meta": _jsonable(f.meta)}
                        for f in self.figures],
            "notes": list(self.notes),
        }

    def figures_of(self, *kinds: str) -> list[ReportFigure]:
        return [f for f in self.figures if f.kind in kinds]


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN / inf -> None; anything unknown as its text."""
    return jsonable(obj, unknown=str)


def to_json(report: CaseReport, indent: int = 2) -> str:
    return json.dumps(report.as_dict(), indent=indent, sort_keys=False, allow_nan=False)


# ----------------------------------------------------------------------------- text helpers
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "missing"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "missing"
        return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def _plain(v: Any, limit: int = 300) -> str:
    """Nested values as readable text ("a: 1; b: x, y"), never JSON braces."""
    if isinstance(v, Mapping):
        txt = "; ".join(f"{k}: {_plain(x, limit)}" for k, x in v.items() if x not in (None, "", [], {}))
    elif isinstance(v, (list, tuple)):
        txt = ", ".join(_plain(x, limit) for x in v)
    else:
        txt = _fmt(v)
    txt = txt.replace("{", "(").replace("}", ")")
    return txt if len(txt) <= limit else txt[:limit] + " ..."


def _pct(p: float) -> str:
    return f"{100 * float(p):.1f} %"


def _missing(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, (float, np.floating)) and not math.isfinite(v))


def _call_text(pred: dict[str, Any]) -> str | None:
    p, thr = pred.get("probability"), pred.get("threshold")
    if p is None or thr is None:
        return None
    pos, neg = POSITIVE.get(pred.get("task", "her2"), ("positive", "negative"))
    if float(p) >= float(thr):
        return f"{pos} (probability {_pct(p)} >= threshold {float(thr):.2f})"
    return f"{neg} (probability {_pct(p)} < threshold {float(thr):.2f})"


def _probability_lines(pred: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows of the headline: probability, interval, call, HER2-low, points."""
    rows: list[tuple[str, str]] = []
    task = pred.get("task", "her2")
    p = pred.get("probability", pred.get("p_her2"))
    if p is not None:
        iv = pred.get("interval") or pred.get("p_her2_interval")
        txt = f"{_pct(p)} ({float(p):.3f})"
        if iv:
            txt += f"; 95 % interval {_pct(iv[0])} - {_pct(iv[1])}"
        else:
            txt += "; no uncertainty interval (the final model is not a logistic nomogram)"
        label = "Probability of " + POSITIVE.get(task, ("positive",))[0]
        rows.append((label, txt))
        call = _call_text(dict(pred, probability=p))
        if call:
            rows.append(("Call at the chosen threshold", call))
    low = pred.get("her2_low") or {}
    if low.get("probability") is not None:
        txt = f"{_pct(low['probability'])} (if HER2-negative)"
        if low.get("no_predictors"):
            txt += "; the model kept no predictor: every case gets the training rate"
        rows.append(("HER2-low vs HER2-zero [caveat]", txt))
    elif pred.get("p_her2_low") is not None:
        rows.append(("HER2-low vs HER2-zero [caveat]", _pct(pred["p_her2_low"])))
    tw = pred.get("three_way")
    if tw:
        rows.append(("Three-way call", " · ".join(f"{k} {_pct(tw[k])}" for k in
                                                  ("positive", "low", "zero"))
                     + f" (likeliest: {max(tw, key=tw.get)}; the two models in sequence)"))
    if pred.get("total_points") is not None:
        rows.append(("Nomogram total points", f"{float(pred['total_points']):.1f}"))
    if pred.get("imputed"):
        rows.append(("Imputed (missing, training value used)", ", ".join(pred["imputed"])))
    if pred.get("out_of_range"):
        rows.append(("Outside the training range", ", ".join(pred["out_of_range"])))
    return rows


def _clinical_rows(case: dict[str, Any], pred: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of the clinical values; the model's missing inputs marked imputed."""
    from her2core.cohort import CLINICAL_FIELDS
    clin = case.get("clinical") or {}
    imputed = set(pred.get("imputed") or [])
    used = set(pred.get("used") or [])
    labels = {f.name: (f.label, f.unit) for f in CLINICAL_FIELDS}
    rows = []
    for k, v in clin.items():
        label, unit = labels.get(k, (k, ""))
        if k in imputed:
            txt = f"missing - {IMPUTED_MARK} (training value used)"
        elif _missing(v):
            txt = "missing" + (" (not used by the model)" if used and k not in used else "")
        else:
            txt = _fmt(v) + (f" {unit}" if unit and not isinstance(v, str) else "")
        if k in used:
            label += " *"
        rows.append((label, txt))
    return rows


def _model_rows(model: dict[str, Any]) -> list[tuple[str, str]]:
    """The model card summary as (label, text) rows (no raw JSON)."""
    if not model.get("available", True) or not model.get("name"):
        return [("Model", model.get("message") or "no model loaded")]
    card = model.get("model_card") or {}
    name = str(model.get("name"))
    rows = [("Model", name + (f" (recipe {card['recipe']})" if card.get("recipe")
                              and f"recipe {card['recipe']}" not in name else "")),
            ("Tasks", ", ".join(model.get("tasks") or card.get("tasks") or []))]
    task = model.get("task", "her2")
    tr = (card.get("training") or {}).get(task) or {}
    if tr:
        txt = f"n = {tr.get('n')}, {tr.get('positives')} positive"
        if tr.get("centres"):
            txt += ", centres " + ", ".join(str(c) for c in tr["centres"])
        rows.append((f"Training ({task})", txt))
        if tr.get("second_level_variables"):
            rows.append(("Predictors of the final model", ", ".join(tr["second_level_variables"])))
    val = (card.get("validation") or {}).get(task) or {}
    parts = []
    if val.get("apparent_auc") is not None:
        parts.append(f"apparent AUC {float(val['apparent_auc']):.3f}")
    if (val.get("out_of_fold") or {}).get("auc") is not None:
        parts.append(f"out-of-fold AUC {float(val['out_of_fold']['auc']):.3f}")
    if (val.get("internal") or {}).get("auc") is not None:
        parts.append(f"optimism-corrected AUC {float(val['internal']['auc']):.3f}")
    if (val.get("external") or {}).get("auc") is not None:
        e = val["external"]
        parts.append(f"external AUC {float(e['auc']):.3f} (n = {e.get('n')}, {e.get('where')})")
    if parts:
        rows.append(("Validation", "; ".join(parts)))
    if card.get("interval"):
        rows.append(("Interval", _plain(card["interval"], 200)))
    if card.get("intended_use"):
        rows.append(("Intended use", _plain(card["intended_use"], 200)))
    for w in (card.get("warnings") or [])[:3]:
        rows.append(("Warning", _plain(w, 250)))
    return rows


def _provenance_rows(report: CaseReport) -> list[tuple[str, str]]:
    m, c = report.model, report.case
    rows = []
    if m.get("checksum"):
        rows.append(("Bundle checksum", str(m["checksum"])))
    if m.get("weights"):
        rows.append(("Weights", ", ".join(f"{k}: {v}" for k, v in m["weights"].items())))
    if (m.get("model_card") or {}).get("created"):
        rows.append(("Bundle created", str(m["model_card"]["created"])))
    if c.get("file_sha256"):
        rows.append(("Case files (sha256)", ", ".join(f"{k} {str(v)[:12]}" for k, v in c["file_sha256"].items())))
    if c.get("roi_sha256"):
        rows.append(("ROI", f"{c.get('roi_sequence')}: {c.get('roi_voxels')} voxels"
                     + (f", {c['roi_volume_ml']} mL" if c.get("roi_volume_ml") is not None else "")
                     + f", sha256 {str(c['roi_sha256'])[:12]}"))
    rows.append(("Software", ", ".join(f"{k} {v}" for k, v in report.software.items())))
    rows.append(("Report created (UTC)", report.created_utc))
    return rows


# ----------------------------------------------------------------------------- figures (plotly -> PNG)
_SYMBOLS = {"circle": "o", "diamond": "D", "square": "s", "line-ns-open": "|", "line-ns": "|",
            "x": "x", "cross": "P", "triangle-up": "^"}
_DASH = {"dash": "--", "dot": ":", "dashdot": "-.", "longdash": "--", "solid": "-"}


def _color(c: Any, default: Any = "#333333") -> Any:
    if c is None or not isinstance(c, str):
        return default
    s = c.strip()
    m = re.match(r"rgba?\(([^)]*)\)", s)
    if m:
        vals = [float(x) for x in m.group(1).split(",")]
        rgb = tuple(v / 255 for v in vals[:3])
        return rgb + (vals[3],) if len(vals) > 3 else rgb
    return s


def _strip_tags(text: Any) -> str:
    return re.sub(r"<[^>]+>", " ", str(text or "")).replace("  ", " ").strip()


def figure_png(fig, *, width_mm: float = 180, height_mm: float = 90, dpi: int = 220,
               font_size: float = 7.0, skip_text: Sequence[str] = (DISCLAIMER,),
               title: str | None = None, show_legend: bool = True) -> bytes:
    """A her2core.plots figure (plotly scatter traces, shapes, annotations) drawn with
    matplotlib (Agg) as a PNG of the given physical size: the PDF figure renderer of the
    project (plotly's own image export needs kaleido and a browser). Annotations whose text
    is in ``skip_text`` (the disclaimer, which the report carries itself) are left out."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    lay = fig.layout
    mfig, ax = plt.subplots(figsize=(width_mm / 25.4, height_mm / 25.4), dpi=dpi)
    try:
        legend = False
        for tr in fig.data:
            if tr.type != "scatter":
                log.debug("figure_png: %s trace not drawn", tr.type)
                continue
            x = list(tr.x) if tr.x is not None else []
            y = list(tr.y) if tr.y is not None else []
            if not x:
                continue
            mode = tr.mode or "lines+markers"
            name = tr.name if tr.showlegend is not False and tr.name else None
            alpha = tr.opacity if tr.opacity is not None else 1.0
            lcol = _color(tr.line.color if tr.line else None)
            if tr.fill == "toself":
                ax.fill(x, y, color=_color(tr.fillcolor, (0.5, 0.5, 0.5, 0.2)), lw=0)
                continue
            if "lines" in mode:
                ax.plot(x, y, color=lcol, lw=0.55 * (tr.line.width or 2), alpha=alpha,
                        ls=_DASH.get(tr.line.dash or "solid", "-"),
                        drawstyle="steps-post" if tr.line.shape == "hv" else "default",
                        label=name if "markers" not in mode else None)
                legend |= name is not None and "markers" not in mode
            if "markers" in mode:
                mk = tr.marker
                mcol = _color(mk.color if isinstance(mk.color, str) else None, lcol)
                sym = _SYMBOLS.get(str(mk.symbol or "circle"), "o")
                ax.plot(x, y, ls="", marker=sym, ms=0.5 * (mk.size or 6), color=mcol,
                        alpha=alpha, mew=0.8, label=name)
                legend |= name is not None
            if "text" in mode and tr.text is not None:
                texts = [tr.text] * len(x) if isinstance(tr.text, str) else list(tr.text)
                top = "top" in str(tr.textposition or "top")
                xr = lay.xaxis.range
                gap = 0.04 * (float(xr[1]) - float(xr[0])) if xr is not None else 0.0
                keep, last = [], None                  # labels too close to the previous one are left out
                for xi in x:
                    ok = last is None or not isinstance(xi, (int, float)) or abs(float(xi) - last) >= gap
                    keep.append(ok)
                    if ok and isinstance(xi, (int, float)):
                        last = float(xi)
                for xi, yi, t, ok in zip(x, y, texts, keep):
                    if not ok:
                        continue
                    ax.annotate(_strip_tags(t), (xi, yi), xytext=(0, 3 if top else -3),
                                textcoords="offset points", ha="center",
                                va="bottom" if top else "top", fontsize=font_size - 1.5)
        for sh in lay.shapes or []:
            if sh.type != "line":
                continue
            tx = ax.transData if not str(sh.xref or "x").startswith(("paper",)) and \
                "domain" not in str(sh.xref or "") else ax.transAxes
            ty = ax.transData if not str(sh.yref or "y").startswith("paper") and \
                "domain" not in str(sh.yref or "") else ax.transAxes
            ax.plot([sh.x0, sh.x1], [sh.y0, sh.y1], transform=blended_transform_factory(tx, ty),
                    color=_color(sh.line.color, "#e4572e"), lw=1.0,
                    ls=_DASH.get(sh.line.dash or "solid", "-"))
        for an in lay.annotations or []:
            text = _strip_tags(an.text)
            if not text or any(text == _strip_tags(s) for s in skip_text):
                continue
            tx = ax.transAxes if (an.xref or "x") == "paper" or "domain" in str(an.xref) else ax.transData
            ty = ax.transAxes if (an.yref or "y") == "paper" or "domain" in str(an.yref) else ax.transData
            ax.text(an.x if an.x is not None else 0.5, min(an.y if an.y is not None else 1.0, 1.0),
                    text, transform=blended_transform_factory(tx, ty), fontsize=font_size - 1,
                    color=_color(an.font.color if an.font else None, "#444444"),
                    ha={"left": "left", "right": "right"}.get(an.xanchor, "center"), va="top")
        xa, ya = lay.xaxis, lay.yaxis
        if xa.range is not None:
            ax.set_xlim(*xa.range)
        if ya.range is not None:
            ax.set_ylim(*ya.range)
        if xa.visible is False:
            ax.get_xaxis().set_visible(False)
            for s in ("top", "bottom"):
                ax.spines[s].set_visible(False)
        if ya.tickvals is not None:
            ax.set_yticks(list(ya.tickvals), [_strip_tags(t) for t in (ya.ticktext or ya.tickvals)])
        ax.set_xlabel(_strip_tags(xa.title.text) if xa.title else "", fontsize=font_size)
        ax.set_ylabel(_strip_tags(ya.title.text) if ya.title else "", fontsize=font_size)
        ax.tick_params(labelsize=font_size - 0.5)
        for s in ("top", "right"):
            ax.spines[s].set_visible(False)
        ttl = title if title is not None else _strip_tags(lay.title.text if lay.title else "")
        ax.set_title(ttl, fontsize=font_size + 1, loc="left")
        if legend and show_legend:
            ax.legend(fontsize=font_size - 1, frameon=False, loc="best")
        mfig.tight_layout(pad=0.4)
        buf = io.BytesIO()
        mfig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    finally:
        plt.close(mfig)


def contributions_png(contributions: Sequence[dict[str, Any]], base_value: float | None = None,
                      title: str = "SHAP contributions (log-odds)", max_rows: int = 10, *,
                      width_mm: float = 88, height_mm: float | None = None, dpi: int = 220) -> bytes:
    """Horizontal bars (matplotlib, Agg) of per-predictor contributions, largest first, each
    labelled with the patient's value and its contribution (written horizontally)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    rows = sorted(contributions, key=lambda c: -abs(float(c.get("contribution", 0.0))))
    rest = rows[max_rows:]
    rows = rows[:max_rows]
    if rest:
        rows.append({"predictor": f"{len(rest)} other predictors", "value": None,
                     "contribution": float(sum(float(c.get("contribution", 0.0)) for c in rest))})
    rows = rows[::-1]
    h = height_mm if height_mm is not None else 14 + 5.2 * len(rows)
    fig, ax = plt.subplots(figsize=(width_mm / 25.4, h / 25.4), dpi=dpi)
    try:
        vals = [float(c.get("contribution", 0.0)) for c in rows]
        labels = [str(c.get("predictor")) + ("" if c.get("value") is None and "other" in str(c.get("predictor"))
                                             else f" = {_fmt(c.get('value'))}") for c in rows]
        ax.barh(range(len(rows)), vals, color=["#c0392b" if v > 0 else "#2471a3" for v in vals],
                height=0.7)
        ax.set_yticks(range(len(rows)), labels, fontsize=6.5)
        ax.axvline(0, color="black", lw=0.6)
        span = max([abs(v) for v in vals] + [1e-6])
        for i, v in enumerate(vals):
            ax.text(v + (0.02 * span if v >= 0 else -0.02 * span), i, f"{v:+.2f}", fontsize=6,
                    va="center", ha="left" if v >= 0 else "right")
        ax.set_xlim(-1.3 * span if min(vals) < 0 else -0.1 * span, 1.3 * span if max(vals) > 0 else 0.1 * span)
        ax.set_xlabel("log-odds contribution" + (f" (base {base_value:+.2f})" if base_value is not None
                                                 else ""), fontsize=6.5)
        ax.tick_params(axis="x", labelsize=6)
        for s in ("top", "right"):
            ax.spines[s].set_visible(False)
        ax.set_title(title, fontsize=8, loc="left")
        fig.tight_layout(pad=0.4)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- key slices
def roi_crop_box(mask2d: np.ndarray, margin: float = 0.6, min_px: int = 16) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the ROI's bounding box grown by ``margin`` x its size on every side
    (at least ``min_px`` pixels in all), inside the slice; the whole slice without an ROI."""
    m = np.asarray(mask2d, bool)
    H, W = m.shape
    if not m.any():
        return 0, H, 0, W
    rr, cc = np.nonzero(m)
    out = []
    for lo, hi, n in ((rr.min(), rr.max() + 1, H), (cc.min(), cc.max() + 1, W)):
        size = hi - lo
        pad = max(int(math.ceil(margin * size)), int(math.ceil((min_px - size) / 2)), 2)
        a, b = max(lo - pad, 0), min(hi + pad, n)
        out += [int(a), int(b)]
    return out[0], out[1], out[2], out[3]


def _heat_on_view(map_image, can, reference) -> np.ndarray | None:
    """A Grad-CAM map Image -> canonical array of ``can`` scaled to 0..1 (None off-grid)."""
    arr = np.asarray(getattr(map_image, "array", map_image), float)
    if hasattr(map_image, "same_grid") and reference is not None and not map_image.same_grid(reference):
        try:
            from her2core.imaging.ops import resample_to_reference
            arr = np.asarray(resample_to_reference(map_image, reference).array, float)
        except Exception:  # noqa: BLE001 - a map that cannot be placed is left out
            return None
    if arr.shape != tuple(can.original_shape):
        return None
    hi = float(np.nanmax(arr)) if arr.size else 0.0
    return can.to_canonical(arr / hi if hi > 0 else arr)


def _panel(can, k: int, roi: np.ndarray | None, heat: np.ndarray | None, box, out_px: int) -> np.ndarray:
    """Slice ``k`` cropped to ``box``, resampled smoothly to ``out_px`` on its long side
    (physical aspect), ROI outlined crisply at the output resolution, heat blended."""
    from PIL import Image as PILImage
    from scipy import ndimage

    from her2core import viewer as V
    r0, r1, c0, c1 = box
    win = can.window_presets()["Auto (1-99 %)"]
    grey = V.apply_window(can.get_slice("axial", k), *win)[r0:r1, c0:c1]
    sx, sy = can.pixel_size("axial")
    hh, ww = grey.shape[0] * sy, grey.shape[1] * sx
    f = out_px / max(hh, ww)
    size = (max(1, int(round(ww * f))), max(1, int(round(hh * f))))
    big = np.asarray(PILImage.fromarray(grey).resize(size, PILImage.BICUBIC))
    heat_big = None
    if heat is not None:
        h = np.asarray(can.get_slice("axial", k, heat), float)[r0:r1, c0:c1]
        heat_big = np.clip(np.asarray(PILImage.fromarray(h.astype(np.float32)).resize(size, PILImage.BILINEAR)), 0, 1)
    rgb = V.compose_rgb(big, heat=heat_big, heat_opacity=0.5, heat_cmap="inferno", heat_threshold=0.2)
    if roi is not None:
        m = np.asarray(can.get_slice("axial", k, roi), bool)[r0:r1, c0:c1]
        mb = np.asarray(PILImage.fromarray(m.astype(np.float32)).resize(size, PILImage.BILINEAR)) >= 0.5
        edge = mb & ~ndimage.binary_erosion(mb, iterations=max(1, out_px // 220), border_value=0)
        rgb[edge] = (0, 230, 110)
    return rgb


def key_slice_figures(views: Mapping[str, Any], rois: Mapping[str, np.ndarray], *,
                      images: Mapping[str, Any] | None = None, gradcam: Sequence[Any] = (),
                      max_slices: int = MAX_SLICES, out_px: int = 520, margin: float = 0.6,
                      random_init: bool = False) -> list[ReportFigure]:
    """Up to ``max_slices`` axial slices, one per sequence (the ROI's own first), through the
    ROI's largest cross-section, cropped to its box (``margin`` x its size around it) and
    resampled to ``out_px``; then the same crops with each Grad-CAM map (CamResult of a
    score the final model uses). ``views``: sequence -> viewer.Canonical; ``rois``:
    sequence -> canonical mask; ``images``: sequence -> Image (to place maps on other grids).
    A sequence is drawn when it carries an ROI or lies on the ROI's grid."""
    from her2core import viewer as V
    images = images or {}
    rois = {s: np.asarray(m, bool) for s, m in rois.items() if m is not None and np.asarray(m).any()}
    order = [s for s in rois if s in views] + [s for s in views if s not in rois]
    plan: list[tuple[str, np.ndarray | None, str]] = []
    for s in order:
        can = views[s]
        roi, src = rois.get(s), s
        if roi is None:
            for r_seq, r in rois.items():
                a, b = images.get(s), images.get(r_seq)
                same = a.same_grid(b) if a is not None and b is not None else \
                    "US" not in (s, r_seq)
                if same and r.shape == can.array.shape:
                    roi, src = r, r_seq
                    break
        if roi is None and rois:
            continue
        plan.append((s, roi, src))
    plan = plan[:max_slices]
    figs: list[ReportFigure] = []
    boxes: dict[str, tuple] = {}
    for s, roi, src in plan:
        can = views[s]
        if roi is not None:
            area = roi.reshape(roi.shape[0], -1).sum(axis=1)
            k = int(np.argmax(area))
            box = roi_crop_box(can.get_slice("axial", k, roi), margin)
        else:
            k = can.n_slices("axial") // 2
            box = (0, can.array.shape[1], 0, can.array.shape[2])
        boxes[s] = (k, box, roi)
        rgb = _panel(can, k, roi, None, box, out_px)
        where = "2-D image" if can.is_2d else f"axial slice {k + 1} of {can.n_slices('axial')}"
        cap = (f"ROI ({'own' if src == s else 'from ' + src}) outlined; largest cross-section; "
               f"zoomed to the ROI" if roi is not None else "no ROI on this grid: whole slice")
        figs.append(ReportFigure(f"{s}, {where}", V.rgb_to_png_bytes(rgb), cap, kind="slice",
                                 meta={"sequence": s, "slice": k, "crop_box": list(box),
                                       "slice_shape": list(can.array.shape[1:]), "roi_from": src if roi is not None else None}))
    for r in gradcam:
        s = r.sequence
        if s not in views:
            continue
        can = views[s]
        heat = _heat_on_view(r.map_image, can, images.get(s))
        if heat is None:
            continue
        if s in boxes:
            k, box, roi = boxes[s]
        else:
            k = int(np.argmax(heat.reshape(heat.shape[0], -1).max(axis=1)))
            box, roi = (0, can.array.shape[1], 0, can.array.shape[2]), None
        rgb = _panel(can, k, roi, heat, box, out_px)
        side = "raises" if getattr(r, "direction", "positive") == "positive" else "lowers"
        cap = f"what {side} the {r.backbone} D-score (inferno; ROI outlined)"
        if random_init:
            cap += "; random-init weights: mechanics, not meaning"
        figs.append(ReportFigure(f"Grad-CAM {s} / {r.backbone}", V.rgb_to_png_bytes(rgb), cap,
                                 kind="gradcam", meta={"sequence": s, "slice": k, "crop_box": list(box)}))
    return figs


# ----------------------------------------------------------------------------- assembly
def build_case_report(case_id: str, *, views: Mapping[str, Any], rois: Mapping[str, np.ndarray],
                      clinical: Mapping[str, Any], threshold: float, task: str = "her2",
                      images: Mapping[str, Any] | None = None, bundle=None, part=None, cp=None,
                      cp_low=None, validation=None, case_info: Mapping[str, Any] | None = None,
                      software: Mapping[str, Any] | None = None,
                      notes: Sequence[str] = ()) -> CaseReport:
    """The one-case report from library objects.

    ``views`` / ``images``: sequence -> viewer.Canonical / Image of the case; ``rois``:
    sequence -> canonical mask; ``bundle``: the loaded Bundle (None: no model); ``part`` /
    ``cp``: the predictor's ImagePart / ClinicalPart of ``task`` (None: not run);
    ``cp_low``: the HER2-low ClinicalPart shown beside a HER2 prediction; ``validation``:
    the bundle's workflows.validation.SetValidation list of ``task`` (computed when None);
    ``case_info``: source, note, file_sha256, known_label."""
    from her2core import plots
    info = dict(case_info or {})
    sequences = list(views)
    case_d: dict[str, Any] = {k: info[k] for k in ("source", "note") if k in info}
    case_d["sequences"] = sequences
    if info.get("file_sha256"):
        case_d["file_sha256"] = dict(info["file_sha256"])
    case_d["clinical"] = dict(clinical)
    rois = {s: np.asarray(m, bool) for s, m in rois.items() if m is not None and np.asarray(m).any()}
    if rois:
        roi_seq, mask = next(iter(rois.items()))
        can = views.get(roi_seq)
        vol = None
        if can is not None and not can.is_2d:
            sx, sy, sz = can.spacing
            vol = round(float(mask.sum()) * sx * sy * sz / 1000, 4)
        case_d.update({"roi_sequence": roi_seq, "roi_voxels": int(mask.sum()), "roi_volume_ml": vol,
                       "roi_sha256": hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()})
    if info.get("known_label"):
        case_d["known_label"] = info["known_label"]
    random_init = bool(bundle.random_init) if bundle is not None else False
    pred: dict[str, Any] = {"threshold": float(threshold), "task": task}
    figs: list[ReportFigure] = []
    out_notes = list(notes)
    if cp is not None:
        pred.update({"probability": cp.probability,
                     "interval": list(cp.interval) if cp.interval else None,
                     "interval_method": cp.interval_method, "imputed": list(cp.imputed),
                     "out_of_range": list(cp.out_of_range), "used": list(cp.used),
                     "call": _call_text({"probability": cp.probability, "threshold": threshold,
                                         "task": task})})
        if task == "her2":
            pred["p_her2"] = cp.probability
            pred["p_her2_interval"] = pred["interval"]
        if cp.no_predictors:
            out_notes.append("The model kept no predictor: every case gets the training "
                             "prevalence. This is not a prediction for this patient.")
        if cp.points:
            pred.update({"total_points": cp.points["total_points"], "points": cp.points["points"]})
        if cp.nomogram is not None and cp.points:
            fig = plots.nomogram_figure(cp.nomogram, cp.points, interval=cp.interval)
            n_rows = len(cp.nomogram.variables) + 3
            figs.append(ReportFigure("Nomogram", figure_png(
                fig, width_mm=180, height_mm=min(100, 22 + 7.5 * n_rows),
                title="Nomogram: this patient's points (red dots) on every axis"
                      + (" and the 95 % interval (red bar)" if cp.interval else ""), show_legend=False),
                "Points per predictor, total points and probability; red: this patient.",
                kind="nomogram"))
        if cp.contributions is not None:
            c = cp.contributions
            used = set(cp.used)
            contrib = [{"predictor": p, "value": v, "contribution": float(x)}
                       for p, v, x in zip(c.predictors, c.values, c.contributions)]
            shown = [d for d in contrib if not used or d["predictor"] in used]
            pred["contributions"] = shown
            pred["shap_base_value"] = float(c.base_value)
            pred["shap_method"] = c.method
            if len(shown) < len(contrib):
                pred["shap_not_in_model"] = [d["predictor"] for d in contrib if d not in shown]
            figs.append(ReportFigure("SHAP contributions", contributions_png(
                shown, float(c.base_value), title=f"SHAP: why {_pct(c.probability)}"),
                f"{c.method}; reference: the model's training cases", kind="shap"))
        for n in cp.notes:
            if "nomogram probability" in n or n in out_notes:
                continue
            out_notes.append(n)
    if cp_low is not None:
        low = {"probability": cp_low.probability, "no_predictors": bool(cp_low.no_predictors),
               "interval": list(cp_low.interval) if cp_low.interval else None}
        pred["her2_low"] = low
        pred["p_her2_low"] = cp_low.probability
        caveat = HER2_LOW_CAVEAT
        if bundle is not None:
            tr = (bundle.model_card.get("data", {}) or {}).get("training", {}).get("her2_low", {}) or {}
            if tr.get("negatives") is not None:
                caveat += f" This bundle: {tr.get('negatives')} HER2-zero of {tr.get('n')} training cases."
        if cp_low.no_predictors:
            caveat += " Its model kept no predictor: it gives every case the training rate."
        pred["her2_low_caveat"] = caveat
        if cp is not None and task == "her2" and not cp_low.no_predictors:
            from her2core.predictor import three_way
            pred["three_way"] = three_way(cp.probability, cp_low.probability)
    if part is not None:
        ts = part.tasks.get(task)
        if ts is not None:
            pred["image_scores"] = {k: v for k, v in ts.scores.items() if k in set(ts.used)}
            if not ts.gradcam and ts.gradcam_notes:
                out_notes += [n for n in ts.gradcam_notes if n not in out_notes]
    figs = key_slice_figures(views, rois, images=images,
                             gradcam=(part.tasks[task].gradcam if part is not None and task in part.tasks else ()),
                             random_init=random_init) + figs
    if bundle is not None and cp is not None:
        if validation is None:
            from her2core.workflows.validation import bundle_validation
            validation = bundle_validation(bundle, task)
        if validation:
            sv = next((s for s in validation if s.set == "external"), validation[0])
            fig = plots.decision_curve_figure(sv.dca)
            fig.add_vline(x=float(threshold), line=dict(color="#e4572e", dash="dash"))
            figs.append(ReportFigure("Decision curve", figure_png(
                fig, width_mm=88, height_mm=62, title=f"Decision curve ({sv.set}, n = {sv.n})"),
                f"{sv.label}; AUC {sv.auc:.3f}; dashed: the chosen threshold {threshold:.2f}",
                kind="dca", meta={"set": sv.set, "n": sv.n}))
            pred["decision_curve"] = {"set": sv.set, "n": sv.n, "auc": sv.auc}
        else:
            out_notes.append("No decision curve: this bundle carries no validation predictions "
                             "for this task.")
    model: dict[str, Any] = {"available": bundle is not None, "task": task}
    if bundle is not None:
        model.update({"name": bundle.name, "path": str(bundle.path), "checksum": bundle.checksum,
                      "random_init": bundle.random_init, "weights": bundle.weights,
                      "tasks": bundle.tasks, "model_card": bundle.summary()})
    else:
        model["message"] = "No model loaded: no prediction."
    if cp is None:
        out_notes.append("No prediction in this report (not run on the Prediction page).")
    return CaseReport(case_id=case_id, case=case_d, prediction=pred, model=model,
                      software=dict(software or {}), figures=figs, notes=out_notes,
                      ultrasound="US" in sequences)


# ----------------------------------------------------------------------------- HTML
def to_html(report: CaseReport) -> str:
    """Self-contained HTML (figures embedded as data URIs), the same sections as the PDF."""
    e = html.escape

    def table(rows):
        return "<table>" + "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>"
                                   for k, v in rows) + "</table>"

    def figs(kinds):
        out = []
        for f in report.figures_of(*kinds):
            b64 = base64.b64encode(f.png).decode("ascii")
            out.append(f"<figure><img alt='{e(f.title)}' src='data:image/png;base64,{b64}'>"
                       f"<figcaption><b>{e(f.title)}</b> {e(f.caption)}</figcaption></figure>")
        return "".join(out)

    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>HER2 report - {e(report.case_id)}</title>",
           "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
           "text-align:left}.warn{background:#fff3cd;border:1px solid #e0b100;padding:.6em}"
           ".disc{background:#f8d7da;border:1px solid #c00;padding:.6em;font-weight:bold}"
           "figure{display:inline-block;margin:.4em;vertical-align:top}img{max-width:470px}"
           "figure.wide img{max-width:960px}figcaption{font-size:.85em;color:#555}</style></head><body>",
           f"<h1>HER2 second-opinion report: case {e(report.case_id)}</h1>",
           f"<p class='disc'>{e(DISCLAIMER)}</p>"]
    if report.random_init:
        out.append(f"<p class='warn'>{e(RANDOM_INIT_NOTE)}</p>")
    out.append(f"<p>Created {e(report.created_utc)} (UTC).</p><h2>Result</h2>")
    out.append(table(_probability_lines(report.prediction) or [("Prediction", "not run")]))
    if report.prediction.get("her2_low_caveat"):
        out.append(f"<p class='warn'>{e(report.prediction['her2_low_caveat'])}</p>")
    out.append(figs(("nomogram", "shap", "dca")))
    out.append("<h2>Images</h2>" + figs(("slice", "gradcam", "figure")))
    out.append("<h2>Clinical values</h2><p>* used by the model</p>"
               + table(_clinical_rows(report.case, report.prediction)))
    out.append("<h2>Model</h2>" + table(_model_rows(report.model)))
    out.append("<h2>Provenance</h2>" + table(_provenance_rows(report)))
    out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)


# ----------------------------------------------------------------------------- PDF
def to_pdf(report: CaseReport, *, compress: bool = True) -> bytes:
    """PDF (reportlab, A4, one or two pages): page 1 the result (headline, nomogram, SHAP,
    decision curve), page 2 the key slices, clinical values, model card summary,
    provenance and notes (``compress=False``: plain text streams)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import (Image as RLImage, KeepInFrame, PageBreak, Paragraph,
                                    SimpleDocTemplate, Spacer, Table, TableStyle)

    buf = io.BytesIO()
    W = 180 * mm
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=12 * mm, bottomMargin=14 * mm,
                            pageCompression=1 if compress else 0,
                            title=f"HER2 report {report.case_id}", author="her2core",
                            subject="research / teaching report - not a medical device")
    ss = getSampleStyleSheet()
    body = ParagraphStyle("b", parent=ss["BodyText"], fontSize=8, leading=10)
    small = ParagraphStyle("s", parent=body, fontSize=7, leading=8.6)
    head = ParagraphStyle("h", parent=ss["Heading2"], fontSize=11, leading=13, spaceBefore=4,
                          spaceAfter=2)
    big = ParagraphStyle("big", parent=body, fontSize=12, leading=15)
    esc = html.escape

    def box(text, bg, border, style=body):
        t = Table([[Paragraph(text, style)]], colWidths=[W])
        t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), bg),
                               ("BOX", (0, 0), (-1, -1), 0.6, border),
                               ("TOPPADDING", (0, 0), (-1, -1), 3), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))
        return t

    def table(rows, widths, style=small, limit=400, shade=()):
        data = [[Paragraph(esc(_plain(c, limit) if not isinstance(c, str) else
                               (c if len(c) <= limit else c[:limit] + " ...")), style) for c in r]
                for r in rows]
        t = Table(data, colWidths=widths, hAlign="LEFT")
        st = [("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#bbbbbb")),
              ("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 1.5),
              ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
        for i in shade:
            st.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor("#fff3cd")))
        t.setStyle(TableStyle(st))
        return t

    def image(f: ReportFigure, width):
        try:
            w, h = f.size
        except Exception:  # noqa: BLE001 - an unreadable figure is skipped with a note
            return Paragraph(esc(f"{f.title}: figure could not be read"), small)
        return RLImage(io.BytesIO(f.png), width=width, height=width * h / max(w, 1))

    pred = report.prediction
    story: list[Any] = [
        Paragraph(esc(f"HER2 second-opinion report - case {report.case_id}"), ss["Title"]),
        box(f"<b>{esc(DISCLAIMER)}</b>", colors.HexColor("#f8d7da"), colors.HexColor("#cc0000"))]
    if report.random_init:
        story += [Spacer(1, 2), box(f"<b>{esc(RANDOM_INIT_NOTE)}</b>", colors.HexColor("#fff3cd"),
                                    colors.HexColor("#e0b100"))]
    story.append(Spacer(1, 4))
    lines = _probability_lines(pred)
    if lines:
        rows = [[Paragraph(esc(k), body), Paragraph(esc(v), body)] for k, v in lines]
        rows[0][1] = Paragraph(f"<b>{esc(lines[0][1])}</b>", big)
        t = Table(rows, colWidths=[58 * mm, W - 58 * mm], hAlign="LEFT")
        style = [("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#bbbbbb")),
                 ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                 ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef3f8"))]
        for i, (k, _) in enumerate(lines):
            if "caveat" in k or k.startswith("Imputed") or k.startswith("Outside"):
                style.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor("#fff3cd")))
        t.setStyle(TableStyle(style))
        story.append(t)
    else:
        story.append(Paragraph("No prediction: run it on the Prediction page first.", body))
    if pred.get("her2_low_caveat"):
        story += [Spacer(1, 2), box("<b>HER2-low caveat:</b> " + esc(pred["her2_low_caveat"]),
                                    colors.HexColor("#fff3cd"), colors.HexColor("#e0b100"), small)]
    story.append(Spacer(1, 4))
    for f in report.figures_of("nomogram"):
        story.append(image(f, W))
    pair = report.figures_of("shap") + report.figures_of("dca")
    if pair:
        cells = [image(f, W / 2 - 2 * mm) for f in pair[:2]]
        caps = [Paragraph(esc(f.caption), small) for f in pair[:2]]
        t = Table([cells, caps], colWidths=[W / 2] * len(cells), hAlign="LEFT")
        t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
        story.append(t)
    page1 = KeepInFrame(W, 266 * mm, story, mode="shrink")
    story2: list[Any] = []
    slices = report.figures_of("slice", "gradcam", "figure")
    if slices:
        story2.append(Paragraph("Key images (zoomed to the ROI)", head))
        per_row = 3
        cw = W / per_row
        for kind in ("slice", "gradcam", "figure"):
            fs = [f for f in slices if f.kind == kind][:per_row]
            if not fs:
                continue
            t = Table([[image(f, cw - 3 * mm) for f in fs],
                       [Paragraph(f"<b>{esc(f.title)}</b> {esc(f.caption)}", small) for f in fs]],
                      colWidths=[cw] * len(fs), hAlign="LEFT")
            t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                   ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
            story2.append(t)
    clin = _clinical_rows(report.case, pred)
    if clin:
        story2.append(Paragraph("Clinical values (* used by the model)", head))
        half = (len(clin) + 1) // 2
        left, right = clin[:half], clin[half:] + [("", "")] * (half - len(clin[half:]))
        rows = [(a[0], a[1], b[0], b[1]) for a, b in zip(left, right)]
        shade = [i for i, (a, b) in enumerate(zip(left, right)) if IMPUTED_MARK in a[1] or IMPUTED_MARK in b[1]]
        story2.append(table(rows, [40 * mm, 50 * mm, 40 * mm, 50 * mm], shade=shade))
    story2.append(Paragraph("Model (model card summary)", head))
    story2.append(table(_model_rows(report.model), [40 * mm, W - 40 * mm]))
    story2.append(Paragraph("Provenance", head))
    story2.append(table(_provenance_rows(report), [40 * mm, W - 40 * mm]))
    if report.notes:
        story2.append(Paragraph("Notes", head))
        for n in report.notes:
            story2.append(Paragraph(esc("- " + _plain(n, 400)), small))
    story2.append(Spacer(1, 3))
    story2.append(Paragraph(f"<b>{esc(DISCLAIMER)}</b>", small))
    doc.build([page1, PageBreak(), KeepInFrame(W, 268 * mm, story2, mode="shrink")])
    return buf.getvalue()
