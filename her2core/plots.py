"""Plotly figures built from the plain results of her2core.metrics and her2core.nomogram.

Compute, then render: every function takes result objects (dataclasses, or
their ``to_dict()`` form read back from JSON) and returns a
``plotly.graph_objects.Figure``; nothing here computes a statistic.
"""
from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Mapping

import numpy as np
import plotly.graph_objects as go

from her2core import DISCLAIMER

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf"]

#: The figure themes every builder here (and in her2core.explain.figures) takes as
#: ``theme=``: "light" for print / HTML reports, "dark" for the app's dark background.
#: ``ink`` is the colour of axes, ticks and text drawn as data (e.g. nomogram rulers).
THEMES: dict[str, dict[str, Any]] = {
    "light": {"template": "plotly_white", "ink": "#000000", "muted": "grey",
              "faint": "lightgrey", "font": "#222222", "background": "white"},
    "dark": {"template": "plotly_dark", "ink": "#d0d0d0", "muted": "#a0a0a0",
             "faint": "#666666", "font": "#e6e6e6", "background": "rgba(0,0,0,0)"},
}


def theme_colours(theme: str = "light") -> dict[str, Any]:
    """The colours of a figure theme (ValueError for an unknown name)."""
    if theme not in THEMES:
        raise ValueError(f"unknown figure theme {theme!r}; choose {' or '.join(THEMES)}")
    return THEMES[theme]


def apply_theme(fig: go.Figure, theme: str = "light") -> go.Figure:
    """Template, background and font colour of ``theme`` (called by the builders when
    they build a figure, never to repaint one afterwards)."""
    t = theme_colours(theme)
    fig.update_layout(template=t["template"], paper_bgcolor=t["background"],
                      plot_bgcolor=t["background"], font=dict(color=t["font"]))
    return fig


def _d(obj: Any) -> dict:
    if obj is None:
        return {}
    if is_dataclass(obj):
        return asdict(obj)
    return dict(obj)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, title: str, x: str, y: str, square: bool = False,
            theme: str = "light") -> go.Figure:
    apply_theme(fig, theme)
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y,
                      legend=dict(x=0.99, y=0.01, xanchor="right", yanchor="bottom"),
                      margin=dict(l=60, r=20, t=60, b=100))
    fig.add_annotation(text=DISCLAIMER, xref="paper", yref="paper", x=0, y=0,
                       yshift=-75, yanchor="top", showarrow=False,
                       font=dict(size=9, color=theme_colours(theme)["muted"]), align="left")
    if square:
        fig.update_xaxes(constrain="domain")
        fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
    return fig


def roc_figure(curves: Mapping[str, Any], bands: Mapping[str, Any] | None = None,
               cis: Mapping[str, Any] | None = None, youden: Mapping[str, Any] | None = None,
               max_points: int = 2000, theme: str = "light") -> go.Figure:
    """ROC curves ({label: RocCurve}) with optional bootstrap bands ({label:
    RocBand}), AUC CIs in the legend ({label: AucCI}) and Youden points
    ({label: YoudenPoint or ThresholdMetrics.flat()})."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                             line=dict(color=theme_colours(theme)["faint"], dash="dash"),
                             hoverinfo="skip"))
    for i, (label, curve) in enumerate(curves.items()):
        c = _d(curve.thinned(max_points) if hasattr(curve, "thinned") else curve)
        col = _COLORS[i % len(_COLORS)]
        band = _d((bands or {}).get(label))
        if band:
            fpr = [1 - s for s in band["specificity"]]
            fig.add_trace(go.Scatter(x=fpr + fpr[::-1],
                                     y=band["sensitivity_upper"] + band["sensitivity_lower"][::-1],
                                     fill="toself", fillcolor=_rgba(col, 0.15),
                                     line=dict(width=0), hoverinfo="skip", showlegend=False,
                                     name=f"{label} {int(band['level'] * 100)}% band"))
        ci = _d((cis or {}).get(label))
        name = f"{label}: AUC {c['auc']:.3f}"
        if ci:
            name += f" ({ci['lower']:.3f}-{ci['upper']:.3f})"
        fpr = [1 - s for s in c["specificity"]]
        thr = ["" if t is None else f"{t:.4g}" for t in c["thresholds"]]
        # straight segments between pROC's points: a step where scores are distinct, a
        # diagonal across tied cases and controls (the whole diagonal for a constant
        # score), so the area under the drawn line is the AUC in the legend
        fig.add_trace(go.Scatter(x=fpr, y=c["sensitivity"], mode="lines", name=name,
                                 line=dict(color=col, shape="linear"), customdata=thr,
                                 hovertemplate="1-spec %{x:.3f}<br>sens %{y:.3f}"
                                               "<br>threshold %{customdata}<extra></extra>"))
        yp = _d((youden or {}).get(label))
        if yp:
            fig.add_trace(go.Scatter(x=[1 - yp["specificity"]], y=[yp["sensitivity"]],
                                     mode="markers", marker=dict(color=col, size=9,
                                                                 symbol="diamond"),
                                     name=f"{label} Youden t={yp['threshold']:.4g}"))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.01])
    return _layout(fig, "ROC curve", "1 - specificity", "sensitivity", square=True, theme=theme)


def calibration_figure(binned: Mapping[str, Any] | None = None,
                       smooth: Mapping[str, Any] | None = None,
                       fits: Mapping[str, Any] | None = None, theme: str = "light") -> go.Figure:
    """Calibration plot: binned observed fractions with Wilson CIs ({label:
    BinnedCalibration}), LOWESS curves ({label: SmoothCalibration}) and the
    intercept / slope in the legend ({label: CalibrationFit})."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="ideal",
                             line=dict(color=theme_colours(theme)["faint"], dash="dash"),
                             hoverinfo="skip"))
    labels = list(dict.fromkeys(list((binned or {}).keys()) + list((smooth or {}).keys())))
    for i, label in enumerate(labels):
        col = _COLORS[i % len(_COLORS)]
        fit = _d((fits or {}).get(label))
        suffix = (f" (intercept {fit['intercept']:.2f}, slope {fit['slope']:.2f})"
                  if fit else "")
        b = _d((binned or {}).get(label))
        if b:
            err_hi = [u - o for u, o in zip(b["upper"], b["observed"])]
            err_lo = [o - lo for o, lo in zip(b["observed"], b["lower"])]
            fig.add_trace(go.Scatter(
                x=b["mean_predicted"], y=b["observed"], mode="markers",
                name=f"{label} bins{suffix}", marker=dict(color=col, size=8),
                error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True),
                customdata=b["count"],
                hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>n %{customdata}"
                              "<extra></extra>"))
        s = _d((smooth or {}).get(label))
        if s:
            fig.add_trace(go.Scatter(x=s["predicted"], y=s["observed"], mode="lines",
                                     name=f"{label} LOWESS", line=dict(color=col)))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, "Calibration", "predicted probability", "observed fraction",
                   square=True, theme=theme)


def decision_curve_figure(result: Any, standardized: bool = False,
                          y_min: float | None = None, theme: str = "light") -> go.Figure:
    """Decision curves of a DCAResult: each model, treat all, treat none."""
    r = _d(result)
    tc = theme_colours(theme)
    key = "standardized_net_benefit" if standardized else "net_benefit"
    fig = go.Figure()
    models = r["models"]
    top = max([max(m[key]) for m in models.values()] + [max(r["treat_all"][key])] + [0.0])
    lo = y_min if y_min is not None else -0.05 * max(top, 1e-9) - (0.1 if standardized else 0.01)
    fig.add_trace(go.Scatter(x=r["thresholds"], y=r["treat_all"][key], mode="lines",
                             name="treat all", line=dict(color=tc["muted"])))
    fig.add_trace(go.Scatter(x=r["thresholds"], y=[0.0] * len(r["thresholds"]), mode="lines",
                             name="treat none", line=dict(color=tc["ink"], dash="dot")))
    for i, (label, m) in enumerate(models.items()):
        fig.add_trace(go.Scatter(x=m["thresholds"], y=m[key], mode="lines", name=label,
                                 line=dict(color=_COLORS[i % len(_COLORS)])))
    fig.update_yaxes(range=[lo, top * 1.05 + 1e-9])
    ylab = "standardised net benefit" if standardized else "net benefit"
    title = "Decision curves" + (" (prevalence given: %.3g)" % r["prevalence"]
                                 if r.get("prevalence_given") else "")
    _layout(fig, title, "threshold probability", ylab, theme=theme)
    fig.update_layout(legend=dict(x=0.99, y=0.99, xanchor="right", yanchor="top"))
    return fig


#: Width of one character of axis text, in font sizes (a generous estimate for the
#: sans-serif fonts plotly uses): tick labels are thinned with it so that none overlap.
CHAR_WIDTH_EM = 0.62
NOMOGRAM_FONT = 11


def label_width_px(text: str, font_size: float = NOMOGRAM_FONT) -> float:
    """Estimated width in pixels of one line of axis text."""
    return len(str(text)) * CHAR_WIDTH_EM * font_size


def thin_labels(xs_px, labels, font_size: float = NOMOGRAM_FONT, gap_px: float = 6.0) -> list[int]:
    """Indices of the tick labels to print so that no two label boxes overlap
    (``xs_px``: the ticks' centres in pixels). The two end ticks are kept; inner ones
    from left to right while they clear the last kept one and the right end."""
    n = len(xs_px)
    if n <= 1:
        return list(range(n))
    order = sorted(range(n), key=lambda i: xs_px[i])
    half = {i: label_width_px(labels[i], font_size) / 2 + gap_px / 2 for i in range(n)}
    first, last = order[0], order[-1]

    def clear(a, b):
        return abs(xs_px[a] - xs_px[b]) >= half[a] + half[b]

    if not clear(first, last):
        return [first]
    keep = [first]
    for i in order[1:-1]:
        if clear(keep[-1], i) and clear(i, last):
            keep.append(i)
    keep.append(last)
    return sorted(keep)


def nomogram_figure(nomogram: Any, patient: Mapping[str, Any] | None = None,
                    probabilities=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95),
                    interval: tuple[float, float] | None = None, *, theme: str = "light",
                    width: int = 800, font_size: int = NOMOGRAM_FONT,
                    title: str | None = None) -> go.Figure:
    """Nomogram: a points ruler, one axis per predictor, total points and the
    probability axis; ``patient`` (the dict from ``Nomogram.patient_points``)
    is marked on every axis, with the probability's ``interval`` (lower, upper)
    as a bar on the probability axis.

    Readable at ``width`` pixels: a binary predictor is two ticks (no / yes), a
    categorical one its level names (neighbours that would touch alternate above
    and below the axis), and the numeric tick labels of every axis are thinned so
    that no two overlap (:func:`thin_labels`); every tick mark is still drawn."""
    from her2core.nomogram import Nomogram

    tc = theme_colours(theme)
    ink = tc["ink"]
    nom = nomogram if isinstance(nomogram, Nomogram) else Nomogram.from_dict(_d(nomogram))
    fig = go.Figure()
    rows = ["Points"] + [v.name for v in nom.variables] + ["Total points", "Probability"]
    ypos = {name: len(rows) - 1 - i for i, name in enumerate(rows)}
    tmax = nom.max_total_points()
    scale = nom.max_points / tmax  # total points are drawn on the 0..max_points width
    margin_l = int(max(label_width_px(r, font_size + 1) for r in rows) + 16)
    margin_r = 16
    x_lo, x_hi = -5.0, nom.max_points + 5.0
    px_per_unit = max(width - margin_l - margin_r, 50) / (x_hi - x_lo)

    def axis(name, xs, labels, categorical=False):
        y = ypos[name]
        fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[y, y], mode="lines",
                                 line=dict(color=ink, width=1), showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=xs, y=[y] * len(xs), mode="markers",
                                 marker=dict(symbol="line-ns-open", size=9, color=ink),
                                 showlegend=False, hoverinfo="skip"))
        px = [x * px_per_unit for x in xs]
        if categorical:
            keep = list(range(len(xs)))     # every level keeps its name
            pos, last_top = {}, None
            for i in sorted(keep, key=lambda i: px[i]):   # below the axis where neighbours touch
                if last_top is not None and abs(px[i] - px[last_top]) < (
                        label_width_px(labels[i], font_size) + label_width_px(labels[last_top], font_size)) / 2 + 6:
                    pos[i] = "bottom center"
                else:
                    pos[i] = "top center"
                    last_top = i
            positions = [pos[i] for i in keep]
        else:
            keep = thin_labels(px, labels, font_size)
            positions = ["top center"] * len(keep)
        fig.add_trace(go.Scatter(x=[xs[i] for i in keep], y=[y] * len(keep), mode="text",
                                 text=[labels[i] for i in keep], textposition=positions,
                                 textfont=dict(size=font_size, color=ink), showlegend=False,
                                 hoverinfo="skip", meta={"axis": name, "categorical": categorical}))

    ticks = [i * nom.max_points / 10 for i in range(11)]
    axis("Points", ticks, [f"{t:g}" for t in ticks])
    for v in nom.variables:
        ax = nom.axis(v.name)
        axis(v.name, [a["points"] for a in ax],
             [a["value"] if isinstance(a["value"], str) else f"{a['value']:.4g}" for a in ax],
             categorical=v.kind == "categorical" or v.is_binary)
    tt = [i * tmax / 10 for i in range(11)]
    axis("Total points", [t * scale for t in tt], [f"{t:.0f}" for t in tt])
    pa = nom.probability_axis(probabilities)
    if pa:
        axis("Probability", [a["total_points"] * scale for a in pa],
             [f"{a['probability']:g}" for a in pa])
    if patient:
        xs, ys, txt = [], [], []
        out_of_range = list(patient.get("out_of_range") or [])
        for name, pts in (patient.get("points") or {}).items():
            if name not in ypos or pts is None:
                continue
            xs.append(pts)
            ys.append(ypos[name])
            txt.append(f"{name}: {pts:.1f} points"
                       + (" (outside training range)" if name in out_of_range else ""))
        total = patient.get("total_points")
        if total is None:
            total = float(sum(v for k, v in (patient.get("points") or {}).items()
                              if v is not None and k in ypos))
        prob = patient.get("probability")
        if prob is None:
            prob = nom.total_points_to_probability(total)
        xs += [total * scale, total * scale]
        ys += [ypos["Total points"], ypos["Probability"]]
        txt += [f"total {total:.1f} points", f"probability {prob:.3f}"]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="patient",
                                 marker=dict(color="#d62728", size=12, symbol="circle"),
                                 text=txt, hovertemplate="%{text}<extra></extra>"))
        if interval is not None:
            lo, hi = (float(np.clip(nom.probability_to_total_points(q), 0, tmax)) * scale
                      for q in (max(interval[0], 1e-9), min(interval[1], 1 - 1e-9)))
            fig.add_trace(go.Scatter(
                x=[lo, hi], y=[ypos["Probability"]] * 2, mode="lines+markers", name="95 % interval",
                line=dict(color="#d62728", width=6), marker=dict(symbol="line-ns", size=14,
                                                                  color="#d62728"),
                opacity=0.55, hovertemplate=f"95 % interval {interval[0]:.3f} - {interval[1]:.3f}"
                                            "<extra></extra>"))
        if out_of_range:
            fig.add_annotation(text="outside the training range: " + ", ".join(out_of_range),
                               xref="paper", yref="paper", x=1, y=1.06, showarrow=False,
                               font=dict(color="#d62728"))
    fig.update_yaxes(tickvals=list(ypos.values()), ticktext=list(ypos.keys()),
                     range=[-0.7, len(rows) - 0.3], showgrid=False, zeroline=False,
                     tickfont=dict(size=font_size + 1), automargin=False)
    fig.update_xaxes(visible=False, range=[x_lo, x_hi])
    _layout(fig, f"Nomogram ({nom.outcome})" if title is None else title, "", "", theme=theme)
    fig.update_layout(margin=dict(l=margin_l, r=margin_r, t=50, b=90), width=None)
    fig.update_layout(meta={"nomogram_width_px": width, "margin_l": margin_l,
                            "margin_r": margin_r})
    return fig
