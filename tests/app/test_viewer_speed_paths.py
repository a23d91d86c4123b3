"""The viewer's fast paths at clinical size give exactly what the plain computations give."""
from __future__ import annotations

import io

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from PIL import Image

from her2core import viewer as V


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.int8])
def test_counted_percentiles_equal_numpy(dtype):
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    q = list(V._PRESET_PERCENTILES) + list(rng.uniform(0, 100, 30)) + [0, 100]
    for n in (4097, 20011):
        a = rng.integers(info.min, info.max, n, endpoint=True).astype(dtype)
        assert_array_equal(V._percentiles(a, q), np.percentile(a.astype(float), q))


def _presets_plain(arr, mask=None):
    """window_presets as first written: everything from a float copy of the volume."""
    a = np.asarray(arr, float)
    finite = a[np.isfinite(a)]
    lo, hi = float(finite.min()), float(finite.max())

    def wl(a_, b_):
        w = max(float(b_ - a_), 1e-6)
        return (w, float(a_ + w / 2))
    p = np.percentile(finite, [0.5, 1, 5, 20, 95, 99, 99.5])
    out = {"Auto (1-99 %)": wl(p[1], p[5]), "Full range": wl(lo, hi),
           "Soft tissue (5-95 %)": wl(p[2], p[4]), "High contrast (20-99.5 %)": wl(p[3], p[6])}
    if mask is not None and np.any(mask):
        q = np.percentile(a[np.asarray(mask, bool)], [1, 99])
        out["Lesion (ROI 1-99 %)"] = wl(min(q[0], p[1]), q[1])
    return out


def test_presets_and_memoized_canonical_presets(monkeypatch):
    rng = np.random.default_rng(1)
    vol = np.rint(rng.normal(300, 120, (12, 40, 44))).astype(np.int16)
    mask = np.zeros(vol.shape, bool)
    mask[5:8, 10:20, 12:22] = True
    flt = vol.astype(np.float32)
    flt[0, 0, 0] = np.nan
    for arr in (vol, flt):
        assert V.window_presets(arr, mask) == _presets_plain(arr, mask)
        assert V.window_presets(arr) == _presets_plain(arr)

    class Img:
        array, spacing, direction = vol, (0.7, 0.7, 1.5), (1, 0, 0, 0, 1, 0, 0, 0, 1)
    can = V.canonical(Img())
    calls = []
    real = V.volume_stats
    monkeypatch.setattr(V, "volume_stats", lambda a: calls.append(1) or real(a))
    m_can = can.to_canonical(mask)
    first = can.window_presets(m_can)
    assert first == _presets_plain(can.array, m_can)
    m_can[:] = False
    m_can[6, 20:30, 20:30] = True          # the ROI changes while drawing
    assert can.window_presets(m_can) == _presets_plain(can.array, m_can)
    assert can.window_presets() == _presets_plain(can.array)
    assert calls == [1]                     # the volume's percentiles once


def test_png_round_trip_exact():
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    rgb = V.compose_rgb(grey, mask=grey > 200)
    for arr, mode in ((rgb, "RGB"), (np.repeat(grey[..., None], 3, -1), "L"), (grey, "L")):
        im = Image.open(io.BytesIO(V.rgb_to_png_bytes(arr)))
        assert im.mode == mode and im.size == (53, 37)
        out = np.asarray(im.convert("RGB")) if arr.ndim == 3 else np.asarray(im)
        assert_array_equal(out, arr)
    with pytest.raises(ValueError, match="uint8"):
        V.rgb_to_png_bytes(grey.astype(float))


def _compose_plain(grey, mask=None, mask_color=(0, 255, 120), mask_opacity=0.35, outline=True):
    """compose_rgb without a heat map, as first written: float RGB of the whole slice."""
    from scipy import ndimage
    rgb = np.repeat(grey[..., None].astype(float), 3, axis=-1)
    if mask is not None:
        m = np.asarray(mask, bool)
        col = np.asarray(mask_color, float)
        rgb[m] = rgb[m] * (1 - mask_opacity) + col * mask_opacity
        if outline:
            rgb[m & ~ndimage.binary_erosion(m, border_value=0)] = col
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def test_compose_without_heat_equals_the_whole_slice_blend():
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (61, 47), dtype=np.uint8)
    masks = []
    m = np.zeros(grey.shape, bool)
    m[20:30, 10:25] = True
    m[40:45, 30:33] = True               # two blobs
    masks.append(m)
    edge = np.zeros(grey.shape, bool)
    edge[0:6, 40:47] = True              # touching the slice border (zero border there too)
    edge[55:61, 0:3] = True
    masks.append(edge)
    masks.append(rng.random(grey.shape) > 0.7)
    masks.append(np.ones(grey.shape, bool))
    for m in masks:
        for outline in (True, False):
            for op, col in ((0.35, (0, 255, 120)), (0.0, (255, 0, 0)), (1.0, (10, 20, 30))):
                got = V.compose_rgb(grey, mask=m, mask_opacity=op, mask_color=col, outline=outline)
                assert_array_equal(got, _compose_plain(grey, m, col, op, outline))
    assert_array_equal(V.compose_rgb(grey, mask=np.zeros(grey.shape, bool)), _compose_plain(grey))
    assert_array_equal(V.compose_rgb(grey), np.repeat(grey[..., None], 3, -1))
    with pytest.raises(ValueError, match="does not match"):
        V.compose_rgb(grey, mask=np.zeros((3, 3), bool))


def test_unvalidated_slice_figure_is_the_validated_figure():
    import json
    import plotly.io as pio
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for kw in (dict(title="DCE - axial slice 3 (0-9)", labels=V.axis_labels("axial")),
               dict(selectable=False), dict(zoom=2.0, zoom_center=(10.0, 20.0), height=500),
               dict(labels=V.axis_labels("coronal"), selectable=True, max_points=100)):
        fast = V.slice_figure(rgb, (0.75, 1.5), **kw)
        checked = V.slice_figure(rgb, (0.75, 1.5), validate=True, **kw)
        assert json.loads(pio.to_json(fast.to_dict(), validate=False)) == \
            json.loads(pio.to_json(checked.to_dict(), validate=False))


def _plain_facts(mask):
    m = np.asarray(mask, bool)
    drawn = {v: np.flatnonzero(m.any(axis=tuple(i for i in range(3) if i != a))).tolist()
             for v, a in (("axial", 0), ("coronal", 1), ("sagittal", 2))}
    return int(np.count_nonzero(m)), drawn


def test_mask_editor_facts_follow_every_change():
    ed = V.MaskEditor.empty((9, 20, 24))
    seen = []

    def check():
        n, drawn = _plain_facts(ed.mask)
        assert ed.voxels == n
        for v in drawn:
            assert ed.drawn_slices(v) == drawn[v]
        box = ed.bbox()
        if n == 0:
            assert box is None
        else:
            zz, yy, xx = np.nonzero(ed.mask)
            assert box == (slice(zz.min(), zz.max() + 1), slice(yy.min(), yy.max() + 1),
                           slice(xx.min(), xx.max() + 1))
        seen.append(ed.token)

    check()
    ed.apply_polygon("axial", 3, [4, 12, 12, 4], [5, 5, 11, 11])
    check()
    ed.apply_polygon("axial", 6, [8, 16, 16, 8], [7, 7, 15, 15])
    check()
    ed.interpolate("axial", 3, 6)
    check()
    ed.copy_to_neighbours("axial", 6, 1)
    check()
    box = np.zeros((20, 24), bool)
    box[6:9, 9:11] = True
    ed.apply("axial", 4, box, mode="subtract")
    check()
    ed.apply("coronal", 10, np.ones((9, 24), bool))
    check()
    assert ed.undo()
    check()
    m = np.zeros(ed.mask.shape, bool)
    m[1, 2, 3] = True
    ed.set_mask(m)
    check()
    ed.clear()
    check()
    assert len(set(seen)) == len(seen)          # every change gives a new token


def test_lesion_preset_from_the_editor_equals_the_array_preset():
    rng = np.random.default_rng(4)
    vol = np.rint(rng.normal(400, 150, (10, 30, 32))).astype(np.int16)

    class Img:
        array, spacing, direction = vol, (0.7, 0.7, 1.5), (1, 0, 0, 0, 1, 0, 0, 0, 1)
    can = V.canonical(Img())
    ed = V.MaskEditor.empty(can.array.shape)
    assert can.window_presets(ed) == can.window_presets()      # empty ROI: no lesion preset
    ed.apply_polygon("axial", 4, [5, 20, 20, 5], [6, 6, 18, 18])
    first = can.window_presets(ed)
    assert first == V.window_presets(can.array, ed.mask) and V.LESION_PRESET in first
    ed.apply_polygon("axial", 5, [22, 30, 30, 22], [20, 20, 28, 28])   # the ROI grows
    assert can.window_presets(ed) == V.window_presets(can.array, ed.mask) != first
    ed.undo()
    assert can.window_presets(ed) == first


def test_heat_view_slices_equal_the_copied_normalised_map():
    rng = np.random.default_rng(6)
    d = np.array([[-1, 0, 0], [0, 0, 1], [0, -1, 0]], float)     # flipped and permuted axes

    class Img:
        array = rng.normal(size=(7, 9, 11))
        spacing, direction = (0.8, 0.9, 2.0), tuple(d.ravel())
    can = V.canonical(Img())
    heat = np.abs(rng.normal(size=Img.array.shape)).astype(np.float32)
    hv = can.heat(heat)
    full = can.to_canonical(np.asarray(heat, float) / float(heat.max()))
    for view in V.VIEWS:
        for i in range(can.n_slices(view)):
            assert_array_equal(hv.get_slice(view, i), can.get_slice(view, i, full))
    assert hv.peak_slice("axial") == int(np.argmax(full.reshape(full.shape[0], -1).max(axis=1)))
    assert not np.shares_memory(full, heat) and np.shares_memory(hv.array, heat)
