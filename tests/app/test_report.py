"""her2core.report: JSON / HTML / PDF of one case carry the same numbers and notes."""
import json

import numpy as np
import pytest

from her2core import DISCLAIMER
from her2core import report as R
from her2core.viewer import rgb_to_png_bytes


def _report():
    png = rgb_to_png_bytes(np.full((8, 10, 3), 128, np.uint8))
    return R.CaseReport(
        case_id="syn-0001",
        case={"source": "demo", "sequences": ["DCE", "T1"], "roi_voxels": 153,
              "clinical": {"age": 54.0, "er": 1, "ki67": None, "mass_shape": "irregular"}},
        prediction={"p_her2": 0.4213, "p_her2_interval": [0.31, 0.55], "interval_method": "bootstrap",
                    "p_her2_low": None, "threshold": 0.35, "total_points": 123.4,
                    "points": {"age": 12.5, "DCE score": 80.0},
                    "point_values": {"age": 54.0, "DCE score": 0.7},
                    "contributions": [{"predictor": "age", "value": 54.0, "contribution": -0.2},
                                      {"predictor": "DCE score", "value": 0.7, "contribution": 0.9}]},
        model={"name": "demo", "checksum": "sha256:abc", "random_init": True,
               "weights": {"resnet18": "random-init"}},
        software={"numpy": np.__version__},
        figures=[R.ReportFigure("DCE axial", png, "ROI outlined")],
        created_utc="2026-01-01T00:00:00+00:00")


def test_json_has_numbers_notes_and_figure_hashes():
    d = json.loads(R.to_json(_report()))
    assert d["schema"] == R.SCHEMA and d["disclaimer"] == DISCLAIMER
    assert d["prediction"]["p_her2"] == pytest.approx(0.4213)
    assert d["prediction"]["p_her2_interval"] == [0.31, 0.55]
    assert d["case"]["clinical"]["ki67"] is None
    assert R.US_TEXT_NOTE in d["notes"]
    assert len(d["figures"]) == 1 and len(d["figures"][0]["png_sha256"]) == 64
    assert d["software"]["her2core"]


def test_nan_becomes_null():
    r = _report()
    r.prediction["p_her2_low"] = float("nan")
    assert json.loads(R.to_json(r))["prediction"]["p_her2_low"] is None


def test_html_and_pdf_carry_the_same_content():
    r = _report()
    h = R.to_html(r)
    assert "0.421 (interval 0.310 - 0.550, bootstrap)" in h
    assert "random-initialised" in h and "Burned-in text" in h and "data:image/png;base64," in h
    pdf = R.to_pdf(r)
    assert pdf[:5] == b"%PDF-" and len(pdf) > 2000
    text = _pdf_text(R.to_pdf(r, compress=False))
    assert "0.421" in text and "Burned-in text" in text and "not a medical device" in text


def _pdf_text(pdf: bytes) -> str:
    """Strings shown by an uncompressed reportlab PDF."""
    import re
    return " ".join(t.decode("latin-1") for t in re.findall(rb"\((.*?)\) Tj", pdf))


def test_contributions_png():
    png = R.contributions_png(_report().prediction["contributions"], base_value=-0.5)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_pdf_survives_very_long_values():
    r = _report()
    r.case["note"] = "x" * 20000
    r.model["model_card"] = {"recipe": {"description": "y" * 9000}, "data": list(range(3000))}
    pdf = R.to_pdf(r)
    assert pdf[:5] == b"%PDF-"
    assert json.loads(R.to_json(r))["case"]["note"] == "x" * 20000   # the JSON keeps everything
