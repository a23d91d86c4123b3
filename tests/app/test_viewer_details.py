"""Viewer details a radiologist notices (issue 17 item 12): a 2-D ultrasound image is not an
"axial slice 0" with R/L/A/P letters; the DICOM header's own window is a preset; pixel
spacing and slice thickness are shown; the manual window steps sensibly; the ROI caption
is readable; a clinical-size slice is drawn at its size."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from her2core import viewer as V
from her2core.imaging import load_image
from her2core.imaging.dicom_synth import write_dicom_series
from her2core.imaging.image import Image

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


# ----------------------------------------------------------------------------- library
def _dicom_series(folder: Path, shape=(6, 32, 28), window=("600", "1200")) -> Path:
    rng = np.random.default_rng(3)
    img = Image(rng.integers(0, 1653, shape).astype(np.int16), (0.7, 0.7, 2.5), (0, 0, 0),
                np.eye(3).ravel(), sequence="DCE", modality="MR")
    extra = {"WindowCenter": window[0], "WindowWidth": window[1]} if window else {}
    write_dicom_series(img, folder, description="dyn", extra=extra)
    return folder


def test_header_window_is_the_first_preset_and_thickness_is_shown(tmp_path):
    can = V.canonical(load_image(_dicom_series(tmp_path / "s"), sequence="DCE"))
    assert can.header_window == (1200.0, 600.0) and can.slice_thickness == 2.5
    first, wl = next(iter(can.window_presets().items()))
    assert first == "DICOM header (C 600 / W 1200)" and wl == (1200.0, 600.0)
    cap = V.geometry_caption(can, "axial")
    assert cap == "28 x 32 pixels of 0.7 x 0.7 mm; 6 slices 2.5 mm apart, slice thickness 2.5 mm"
    # no header window: no such preset
    can2 = V.canonical(load_image(_dicom_series(tmp_path / "n", window=None), sequence="DCE"))
    assert can2.header_window is None
    assert not any(k.startswith(V.HEADER_PRESET) for k in can2.window_presets())


def test_two_d_picture_has_no_slice_title_and_no_patient_letters():
    img = Image(np.zeros((40, 50), np.uint8), (1.0, 1.0), (0, 0), (1, 0, 0, 1),
                spacing_known=False)
    can = V.canonical(img)
    assert V.view_title(can, "US", "axial", 0) == "US image"
    assert V.view_labels(can, "axial") is None
    assert "pixel size unknown" in V.geometry_caption(can)
    img3 = Image(np.zeros((5, 8, 8)), (1, 1, 3), (0, 0, 0), np.eye(3).ravel())
    can3 = V.canonical(img3)
    assert V.view_title(can3, "T2", "axial", 2) == "T2 - axial slice 2 (0-4)"
    assert V.view_labels(can3, "axial") == {"top": "A", "bottom": "P", "left": "R", "right": "L"}


def test_window_step_is_one_for_integers_and_range_over_200_otherwise():
    ints = V.canonical(Image(np.arange(1, 1654, dtype=np.int16).reshape(1, 1, -1),
                             (1, 1, 1), (0, 0, 0), np.eye(3).ravel()))
    assert ints.integer and V.window_step(ints) == 1.0
    # integer-valued floats (NIfTI often stores them so) also step by 1
    fl = V.canonical(Image(np.arange(1, 1654, dtype=np.float32).reshape(1, 1, -1),
                           (1, 1, 1), (0, 0, 0), np.eye(3).ravel()))
    assert fl.integer and V.window_step(fl) == 1.0
    assert V.window_step((0.0, 1653.0), integer=False) == 10.0      # 8.3 -> 10
    assert V.window_step((0.0, 1.0), integer=False) == 0.005
    assert V.window_step((-3.2, 4.1), integer=False) == 0.05         # 0.0365 -> 0.05


def test_roi_caption_is_readable():
    img = Image(np.zeros((10, 8, 8)), (0.5, 0.5, 2.0), (0, 0, 0), np.eye(3).ravel())
    can = V.canonical(img)
    m = np.zeros(can.array.shape, bool)
    m[[2, 3, 4, 7], 3:5, 3:5] = True
    text = V.roi_caption(can, m, "DCE", "axial", "drawn")
    assert text == "ROI on DCE: 16 voxels (0.01 mL), on 4 axial slices (2-4, 7); source: drawn"
    assert "[" not in text
    assert V.index_ranges([0, 1, 2, 5]) == "0-2, 5"


def test_clinical_size_slice_is_drawn_at_least_at_its_size():
    from webapp.widgets import figure_height, _FIG_MARGIN
    assert figure_height((448, 448), (0.7, 0.7), 1) - _FIG_MARGIN >= 448
    assert figure_height((512, 512), (0.7, 0.7), 1) - _FIG_MARGIN >= 512
    assert figure_height((448, 448), (0.7, 0.7), 3, large=True) - _FIG_MARGIN >= 448
    # a small image is not blown up beyond its column
    assert figure_height((40, 40), (1, 1), 3) - _FIG_MARGIN <= 300


@pytest.mark.parametrize("view", V.VIEWS)
def test_a_click_on_a_view_is_the_voxel_under_it(view):
    d = np.zeros((3, 3))
    d[1, 0], d[2, 1], d[0, 2] = -1, 1, -1                 # a permuted, flipped grid
    img = Image(np.zeros((5, 6, 7)), (1, 2, 3), (0, 0, 0), d.ravel())
    can = V.canonical(img)
    for r, c in ((0, 0), (2, 1), (can.get_slice(view, 1).shape[0] - 1, 0)):
        zyx = can.display_to_canonical(view, 1, r, c)
        m = np.zeros(can.array.shape, bool)
        m[zyx] = True
        assert can.get_slice(view, 1, m)[r, c]
        orig = np.argwhere(can.from_canonical(m))[0]          # numpy (z, y, x) of the image
        assert can.canonical_to_index(zyx) == tuple(int(v) for v in orig[::-1])
    with pytest.raises(IndexError):
        can.display_to_canonical(view, 1, 99, 0)


# ----------------------------------------------------------------------------- pages
def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("app_pages/case.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_ultrasound_upload_is_an_image_without_slice_or_letters():
    from PIL import Image as PILImage
    buf = io.BytesIO()
    arr = np.random.default_rng(0).integers(0, 255, (60, 80)).astype(np.uint8)
    PILImage.fromarray(arr).save(buf, format="PNG")
    at = _app()
    at.file_uploader(key="up_US").set_value(("breast_us.png", buf.getvalue(), "image/png"))
    at.run()
    at.button(key="load_upload").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    fig = _figures(at)[0]
    assert fig["layout"]["title"]["text"] == "US image"
    assert not fig["layout"].get("annotations")                 # no R / L / A / P
    caps = [c.value for c in at.caption]
    assert any("pixel size unknown" in c for c in caps), caps


def test_clinical_size_case_opens_in_the_large_view(tmp_path):
    import SimpleITK as sitk
    rng = np.random.default_rng(0)
    for name, shape in (("dce.nii.gz", (4, 448, 448)), ("t2.nii.gz", (4, 224, 224))):
        img = sitk.GetImageFromArray(rng.integers(0, 900, shape).astype(np.int16))
        img.SetSpacing((0.75, 0.75, 1.5) if shape[1] == 448 else (1.5, 1.5, 1.5))
        sitk.WriteImage(img, str(tmp_path / name))
    at = _app()
    at.file_uploader(key="up_DCE").set_value(("dce.nii.gz", (tmp_path / "dce.nii.gz").read_bytes(),
                                              "application/gzip"))
    at.file_uploader(key="up_T2").set_value(("t2.nii.gz", (tmp_path / "t2.nii.gz").read_bytes(),
                                             "application/gzip"))
    at.run()
    at.button(key="load_upload").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.toggle(key="case_large").value is True
    figs = _figures(at)
    assert len(figs) == 1 and figs[0]["layout"]["height"] >= 448 + 88
    at.toggle(key="case_large").set_value(False)
    at.run()
    assert len(_figures(at)) == 2                                  # side by side on demand


def test_dicom_header_window_offered_and_manual_slider_steps_by_one(tmp_path):
    folder = _dicom_series(tmp_path / "series")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"series/{f.name}")
    at = _app()
    at.file_uploader(key="up_DCE").set_value(("dce_series.zip", zbuf.getvalue(), "application/zip"))
    at.run()
    at.button(key="load_upload").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    opts = at.selectbox(key="case_preset").options
    assert opts[0] == "DICOM header (C 600 / W 1200)", opts
    caps = [c.value for c in at.caption]
    assert any("0.7 x 0.7 mm" in c and "slice thickness 2.5 mm" in c for c in caps), caps
    at.selectbox(key="case_preset").set_value("Manual")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    win, lev = at.slider(key="case_win"), at.slider(key="case_lev")
    assert win.proto.step == 1 and lev.proto.step == 1
    assert lev.min <= 1 and lev.max >= 1600
