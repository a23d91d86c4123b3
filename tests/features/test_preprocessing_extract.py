"""Recipe preprocessing (paper 000) is applied in feature extraction, the same way for the
cohort path (train / predict) and the one-case path (the app): a T1 that is a displaced
copy of DCE gives DCE's features once registered, and does not without registration."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from her2core.features import FeatureConfig, extract_case_features, extract_cohort_features
from her2core.features.backbones import create_backbone

SHIFT_MM = (3.2, -1.6, 3.0)        # 2, -1, 1 voxels of the synthetic grid (1.6, 1.6, 3 mm)


@pytest.fixture(scope="module")
def displaced_cohort(tmp_path_factory):
    """Four synthetic cases whose T1 is DCE's voxels placed SHIFT_MM away (a patient who
    moved between the sequences): registered to DCE, T1 is DCE again."""
    from her2core.imaging import load_image, save_image
    from her2core.synthetic import make_cohort
    root = make_cohort(tmp_path_factory.mktemp("pre") / "cohort", n=4, seed=2, centres=1,
                       modalities="mri", shape=(32, 32, 8))
    for case in sorted((root / "cases").iterdir()):
        dce = load_image(case / "DCE.nii.gz", sequence="DCE")
        moved = dce.replace(origin=tuple(np.asarray(dce.origin) + SHIFT_MM), sequence="T1")
        save_image(moved, case / "T1.nii.gz")
    return root


@pytest.fixture(scope="module")
def backbones():
    return {"resnet18": create_backbone("resnet18", "random-init", seed=0, input_px=32)}


def _config(**kw):
    base = dict(sequences=["T1", "DCE"], backbones={"T1": ["resnet18"], "DCE": ["resnet18"]},
                default_weights="random-init", input_size=32, batch_size=4, num_workers=0,
                device="cpu")
    base.update(kw)
    return FeatureConfig(**base)


def _blocks(df, case):
    row = df.loc[case]
    t1 = row[[c for c in df.columns if c.startswith("T1__")]].to_numpy()
    dce = row[[c for c in df.columns if c.startswith("DCE__")]].to_numpy()
    return t1, dce


def test_registration_brings_the_displaced_t1_back_onto_dce(displaced_cohort, backbones):
    plain, _ = extract_cohort_features(displaced_cohort, _config(), backbones=backbones)
    reg, errors = extract_cohort_features(displaced_cohort, _config(register_to="DCE"),
                                          backbones=backbones)
    assert not errors
    for case in reg.index:
        t1, dce = _blocks(reg, case)
        # registration is good to a few hundredths of a mm (MI on 32 x 32 x 8 voxels), so
        # the registered T1 differs from DCE by linear-interpolation residue only
        assert np.corrcoef(t1, dce)[0, 1] > 0.9995
        assert np.abs(t1 - dce).max() < 0.05 * np.abs(dce).max()
        t1p, dcep = _blocks(plain, case)
        # DCE itself is untouched by registering T1 to it
        assert_allclose(dcep, dce, rtol=1e-5, atol=1e-6)
        # without registration the mask lies 2 / 1 / 1 voxels off T1's anatomy
        assert np.abs(t1p - dcep).max() > 5 * np.abs(t1 - dce).max()
        assert 1 - np.corrcoef(t1, dce)[0, 1] < 0.1 * (1 - np.corrcoef(t1p, dcep)[0, 1])
    assert reg.attrs["provenance"]["config"]["register_to"] == "DCE"


def test_resampling_and_registration_same_on_the_one_case_path(displaced_cohort, backbones):
    """The app's path (images and one ROI in memory) gives the cohort row."""
    from her2core.imaging import load_image
    from her2core.imaging.mask import load_mask
    cfg = _config(register_to="DCE", resample_mm=[0.5, 0.5, 3.0])
    df, _ = extract_cohort_features(displaced_cohort, cfg, backbones=backbones)
    case = displaced_cohort / "cases" / "syn-0001"
    dce = load_image(case / "DCE.nii.gz", sequence="DCE")
    imgs = {"T1": load_image(case / "T1.nii.gz", sequence="T1"), "DCE": dce}
    s = extract_case_features(imgs, {"mask": load_mask(case / "mask.nii.gz", dce)}, cfg,
                              backbones=backbones, case_id="syn-0001")
    assert_allclose(s.to_numpy(), df.loc["syn-0001"].to_numpy(), rtol=1e-4, atol=1e-5)
    # resampling changes what the networks see (0.5 mm in-plane instead of 1.6 mm)
    plain, _ = extract_cohort_features(displaced_cohort, _config(register_to="DCE"),
                                       backbones=backbones)
    assert np.abs(df.loc["syn-0001"].to_numpy() - plain.loc["syn-0001"].to_numpy()).max() > 1e-3
    # the settings are part of the feature-cache key; absent, the old key holds
    assert cfg.feature_settings()["resample_mm"] == [0.5, 0.5, 3.0]
    assert "resample_mm" not in _config().feature_settings()


def test_gradcam_runs_on_the_preprocessed_images_and_maps_back_to_the_source(displaced_cohort,
                                                                           backbones):
    """The maps explain the D-score of the features the network saw (registered and
    resampled images), and are placed back on each source image's grid."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from her2core.cohort import read_cohort
    from her2core.explain.case import case_gradcam
    from her2core.features.extract import load_case
    cfg = _config(register_to="DCE", resample_mm=[0.5, 0.5, 3.0])
    df, _ = extract_cohort_features(displaced_cohort, cfg, backbones=backbones)
    cols = list(df.columns)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1)).fit(df, [0, 1, 0, 1])

    class Score:                      # a fitted D-score over both sequences' features
        block = "resnet18"

        def input_columns(self):
            return cols

        def decision_function(self, X):
            return pipe.decision_function(pd.DataFrame(X)[cols])

    class Model:
        def scorer_for_block(self, block):
            return ("dscore_resnet18", Score()) if block == "resnet18" else None

        def used_variables(self):
            return ["dscore_resnet18"]

    c = read_cohort(displaced_cohort)
    images, masks = load_case(c.files("syn-0002"), cfg)
    res = case_gradcam(Model(), cfg, backbones, images, masks, df.loc[["syn-0002"]],
                       case_id="syn-0002")
    assert [r.sequence for r in res] == ["T1", "DCE"]
    for r in res:
        assert r.map_image.same_grid(images[r.sequence])            # the source grid
        assert abs(r.dscore_head - r.dscore_model) < 1e-3, r.notes   # the features' input
        assert any("preprocessed image" in n for n in r.notes)
