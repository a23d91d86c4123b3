"""The Case page's Grad-CAM overlay: offered after a prediction of the same case and ROI,
drawn on the viewer's slice, gone when the ROI changes (the maps no longer explain it)."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _slice_png(at: AppTest) -> np.ndarray:
    import json
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    src = spec["data"][0]["source"].split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src))).convert("RGB"))


def test_heat_overlay_follows_the_prediction_of_this_case_and_roi(with_bundle):
    if not (ROOT / "assets" / "demo_cohort" / "cohort.csv").is_file():
        pytest.skip("assets/demo_cohort is not in this checkout")
    at = _run(AppTest.from_file(APP, default_timeout=300))
    at.switch_page("app_pages/case.py")
    _run(at)
    at.selectbox(key="demo_pick").set_value("syn-0003")
    at.button(key="open_demo").click()
    _run(at)
    assert not [s for s in at.selectbox if s.key == "case_heat"]     # nothing predicted yet
    at.toggle(key="case_large").set_value(True)
    _run(at)
    plain = _slice_png(at)
    at.switch_page("app_pages/prediction.py")
    _run(at)
    at.button(key="run_prediction").click()
    _run(at)
    part = at.session_state["prediction"]
    ts = part.tasks["her2"]
    # the demo model keeps no deep score (no map of its own): a known map is added to the
    # stored result, as the explain step would place one on the DCE grid
    from her2core import viewer as V
    from webapp import services as S
    case = at.session_state["case"]
    img, can = S.canonical_for(case, "DCE")
    zz, yy, xx = np.indices(img.array.shape)
    c = [int(v) for v in np.argwhere(img.array >= 0).mean(axis=0)]
    blob = np.exp(-((zz - c[0]) ** 2 / 8 + (yy - c[1]) ** 2 / 30 + (xx - c[2]) ** 2 / 30))
    cam = SimpleNamespace(sequence="DCE", backbone="known_map", direction="positive",
                          map_image=img.with_array((3.0 * blob).astype(np.float32)))
    added = not ts.gradcam
    ts.gradcam = list(ts.gradcam) + [cam]
    try:
        at.switch_page("app_pages/case.py")
        _run(at)
        heat = at.selectbox(key="case_heat")
        bbs = sorted({b for _, b in part.maps("her2")})
        assert heat.options == ["none"] + bbs and heat.value == "none"
        assert np.array_equal(_slice_png(at), plain)
        heat.set_value("known_map")
        _run(at)
        shown = _slice_png(at)
        # exactly the slice, its ROI and the map scaled to 0..1 by its maximum, blended
        idx = at.slider(key="case_slice_axial").value
        wl = can.window_presets()["Auto (1-99 %)"]
        m = can.get_slice("axial", idx, at.session_state["editors"]["DCE"].mask)
        h = can.get_slice("axial", idx, can.to_canonical(blob / blob.max()))
        want = V.compose_rgb(V.apply_window(can.get_slice("axial", idx), *wl), mask=m,
                             mask_opacity=0.35, heat=h, heat_opacity=0.45)
        assert np.array_equal(shown, want) and not np.array_equal(shown, plain)
        # a new ROI: the stored prediction no longer belongs to it, the overlay is not offered
        ed = at.session_state["editors"]["DCE"]
        mm = ed.mask.copy()
        mm[tuple(np.argwhere(mm)[0])] = False
        ed.set_mask(mm)
        _run(at)
        assert not [s for s in at.selectbox if s.key == "case_heat"]
        ed.undo()                                        # the same ROI again: offered again
        _run(at)
        assert [s for s in at.selectbox if s.key == "case_heat"]
    finally:
        ts.gradcam = [g for g in ts.gradcam if g is not cam]
    assert added or ts.gradcam
