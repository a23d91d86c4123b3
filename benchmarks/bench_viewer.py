#!/usr/bin/env python3
"""Viewer slice render at clinical size (448 x 448 x 120), as a ratio to the bare floor.

What the Case page does on the server for the slice it draws (webapp/widgets.py):
``Canonical.window_presets`` (the volume's percentiles memoised, the ROI preset per call),
``get_slice``, ``apply_window``, the ROI slice, ``compose_rgb`` (fill + outline),
``slice_figure`` (PNG inside a plotly figure, with the selectable point grid) and the
figure's JSON for the browser (plotly ``to_json``). The floor any server-rendered viewer
pays: a bare numpy slice, a linear window to uint8 and a PNG encode (Pillow,
compress_level 1 and its default 6). Both are timed on the same slices, interleaved, in
one run; the ratio is what to read (this machine is shared).

Writes benchmarks/results/viewer_cpu.json.

  python benchmarks/bench_viewer.py [--slices 40] [--shape 120,448,448]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def volume(shape, seed=0):
    """An MRI-like int16 volume with an ellipsoid lesion and its mask (canonical order)."""
    from her2core.imaging.image import Image
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, y, x = np.ogrid[:nz, :ny, :nx]
    lesion = ((x - nx / 2) / 30.0) ** 2 + ((y - ny / 2) / 24.0) ** 2 + ((z - nz / 2) / 10.0) ** 2 < 1
    arr = (300 + 80 * np.sin(x / 17.0) + rng.normal(0, 40, shape) + 700 * lesion).clip(0, 1653)
    img = Image(arr.astype(np.int16), (0.75, 0.75, 1.5), (0, 0, 0), np.eye(3).ravel(),
                sequence="DCE", modality="MR")
    return img, lesion


def page_render(can, mask_can, k: int, V) -> int:
    """The server work of one slice of the Case page (drawn sequence, with the ROI)."""
    presets = can.window_presets(mask_can)
    wl = presets[next(p for p in presets if p.startswith("Auto"))]
    grey = V.apply_window(can.get_slice("axial", k), *wl)
    m = can.get_slice("axial", k, mask_can)
    rgb = V.compose_rgb(grey, mask=m, mask_opacity=0.35)
    fig = V.slice_figure(rgb, can.pixel_size("axial"), title=V.view_title(can, "DCE", "axial", k),
                         labels=V.view_labels(can, "axial"), selectable=True, height=536)
    return len(fig.to_json())


def floor_render(arr, k: int, lo: float, hi: float, level: int) -> int:
    """Bare numpy slice + linear window + PNG encode."""
    from PIL import Image as PILImage
    sl = arr[k]
    g = np.clip((sl - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(g).save(buf, format="PNG", compress_level=level)
    return buf.tell()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument("--shape", default="120,448,448")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "viewer_cpu.json"))
    a = ap.parse_args()
    from her2core import viewer as V
    shape = tuple(int(v) for v in a.shape.split(","))
    img, lesion = volume(shape)
    t0 = time.perf_counter()
    can = V.canonical(img)
    t_canonical = time.perf_counter() - t0
    t0 = time.perf_counter()
    can.window_presets(lesion)                    # first call: the volume's percentiles
    t_first_presets = time.perf_counter() - t0
    lo, hi = np.percentile(can.array, [1, 99])
    arr = can.array
    rng = np.random.default_rng(1)
    ks = rng.integers(0, shape[0], a.slices)
    page, fl1, fl6, sizes = [], [], [], []
    for k in ks:                                   # interleaved: load changes hit both alike
        t = time.perf_counter()
        sizes.append(page_render(can, lesion, int(k), V))
        page.append(time.perf_counter() - t)
        t = time.perf_counter()
        floor_render(arr, int(k), lo, hi, 1)
        fl1.append(time.perf_counter() - t)
        t = time.perf_counter()
        floor_render(arr, int(k), lo, hi, 6)
        fl6.append(time.perf_counter() - t)
    med = statistics.median
    res = {
        "shape_zyx": list(shape), "spacing_mm": [0.75, 0.75, 1.5], "slices_timed": a.slices,
        "page_slice_ms": round(1000 * med(page), 2),
        "floor_numpy_png1_ms": round(1000 * med(fl1), 2),
        "floor_numpy_png6_ms": round(1000 * med(fl6), 2),
        "ratio_page_to_floor_png1": round(med(page) / med(fl1), 2),
        "ratio_page_to_floor_png6": round(med(page) / med(fl6), 2),
        "page_slice_ms_p90": round(1000 * float(np.percentile(page, 90)), 2),
        "figure_json_kb": round(med(sizes) / 1024, 1),
        "once_per_volume_ms": {"canonical": round(1000 * t_canonical, 1),
                               "first_window_presets": round(1000 * t_first_presets, 1)},
        "what": "server work of one Case-page slice (presets memoised, ROI preset, window, ROI "
                "overlay + outline, plotly figure with the selectable grid, to_json) against "
                "numpy slice + window + Pillow PNG; medians, interleaved, one run",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": [round(v, 2) for v in os.getloadavg()]},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
