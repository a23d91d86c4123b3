"""Readable nomograms (issue 13): binary predictors as two labelled ticks, categorical levels
by name, and tick labels that never overlap at the width the figure is drawn for."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from her2core import plots
from her2core.nomogram import Nomogram

ROOT = Path(__file__).resolve().parents[2]


def _nomogram() -> Nomogram:
    # a steep binary predictor, a narrow-ranged continuous one with many ticks and
    # two categorical levels whose points nearly coincide
    return Nomogram.from_coefficients(
        -1.0, {"er": -1.6, "ki67": 0.004, "size_mm": 0.05, "curve=plateau": 0.08,
               "curve=washout": 2.2},
        ranges={"er": (0.0, 1.0), "ki67": (2.2, 90.0), "size_mm": (5.0, 60.0)},
        categorical={"curve": {"persistent": None, "plateau": "curve=plateau",
                               "washout": "curve=washout"}},
        binary=["er"])


def _label_traces(fig):
    return {t.meta["axis"]: t for t in fig.data if isinstance(t.meta, dict) and "axis" in t.meta}


def _boxes(fig, trace):
    """(left, right, side) of each label in pixels, from the figure's own geometry."""
    meta = fig.layout.meta
    lo, hi = fig.layout.xaxis.range
    px = (meta["nomogram_width_px"] - meta["margin_l"] - meta["margin_r"]) / (hi - lo)
    size = trace.textfont.size
    pos = trace.textposition if isinstance(trace.textposition, (list, tuple)) else \
        [trace.textposition] * len(trace.x)
    out = []
    for x, t, side in zip(trace.x, trace.text, pos):
        w = plots.label_width_px(t, size)
        out.append(((x - lo) * px - w / 2, (x - lo) * px + w / 2, side.split()[0]))
    return out


def _overlaps(boxes) -> list:
    bad = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a[2] == b[2] and a[0] < b[1] and b[0] < a[1]:
                bad.append((a, b))
    return bad


def test_binary_predictor_is_two_labelled_ticks():
    nom = _nomogram()
    assert [a["value"] for a in nom.axis("er")] == ["no", "yes"]
    assert nom.axis("er")[0]["points"] == pytest.approx(100 * 1.6 / 2.75, abs=1e-9)  # er=0
    fig = plots.nomogram_figure(nom, nom.patient_points({"er": 1, "ki67": 30, "size_mm": 20,
                                                         "curve": "plateau"}))
    labels = _label_traces(fig)
    assert list(labels["er"].text) == ["no", "yes"]
    assert not any(t in ("0.2", "0.4", "0.6", "0.8") for t in labels["er"].text)
    assert list(labels["curve"].text) == ["persistent", "plateau", "washout"]


@pytest.mark.parametrize("width", [300, 420, 600, 900])
def test_no_tick_labels_overlap(width):
    nom = _nomogram()
    fig = plots.nomogram_figure(nom, width=width, theme="dark")
    labels = _label_traces(fig)
    assert {"Points", "er", "ki67", "size_mm", "curve", "Total points", "Probability"} <= set(labels)
    for name, tr in labels.items():
        assert not _overlaps(_boxes(fig, tr)), (width, name, list(tr.text))
        assert len(tr.text) >= 1                 # an axis too short for two keeps its lower end
    # categorical levels are never dropped: neighbours that touch go below the axis
    cur = labels["curve"]
    assert list(cur.text) == ["persistent", "plateau", "washout"]
    if width <= 600:
        assert "bottom center" in list(cur.textposition)
    # the Points ruler keeps its 11 labels where they fit and is thinned where they do not
    assert (len(labels["Points"].text) == 11) == (width >= 420)
    assert len(fig.data) > len(labels)            # every tick mark is still drawn


def test_shipped_demo_nomogram_binary_fields_are_no_yes():
    """Older bundles record no binary flag: a cohort-format binary field on 0..1 counts."""
    path = ROOT / "assets" / "demo_bundle" / "nomogram_her2.json"
    if not path.is_file():
        pytest.skip("no demo bundle in this checkout")
    nom = Nomogram.from_dict(json.loads(path.read_text()))
    fig = plots.nomogram_figure(nom, width=440)
    labels = _label_traces(fig)
    for name in ("er", "pr", "aln_abnormal"):
        assert list(labels[name].text) == ["no", "yes"], name
    assert list(labels["ki67"].text)[0] == "2.2"
    for name, tr in labels.items():
        assert not _overlaps(_boxes(fig, tr)), (name, list(tr.text))


def test_thin_labels_keeps_ends_and_clears_neighbours():
    xs = [0, 10, 20, 30, 40, 100]
    keep = plots.thin_labels(xs, ["10"] * 6, font_size=10)     # 12.4 px + 6 px gap per label
    assert keep[0] == 0 and keep[-1] == 5
    assert keep == [0, 2, 4, 5]
    assert plots.thin_labels([0, 5], ["a long label", "another"]) == [0]
