"""Bundles: round trip without pickle, tamper / foreign refusal, ranges."""
import json
import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.bundle import (load_bundle, out_of_range, predictor_ranges, save_bundle,
                             trusted_types, verify_bundle)
from her2core.errors import BundleError
from her2core.models import DeepScore, StackedNomogram
from her2core.selection import SideTable

CLIN = ["age", "er", "enhancement_curve", "aln_abnormal"]


@pytest.fixture(scope="module")
def fitted():
    # this folder's conftest by path: "import conftest" finds whichever conftest module
    # another test folder loaded first (tests/imaging has one too)
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location(
        "models_conftest", pathlib.Path(__file__).with_name("conftest.py"))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    make_frame = helpers.make_frame
    X, y = make_frame(n=100, seed=7, n_feat=6)
    second = SideTable(X[[c for c in X.columns if "__resnet18__" in c]] * 1.01)
    m = StackedNomogram(scorers=[("resnet18", DeepScore(block="resnet18", icc_second=second,
                                                        lasso_cv=3, lasso_n_Cs=4))],
                        clinical_predictors=CLIN, cv=3).fit(X, y)
    return m, X, y


def _save(tmp_path, fitted):
    m, X, y = fitted
    ranges = predictor_ranges(m.second_level(X))
    return save_bundle(tmp_path / "b", {"her2": m},
                       model_card={"internal_validation": {"auc": 0.8, "method": "test"}},
                       training={"her2": {"n": len(y), "positives": int(y.sum()),
                                          "predictor_ranges": ranges}},
                       feature_config={"sequences": ["DCE", "T2"],
                                       "backbones": {"DCE": ["resnet18"], "T2": ["resnet18"]}},
                       backbones={"resnet18": {"weights": "random-init"}},
                       validation_predictions=pd.DataFrame(
                           {"case_id": X.index[:4], "task": "her2", "set": "internal",
                            "y": y[:4], "p": [0.1, 0.2, 0.3, 0.4]}),
                       backgrounds={"her2": m.out_of_fold_second_level(X)})


def test_round_trip_same_predictions_no_pickle(tmp_path, fitted):
    m, X, y = fitted
    path = _save(tmp_path, fitted)
    b = load_bundle(path)
    assert b.tasks == ["her2"] and b.random_init
    assert_allclose(b.models["her2"].predict_proba(X), m.predict_proba(X), rtol=1e-12)
    raw = (path / "model_her2.skops").read_bytes()
    assert raw[:2] == b"PK"  # a skops zip, not a pickle stream
    with pytest.raises(Exception):
        pickle.loads(raw)
    card = json.loads((path / "model_card.json").read_text(encoding="utf-8"))
    assert card["format"] == "her2core-bundle/1" and "not a medical device" in card["intended_use"]
    assert card["internal_validation"]["auc"] == 0.8
    # side input and per-case tables are not stored (no case ids in the bundle)
    assert b"case0001" not in raw
    assert b.models["her2"].scorers_[0][1].icc_second is None
    coefs = json.loads((path / "coefficients.json").read_text(encoding="utf-8"))
    second = coefs["her2"]["second_level"]
    assert_allclose(second["intercept"], m.final_.intercept_[0])
    assert set(second["coefficients"]) == set(m.final_.columns_)
    # typed settings, one identity, validation predictions and the SHAP reference
    from her2core.bundle import bundle_checksum
    from her2core.features.config import FeatureConfig
    assert isinstance(b.feature_config, FeatureConfig) and b.feature_config.sequences == ["DCE", "T2"]
    overall = (path / "MANIFEST").read_text(encoding="utf-8").splitlines()[-1].split()[1]
    assert b.checksum == bundle_checksum(path) == "sha256:" + overall
    vp = b.validation_predictions("her2", "internal")
    assert list(vp["case_id"]) == list(X.index[:4])
    assert_allclose(vp["p"], [0.1, 0.2, 0.3, 0.4], rtol=1e-12)
    bg = b.background("her2")
    assert list(bg.columns) == m.second_level_columns() and len(bg) == len(X)
    assert_allclose(bg[m.score_columns()].to_numpy(), m.oof_scores_.to_numpy(), rtol=1e-10)


def test_tampered_byte_refused(tmp_path, fitted):
    path = _save(tmp_path, fitted)
    f = path / "training.json"
    data = bytearray(f.read_bytes())
    data[10] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="training.json.*checksum does not match"):
        load_bundle(path)


def test_tampered_model_and_manifest_refused(tmp_path, fitted):
    path = _save(tmp_path, fitted)
    (path / "extra.txt").write_text("x")
    with pytest.raises(BundleError, match="not in the MANIFEST"):
        verify_bundle(path)
    (path / "extra.txt").unlink()
    man = path / "MANIFEST"
    man.write_text(man.read_text(encoding="utf-8").replace("training.json", "training2.json"))
    with pytest.raises(BundleError, match="overall checksum"):
        verify_bundle(path)


def test_foreign_directory_and_foreign_types_refused(tmp_path, fitted):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(BundleError, match="not a her2core bundle"):
        load_bundle(foreign)
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nope")
    # a well-formed bundle whose model file names a type that is not ours
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier
    rf = RandomForestClassifier(n_estimators=2).fit(np.eye(4), [0, 1, 0, 1])
    path = _save(tmp_path, fitted)
    (path / "model_her2.skops").write_bytes(sio.dumps(rf))  # holds sklearn.tree._tree.Tree
    from her2core.bundle import _write_manifest
    _write_manifest(path)
    with pytest.raises(BundleError, match="not ours"):
        load_bundle(path)
    assert "her2core.models.nomogram_model.StackedNomogram" in trusted_types()
    # saving a model with a type outside the list is refused up front
    with pytest.raises(BundleError, match="cannot hold"):
        save_bundle(tmp_path / "rf", {"her2": rf}, model_card={})


def test_predictor_ranges_and_flags():
    import pandas as pd
    train = pd.DataFrame({"age": [40.0, 60.0, np.nan], "er": [0, 1, 1],
                          "enhancement_curve": ["washout", "plateau", None]})
    r = predictor_ranges(train)
    assert r["age"] == {"kind": "continuous", "min": 40.0, "max": 60.0, "missing": 1}
    assert r["er"]["levels"] == [0, 1]
    assert r["enhancement_curve"]["levels"] == ["plateau", "washout"]
    new = pd.DataFrame({"age": [70.0, 50.0], "er": [1, 1], "enhancement_curve": ["persistent", "washout"]},
                       index=["p1", "p2"])
    assert out_of_range(new, r) == {"p1": ["age", "enhancement_curve"]}


def test_demo_bundle_asset_verifies_and_is_marked_random_init():
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "assets" / "demo_bundle"
    if not (path / "MANIFEST").is_file():
        pytest.skip("assets/demo_bundle not generated (python tools/make_demo_bundle.py)")
    b = load_bundle(path)
    assert b.tasks == ["her2", "her2_low"] and b.random_init
    assert b.model_card["random_init"] is True and b.model_card["weights"] == {"resnet18": "random-init"}
    assert b.model_card["internal_validation"]["method"].startswith("optimism bootstrap (rms validate)")
    assert "not a medical device" in b.model_card["intended_use"]
    assert b.training["her2"]["n"] == 85
    # issue 13: the demo cohort carries HER2-low vs HER2-zero signal, so the HER2-low model
    # keeps predictors (it predicted the training prevalence for every case before)
    low = b.training["her2_low"]
    assert low["n"] == 52 and low["positives"] == 28
    assert low["second_level_variables"], "the demo HER2-low model kept no predictor"
    assert b.nomogram("her2_low") is not None
