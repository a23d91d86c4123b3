"""Plotly figures for a reader study, built only from ``analyze_reads`` / ``service.analyze``
results (plain dicts); no database, no streamlit.
"""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

ARM_STYLE = {"unaided": dict(color="#7f7f7f", dash="dot", symbol="circle-open"),
             "aided": dict(color="#1f77b4", dash="solid", symbol="circle")}
LEVEL_COLOR = {"junior": "#ff7f0e", "senior": "#2ca02c"}


def _arm_style(arm):
    return ARM_STYLE.get(arm, dict(color="#9467bd", dash="dash", symbol="diamond"))


def roc_figure(result: dict[str, Any]) -> go.Figure:
    """One panel per reader: empirical ROC curve and the binary operating point, per arm.

    The legend names each arm once (one legend group per arm, across the panels); each
    panel's title carries that reader's AUC per arm."""
    per = result["per_reader"]
    readers = sorted({p["reader"] for p in per})
    cols = min(3, max(1, len(readers)))
    rows = (len(readers) + cols - 1) // cols
    arms = list(result.get("arms") or ["unaided", "aided"])

    def title(r):
        level = next((p["level"] for p in per if p["reader"] == r and p.get("level")), "")
        mine = sorted((p for p in per if p["reader"] == r),
                      key=lambda p: arms.index(p["arm"]) if p["arm"] in arms else len(arms))
        aucs = ", ".join(f"{p['arm']} {_fmt_auc(p.get('auc'))}" for p in mine)
        return f"{r}" + (f" ({level})" if level else "") + (f"<br>AUC {aucs}" if aucs else "")

    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[title(r) for r in readers],
                        shared_xaxes=True, shared_yaxes=True)
    in_legend: set[str] = set()
    for i, rd in enumerate(readers):
        row, col = i // cols + 1, i % cols + 1
        for p in [p for p in per if p["reader"] == rd]:
            st = _arm_style(p["arm"])
            first = p["arm"] not in in_legend
            in_legend.add(p["arm"])
            fig.add_trace(go.Scatter(x=p["roc"]["fpr"], y=p["roc"]["tpr"], mode="lines",
                                     line=dict(color=st["color"], dash=st["dash"], shape="linear"),
                                     name=p["arm"], legendgroup=p["arm"], showlegend=first,
                                     hovertemplate=f"{rd}, {p['arm']} (AUC {_fmt_auc(p.get('auc'))})"
                                                   "<br>1-spec %{x:.2f}, sens %{y:.2f}<extra></extra>"),
                          row=row, col=col)
            sens, spec = p["sensitivity"]["estimate"], p["specificity"]["estimate"]
            if sens is not None and spec is not None:
                fig.add_trace(go.Scatter(x=[1 - spec], y=[sens], mode="markers",
                                         marker=dict(color=st["color"], symbol=st["symbol"], size=10),
                                         name=f"{p['arm']} call", legendgroup=p["arm"],
                                         showlegend=False,
                                         hovertemplate=f"{rd}, {p['arm']} call"
                                                       "<br>1-spec %{x:.2f}, sens %{y:.2f}<extra></extra>"),
                              row=row, col=col)
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", showlegend=False,
                                 hoverinfo="skip", line=dict(color="#cccccc", width=1)),
                      row=row, col=col)
    fig.update_xaxes(title_text="1 - specificity", range=[0, 1])
    fig.update_yaxes(title_text="sensitivity", range=[0, 1.02])
    fig.update_annotations(font_size=12)
    fig.update_layout(title="ROC per reader, without and with the model (marker: the binary call)",
                      height=340 * rows)
    return fig


def _fmt_auc(v) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def change_figure(result: dict[str, Any], metrics=("auc", "sensitivity", "specificity", "accuracy")
                  ) -> go.Figure:
    """Per reader, unaided -> aided, for each metric (dumbbells)."""
    per = result["per_reader"]
    arms = result.get("arms", ["unaided", "aided"])
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m.upper() if m == "auc" else m
                                                                   for m in metrics], shared_yaxes=True)

    def val(p, m):
        v = p[m]
        return v["estimate"] if isinstance(v, dict) else v

    readers = sorted({p["reader"] for p in per})
    for j, m in enumerate(metrics, start=1):
        for rd in readers:
            by_arm = {p["arm"]: p for p in per if p["reader"] == rd}
            xs = [val(by_arm[a], m) if a in by_arm else None for a in arms]
            lvl = next((p.get("level") for p in by_arm.values()), None)
            fig.add_trace(go.Scatter(x=xs, y=[rd, rd], mode="lines+markers",
                                     line=dict(color=LEVEL_COLOR.get(lvl, "#555555")),
                                     marker=dict(symbol=["circle-open", "circle"], size=10),
                                     name=f"{rd}", showlegend=False,
                                     hovertemplate=f"{rd} {m}: %{{x:.3f}}"), row=1, col=j)
    fig.update_layout(title="Change per reader (open: unaided, filled: aided; colour: level)",
                      height=120 + 40 * len(readers))
    return fig


def level_figure(result: dict[str, Any], metrics=("mean_auc", "sensitivity", "specificity",
                                                  "accuracy")) -> go.Figure:
    """Junior vs senior: per arm, reader-averaged AUC and pooled binary metrics with Wilson CIs."""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[
        "mean AUC" if m == "mean_auc" else m for m in metrics])
    for j, m in enumerate(metrics, start=1):
        for arm in result.get("arms", ["unaided", "aided"]):
            xs, ys, lo, hi = [], [], [], []
            for level, g in sorted(result.get("groups", {}).items()):
                a = g["arms"].get(arm)
                if not a:
                    continue
                v = a.get(m)
                est = v.get("estimate") if isinstance(v, dict) else v
                xs.append(level)
                ys.append(est)       # None (no such case read yet): an empty bar
                if isinstance(v, dict) and None not in (est, v.get("lower"), v.get("upper")):
                    lo.append(est - v["lower"])
                    hi.append(v["upper"] - est)
                else:
                    lo.append(0)
                    hi.append(0)
            fig.add_trace(go.Bar(x=xs, y=ys, name=arm, marker_color=_arm_style(arm)["color"],
                                 error_y=dict(type="data", array=hi, arrayminus=lo),
                                 showlegend=j == 1, legendgroup=arm), row=1, col=j)
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(barmode="group", title="Junior vs senior readers", height=380)
    return fig


def difference_figure(result: dict[str, Any], cov_method: str = "jackknife") -> go.Figure:
    """Forest plot: aided - unaided AUC per reader (fixed-reader CIs) and reader-averaged
    (random readers / random cases, Hillis df)."""
    r = result["mrmc"].get(cov_method) or {}
    fig = go.Figure()
    if not r or "error" in r:
        fig.update_layout(title=f"MRMC analysis not available: {r.get('error', 'no result')}")
        return fig
    ys, xs, lo, hi = [], [], [], []
    for p in r["per_reader"]:
        ys.append(str(p["reader"]))
        xs.append(p["difference"])
        lo.append(p["difference"] - p["ci"][0])
        hi.append(p["ci"][1] - p["difference"])
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="per reader (95% CI)",
                             error_x=dict(type="data", array=hi, arrayminus=lo),
                             marker=dict(color="#1f77b4", size=9)))
    t = r["rrrc"]
    fig.add_trace(go.Scatter(x=[t["difference"]], y=["all readers (RRRC)"], mode="markers",
                             name=f"mean, p = {t['p_value']:.3g}",
                             error_x=dict(type="data", array=[t["ci_upper"] - t["difference"]],
                                          arrayminus=[t["difference"] - t["ci_lower"]]),
                             marker=dict(color="#d62728", size=12, symbol="diamond")))
    fig.add_vline(x=0, line=dict(color="#999999", dash="dot"))
    fig.update_layout(title=f"AUC aided - unaided ({cov_method} covariance)",
                      xaxis_title="difference in AUC", height=200 + 35 * len(ys))
    return fig


def all_figures(result: dict[str, Any]) -> dict[str, go.Figure]:
    return {"roc": roc_figure(result), "change": change_figure(result),
            "levels": level_figure(result), "difference": difference_figure(result)}
