"""Cohort extraction: columns, a bad case reported and skipped, cache hits, single case = cohort row."""
from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from her2core.errors import Her2Error
from her2core.features import FeatureConfig, extract_case_features, extract_cohort_features
from her2core.features import extract as X
from her2core.features.backbones import create_backbone


def _config(**kw):
    base = dict(sequences=["T2", "DCE", "US"],
                backbones={"T2": ["resnet18"], "DCE": ["resnet18"], "US": ["resnet18"]},
                default_weights="random-init", input_size=32, batch_size=3, num_workers=2,
                radiomics=True, radiomics_sequences=["US"])
    base.update(kw)
    return FeatureConfig(**base)


@pytest.fixture(scope="module")
def backbones():
    return {"resnet18": create_backbone("resnet18", "random-init", seed=0, input_px=32)}


def test_cohort_with_a_corrupt_case(tiny_cohort, backbones, tmp_path):
    (tiny_cohort / "cases" / "syn-0003" / "T2.nii.gz").write_bytes(b"not a nifti file")
    calls = []
    cfg = _config()
    df, errors = extract_cohort_features(tiny_cohort, cfg, progress=lambda *a: calls.append(a),
                                         backbones=backbones)
    assert [e.case_id for e in errors] == ["syn-0003"]
    assert "T2.nii.gz" in str(errors[0])
    assert list(df.index) == [f"syn-{i:04d}" for i in range(8) if i != 3]
    assert df.index.name == "case_id"
    deep_cols = [c for c in df.columns if "__resnet18__" in c]
    assert len(deep_cols) == 3 * 512
    assert deep_cols[0] == "T2__resnet18__f0000" and deep_cols[-1] == "US__resnet18__f0511"
    rad = [c for c in df.columns if c.startswith("US__radiomics__")]
    assert "US__radiomics__original_shape2D_PixelSurface" in rad and len(rad) > 90
    assert np.isfinite(df.to_numpy()).all()
    assert calls[-1][:2] == (8, 8)
    prov = df.attrs["provenance"]
    assert prov["weights"] == {"resnet18": "random-init"}
    assert "randomly initialised" in df.attrs["warning"]
    assert prov["n_errors"] == 1 and prov["device"] == "cpu"
    json.dumps(prov)  # provenance is JSON-serialisable (model card)

    # the single-case path gives the cohort row (same preprocessing, same nets)
    from her2core.imaging import load_image
    from her2core.imaging.mask import load_mask
    case = tiny_cohort / "cases" / "syn-0001"
    dce = load_image(case / "DCE.nii.gz", sequence="DCE")
    imgs = {"T2": load_image(case / "T2.nii.gz", sequence="T2"), "DCE": dce,
            "US": load_image(case / "US.png", sequence="US")}
    masks = {"mask": load_mask(case / "mask.nii.gz", dce),
             "US": load_mask(case / "US_mask.png", imgs["US"])}
    s = extract_case_features(imgs, masks, cfg, backbones=backbones, case_id="syn-0001")
    assert list(s.index) == list(df.columns)
    assert_allclose(s.to_numpy(), df.loc["syn-0001"].to_numpy(), rtol=1e-4, atol=1e-5)
    assert s.attrs["weights"] == {"resnet18": "random-init"}


def test_cache_hit_skips_everything_and_settings_change_recomputes(tiny_cohort_ro, backbones,
                                                                   tmp_path, monkeypatch):
    cfg = _config(radiomics=False, num_workers=0, sequences=["DCE"],
                  backbones={"DCE": ["resnet18"]}, radiomics_sequences=None)
    cache = tmp_path / "cache"
    n_calls = {"batch": 0, "load": 0}
    real_run, real_load = X.deep.run_batch, X.load_case

    def counting_run(*a, **k):
        n_calls["batch"] += 1
        return real_run(*a, **k)

    def counting_load(*a, **k):
        n_calls["load"] += 1
        return real_load(*a, **k)

    monkeypatch.setattr(X.deep, "run_batch", counting_run)
    monkeypatch.setattr(X, "load_case", counting_load)
    first, err1 = extract_cohort_features(tiny_cohort_ro, cfg, cache_dir=cache, backbones=backbones)
    assert not err1 and n_calls == {"batch": 3, "load": 8}
    assert len(list(cache.glob("*.parquet"))) == 8
    second, err2 = extract_cohort_features(tiny_cohort_ro, cfg, cache_dir=cache, backbones=backbones)
    assert not err2 and n_calls == {"batch": 3, "load": 8}   # nothing recomputed
    assert_allclose(second.to_numpy(), first.to_numpy(), rtol=0, atol=0)
    assert list(second.columns) == list(first.columns)
    # another margin is another key: recomputed, and the features differ
    third, _ = extract_cohort_features(tiny_cohort_ro, _config(
        radiomics=False, num_workers=0, sequences=["DCE"], backbones={"DCE": ["resnet18"]},
        radiomics_sequences=None, margin_px=4), cache_dir=cache, backbones=backbones)
    assert n_calls == {"batch": 6, "load": 16}
    assert not np.allclose(third.to_numpy(), first.to_numpy())


def test_missing_file_and_missing_weights(tiny_cohort, backbones, monkeypatch, tmp_path):
    (tiny_cohort / "cases" / "syn-0005" / "US_mask.png").unlink()
    cfg = _config(sequences=["US"], backbones={"US": ["resnet18"]}, radiomics=False,
                  radiomics_sequences=None, num_workers=0)
    df, errors = extract_cohort_features(tiny_cohort, cfg, backbones=backbones)
    assert len(df) == 7 and [e.case_id for e in errors] == ["syn-0005"]
    assert "US_mask" in str(errors[0])
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HER2_WEIGHTS_DIR", raising=False)
    with pytest.raises(Her2Error, match="random-init"):
        extract_cohort_features(tiny_cohort, FeatureConfig(
            sequences=["US"], backbones={"US": ["resnet18"]}, num_workers=0))


def test_3d_backbone_and_radiomics_on_mri(tiny_cohort_ro):
    cfg = FeatureConfig(sequences=["DCE"], backbones={"DCE": ["resnet3d18"]},
                        default_weights="random-init", volume_size=32, radiomics=True,
                        num_workers=0, batch_size=4)
    from her2core.cohort import read_cohort
    cohort = read_cohort(tiny_cohort_ro)
    ex = X.FeatureExtractor(cfg)
    df, errors = ex.extract_cohort(cohort, case_ids=cohort.case_ids[:2])
    assert not errors and df.shape[0] == 2
    assert len([c for c in df.columns if c.startswith("DCE__resnet3d18__f")]) == 512
    # radiomics shape volume ~ ROI voxel count x voxel volume (1 mm resampling)
    from her2core.imaging import load_image
    m = load_image(tiny_cohort_ro / "cases" / "syn-0000" / "mask.nii.gz")
    vol = (m.array > 0).sum() * np.prod(m.spacing)
    assert_allclose(df.loc["syn-0000", "DCE__radiomics__original_shape_VoxelVolume"], vol, rtol=0.2)
    assert df.attrs["provenance"]["radiomics"]["DCE"]["params_file"] == "mri.yaml"


def test_config_json_round_trip_and_errors(tmp_path):
    cfg = FeatureConfig.paper_003(weights={"resnet50": "/w/r50.safetensors"}, margin_px=10)
    again = FeatureConfig.from_json(cfg.to_json())
    assert again == cfg and again.to_dict() == cfg.to_dict()
    p = cfg.save(tmp_path / "features.json")
    assert FeatureConfig.load(p) == cfg
    assert cfg.weights_for("resnet50") == "/w/r50.safetensors"
    assert cfg.weights_for("vgg19") == "auto"
    assert FeatureConfig.paper_001().backbones == {"DCE": ["resnet3d18"], "US": ["convnextv2_tiny"]}
    assert FeatureConfig().backbones["T1"] == ["resnet50", "vgg16", "efficientnet_b0",
                                              "vit_small_patch16_224"]
    for bad, match in [({"slice_mode": "middle"}, "slice_mode"), ({"sequences": ["PET"]}, "PET"),
                       ({"device": "tpu"}, "device"), ({"bogus": 1}, "unknown field")]:
        with pytest.raises(Her2Error, match=match):
            FeatureConfig.from_dict({**FeatureConfig().to_dict(), **bad})
    # device, batch size and workers do not change values: not part of the cache key
    assert "device" not in cfg.feature_settings() and "margin_px" in cfg.feature_settings()


def test_describe_features_names_mode_weights_and_random_init(tiny_cohort_ro, backbones):
    from her2core.features import describe_features
    cfg = _config(sequences=["US"], backbones={"US": ["resnet18"]}, radiomics_sequences=["US"],
                  num_workers=0)
    df, _ = extract_cohort_features(tiny_cohort_ro, cfg, backbones=backbones)
    lines = describe_features(df.attrs["provenance"])
    text = "\n".join(lines)
    assert "US: deep features from resnet18 (512-d, weights RANDOM INITIALISATION)" in text
    assert "largest ROI area" in text and "+ 10 px" in text
    assert "us.yaml (binWidth 8" in text
    assert lines[-1] == df.attrs["warning"]
