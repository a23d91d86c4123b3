"""A recipe with a fine-tuned network, end to end: train (its own K-fold gives the second
level out-of-fold logits), a bundle that carries the fold models, predict, the app's case
runtime and Grad-CAM on the fine-tuned network."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

pytestmark = pytest.mark.slow

RECIPE = {
    "name": "net-test", "paper": "test: a fine-tuned ultrasound network + age",
    "networks": [{"name": "us", "sequence": "US", "arch": "resnet18",
                  "settings": {"size": 32, "epochs": 1, "folds": 2, "batch": 4, "augment": False,
                               "num_workers": 0, "margin_px": 4}}],
    "scorers": [], "clinical_predictors": ["age"], "clinical_selection": "none",
    "score_selection": "force",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch
    from her2core.synthetic import make_cohort
    from her2core.workflows.train import TrainSettings, train_bundle
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("netcohort") / "cohort"
    make_cohort(root, n=24, seed=4, centres=2, modalities="us", us_size=48, signal=2.0)
    out = tmp_path_factory.mktemp("netbundle") / "b"
    res = train_bundle(TrainSettings(cohort=root, out=out, recipe=RECIPE, where="center=B",
                                     bootstrap=0, random_init=True, device="cpu", oof_folds=2))
    return root, res


def test_network_logits_enter_the_second_level_out_of_fold(trained):
    from her2core.bundle import load_bundle
    from her2core.finetune import load_result
    root, res = trained
    b = load_bundle(res.path)
    assert b.random_init and "ft_us_her2" in b.weights
    [net] = b.networks_for("her2")
    assert net["sequence"] == "US" and (net["folder"] / "finetune.json").is_file()
    ft = load_result(net["folder"])
    m = b.models["her2"]
    assert m.score_columns() == ["dscore_ft_us"]
    # the second level's reference rows are the network's out-of-fold logits
    bg = b.background("her2")
    oof = ft.oof.set_index("case_id")["logit"]
    assert_allclose(np.sort(bg["dscore_ft_us"].to_numpy()), np.sort(oof.to_numpy()), atol=1e-9)
    assert res.training["her2"]["n"] == len(oof)


def test_predict_and_the_case_runtime_use_the_fold_ensemble(trained):
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.imaging import load_image
    from her2core.imaging.mask import load_mask
    from her2core.predictor import CasePredictor
    from her2core.workflows.explain import case_clinical_values
    from her2core.workflows.predict import predict_cohort
    root, res = trained
    b = load_bundle(res.path)
    coh = read_cohort(root)
    table = predict_cohort(b, coh).table.set_index("case_id")
    assert len(table) == len(coh.labels("her2"))
    pred = CasePredictor(b)
    assert pred.required_inputs().sequences == ["US"] and pred.required_inputs().roi == ["US"]
    cid = str(coh.subset("center=B").case_ids[0])
    f = coh.files(cid)
    images = {"US": load_image(f.US, sequence="US")}
    masks = {"US": load_mask(f.US_mask, images["US"])}
    part = pred.image_part(images, masks, case_id=cid)
    cp = pred.clinical_part(part, case_clinical_values(coh, cid))
    assert cp.probability == pytest.approx(table.loc[cid, "p_her2"], abs=1e-6)
    assert part.tasks["her2"].scores["dscore_ft_us"] == pytest.approx(table.loc[cid, "dscore_ft_us"],
                                                                      abs=1e-6)
    ts = part.tasks["her2"]
    if "dscore_ft_us" in ts.used:          # a map for a score the model uses
        assert [c.backbone for c in ts.gradcam] == ["ft_us"]
    else:                                  # else a sentence, not a map
        assert ts.gradcam == [] and any("not used by the model" in n for n in ts.gradcam_notes)
    [cam] = pred._networks["her2"].gradcam(images, masks, case_id=cid)
    assert cam.backbone == "ft_us" and cam.sequence == "US" and cam.random_init
    assert cam.map_image.same_grid(images["US"]) and cam.map_image.array.shape == images["US"].array.shape
    # held-out cases of the bundle are scored by the ensemble: the same numbers
    vp = b.validation_predictions("her2", "external").set_index("case_id")
    assert_allclose(vp.loc[table.index.intersection(vp.index), "p"],
                    table.loc[table.index.intersection(vp.index), "p_her2"], atol=1e-6)
    assert isinstance(table, pd.DataFrame)
