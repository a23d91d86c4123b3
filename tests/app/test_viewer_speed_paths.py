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
