"""One-case report: the same content as JSON (machine-readable), HTML and PDF.

Built from plain values (no streamlit): the case (source, sequences, clinical
values, ROI summary and hashes), the prediction (probability with its interval
when there is one, HER2-low vs zero, nomogram points, SHAP contributions,
threshold), the model (bundle name, checksum, weights identity, model card
summary), software versions, and PNG figures (slices with overlays, Grad-CAM).

Every report carries the disclaimer and says that burned-in text in
ultrasound images is not removed automatically.
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
from dataclasses import dataclass, field
from typing import Any, Sequence

from her2core import DISCLAIMER, __version__
from her2core.jsonutil import jsonable

log = logging.getLogger(__name__)

US_TEXT_NOTE = ("Burned-in text in ultrasound images (names, dates, annotations) is NOT removed "
                "automatically: check the images before sharing this report.")
SCHEMA = "her2-case-report/1"

__all__ = ["ReportFigure", "CaseReport", "to_json", "to_html", "to_pdf", "contributions_png",
           "US_TEXT_NOTE", "SCHEMA"]


@dataclass
class ReportFigure:
    """A PNG figure of the report."""
    title: str
    png: bytes
    caption: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


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

    def __post_init__(self) -> None:
        if not self.created_utc:
            self.created_utc = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        self.software.setdefault("her2core", __version__)
        if US_TEXT_NOTE not in self.notes:
            self.notes.append(US_TEXT_NOTE)

    @property
    def random_init(self) -> bool:
        return bool(self.model.get("random_init"))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (figures by title and sha256, not their pixels)."""
        d = {
            "schema": SCHEMA,
            "created_utc": self.created_utc,
            "disclaimer": DISCLAIMER,
            "case_id": self.case_id,
            "case": _jsonable(self.case),
            "prediction": _jsonable(self.prediction),
            "model": _jsonable(self.model),
            "software": _jsonable(self.software),
            "figures": [{"title": f.title, "caption": f.caption, "png_sha256": f.sha256,
                         "png_bytes": len(f.png)} for f in self.figures],
            "notes": list(self.notes),
        }
        return d


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN / inf -> None; anything unknown as its text."""
    return jsonable(obj, unknown=str)


def to_json(report: CaseReport, indent: int = 2) -> str:
    return json.dumps(report.as_dict(), indent=indent, sort_keys=False, allow_nan=False)


# ----------------------------------------------------------------------------- text helpers
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "missing"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "missing"
        return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def _probability_lines(pred: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if pred.get("p_her2") is not None:
        p = float(pred["p_her2"])
        iv = pred.get("p_her2_interval")
        txt = f"{p:.3f}"
        if iv:
            txt += f" (interval {float(iv[0]):.3f} - {float(iv[1]):.3f}"
            txt += f", {pred.get('interval_method', 'bootstrap')})"
        else:
            txt += " (no uncertainty interval offered by this bundle)"
        rows.append(("Probability of HER2-positive", txt))
    if pred.get("p_her2_low") is not None:
        rows.append(("Probability of HER2-low (vs HER2-zero)", f"{float(pred['p_her2_low']):.3f}"))
    elif "p_her2_low" in pred:
        rows.append(("HER2-low vs HER2-zero", "not offered by this bundle"))
    if pred.get("threshold") is not None:
        rows.append(("Decision threshold", f"{float(pred['threshold']):.2f}"))
    if pred.get("total_points") is not None:
        rows.append(("Nomogram total points", f"{float(pred['total_points']):.1f}"))
    return rows


# ----------------------------------------------------------------------------- HTML
def to_html(report: CaseReport) -> str:
    """Self-contained HTML (figures embedded as data URIs)."""
    e = html.escape
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>HER2 report - {e(report.case_id)}</title>",
           "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
           "text-align:left}.warn{background:#fff3cd;border:1px solid #e0b100;padding:.6em}"
           ".disc{background:#f8d7da;border:1px solid #c00;padding:.6em;font-weight:bold}"
           "figure{display:inline-block;margin:.4em;vertical-align:top}img{max-width:440px}"
           "figcaption{font-size:.85em;color:#555}</style></head><body>",
           f"<h1>HER2 second-opinion report: case {e(report.case_id)}</h1>",
           f"<p class='disc'>{e(DISCLAIMER)}</p>"]
    if report.random_init:
        out.append("<p class='warn'>Demo model: random-initialised network weights, trained on "
                   "synthetic data. The numbers carry no clinical meaning.</p>")
    out.append(f"<p>Created {e(report.created_utc)} (UTC).</p>")
    out.append("<h2>Prediction</h2><table>")
    for k, v in _probability_lines(report.prediction):
        out.append(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>")
    out.append("</table>")
    pts = report.prediction.get("points") or {}
    if pts:
        out.append("<h3>Nomogram points</h3><table><tr><th>predictor</th><th>value</th><th>points</th></tr>")
        vals = report.prediction.get("point_values") or {}
        for k, v in pts.items():
            out.append(f"<tr><td>{e(str(k))}</td><td>{e(_fmt(vals.get(k)))}</td><td>{float(v):.1f}</td></tr>")
        out.append("</table>")
    contrib = report.prediction.get("contributions") or []
    if contrib:
        out.append("<h3>SHAP contributions (log-odds)</h3><table><tr><th>predictor</th><th>value</th>"
                   "<th>contribution</th></tr>")
        for c in contrib:
            out.append(f"<tr><td>{e(str(c.get('predictor')))}</td><td>{e(_fmt(c.get('value')))}</td>"
                       f"<td>{float(c.get('contribution', 0.0)):+.3f}</td></tr>")
        out.append("</table>")
    if report.figures:
        out.append("<h2>Images and figures</h2>")
        for f in report.figures:
            b64 = base64.b64encode(f.png).decode("ascii")
            out.append(f"<figure><img alt='{e(f.title)}' src='data:image/png;base64,{b64}'>"
                       f"<figcaption><b>{e(f.title)}</b> {e(f.caption)}</figcaption></figure>")
    out.append("<h2>Case</h2><table>")
    for k, v in report.case.items():
        if k == "clinical":
            continue
        out.append(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v) if not isinstance(v, (dict, list)) else json.dumps(_jsonable(v)))}</td></tr>")
    out.append("</table>")
    clin = report.case.get("clinical") or {}
    if clin:
        out.append("<h3>Clinical values</h3><table>")
        for k, v in clin.items():
            out.append(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>")
        out.append("</table>")
    out.append("<h2>Model</h2><table>")
    for k, v in report.model.items():
        out.append(f"<tr><th>{e(str(k))}</th><td>{e(json.dumps(_jsonable(v)) if isinstance(v, (dict, list)) else _fmt(v))}</td></tr>")
    out.append("</table><h2>Software</h2><table>")
    for k, v in report.software.items():
        out.append(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>")
    out.append("</table><h2>Notes</h2><ul>")
    for n in report.notes:
        out.append(f"<li>{e(n)}</li>")
    out.append("</ul></body></html>")
    return "\n".join(out)


# ----------------------------------------------------------------------------- PDF
def to_pdf(report: CaseReport, *, compress: bool = True) -> bytes:
    """PDF (reportlab, A4) with the same content as the HTML (``compress=False``: plain text streams)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import (Image as RLImage, Paragraph, SimpleDocTemplate, Spacer, Table,
                                    TableStyle)

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=15 * mm, bottomMargin=15 * mm, pageCompression=1 if compress else 0,
                            title=f"HER2 report {report.case_id}", author="her2core",
                            subject="research / teaching report - not a medical device")
    ss = getSampleStyleSheet()
    esc = html.escape
    story: list[Any] = [Paragraph(esc(f"HER2 second-opinion report: case {report.case_id}"), ss["Title"]),
                        Paragraph(f"<b>{esc(DISCLAIMER)}</b>", ss["Normal"]), Spacer(1, 4)]
    if report.random_init:
        story.append(Paragraph("<b>Demo model:</b> random-initialised network weights, trained on "
                               "synthetic data. The numbers carry no clinical meaning.", ss["Normal"]))
    story.append(Paragraph(esc(f"Created {report.created_utc} (UTC)"), ss["Normal"]))

    def cell(c, limit=600):
        text = str(c)
        if len(text) > limit:  # a table row cannot split across pages: keep cells short
            text = text[:limit] + " ... (see the JSON report)"
        return Paragraph(esc(text), ss["BodyText"])

    def table(rows, widths=None):
        t = Table([[cell(c) for c in r] for r in rows], colWidths=widths, hAlign="LEFT",
                  splitByRow=1, repeatRows=0)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return t

    story += [Paragraph("Prediction", ss["Heading2"]),
              table(_probability_lines(report.prediction) or [("Prediction", "not run")],
                    [70 * mm, 105 * mm])]
    pts = report.prediction.get("points") or {}
    if pts:
        vals = report.prediction.get("point_values") or {}
        story += [Paragraph("Nomogram points", ss["Heading3"]),
                  table([("predictor", "value", "points")]
                        + [(k, _fmt(vals.get(k)), f"{float(v):.1f}") for k, v in pts.items()],
                        [75 * mm, 55 * mm, 45 * mm])]
    contrib = report.prediction.get("contributions") or []
    if contrib:
        story += [Paragraph("SHAP contributions (log-odds)", ss["Heading3"]),
                  table([("predictor", "value", "contribution")]
                        + [(c.get("predictor"), _fmt(c.get("value")),
                            f"{float(c.get('contribution', 0.0)):+.3f}") for c in contrib],
                        [75 * mm, 55 * mm, 45 * mm])]
    if report.figures:
        story.append(Paragraph("Images and figures", ss["Heading2"]))
        for f in report.figures:
            try:
                from PIL import Image as PILImage
                w, h = PILImage.open(io.BytesIO(f.png)).size
            except Exception:  # noqa: BLE001 - an unreadable figure is skipped with a note
                story.append(Paragraph(esc(f"{f.title}: figure could not be read"), ss["Normal"]))
                continue
            width = min(120 * mm, 180 * mm)
            height = width * h / max(w, 1)
            if height > 150 * mm:
                height = 150 * mm
                width = height * w / max(h, 1)
            story += [RLImage(io.BytesIO(f.png), width=width, height=height),
                      Paragraph(f"<b>{esc(f.title)}</b> {esc(f.caption)}", ss["Italic"]), Spacer(1, 4)]
    story.append(Paragraph("Case", ss["Heading2"]))
    rows = _flat_rows({k: v for k, v in report.case.items() if k != "clinical"})
    if rows:
        story.append(table(rows, [55 * mm, 120 * mm]))
    clin = report.case.get("clinical") or {}
    if clin:
        story += [Paragraph("Clinical values", ss["Heading3"]),
                  table([(k, _fmt(v)) for k, v in clin.items()], [70 * mm, 105 * mm])]
    story.append(Paragraph("Model", ss["Heading2"]))
    story.append(table(_flat_rows(report.model) or [("model", "none")], [55 * mm, 120 * mm]))
    story += [Paragraph("Software", ss["Heading2"]),
              table([(k, str(v)) for k, v in report.software.items()], [55 * mm, 120 * mm]),
              Paragraph("Notes", ss["Heading2"])]
    for n in report.notes:
        story.append(Paragraph(esc("- " + n), ss["Normal"]))
    doc.build(story)
    return buf.getvalue()


def _flat_rows(d: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """(key, text) rows of a nested dict, one level of nesting spelled out as "a.b"."""
    rows: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 1 and v:
            rows += _flat_rows(v, key + ".", depth + 1)
        elif isinstance(v, (dict, list)):
            rows.append((key, json.dumps(_jsonable(v))))
        else:
            rows.append((key, _fmt(v)))
    return rows


# ----------------------------------------------------------------------------- figures
def contributions_png(contributions: Sequence[dict[str, Any]], base_value: float | None = None,
                      title: str = "SHAP contributions (log-odds)", max_rows: int = 12) -> bytes:
    """Horizontal bar chart (matplotlib, Agg) of per-predictor contributions, largest first."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    rows = sorted(contributions, key=lambda c: -abs(float(c.get("contribution", 0.0))))[:max_rows][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2), dpi=110)
    try:
        vals = [float(c.get("contribution", 0.0)) for c in rows]
        labels = [f"{c.get('predictor')} = {_fmt(c.get('value'))}" for c in rows]
        ax.barh(range(len(rows)), vals, color=["#d62728" if v > 0 else "#1f77b4" for v in vals])
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("contribution to log-odds of HER2-positive"
                      + (f" (base {base_value:+.2f})" if base_value is not None else ""))
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
