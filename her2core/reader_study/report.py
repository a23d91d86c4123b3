"""The study owner's report of a reader study: tables, figures, HTML and PDF.

Built only from an analysis result (``ReaderStudyService.analyze`` / ``mrmc.analyze_reads``,
a plain dict), so the app's Report tab, the CLI and a test give the same document:

* tables (pandas, formatting only): per reader and arm, aided - unaided per reader, junior
  vs senior, OR MRMC (RRRC / FRRC / RRFC per covariance method), the model alone against the
  readers (RJafroc StCadVsRad), HER2-low calls and their MRMC analysis, kappa, reading time,
  and for an interim analysis the reads still missing per reader and arm;
* :func:`sample_size_plan` / :func:`power_grid`: readers x cases for a target power from the
  study's own OR variance components (``mrmc.sample_size`` / ``mrmc.or_power``, Hillis 2011,
  RJafroc ``SsPowerGivenJK``), the study serving as the pilot;
* :func:`report_html` / :func:`report_pdf` / :func:`write_report`: the whole report (matplotlib
  PNG figures, no browser needed).
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from her2core import DISCLAIMER
from her2core.reader_study import mrmc
from her2core.reader_study.service import ReaderStudyError
from her2core.study_report import _mpl, _png  # the one headless-matplotlib PNG helper

__all__ = ["per_reader_table", "deltas_table", "groups_table", "mrmc_table", "standalone_table",
           "her2_low_table", "her2_low_mrmc_table", "agreement_table", "reading_time_table",
           "missing_table", "interim_notes", "sample_size_plan", "power_grid", "report_tables",
           "report_html", "report_pdf", "write_report"]


# ----------------------------------------------------------------------------- formatting
def _num(v) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _ci(d: Any, digits: int = 2) -> str:
    if isinstance(d, dict):
        e, lo, hi = _num(d.get("estimate")), _num(d.get("lower")), _num(d.get("upper"))
    else:
        e, lo, hi = _num(d), None, None
    if e is None:
        return "-"
    s = f"{e:.{digits}f}"
    if lo is not None and hi is not None:
        s += f" ({lo:.{digits}f}-{hi:.{digits}f})"
    return s


def _r(v, digits=3):
    f = _num(v)
    return None if f is None else round(f, digits)


# ----------------------------------------------------------------------------- tables
def per_reader_table(result: dict) -> pd.DataFrame:
    """Per reader and arm (paper 002, Table 3): AUC and binary metrics with 95 % CIs."""
    rows = []
    for p in result.get("per_reader", []):
        rows.append({"reader": p["reader"], "level": p.get("level"), "arm": p["arm"],
                     "cases": p.get("n_cases"),
                     "AUC": _ci({"estimate": p.get("auc"), "lower": p.get("auc_lower"),
                                 "upper": p.get("auc_upper")}, 3),
                     **{m.upper() if m in ("ppv", "npv") else m.capitalize(): _ci(p.get(m))
                        for m in ("sensitivity", "specificity", "accuracy", "ppv", "npv")}})
    return pd.DataFrame(rows, columns=["reader", "level", "arm", "cases", "AUC", "Sensitivity",
                                       "Specificity", "Accuracy", "PPV", "NPV"])


def deltas_table(result: dict) -> pd.DataFrame:
    rows = []
    for d in result.get("aided_minus_unaided", []):
        rows.append({"reader": d["reader"], "level": d.get("level"),
                     **{k: _r(d.get(k)) for k in ("auc", "sensitivity", "specificity",
                                                  "accuracy", "ppv", "npv")}})
    return pd.DataFrame(rows)


def groups_table(result: dict) -> pd.DataFrame:
    rows = []
    for level, g in result.get("groups", {}).items():
        for arm, a in g.get("arms", {}).items():
            rows.append({"level": level, "readers": ", ".join(g.get("readers", [])), "arm": arm,
                         "mean AUC": _r(a.get("mean_auc")),
                         "sensitivity": _ci(a.get("sensitivity")),
                         "specificity": _ci(a.get("specificity")),
                         "accuracy": _ci(a.get("accuracy"))})
    return pd.DataFrame(rows)


def _or_rows(m: dict, label: dict) -> list[dict]:
    if "error" in m:
        return [{**label, "analysis": "-", "note": m["error"]}]
    rows = []
    for key in ("rrrc", "frrc", "rrfc"):
        t = m.get(key) or {}
        df2 = _num(t.get("df2"))
        rows.append({**label, "analysis": t.get("analysis", key.upper()),
                     "AUC unaided": _r(m["auc_mean"][0], 4), "AUC aided": _r(m["auc_mean"][1], 4),
                     "difference": _r(t.get("difference"), 4),
                     "statistic": f"{t.get('statistic')} = {_num(t.get('value')) or float('nan'):.3f}",
                     "df": (f"{t.get('df1'):g}, {df2:.2f}" if df2 is not None and np.isfinite(df2)
                            else f"{t.get('df1'):g}"),
                     "p": _r(t.get("p_value"), 4),
                     "95% CI": f"{_num(t.get('ci_lower')) or float('nan'):.3f} to "
                               f"{_num(t.get('ci_upper')) or float('nan'):.3f}",
                     "note": m.get("note") or ""})
    return rows


def mrmc_table(result: dict) -> pd.DataFrame:
    """OR-Hillis (RRRC) and fixed-reader / fixed-case tests per covariance method."""
    rows = []
    for method, m in result.get("mrmc", {}).items():
        rows += _or_rows(m, {"covariance": method})
    return pd.DataFrame(rows)


def standalone_table(result: dict) -> pd.DataFrame:
    """The model alone as a reader against the readers, per arm (reader - model)."""
    rows = []
    for arm, s in (result.get("standalone") or {}).items():
        if "error" in s:
            rows.append({"arm": arm, "analysis": "-", "note": s["error"]})
            continue
        for method in ("1T-RRRC", "1T-RRFC"):
            t = s.get(method) or {}
            ci = t.get("ci_difference") or [None, None]
            rows.append({"arm": arm, "analysis": method, "model AUC": _r(t.get("model_auc")),
                         "mean reader AUC": _r(t.get("mean_reader_auc")),
                         "reader - model": _r(t.get("mean_difference")),
                         "95% CI": f"{_num(ci[0]) or float('nan'):.3f} to {_num(ci[1]) or float('nan'):.3f}",
                         "t": _r(t.get("statistic")), "df": _r(t.get("df"), 2),
                         "p": _r(t.get("p_value"), 4), "cases": t.get("n_cases"),
                         "note": s.get("note") or ""})
    return pd.DataFrame(rows)


def her2_low_table(result: dict) -> pd.DataFrame:
    """HER2-low vs HER2-zero calls per reader and arm (truly HER2-negative cases)."""
    rows = []
    for p in result.get("her2_low", []):
        rows.append({"reader": p["reader"], "arm": p["arm"], "cases": p.get("n_cases"),
                     **{m.upper() if m in ("ppv", "npv") else m.capitalize(): _ci(p.get(m))
                        for m in ("sensitivity", "specificity", "accuracy")}})
    return pd.DataFrame(rows)


def her2_low_mrmc_table(result: dict) -> pd.DataFrame:
    rows = []
    for method, m in (result.get("her2_low_mrmc") or {}).items():
        rows += _or_rows(m, {"covariance": method})
    return pd.DataFrame(rows)


def agreement_table(result: dict) -> pd.DataFrame:
    """Fleiss' kappa of all readers per arm and task (HER2, HER2-low)."""
    rows = []
    for task, a in (result.get("agreement") or {}).items():
        for arm, r in (a.get("arms") or {}).items():
            f = r.get("fleiss") or {}
            rows.append({"call": "HER2-positive" if task == "her2" else "HER2-low", "arm": arm,
                         "cases": r.get("n_cases"), "readers": len(r.get("readers", [])),
                         "Fleiss kappa": _ci({"estimate": f.get("kappa"), "lower": f.get("lower"),
                                              "upper": f.get("upper")}),
                         "note": f.get("note") or ("" if f else "fewer than two readers")})
    return pd.DataFrame(rows)


def reading_time_table(result: dict) -> pd.DataFrame:
    rt = result.get("reading_time") or {}
    rows = [{"reader": p["reader"], "arm": p["arm"], "reads": p["n"],
             "median (s)": _r(p["median"], 1), "IQR (s)": f"{p['q1']:.1f}-{p['q3']:.1f}",
             "total (min)": _r(p["total"] / 60.0, 1)} for p in rt.get("per_reader", [])]
    return pd.DataFrame(rows)


def missing_table(result: dict) -> pd.DataFrame:
    """Reads still to be saved, per reader and arm (empty when the study is complete)."""
    rows = [m for m in (result.get("study") or {}).get("missing", [])
            if m.get("unaided") or m.get("aided")]
    return pd.DataFrame(rows, columns=["reader", "level", "unaided", "aided", "status"])


def interim_notes(result: dict) -> list[str]:
    """What an interim analysis does not have yet, in words: missing reads, and the parts
    that could not be computed from the reads saved so far (with the reason)."""
    study = result.get("study") or {}
    notes: list[str] = []
    if not study.get("complete", True):
        miss = missing_table(result)
        total = int(miss["unaided"].sum() + miss["aided"].sum()) if len(miss) else 0
        notes.append(f"Interim analysis of {study.get('n_reads_effective', 0)} saved reads: "
                     f"{total} reads are still missing "
                     f"({', '.join(f'{r.reader}: {r.unaided} unaided, {r.aided} aided' for r in miss.itertuples())}).")
    for method, m in (result.get("mrmc") or {}).items():
        if "error" in m:
            notes.append(f"MRMC ({method}) not computed yet: {m['error']}.")
        elif m.get("note"):
            notes.append(f"MRMC ({method}): {m['note']}.")
    for p in result.get("per_reader", []):
        if _num(p.get("auc")) is None:
            notes.append(f"{p['reader']}, {p['arm']}: no AUC yet ({p.get('n_cases', 0)} case(s) "
                         "read, both HER2-positive and HER2-negative cases are needed).")
    for arm, s in (result.get("standalone") or {}).items():
        if "error" in s:
            notes.append(f"Model vs readers ({arm}) not computed yet: {s['error']}.")
    return notes


# ----------------------------------------------------------------------------- planning
def pilot_components(result: dict, cov_method: str = "jackknife") -> dict:
    """The study's OR variance components (the pilot of a planned study)."""
    m = (result.get("mrmc") or {}).get(cov_method) or {}
    if not m or "error" in m:
        raise ReaderStudyError("the study has no OR analysis yet"
                               + (f" ({m['error']})" if m.get("error") else ""),
                               hint="sample-size planning needs the variance components of an "
                                    "MRMC analysis: at least two readers with reads of both "
                                    "HER2-positive and HER2-negative cases in both arms")
    bad = [k for k in ("var_tr", "cov1", "cov2", "cov3", "var_error") if _num(m.get(k)) is None]
    if bad:
        raise ReaderStudyError(f"the study's variance components ({', '.join(bad)}) cannot be "
                               f"estimated from {m.get('n_positive')} HER2-positive and "
                               f"{m.get('n_negative')} HER2-negative cases",
                               hint="the jackknife needs at least two cases of each class")
    return m


def sample_size_plan(result: dict, *, effect: float, readers: Sequence[int],
                     target_power: float = 0.8, alpha: float = 0.05, analysis: str = "RRRC",
                     cov_method: str = "jackknife") -> pd.DataFrame:
    """Cases needed per number of readers to detect an AUC difference ``effect`` with
    ``target_power``, from this study's variance components (mrmc.sample_size)."""
    if not 0 < abs(float(effect)) < 1:
        raise ReaderStudyError(f"the effect is an AUC difference between 0 and 1, got {effect!r}",
                               hint="e.g. 0.05")
    if not 0 < float(target_power) < 1:
        raise ReaderStudyError(f"the target power lies between 0 and 1, got {target_power!r}",
                               hint="e.g. 0.8")
    readers = sorted({int(j) for j in readers})
    if not readers or readers[0] < 2:
        raise ReaderStudyError("plan for at least two readers")
    rows = mrmc.sample_size(float(effect), readers, target_power=float(target_power),
                            pilot=pilot_components(result, cov_method), alpha=float(alpha),
                            analysis=analysis)
    return pd.DataFrame(rows, columns=["readers", "cases", "power", "note"])


def power_grid(result: dict, *, effect: float, readers: Sequence[int], cases: Sequence[int],
               alpha: float = 0.05, analysis: str = "RRRC", cov_method: str = "jackknife"
               ) -> pd.DataFrame:
    """Power (rows: readers, columns: cases) from this study's variance components."""
    readers, cases = sorted({int(j) for j in readers}), sorted({int(k) for k in cases})
    if not readers or readers[0] < 2 or not cases or cases[0] < 2:
        raise ReaderStudyError("the power grid needs at least two readers and two cases")
    m = pilot_components(result, cov_method)
    comps = dict(var_tr=m["var_tr"], cov1=m["cov1"], cov2=m["cov2"], cov3=m["cov3"],
                 var_error=m["var_error"], pilot_cases=m["n_cases"])
    grid = {int(k): [mrmc.or_power(float(effect), int(j), int(k), alpha=float(alpha),
                                   analysis=analysis, **comps).power for j in readers]
            for k in cases}
    out = pd.DataFrame(grid, index=[int(j) for j in readers])
    out.index.name = "readers"
    out.columns = [f"{k} cases" for k in out.columns]
    return out


# ----------------------------------------------------------------------------- report
def report_tables(result: dict) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) in report order; empty tables left out."""
    items = [("Reads still missing", missing_table(result)),
             ("Per reader and arm (AUC with DeLong 95% CI; proportions with Wilson CIs)",
              per_reader_table(result)),
             ("Aided minus unaided, per reader", deltas_table(result)),
             ("Junior vs senior readers", groups_table(result)),
             ("MRMC: Obuchowski-Rockette with Hillis df (RRRC = readers and cases random)",
              mrmc_table(result)),
             ("The model alone vs the readers (reader - model; RJafroc StCadVsRad)",
              standalone_table(result)),
             ("HER2-low vs HER2-zero calls (truly HER2-negative cases)", her2_low_table(result)),
             ("MRMC of HER2-low vs HER2-zero (ratings from the HER2-low confidence)",
              her2_low_mrmc_table(result)),
             ("Agreement between readers (Fleiss' kappa)", agreement_table(result)),
             ("Reading time per case", reading_time_table(result))]
    return [(t, d) for t, d in items if d is not None and not d.empty]


ARM_COLORS = {"unaided": "#7f7f7f", "aided": "#1f77b4"}


def _roc_png(result: dict) -> bytes | None:
    per = result.get("per_reader", [])
    readers = sorted({p["reader"] for p in per})
    if not readers:
        return None
    plt = _mpl()
    cols = min(3, len(readers))
    rows = (len(readers) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.ravel()[len(readers):]:
        ax.set_axis_off()
    for ax, rd in zip(axes.ravel(), readers):
        ax.plot([0, 1], [0, 1], color="#cccccc", lw=1)
        for p in [p for p in per if p["reader"] == rd]:
            auc = _num(p.get("auc"))
            ax.plot(p["roc"]["fpr"], p["roc"]["tpr"], color=ARM_COLORS.get(p["arm"], "#9467bd"),
                    ls=":" if p["arm"] == "unaided" else "-", lw=1.6,
                    label=f"{p['arm']}: {auc:.3f}" if auc is not None else f"{p['arm']}: -")
        ax.set_title(rd, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("1 - specificity", fontsize=8)
        ax.set_ylabel("sensitivity", fontsize=8)
        ax.legend(fontsize=7, loc="lower right", title="AUC", title_fontsize=7)
    fig.suptitle("ROC per reader, without and with the model", fontsize=10)
    return _png(fig)


def _difference_png(result: dict) -> bytes | None:
    r = (result.get("mrmc") or {}).get("jackknife") or {}
    if not r or "error" in r:
        return None
    plt = _mpl()
    per = r.get("per_reader", [])
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * (len(per) + 1) + 1.4))
    ys = np.arange(len(per) + 1)[::-1]
    for y, p in zip(ys[:-1], per):
        ax.errorbar([p["difference"]], [y], xerr=[[p["difference"] - p["ci"][0]],
                                                   [p["ci"][1] - p["difference"]]],
                    fmt="o", color="#1f77b4", ms=5)
    t = r["rrrc"]
    ax.errorbar([t["difference"]], [ys[-1]], xerr=[[t["difference"] - t["ci_lower"]],
                                                   [t["ci_upper"] - t["difference"]]],
                fmt="D", color="#d62728", ms=7)
    ax.axvline(0, color="#999999", ls=":")
    ax.set_yticks(ys, [str(p["reader"]) for p in per] + [f"all readers (RRRC, p = {t['p_value']:.3g})"],
                  fontsize=8)
    ax.set_xlabel("AUC aided - unaided (95% CI)")
    ax.set_title("Difference in AUC per reader and reader-averaged", fontsize=10)
    return _png(fig)


def _figures(result: dict) -> list[tuple[str, bytes]]:
    out = []
    for title, fn in (("ROC per reader", _roc_png), ("AUC differences", _difference_png)):
        png = fn(result)
        if png:
            out.append((title, png))
    return out


def _meta(result: dict) -> list[tuple[str, str]]:
    s = result.get("study") or {}
    prov = result.get("provenance") or {}
    rows = [("Study", s.get("name", "")),
            ("Design", s.get("design", "") + (f" (washout {s.get('washout_days'):g} days)"
                                              if s.get("design") == "two_sessions" else "")),
            ("Cases", f"{s.get('n_cases', '')} ({s.get('n_positive', '')} HER2-positive)"),
            ("Reads", f"{s.get('n_reads_effective', '')} effective, {s.get('n_corrections', 0)} "
                      "corrections"),
            ("Status", "complete" if s.get("complete") else "interim (not every reader has finished)"),
            ("Rating rule", result.get("rating_rule", "")),
            ("Method", prov.get("method", "")),
            ("Generated", f"{prov.get('generated_at', '')} by her2core {prov.get('her2core', '')}")]
    return rows


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return str(v)


def report_html(result: dict) -> str:
    """The owner's report as one self-contained HTML page (figures inlined as PNG)."""
    e = html.escape
    title = f"Reader study report: {(result.get('study') or {}).get('name', '')}"
    out = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;font-size:13px}"
           "table{border-collapse:collapse;margin:6px 0 14px}td,th{border:1px solid #bbb;"
           "padding:2px 5px;font-size:12px}th{background:#eee}.warn{color:#a00}"
           "img{max-width:100%}</style></head><body>",
           f"<h1>{e(title)}</h1><p><b>{e(DISCLAIMER)}</b></p>"]
    out += [f"<div><b>{e(k)}</b>: {e(str(v))}</div>" for k, v in _meta(result)]
    notes = interim_notes(result)
    if notes:
        out.append("<h2>Interim: what is missing</h2><ul>"
                   + "".join(f"<li class='warn'>{e(n)}</li>" for n in notes) + "</ul>")
    for t, png in _figures(result):
        out.append(f"<h2>{e(t)}</h2><img alt='{e(t)}' src='data:image/png;base64,"
                   f"{base64.b64encode(png).decode()}'>")
    for t, d in report_tables(result):
        out.append(f"<h2>{e(t)}</h2><table><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in d.columns)
                   + "</tr>")
        for row in d.itertuples(index=False):
            out.append("<tr>" + "".join(f"<td>{e(_cell(v))}</td>" for v in row) + "</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def report_pdf(result: dict) -> bytes:
    """The owner's report as a PDF (reportlab; A4 landscape)."""
    from PIL import Image as PILImage
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import (Image as RLImage, KeepTogether, Paragraph, SimpleDocTemplate,
                                    Spacer, Table, TableStyle)

    e = html.escape
    title = f"Reader study report: {(result.get('study') or {}).get('name', '')}"
    buf = io.BytesIO()
    page = landscape(A4)
    doc = SimpleDocTemplate(buf, pagesize=page, leftMargin=12 * mm, rightMargin=12 * mm,
                            topMargin=12 * mm, bottomMargin=12 * mm, title=title,
                            author="her2core", subject="reader study report")
    ss = getSampleStyleSheet()
    small = ss["BodyText"].clone("small", fontSize=7, leading=8.5)
    width = page[0] - 24 * mm
    story: list[Any] = [Paragraph(e(title), ss["Title"]),
                        Paragraph(f"<b>{e(DISCLAIMER)}</b>", ss["Normal"]), Spacer(1, 4)]
    story += [Paragraph(f"<b>{e(k)}</b>: {e(str(v))}", ss["Normal"]) for k, v in _meta(result)]
    notes = interim_notes(result)
    if notes:
        story.append(Paragraph("Interim: what is missing", ss["Heading2"]))
        story += [Paragraph(e("- " + n), small) for n in notes]
    for t, png in _figures(result):
        w, h = PILImage.open(io.BytesIO(png)).size
        fw = min(width, w * 0.6)
        fh = fw * h / w
        if fh > 150 * mm:
            fh, fw = 150 * mm, 150 * mm * w / h
        story.append(KeepTogether([Paragraph(e(t), ss["Heading2"]),
                                   RLImage(io.BytesIO(png), width=fw, height=fh)]))
    for t, d in report_tables(result):
        rows = [[Paragraph(f"<b>{e(str(c))}</b>", small) for c in d.columns]]
        rows += [[Paragraph(e(_cell(v)), small) for v in r] for r in d.itertuples(index=False)]
        tb = Table(rows, colWidths=[width / len(d.columns)] * len(d.columns), repeatRows=1,
                   hAlign="LEFT")
        tb.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                                ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story += [Paragraph(e(t), ss["Heading3"]), tb]
    doc.build(story)
    return buf.getvalue()


def write_report(result: dict, out_dir, *, formats: Sequence[str] = ("html", "pdf")) -> dict[str, str]:
    """report.html / report.pdf, one CSV per table and analysis.json in ``out_dir``."""
    from her2core.jsonutil import jsonable
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if "html" in formats:
        (out / "report.html").write_text(report_html(result), encoding="utf-8")
        files["html"] = str(out / "report.html")
    if "pdf" in formats:
        (out / "report.pdf").write_bytes(report_pdf(result))
        files["pdf"] = str(out / "report.pdf")
    for t, d in report_tables(result):
        name = re.sub(r"[^a-z0-9]+", "_", t.split("(")[0].split(":")[0].lower()).strip("_")
        d.to_csv(out / f"{name}.csv", index=False)
        files[name] = str(out / f"{name}.csv")
    (out / "analysis.json").write_text(json.dumps(jsonable(result), indent=2, default=str),
                                       encoding="utf-8")
    files["json"] = str(out / "analysis.json")
    return files
