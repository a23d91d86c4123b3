"""Grad-CAM on the Prediction page: a plain sentence when the final model uses no image score
(issue 17 item 7), and the three-way call from the bundle's two tasks (issue 13)."""
from __future__ import annotations

from pathlib import Path

import pytest

from her2core.predictor import TaskScores

ROOT = Path(__file__).resolve().parents[2]


def test_summary_when_the_final_model_drops_every_image_score():
    ts = TaskScores("her2", scores={"dscore_resnet18": -131.0}, used=[],
                    gradcam_notes=["DCE resnet18: no map: dscore_resnet18 is not used by the model"])
    s = ts.gradcam_summary()
    assert s.startswith("No Grad-CAM map: the final model uses none of its image scores")
    assert "dscore_resnet18 not kept" in s and "-131" not in s
    assert TaskScores("her2").gradcam_summary() == (
        "No Grad-CAM map: this model uses no image score, only clinical values.")
    failed = TaskScores("her2", scores={"dscore_x": 1.0}, used=["dscore_x"],
                        gradcam_notes=["Grad-CAM maps could not be computed: no ROI on T2"])
    assert failed.gradcam_summary() == ("No Grad-CAM map could be drawn for dscore_x: "
                                        "Grad-CAM maps could not be computed: no ROI on T2.")
    assert TaskScores("her2", gradcam=[object()]).gradcam_summary() == ""


@pytest.mark.slow
def test_three_way_call_of_the_demo_bundle():
    bdir, cdir = ROOT / "assets" / "demo_bundle", ROOT / "assets" / "demo_cohort"
    if not (bdir / "MANIFEST").is_file() or not (cdir / "cohort.csv").is_file():
        pytest.skip("no demo bundle / cohort in this checkout")
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.imaging import load_image
    from her2core.imaging.mask import load_mask
    from her2core.predictor import CasePredictor, case_masks, three_way
    from her2core.workflows.explain import case_clinical_values
    bundle, cohort = load_bundle(bdir), read_cohort(cdir)
    pred = CasePredictor(bundle)
    cid = "syn-0003"
    seqs = pred.required_inputs().sequences
    f = cohort.files(cid)
    images = {s: load_image(getattr(f, s), sequence=s) for s in seqs}
    masks = case_masks(images, {"DCE": load_mask(f.mask, images["DCE"])}, case_id=cid,
                       sequences=seqs)
    part = pred.image_part(images, masks, case_id=cid, gradcam=False)
    clin = case_clinical_values(cohort, cid)
    call = pred.three_way_call(part, clin)
    assert set(bundle.tasks) == {"her2", "her2_low"} and call is not None
    hi = pred.clinical_part(part, clin, "her2")
    lo = pred.clinical_part(part, clin, "her2_low")
    assert call["positive"] == pytest.approx(hi.probability, abs=1e-12)
    if lo.no_predictors:          # the demo HER2-low model: no number shown as a prediction
        assert call["low"] is None and call["zero"] is None and "kept no predictor" in call["note"]
    else:
        ref = three_way(hi.probability, lo.probability)
        assert call["low"] == pytest.approx(ref["low"]) and call["zero"] == pytest.approx(ref["zero"])
