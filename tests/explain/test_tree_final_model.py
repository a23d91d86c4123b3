"""Recipe 003 with a tree final model (its DLR model was LightGBM in the paper): the bundle
trains, `explain` and the app's case prediction give exact TreeExplainer contributions that
add up to the model's log-odds, and say plainly that there is no nomogram (issue 13)."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

NO_NOMOGRAM = "This model has no nomogram (its final level is not a logistic model)."


def tree_recipe(final: str = "lightgbm") -> dict:
    """Recipe 003 forced to a tree final model, sized for CI: its fine-tuned ResNet101 left
    out (the DLR block is the ultrasound radiomics alone, without filters), the DLR scorer's
    zoo reduced to LR."""
    from her2core.models.recipes import load_recipe
    r = load_recipe("003")
    r["networks"] = []
    r["features"].update(radiomics_params={"US": "us"}, device="cpu", batch_size=16)
    for s in r["scorers"]:
        s["block"], s["classifiers"] = ["radiomics"], ["lr"]
        s.pop("pca", None)
    r["scorer_settings"]["lasso_n_Cs"] = 6
    r["compare_zoo"] = []
    r["final_model"] = final
    return r


@pytest.fixture(scope="module")
def tree_bundle(tmp_path_factory):
    from her2core.synthetic import make_cohort
    from her2core.workflows.train import TrainSettings, train_bundle
    base = tmp_path_factory.mktemp("tree_final")
    cohort = make_cohort(base / "cohort", n=24, seed=5, centres=2, modalities="both",
                         shape=(24, 24, 6), us_size=48, prevalence=0.5, signal=2.0)
    res = train_bundle(TrainSettings(cohort=cohort, out=base / "bundle", recipe=tree_recipe(),
                                     bootstrap=0, random_init=True, device="cpu", oof_folds=2))
    return res, cohort


def test_tree_final_model_is_trained_and_recorded(tree_bundle):
    import json
    res, _ = tree_bundle
    card = json.loads((res.path / "model_card.json").read_text())
    fm = card["performance"]["her2"]["final_model"]
    assert fm["model"] == "lightgbm" and set(fm["best_params"]) == {"clf__num_leaves",
                                                                    "clf__learning_rate"}
    assert any("not a logistic nomogram" in w for w in card["warnings"])


def test_explain_gives_exact_tree_contributions_and_the_no_nomogram_note(tree_bundle, tmp_path):
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.workflows.explain import explain_case
    res, cohort = tree_bundle
    b = load_bundle(res.path)
    m = b.models["her2"]
    assert not m.is_nomogram() and b.nomogram("her2") is None
    r = explain_case(b, read_cohort(cohort), "syn-0003", out=tmp_path / "explain")
    pc = r.contributions
    assert pc.method == "tree" and not pc.approximate and pc.scale == "log-odds"
    assert "LightGBM booster" in pc.note
    # additivity: base + contributions = the model's own log-odds of the case
    Z = m.second_level(_frame(b, cohort, "syn-0003"))
    lo = float(m.final_estimator.decision_function(Z)[0])
    assert abs(pc.base_value + float(np.sum(pc.contributions)) - lo) < 1e-6
    assert abs(pc.prediction - lo) < 1e-12
    assert r.probability == pytest.approx(1 / (1 + np.exp(-lo)), abs=1e-12)
    assert r.points is None and r.interval is None
    assert NO_NOMOGRAM in r.summary["notes"]
    assert r.summary["nomogram"] is None and r.summary["shap"]["additivity_error"] < 1e-6
    # the written table carries the same numbers
    import pandas as pd
    table = pd.read_csv(r.files["csv"], comment="#")
    assert table["contribution"].sum() == pytest.approx(float(np.sum(pc.contributions)), abs=1e-9)
    assert set(table["predictor"]) == set(m.second_level_columns())


def test_case_prediction_of_a_tree_model(tree_bundle):
    """The app's runtime: no nomogram object, the plain note, exact contributions."""
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.features.extract import load_case
    from her2core.predictor import CasePredictor
    from her2core.workflows.explain import case_clinical_values
    res, cohort = tree_bundle
    b = load_bundle(res.path)
    c = read_cohort(cohort)
    pred = CasePredictor(b)
    images, masks = load_case(c.files("syn-0004"), pred.config)
    part = pred.image_part(images, masks, case_id="syn-0004", gradcam=False)
    cp = pred.clinical_part(part, case_clinical_values(c, "syn-0004"))
    assert cp.nomogram is None and cp.points is None and cp.interval is None
    assert NO_NOMOGRAM in cp.notes
    pc = cp.contributions
    assert pc.method == "tree" and pc.additivity_error < 1e-6
    assert pc.probability == pytest.approx(cp.probability, abs=1e-12)
    # the same probability as the cohort path
    p = b.models["her2"].predict_proba(_frame(b, cohort, "syn-0004"))[0, 1]
    assert cp.probability == pytest.approx(p, abs=1e-12)


def _frame(bundle, cohort, case_id):
    from her2core.cohort import read_cohort
    from her2core.models.workflow import compute_features, model_frame
    c = read_cohort(cohort)
    m = bundle.models["her2"]
    feats = compute_features(c, bundle.inference_config(), case_ids=[case_id])["features"]
    return model_frame(c, feats, m.clinical_inputs()).loc[[case_id]]
