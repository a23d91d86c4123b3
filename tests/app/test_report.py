"""her2core.report: JSON / HTML / PDF of one case carry the same numbers and notes, and the PDF
is the one-to-two-page report a clinician would file (issue 17 item 14)."""
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from her2core import DISCLAIMER
from her2core import report as R
from her2core import viewer as V
from her2core.imaging.image import Image
from her2core.viewer import rgb_to_png_bytes

ROOT = Path(__file__).resolve().parents[2]


def _report(**kw):
    png = rgb_to_png_bytes(np.full((8, 10, 3), 128, np.uint8))
    return R.CaseReport(
        case_id="syn-0001",
        case={"source": "demo", "sequences": kw.pop("sequences", ["DCE", "T1"]), "roi_voxels": 153,
              "clinical": {"age": 54.0, "er": 1, "ki67": None, "mass_shape": "irregular"}},
        prediction={"p_her2": 0.4213, "p_her2_interval": [0.31, 0.55], "interval_method": "bootstrap",
                    "p_her2_low": None, "threshold": 0.35, "total_points": 123.4, "task": "her2",
                    "imputed": ["ki67"], "used": ["age", "er", "ki67"],
                    "points": {"age": 12.5, "DCE score": 80.0},
                    "contributions": [{"predictor": "age", "value": 54.0, "contribution": -0.2},
                                      {"predictor": "DCE score", "value": 0.7, "contribution": 0.9}]},
        model={"name": "demo", "checksum": "sha256:abc", "random_init": True,
               "weights": {"resnet18": "random-init"}},
        software={"numpy": np.__version__},
        figures=[R.ReportFigure("DCE axial", png, "ROI outlined", kind="slice")],
        created_utc="2026-01-01T00:00:00+00:00", **kw)


def _pdf_text(pdf: bytes) -> str:
    """Strings shown by an uncompressed reportlab PDF."""
    parts = re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj", pdf)
    return " ".join(re.sub(rb"\\(.)", rb"\1", t).decode("latin-1") for t in parts)


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b", pdf))


def test_json_has_numbers_notes_and_figure_hashes():
    d = json.loads(R.to_json(_report()))
    assert d["schema"] == R.SCHEMA and d["disclaimer"] == DISCLAIMER
    assert d["prediction"]["p_her2"] == pytest.approx(0.4213)
    assert d["prediction"]["p_her2_interval"] == [0.31, 0.55]
    assert d["case"]["clinical"]["ki67"] is None
    assert R.RANDOM_INIT_NOTE in d["notes"]
    assert len(d["figures"]) == 1 and len(d["figures"][0]["png_sha256"]) == 64
    assert d["software"]["her2core"]


def test_ultrasound_notice_only_on_ultrasound_cases():
    """Defect: the burned-in-text notice was on every report, MRI-only ones included."""
    assert R.US_TEXT_NOTE not in _report().notes
    assert R.US_TEXT_NOTE not in _pdf_text(R.to_pdf(_report(), compress=False))
    us = _report(sequences=["US"])
    assert R.US_TEXT_NOTE in us.notes
    assert "Burned-in text" in _pdf_text(R.to_pdf(us, compress=False))


def test_nan_becomes_null():
    r = _report()
    r.prediction["p_her2_low"] = float("nan")
    assert json.loads(R.to_json(r))["prediction"]["p_her2_low"] is None


def test_html_and_pdf_carry_the_same_content():
    r = _report()
    h = R.to_html(r)
    assert "42.1 % (0.421); 95 % interval 31.0 % - 55.0 %" in h
    assert "Random-init weights" in h and "data:image/png;base64," in h
    assert "HER2-negative (probability 42.1 % &lt; threshold 0.35)" not in h   # 0.42 >= 0.35
    assert "HER2-positive (probability 42.1 % &gt;= threshold 0.35)" in h
    pdf = R.to_pdf(r)
    assert pdf[:5] == b"%PDF-" and len(pdf) > 2000
    text = _pdf_text(R.to_pdf(r, compress=False))
    assert "42.1 %" in text and "not a medical device" in text and "Random-init weights" in text
    assert R.IMPUTED_MARK in text and "{" not in text


def test_contributions_png():
    png = R.contributions_png(_report().prediction["contributions"], base_value=-0.5)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_pdf_survives_very_long_values_on_two_pages():
    r = _report()
    r.case["note"] = "x" * 20000
    r.model["model_card"] = {"recipe": "y" * 9000, "warnings": ["z" * 5000] * 20,
                             "training": {"her2": {"n": 3, "second_level_variables": list(map(str, range(3000)))}}}
    pdf = R.to_pdf(r, compress=False)
    assert pdf[:5] == b"%PDF-" and _pages(pdf) <= 2
    assert "{" not in _pdf_text(pdf)
    assert json.loads(R.to_json(r))["case"]["note"] == "x" * 20000   # the JSON keeps everything


# ----------------------------------------------------------------------------- key slices
def test_crop_box_covers_the_roi_with_a_margin():
    m = np.zeros((448, 448), bool)
    m[200:230, 100:120] = True
    r0, r1, c0, c1 = R.roi_crop_box(m, margin=0.6)
    assert r0 <= 200 - 18 and r1 >= 230 + 18 and c0 <= 100 - 12 and c1 >= 120 + 12
    assert (r1 - r0) * (c1 - c0) < 0.05 * m.size                  # zoomed, not the whole slice
    edge = np.zeros((40, 40), bool)
    edge[0:5, 35:40] = True                                       # at the border: stays inside
    r0, r1, c0, c1 = R.roi_crop_box(edge)
    assert (r0, c1) == (0, 40) and r1 > 5 and c0 < 35


def _volume(shape_zyx=(120, 448, 448), spacing=(0.75, 0.75, 1.5), centre=(60, 240, 150), r=12):
    zz, yy, xx = np.ogrid[:shape_zyx[0], :shape_zyx[1], :shape_zyx[2]]
    d = ((zz - centre[0]) * spacing[2]) ** 2 + ((yy - centre[1]) * spacing[1]) ** 2 + \
        ((xx - centre[2]) * spacing[0]) ** 2
    roi = d <= (r * max(spacing[:2]) * 1.0) ** 2 * 1.0
    rng = np.random.default_rng(0)
    arr = (200 + 40 * rng.standard_normal(shape_zyx) + 600 * roi).astype(np.float32)
    img = Image(arr, spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), sequence="DCE", modality="MR")
    return img, roi


def test_key_slices_are_zoomed_to_the_roi_at_good_resolution():
    img, roi = _volume()
    can = V.canonical(img)
    roi_c = can.to_canonical(roi)
    cam = SimpleNamespace(sequence="DCE", backbone="resnet18", direction="positive",
                          map_image=img.with_array(roi.astype(float)))
    views = {s: can for s in ("DCE", "T1", "T2", "T1b")}
    figs = R.key_slice_figures(views, {"DCE": roi_c}, images={s: img for s in views}, gradcam=[cam])
    slices = [f for f in figs if f.kind == "slice"]
    assert len(slices) == R.MAX_SLICES                      # at most three slices
    assert [f for f in figs if f.kind == "gradcam"]
    for f in slices:
        r0, r1, c0, c1 = f.meta["crop_box"]
        k = f.meta["slice"]
        rr, cc = np.nonzero(can.get_slice("axial", k, roi_c))
        assert r0 <= rr.min() and rr.max() < r1 and c0 <= cc.min() and cc.max() < c1   # covers the ROI
        assert (r1 - r0) < 0.3 * 448                                                   # zoomed in
        assert max(f.size) >= 480                                                      # not pixelated
        assert abs(k - 60) <= 1                                 # the ROI's largest cross-section


# ----------------------------------------------------------------------------- the real thing
@pytest.fixture(scope="module")
def demo_prediction(demo_bundle):
    """(bundle, views, images, rois, clinical, part, cp, cp_low) of demo case syn-0002."""
    root = ROOT / "assets" / "demo_cohort"
    if not (root / "cohort.csv").is_file():
        pytest.skip("assets/demo_cohort is not in this checkout")
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.features.extract import load_case
    from her2core.predictor import CasePredictor
    from her2core.workflows.explain import case_clinical_values
    bundle = load_bundle(demo_bundle)
    pred = CasePredictor(bundle)
    coh = read_cohort(root)
    images, masks = load_case(coh.files("syn-0002"), pred.config)
    clin = dict(case_clinical_values(coh, "syn-0002"))
    clin["ki67"] = None                                     # a missing value the model uses
    part = pred.image_part(images, masks, case_id="syn-0002")
    cp = pred.clinical_part(part, clin, "her2")
    cp_low = pred.clinical_part(part, clin, "her2_low", shap=False) if "her2_low" in pred.tasks else None
    views = {s: V.canonical(im) for s, im in images.items()}
    rois = {s: views[s].to_canonical(np.asarray(masks[s].array) > 0) for s in masks}
    return bundle, views, images, rois, clin, part, cp, cp_low


def test_demo_case_report_fits_two_pages_with_every_section(demo_prediction):
    bundle, views, images, rois, clin, part, cp, cp_low = demo_prediction
    assert "ki67" in cp.imputed
    rep = R.build_case_report("syn-0002", views=views, images=images, rois=rois, clinical=clin,
                              threshold=0.35, bundle=bundle, part=part, cp=cp, cp_low=cp_low,
                              case_info={"source": "demo"})
    kinds = [f.kind for f in rep.figures]
    assert {"nomogram", "shap", "dca", "slice"} <= set(kinds)
    assert kinds.count("slice") <= R.MAX_SLICES
    pdf = R.to_pdf(rep, compress=False)
    assert _pages(pdf) <= 2
    text = _pdf_text(pdf)
    assert f"{100 * cp.probability:.1f} %" in text
    if cp.interval:
        assert f"{100 * cp.interval[0]:.1f} %" in text
    call = "HER2-positive" if cp.probability >= 0.35 else "HER2-negative"
    assert f"{call} (probability" in text
    assert R.IMPUTED_MARK in text and "Ki-67" in text
    assert "{" not in text                                  # the model card as a summary, no JSON
    assert "not a medical device" in text
    assert ("Random-init weights" in text) == bundle.random_init
    if cp_low is not None:
        assert "caveat" in text
    d = json.loads(R.to_json(rep))
    if cp_low is not None and not cp_low.no_predictors:    # the demo's HER2-low model keeps some
        tw = d["prediction"]["three_way"]
        assert sum(tw.values()) == pytest.approx(1.0)
        assert tw["low"] == pytest.approx((1 - cp.probability) * cp_low.probability)
        assert "Three-way call" in text and f"zero {100 * tw['zero']:.1f} %" in text
    assert d["prediction"]["call"].startswith(call)
    shown = {c["predictor"] for c in d["prediction"]["contributions"]}
    assert shown <= set(cp.used)                            # no score outside the model
    assert R.to_html(rep).count("data:image/png;base64,") == len(rep.figures)


def test_clinical_size_case_report_fits_two_pages(demo_prediction):
    bundle, _, _, _, clin, part, cp, cp_low = demo_prediction
    img, roi = _volume()
    can = V.canonical(img)
    cam = SimpleNamespace(sequence="DCE", backbone="resnet18", direction="positive",
                          map_image=img.with_array(roi.astype(float)))
    part_cam = SimpleNamespace(tasks={"her2": SimpleNamespace(gradcam=[cam], gradcam_notes=[],
                                                              scores={}, used=[])})
    views = {"DCE": can, "T1": can, "T2": can}
    rep = R.build_case_report("clin-000", views=views, images={s: img for s in views},
                              rois={"DCE": can.to_canonical(roi)}, clinical=clin, threshold=0.5,
                              bundle=bundle, part=part_cam, cp=cp, cp_low=cp_low)
    assert [f.kind for f in rep.figures].count("gradcam") == 1
    pdf = R.to_pdf(rep, compress=False)
    assert _pages(pdf) <= 2
    assert len(pdf) < 6_000_000
