"""train / predict commands end to end on tiny synthetic cohorts."""
import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.cli import main


@pytest.fixture(scope="module")
def clinical_cohort(tmp_path_factory):
    from her2core.synthetic import make_cohort
    return make_cohort(tmp_path_factory.mktemp("clin") / "c", n=120, seed=3, centres=2,
                       modalities="none", signal=1.0)


@pytest.fixture(scope="module")
def image_cohort(tmp_path_factory):
    from her2core.synthetic import make_cohort
    return make_cohort(tmp_path_factory.mktemp("img") / "c", n=16, seed=4, centres=2,
                       modalities="mri", shape=(32, 32, 8), signal=2.0)


def test_clinical_only_train_predict_external(tmp_path, clinical_cohort, capsys):
    out = tmp_path / "bundle"
    rc = main(["train", "--cohort", str(clinical_cohort), "--where", "center=B", "--task", "her2,her2_low",
               "--bootstrap", "4", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "external AUC (center=B)" in text
    card = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    assert card["internal_validation"]["method"].startswith("optimism bootstrap (rms validate)")
    assert 0.6 < card["external_validation"]["auc"] <= 1.0
    assert card["external_validation"]["where"] == "center=B"
    assert card["data"]["training"]["her2"]["centres"].keys() == {"A"}
    assert (out / "nomogram_her2.json").is_file()
    preds_csv = tmp_path / "p.csv"
    assert main(["predict", "--bundle", str(out), "--cohort", str(clinical_cohort), "--where", "center=B",
                 "--out", str(preds_csv)]) == 0
    p = pd.read_csv(preds_csv)
    assert list(p.columns[:2]) == ["case_id", "p_her2"]
    assert {"p_her2_low", "nomogram_total_points", "out_of_range"} <= set(p.columns)
    assert p["case_id"].str.len().gt(0).all() and p["p_her2"].between(0, 1).all()
    # total points are a monotone function of p_her2 (one nomogram)
    order = np.argsort(p["nomogram_total_points"].to_numpy())
    assert np.all(np.diff(p["p_her2"].to_numpy()[order]) >= -1e-6)
    # the bundle's nomogram maps total points back to the same probability
    from her2core.nomogram import Nomogram
    nomo = Nomogram.from_dict(json.loads((out / "nomogram_her2.json").read_text(encoding="utf-8")))
    assert_allclose(nomo.total_points_to_probability(p["nomogram_total_points"].to_numpy()),
                    p["p_her2"], rtol=1e-4, atol=1e-6)


def test_tampered_bundle_is_refused_by_predict(tmp_path, clinical_cohort, capsys):
    out = tmp_path / "bundle"
    assert main(["train", "--cohort", str(clinical_cohort), "--bootstrap", "0", "--out", str(out)]) == 0
    card = out / "model_card.json"
    card.write_text(card.read_text(encoding="utf-8").replace('"seed": 0', '"seed": 1'))
    rc = main(["predict", "--bundle", str(out), "--cohort", str(clinical_cohort), "--out",
               str(tmp_path / "p.csv")])
    assert rc == 2
    assert "checksum does not match" in capsys.readouterr().err


def test_image_recipe_random_init_round_trip(tmp_path, image_cohort, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"features": {"input_size": 32, "radiomics": False, "num_workers": 0},
                               "scorers": [{"name": "resnet18", "block": "resnet18"}],
                               "scorer_settings": {"lasso_cv": 3, "lasso_n_Cs": 4, "icc": True},
                               "clinical_predictors": ["er", "aln_abnormal"], "cv": 3}))
    # one broken case is reported and skipped, the others finish
    bad = next((image_cohort / "cases").iterdir())
    (bad / "DCE.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "bundle"
    rc = main(["train", "--cohort", str(image_cohort), "--recipe", "demo", "--config", str(cfg),
               "--random-init", "--bootstrap", "0", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "WEIGHTS: random-init" in text and "1 case(s) skipped" in text
    card = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    assert card["random_init"] is True and card["weights"] == {"resnet18": "random-init"}
    icc = json.loads((out / "training.json").read_text(encoding="utf-8"))["her2"]["icc"]["dscore_resnet18"]
    assert icc["cases"] == 15 and icc["of"] == 1024 and 1 <= icc["kept"] <= 1024
    backbones = json.loads((out / "backbones.json").read_text(encoding="utf-8"))
    assert backbones["resnet18"]["weights"] == "random-init"
    preds_csv = tmp_path / "p.csv"
    assert main(["predict", "--bundle", str(out), "--cohort", str(image_cohort), "--cache-dir",
                 str(tmp_path / "cache"), "--out", str(preds_csv)]) == 0
    p = pd.read_csv(preds_csv)
    assert len(p) == 15 and bad.name not in set(p["case_id"]) and "dscore_resnet18" in p.columns
    assert f"skipped: case {bad.name}" in capsys.readouterr().out
    # same random-init features at prediction time -> same probabilities as the fitted model
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.models.workflow import compute_features, model_frame
    b = load_bundle(out)
    res = compute_features(read_cohort(image_cohort), b.feature_config,
                           cache_dir=tmp_path / "cache")
    X = model_frame(read_cohort(image_cohort), res["features"], ["er", "aln_abnormal"])
    assert_allclose(p.set_index("case_id").loc[X.index, "p_her2"],
                    b.models["her2"].predict_proba(X)[:, 1], rtol=1e-5)


def test_train_bootstrap_workers_give_the_same_validation(tmp_path, clinical_cohort, capsys):
    """--n-jobs reaches the bootstrap, and the corrected indices do not depend on it."""
    cards = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"b{jobs}"
        assert main(["train", "--cohort", str(clinical_cohort), "--where", "center=B",
                     "--bootstrap", "6", "--n-jobs", jobs, "--out", str(out)]) == 0
        cards[jobs] = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    a, b = (cards[j]["internal_validation"] for j in ("1", "2"))
    assert a["n_resamples"] == b["n_resamples"] == 6
    assert a["corrected"] == b["corrected"]
