"""Figures built from plain explanation results (compute, then render).

* :func:`waterfall_figure` - one patient: from the base value (background log-odds)
  through each predictor's contribution to this patient's log-odds (plotly).
* :func:`beeswarm_figure` / :func:`bar_figure` - cohort summary as in paper 002
  Fig. 2B (SHAP value on x, one row per predictor, colour = feature value, low
  purple -> high yellow), rows labelled and coloured by group (clinical, deep
  score, radiomics); the bar chart shows mean |SHAP| per predictor and per group.
* :func:`overlay_rgb` / :func:`save_overlay_png` / :func:`save_cam_grid_png` -
  Grad-CAM overlays (a perceptually uniform matplotlib colour map, inferno by
  default, with an opacity) beside the image slice; the grid is one map per
  sequence x backbone.

The plotly builders take ``theme="light" | "dark"`` (:data:`her2core.plots.THEMES`).

Outputs made with random-init weights say so in their title.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from her2core.explain.shap_explain import GROUPS, CohortContributions, PatientContributions

log = logging.getLogger(__name__)

__all__ = ["GROUP_COLOURS", "waterfall_figure", "beeswarm_figure", "bar_figure",
           "overlay_rgb", "save_overlay_png", "save_cam_grid_png", "cam_grid_figure",
           "RANDOM_INIT_NOTE"]

GROUP_COLOURS = {"clinical": "#1f77b4", "deep score": "#d62728", "radiomics": "#2ca02c"}
RANDOM_INIT_NOTE = "RANDOM-INIT weights: not a meaningful explanation"


def _fmt_value(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "missing"
    if isinstance(v, (float, np.floating)):
        return f"{v:.3g}"
    return str(v)


def waterfall_figure(pc: PatientContributions, *, max_rows: int = 15, title: str | None = None,
                     theme: str = "light"):
    """Plotly waterfall, horizontal: base value (top) -> contributions (largest |.| first)
    -> this patient (bottom). Predictor labels and values read horizontally; the title
    is two short lines so that a half-width panel does not cut it."""
    import plotly.graph_objects as go
    from her2core.plots import apply_theme, theme_colours
    order = np.argsort(-np.abs(pc.contributions), kind="stable")
    shown = list(order[:max_rows])
    rest = list(order[max_rows:])
    labels = [f"{pc.predictors[i]} = {_fmt_value(pc.values[i])}" for i in shown]
    deltas = [float(pc.contributions[i]) for i in shown]
    hover = [f"{pc.groups[i]}" + (" (log-odds of its block model)"
                                  if str(pc.predictors[i]).startswith("dscore") else "")
             for i in shown]
    if rest:
        labels.append(f"{len(rest)} other predictors")
        deltas.append(float(np.sum(pc.contributions[rest])))
        hover.append("sum of the rest")
    unit = "log-odds" if pc.scale == "log-odds" else "probability"
    y = ["base (background)"] + labels + ["this patient"]
    measure = ["absolute"] + ["relative"] * len(deltas) + ["total"]
    x = [pc.base_value] + deltas + [pc.prediction]
    fig = go.Figure(go.Waterfall(
        orientation="h", measure=measure, y=y, x=x,
        text=[f"{pc.base_value:+.2f}"] + [f"{d:+.2f}" for d in deltas] + [f"{pc.prediction:+.2f}"],
        textposition="outside", textangle=0, cliponaxis=False,
        hovertext=["mean over the background"] + hover + ["model output"],
        connector={"line": {"color": theme_colours(theme)["faint"], "width": 1}},
        increasing={"marker": {"color": "#d62728"}}, decreasing={"marker": {"color": "#1f77b4"}},
        totals={"marker": {"color": "#7f7f7f"}}))
    t = title or (f"Contributions to the {unit}<br><sup>case {pc.case_id}: p = {pc.probability:.3f}"
                  f" (base p = {pc.base_probability:.3f})</sup>")
    if pc.approximate:
        t += "<br><sup>approximate: " + pc.note + "</sup>"
    if pc.provenance.get("random_init"):
        t += "<br><sup>" + RANDOM_INIT_NOTE + "</sup>"
    apply_theme(fig, theme)
    fig.update_layout(title=dict(text=t, x=0, xanchor="left"), xaxis_title=unit,
                      showlegend=False, height=max(300, 26 * len(y) + 130),
                      margin={"l": 10, "r": 40, "t": 70, "b": 50})
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(automargin=True)
    return fig


def _ordered(cc: CohortContributions, max_rows: int) -> list[int]:
    imp = np.mean(np.abs(cc.contributions), axis=0)
    return list(np.argsort(-imp, kind="stable")[:max_rows])


def _numeric_colour(values: pd.Series) -> np.ndarray:
    """Feature value scaled to [0, 1] within the column (categories by code); NaN stays NaN."""
    s = values
    if not pd.api.types.is_numeric_dtype(s):
        codes = pd.Categorical(s).codes.astype(float)
        codes[codes < 0] = np.nan
        s = pd.Series(codes)
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    lo, hi = np.nanpercentile(v, 5) if np.isfinite(v).any() else 0, \
        np.nanpercentile(v, 95) if np.isfinite(v).any() else 1
    if not np.isfinite(hi - lo) or hi <= lo:
        lo, hi = (np.nanmin(v), np.nanmax(v)) if np.isfinite(v).any() else (0.0, 1.0)
    return np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(v, 0.5)


def beeswarm_figure(cc: CohortContributions, *, max_rows: int = 20, seed: int = 0,
                    title: str | None = None, theme: str = "light"):
    """Plotly SHAP summary (beeswarm): x = contribution, row = predictor, colour = value.
    The group legend sits above the plot, the colour bar on the right below it (they
    never overlap)."""
    import plotly.graph_objects as go
    from her2core.plots import apply_theme, theme_colours
    rows = _ordered(cc, max_rows)
    rng = np.random.default_rng(seed)
    fig = go.Figure()
    ticks = []
    for r, j in enumerate(reversed(rows)):
        x = cc.contributions[:, j]
        col = _numeric_colour(cc.values.iloc[:, j])
        # jitter grows with local density, a cheap beeswarm
        hist, edges = np.histogram(x, bins=30)
        dens = hist[np.clip(np.digitize(x, edges) - 1, 0, len(hist) - 1)] / max(hist.max(), 1)
        y = r + (rng.uniform(-1, 1, len(x)) * 0.35 * dens)
        name = cc.predictors[j]
        ticks.append(f"<span style='color:{GROUP_COLOURS.get(cc.groups[j], theme_colours(theme)['ink'])}'>"
                     f"{name}</span>")
        fig.add_trace(go.Scattergl(
            x=x, y=y, mode="markers", name=name, showlegend=False,
            marker={"size": 5, "color": np.nan_to_num(col, nan=0.5), "colorscale": "Viridis",
                    "cmin": 0, "cmax": 1, "showscale": r == 0,
                    "colorbar": {"title": {"text": "feature value", "side": "right"},
                                 "tickvals": [0, 1], "ticktext": ["low", "high"],
                                 "x": 1.02, "xanchor": "left", "y": 0, "yanchor": "bottom",
                                 "len": 0.75, "thickness": 12}},
            text=[f"{c}: {name} = {_fmt_value(v)}" for c, v in zip(cc.case_ids, cc.values.iloc[:, j])],
            hovertemplate="%{text}<br>contribution %{x:+.3f}<extra></extra>"))
    for g in GROUPS:  # legend entries for the groups
        if g in cc.groups:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=g,
                                     marker={"color": GROUP_COLOURS[g], "symbol": "square"}))
    unit = "log-odds" if cc.scale == "log-odds" else "probability"
    t = title or f"Contributions to the {unit} ({len(cc.case_ids)} cases)"
    if cc.approximate:
        t += "<br><sup>approximate: " + cc.note + "</sup>"
    if cc.provenance.get("random_init"):
        t += "<br><sup>" + RANDOM_INIT_NOTE + "</sup>"
    apply_theme(fig, theme)
    fig.update_layout(title=t, xaxis_title=f"SHAP value (impact on the {unit})",
                      yaxis={"tickvals": list(range(len(rows))), "ticktext": ticks},
                      height=max(300, 28 * len(rows) + 160), legend_title="group",
                      legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0,
                              "yanchor": "bottom"},
                      margin={"t": 110, "r": 110})
    fig.add_vline(x=0, line_color="#999", line_width=1)
    return fig


def bar_figure(cc: CohortContributions, *, max_rows: int = 20, title: str | None = None,
               theme: str = "light"):
    """Plotly bars: mean |contribution| per predictor (coloured by group) and per group."""
    import plotly.graph_objects as go
    from her2core.plots import apply_theme
    from plotly.subplots import make_subplots
    rows = _ordered(cc, max_rows)[::-1]
    imp = np.mean(np.abs(cc.contributions), axis=0)
    g = cc.group_mean_abs()
    fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3],
                        subplot_titles=("per predictor", "per group (|sum|)"))
    fig.add_trace(go.Bar(x=[imp[j] for j in rows], y=[cc.predictors[j] for j in rows],
                         orientation="h", marker_color=[GROUP_COLOURS.get(cc.groups[j], "#000")
                                                        for j in rows],
                         showlegend=False), row=1, col=1)
    fig.add_trace(go.Bar(x=list(g.index), y=list(g.values),
                         marker_color=[GROUP_COLOURS.get(k, "#000") for k in g.index],
                         showlegend=False), row=1, col=2)
    unit = "log-odds" if cc.scale == "log-odds" else "probability"
    t = title or f"Mean |contribution| ({unit})"
    if cc.approximate:
        t += "<br><sup>approximate</sup>"
    if cc.provenance.get("random_init"):
        t += "<br><sup>" + RANDOM_INIT_NOTE + "</sup>"
    apply_theme(fig, theme)
    fig.update_layout(title=t, height=max(300, 26 * len(rows) + 140))
    return fig


# -------------------------------------------------------------------- CAM overlays
def _grey01(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=float)
    lo, hi = np.percentile(img, [0.5, 99.5]) if img.size else (0, 1)
    if hi <= lo:
        hi = lo + 1
    return np.clip((img - lo) / (hi - lo), 0, 1)


def overlay_rgb(image: np.ndarray, cam: np.ndarray, *, cmap: str = "inferno",
                opacity: float = 0.4) -> np.ndarray:
    """RGB float (H, W, 3) in [0, 1]: the grey image with ``cam`` (same shape) blended on top."""
    import matplotlib
    if image.shape != cam.shape:
        raise ValueError(f"image {image.shape} and map {cam.shape} differ in shape")
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must be within 0..1, got {opacity}")
    g = _grey01(image)
    rgb = np.repeat(g[..., None], 3, axis=2)
    heat = matplotlib.colormaps[cmap](np.clip(cam, 0, 1))[..., :3]
    return (1 - opacity) * rgb + opacity * heat


def save_overlay_png(path: str | Path, image: np.ndarray, cam: np.ndarray, *, title: str = "",
                     cmap: str = "inferno", opacity: float = 0.4, random_init: bool = False) -> Path:
    """PNG with the image slice and the overlay side by side."""
    return save_cam_grid_png(path, {("", ""): (image, cam)}, title=title, cmap=cmap,
                             opacity=opacity, random_init=random_init, with_image=True)


def save_cam_grid_png(path: str | Path, cells: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
                      *, title: str = "", cmap: str = "inferno", opacity: float = 0.4,
                      random_init: bool = False, with_image: bool = True) -> Path:
    """Grid PNG: rows = sequences, columns = [image] + backbones; cell = overlay.

    ``cells`` maps (sequence, backbone) -> (image slice, map on that slice).
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    seqs = list(dict.fromkeys(k[0] for k in cells))
    bbs = list(dict.fromkeys(k[1] for k in cells))
    ncol = len(bbs) + (1 if with_image else 0)
    fig, axes = plt.subplots(len(seqs), ncol, figsize=(2.6 * ncol, 2.7 * len(seqs) + 0.6),
                             squeeze=False)
    for r, s in enumerate(seqs):
        first = next(cells[(s, b)] for b in bbs if (s, b) in cells)
        if with_image:
            ax = axes[r, 0]
            ax.imshow(_grey01(first[0]), cmap="gray", interpolation="nearest")
            ax.set_title(f"{s} image" if s else "image", fontsize=8)
            ax.axis("off")
        for c, b in enumerate(bbs):
            ax = axes[r, c + (1 if with_image else 0)]
            ax.axis("off")
            if (s, b) not in cells:
                continue
            img, cam = cells[(s, b)]
            ax.imshow(overlay_rgb(img, cam, cmap=cmap, opacity=opacity), interpolation="nearest")
            ax.set_title(" ".join(t for t in (s, b) if t), fontsize=8)
    full = title
    if random_init:
        full = (full + "\n" if full else "") + RANDOM_INIT_NOTE
    if full:
        fig.suptitle(full, fontsize=9, color="red" if random_init else "black")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cam_grid_figure(cells: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]], *,
                    cmap: str = "inferno", opacity: float = 0.4, title: str = "",
                    random_init: bool = False, theme: str = "light"):
    """Plotly grid of overlays: rows = sequences, columns = backbones (for the app).

    ``cells`` maps (sequence, backbone) -> (image slice, map slice), e.g. from
    :class:`her2core.explain.case.CamResult` ``image_slice`` / ``map_slice``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    seqs = list(dict.fromkeys(k[0] for k in cells))
    bbs = list(dict.fromkeys(k[1] for k in cells))
    fig = make_subplots(rows=len(seqs), cols=len(bbs),
                        subplot_titles=[f"{s} {b}" if (s, b) in cells else "" for s in seqs for b in bbs],
                        horizontal_spacing=0.02, vertical_spacing=0.06)
    for r, s in enumerate(seqs):
        for c, b in enumerate(bbs):
            if (s, b) not in cells:
                continue
            img, cam = cells[(s, b)]
            rgb = (overlay_rgb(img, cam, cmap=cmap, opacity=opacity) * 255).astype(np.uint8)
            fig.add_trace(go.Image(z=rgb, hovertemplate="map %{customdata:.2f}<extra></extra>",
                                   customdata=np.asarray(cam)), row=r + 1, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    t = title
    if random_init:
        t = (t + "<br>" if t else "") + f"<span style='color:red'>{RANDOM_INIT_NOTE}</span>"
    from her2core.plots import apply_theme
    apply_theme(fig, theme)
    fig.update_layout(title=t, height=260 * len(seqs) + 80, width=240 * len(bbs) + 40,
                      margin={"l": 10, "r": 10, "t": 80, "b": 10})
    return fig
