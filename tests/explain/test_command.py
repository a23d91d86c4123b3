"""`python -m her2core explain`: contributions add up to the model, maps share the image grid."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose

pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

CLINICAL = ["age", "er", "enhancement_curve"]


@pytest.fixture(scope="module")
def demo_bundle(tiny_cohort_ro, tmp_path_factory):
    from her2core.bundle import save_bundle
    from her2core.cohort import read_cohort
    from her2core.features.config import FeatureConfig
    from her2core.features.extract import FeatureExtractor
    from her2core.models.deepscore import DeepScore
    from her2core.models.nomogram_model import StackedNomogram
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = FeatureConfig(sequences=["T1", "DCE", "US"],
                            backbones={"T1": ["resnet18"], "DCE": ["resnet18"], "US": ["resnet18"]},
                            default_weights="random-init", input_size=32, device="cpu", num_workers=0,
                            margin_px=3)
        cohort = read_cohort(tiny_cohort_ro)
        F, errors = FeatureExtractor(cfg).extract_cohort(cohort)
        assert not errors
        y = cohort.labels("her2").loc[F.index].to_numpy()
        X = pd.concat([F, cohort.table.loc[F.index, CLINICAL]], axis=1)
        scorer = DeepScore(block="resnet18", univariate=None, corr_threshold=None, lasso=False, C=0.05)
        model = StackedNomogram(scorers=[("resnet18", scorer)], clinical_predictors=CLINICAL,
                                clinical_selection="none", cv=2, C=1.0,
                                score_selection="force").fit(X, y)
        path = save_bundle(tmp_path_factory.mktemp("bundle") / "b", {"her2": model},
                           model_card={"name": "explain test"}, feature_config=cfg.to_dict(),
                           backbones=F.attrs["provenance"]["backbones"])
    finally:
        torch.set_num_threads(n)
    return path, X


def test_explain_command_end_to_end(demo_bundle, tiny_cohort_ro, tmp_path):
    from her2core import cli
    from her2core.bundle import load_bundle
    from her2core.imaging.io import load_image
    bundle_path, X = demo_bundle
    case = "syn-0003"
    out = tmp_path / "out"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = cli.main(["explain", "--bundle", str(bundle_path), "--cohort", str(tiny_cohort_ro),
                       "--case", case, "--out", str(out), "--method", "gradcam++"])
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    # --- SHAP table: contributions add up exactly to the model's log-odds
    text = (out / f"shap_{case}.csv").read_text(encoding="utf-8")
    assert "RANDOM-INIT" in text.splitlines()[1]
    table = pd.read_csv(out / f"shap_{case}.csv", comment="#")
    assert list(table.columns) == ["predictor", "value", "contribution", "group"]
    assert list(table["predictor"]) == ["dscore_resnet18"] + CLINICAL
    assert list(table["group"]) == ["deep score", "clinical", "clinical", "clinical"]
    summary = json.loads((out / f"explain_{case}.json").read_text(encoding="utf-8"))
    assert summary["random_init"] is True
    model = load_bundle(bundle_path).models["her2"]
    logodds = float(model.decision_function(X.loc[[case]])[0])
    s = summary["shap"]
    assert s["method"] == "linear" and s["approximate"] is False
    assert_allclose(s["base_value"] + table["contribution"].sum(), logodds, atol=1e-9)
    assert_allclose(s["prediction"], logodds, atol=1e-12)
    # the base value is the mean log-odds over the background (all 8 cases here)
    assert_allclose(s["base_value"], model.decision_function(X).mean(), atol=1e-9)
    # --- Grad-CAM: one map per sequence, on its image's grid, target = the D-score
    cams = summary["gradcam"]
    assert [c["sequence"] for c in cams] == ["T1", "DCE", "US"]
    for c in cams:
        assert c["random_init"] and c["method"] == "gradcam++"
        assert_allclose(c["dscore_head"], c["dscore_model"], rtol=1e-4, atol=1e-4)
        us = c["sequence"] == "US"
        src = next((tiny_cohort_ro / "cases" / case).glob(f"{c['sequence']}.*"))
        img = load_image(src, sequence=c["sequence"])
        cam = load_image(c["nifti"], expected_ndim=2 if us else 3)
        assert cam.size == img.size
        assert_allclose(cam.spacing, img.spacing, rtol=1e-6)
        assert_allclose(cam.origin, img.origin, atol=1e-4)
        assert_allclose(cam.direction, img.direction, atol=1e-6)
        # the map sits on one slice, inside the ROI's neighbourhood
        nz = np.argwhere(cam.array > 0)
        if len(nz) and not us:
            assert len(np.unique(nz[:, 0])) == 1 and nz[0, 0] == c["slice_index"]
        assert (out / "gradcam" / c["png"].split("/")[-1]).is_file()
        import nibabel as nib
        assert b"RANDOM-INIT" in nib.load(c["nifti"]).header["descrip"].tobytes()
    assert (out / f"explain_{case}.html").stat().st_size > 10_000


def test_unknown_case_is_a_user_error(demo_bundle, tiny_cohort_ro, tmp_path, capsys):
    from her2core import cli
    rc = cli.main(["explain", "--bundle", str(demo_bundle[0]), "--cohort", str(tiny_cohort_ro),
                   "--case", "nope", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "case nope" in err and "cohort.csv" in err


def test_case_gradcam_3d_resnet_map_on_the_dce_grid(tiny_cohort_ro, tmp_path):
    """The 3-D backbone: 3-D Grad-CAM of its D-score, placed back on the DCE image's grid."""
    from her2core.cohort import read_cohort
    from her2core.explain.case import case_gradcam
    from her2core.explain.gradcam import leftover_hooks
    from her2core.features.config import FeatureConfig
    from her2core.features.extract import FeatureExtractor, load_case
    from her2core.imaging.io import load_image
    from her2core.models.deepscore import DeepScore
    from her2core.models.nomogram_model import StackedNomogram
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = FeatureConfig(sequences=["DCE"], backbones={"DCE": ["resnet3d18"]},
                            default_weights="random-init", volume_size=32, volume_margin_px=4,
                            device="cpu", num_workers=0)
        cohort = read_cohort(tiny_cohort_ro)
        ext = FeatureExtractor(cfg)
        F, errors = ext.extract_cohort(cohort)
        assert not errors
        y = cohort.labels("her2").loc[F.index].to_numpy()
        X = pd.concat([F, cohort.table.loc[F.index, ["age"]]], axis=1)
        scorer = DeepScore(block="resnet3d18", univariate=None, corr_threshold=None, lasso=False, C=0.05)
        model = StackedNomogram(scorers=[("resnet3d18", scorer)], clinical_predictors=["age"],
                                clinical_selection="none", cv=2, C=1.0,
                                score_selection="force").fit(X, y)
        case = "syn-0002"
        images, masks = load_case(cohort.files(case), cfg)
        cams = case_gradcam(model, cfg, ext.backbones, images, masks, F.loc[[case]],
                            out_dir=tmp_path, case_id=case)
    finally:
        torch.set_num_threads(n)
    assert len(cams) == 1
    r = cams[0]
    assert r.method == "gradcam3d" and r.target_layer.startswith("layer4")
    assert_allclose(r.dscore_head, r.dscore_model, rtol=1e-4, atol=1e-4)
    assert leftover_hooks(ext.backbones["resnet3d18"].model) == []
    assert r.map_image.same_grid(images["DCE"])
    back = load_image(tmp_path / f"{case}_DCE_resnet3d18_gradcam3d.nii.gz", expected_ndim=3)
    assert back.same_grid(images["DCE"])
    # the map covers several slices (a volume), and nothing outside the ROI box + margin
    from her2core.imaging import ops
    start, stop = ops.roi_bbox(masks["DCE"], margin_px=(4, 4, 0))
    inside = np.zeros(images["DCE"].shape, bool)
    inside[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]] = True
    assert back.array[~inside].max() == 0
    assert back.array.max() > 0 and len(np.unique(np.nonzero(back.array)[0])) > 1


def test_single_case_cohort_with_a_reference_background(demo_bundle, tiny_cohort_ro, tmp_path):
    """A new case alone in its cohort, explained against the training-like cohort."""
    import shutil

    from her2core import cli
    from her2core.bundle import load_bundle
    bundle_path, X = demo_bundle
    case = "syn-0005"
    one = tmp_path / "one"
    (one / "cases").mkdir(parents=True)
    shutil.copytree(tiny_cohort_ro / "cases" / case, one / "cases" / case)
    lines = (tiny_cohort_ro / "cohort.csv").read_text(encoding="utf-8").splitlines()
    (one / "cohort.csv").write_text("\n".join([lines[0]] + [ln for ln in lines[1:]
                                                            if ln.startswith(case + ",")]) + "\n")
    out = tmp_path / "out"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = cli.main(["explain", "--bundle", str(bundle_path), "--cohort", str(one), "--case", case,
                       "--background", str(tiny_cohort_ro), "--out", str(out), "--no-gradcam"])
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    s = json.loads((out / f"explain_{case}.json").read_text(encoding="utf-8"))["shap"]
    model = load_bundle(bundle_path).models["her2"]
    assert s["n_background"] == 8
    assert_allclose(s["base_value"], model.decision_function(X).mean(), atol=1e-9)
    assert_allclose(s["prediction"], model.decision_function(X.loc[[case]])[0], atol=1e-9)
    table = pd.read_csv(out / f"shap_{case}.csv", comment="#")
    assert_allclose(s["base_value"] + table["contribution"].sum(), s["prediction"], atol=1e-9)
