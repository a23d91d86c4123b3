"""One model runtime: the app's case predictor, `predict` and `explain` give the same numbers;
bundles carry honest validation predictions; missing inputs are imputed and flagged."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = ROOT / "assets" / "demo_bundle"
DEMO_COHORT = ROOT / "assets" / "demo_cohort"
CASES = ["syn-0002", "syn-0005", "syn-0010"]


def _demo():
    if not (DEMO_BUNDLE / "MANIFEST").is_file() or not (DEMO_COHORT / "cohort.csv").is_file():
        pytest.skip("the demo bundle / cohort is not in this checkout")
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    return load_bundle(DEMO_BUNDLE), read_cohort(DEMO_COHORT)


def _app_inputs(cohort, case_id, sequences):
    """Images and ROI as the app gets them: each file loaded on its own, the ROI drawn on DCE
    moved onto the other sequences by her2core.predictor.case_masks."""
    from her2core.imaging import load_image
    from her2core.imaging.mask import load_mask
    from her2core.predictor import case_masks
    f = cohort.files(case_id)
    images = {s: load_image(getattr(f, s), sequence=s) for s in sequences}
    roi = {"DCE": load_mask(f.mask, images["DCE"])}
    return images, case_masks(images, roi, case_id=case_id, sequences=sequences)


@pytest.mark.slow
def test_case_numbers_equal_in_the_app_runtime_predict_and_explain(tmp_path):
    bundle, cohort = _demo()
    from her2core.predictor import CasePredictor
    from her2core.workflows.explain import case_clinical_values, explain_case
    from her2core.workflows.predict import predict_cohort
    sub = cohort.subset(case_ids=CASES)
    table = predict_cohort(bundle, sub).table.set_index("case_id")
    pred = CasePredictor(bundle)
    for cid in CASES:
        images, masks = _app_inputs(cohort, cid, pred.required_inputs().sequences)
        part = pred.image_part(images, masks, case_id=cid, gradcam=False)
        cp = pred.clinical_part(part, case_clinical_values(cohort, cid), "her2")
        row = table.loc[cid]
        assert cp.probability == pytest.approx(row["p_her2"], abs=1e-9)
        assert cp.interval[0] == pytest.approx(row["p_her2_lo"], abs=1e-9)
        assert cp.interval[1] == pytest.approx(row["p_her2_hi"], abs=1e-9)
        assert cp.points["total_points"] == pytest.approx(row["nomogram_total_points"], abs=1e-9)
        for col, v in part.tasks["her2"].scores.items():
            assert v == pytest.approx(row[col], abs=1e-9)
        ex = explain_case(bundle, cohort, cid, gradcam=False)
        assert ex.probability == pytest.approx(cp.probability, abs=1e-9)
        assert ex.points["total_points"] == pytest.approx(cp.points["total_points"], abs=1e-9)
        assert ex.contributions.predictors == cp.contributions.predictors
        assert_allclose(ex.contributions.contributions, cp.contributions.contributions, atol=1e-9)
        assert ex.contributions.base_value == pytest.approx(cp.contributions.base_value, abs=1e-9)
        # the waterfall adds up to the model's own log-odds
        lo = np.log(cp.probability / (1 - cp.probability))
        assert cp.contributions.base_value + cp.contributions.contributions.sum() == pytest.approx(lo, abs=1e-9)
        # the HER2-low task is on equal footing: same runtime, same numbers
        low = pred.clinical_part(part, case_clinical_values(cohort, cid), "her2_low")
        assert low.probability == pytest.approx(row["p_her2_low"], abs=1e-9)


def test_bundle_validation_predictions_are_out_of_fold_once_per_case_and_external(tmp_path,
                                                                                 clinical_cohort):
    out = tmp_path / "b"
    assert cli(["train", "--cohort", str(clinical_cohort), "--recipe", "clinical", "--where",
                "center=B", "--bootstrap", "0", "--out", str(out)]) == 0
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.models.recipes import build_model, load_recipe
    from her2core.models.workflow import model_frame
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold
    b = load_bundle(out)
    coh = read_cohort(clinical_cohort)
    train_c, test_c = coh.exclude("center=B"), coh.subset("center=B")
    vp = b.validation_predictions("her2")
    internal, external = vp[vp["set"] == "internal"], vp[vp["set"] == "external"]
    y_tr = train_c.labels("her2")
    assert sorted(internal["case_id"]) == sorted(map(str, y_tr.index))        # each training case once
    assert sorted(external["case_id"]) == sorted(map(str, test_c.labels("her2").index))
    assert not set(internal["case_id"]) & set(external["case_id"])
    # internal = out-of-fold: reproduce the folds, refit without each fold, same probabilities
    recipe = load_recipe("clinical")
    X = model_frame(coh, None, recipe["clinical_predictors"]).loc[[str(c) for c in y_tr.index]]
    y = y_tr.to_numpy().astype(int)
    model = build_model(recipe, X.columns, random_state=0)
    p = np.full(len(y), np.nan)
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
        p[te] = clone(model).fit(X.iloc[tr], y[tr]).predict_proba(X.iloc[te])[:, 1]
    got = internal.set_index("case_id").loc[X.index, "p"].to_numpy()
    assert_allclose(got, p, rtol=0, atol=1e-9)
    assert np.all((internal["p_lo"] <= internal["p"]) & (internal["p"] <= internal["p_hi"]))
    # external = the final model on every held-out case
    Xt = model_frame(coh, None, recipe["clinical_predictors"]).loc[external["case_id"]]
    assert_allclose(external["p"], b.models["her2"].predict_proba(Xt)[:, 1], atol=1e-9)
    card = b.summary()
    assert card["validation"]["her2"]["out_of_fold"]["folds"] == 5
    assert card["validation"]["her2"]["external"]["where"] == "center=B"


def test_missing_clinical_columns_are_imputed_and_flagged_not_a_traceback(tmp_path, capsys):
    bundle, cohort = _demo()
    sub = tmp_path / "cohort"
    (sub / "cases").mkdir(parents=True)
    t = pd.read_csv(DEMO_COHORT / "cohort.csv", dtype=str)
    keep = t[t["case_id"].isin(CASES)].drop(columns=["microcalcification", "mass_shape", "er"])
    keep.to_csv(sub / "cohort.csv", index=False)
    for cid in CASES:
        shutil.copytree(DEMO_COHORT / "cases" / cid, sub / "cases" / cid)
    out = tmp_path / "pred.csv"
    assert cli(["predict", "--bundle", str(DEMO_BUNDLE), "--cohort", str(sub), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    pred = pd.read_csv(out, dtype={"case_id": str}, keep_default_na=False)
    assert len(pred) == len(CASES)
    assert all("er" in v.split(";") for v in pred["imputed"])     # used by the model: flagged
    assert "imputed" in printed and "no column er" in printed
    # the probability equals the model's with er at its training value
    from her2core.workflows.explain import case_clinical_values
    m = bundle.models["her2"]
    fill = m.final_estimator.imputation_values()["er"]
    from her2core.predictor import CasePredictor
    pr = CasePredictor(bundle)
    images, masks = _app_inputs(cohort, CASES[0], pr.required_inputs().sequences)
    part = pr.image_part(images, masks, case_id=CASES[0], gradcam=False)
    clin = case_clinical_values(cohort, CASES[0])
    clin.update(er=None, microcalcification=None, mass_shape=None)
    cp = pr.clinical_part(part, clin)
    assert "er" in cp.imputed
    assert cp.probability == pytest.approx(pred.set_index("case_id").loc[CASES[0], "p_her2"], abs=1e-9)
    clin["er"] = fill
    assert pr.clinical_part(part, clin).probability == pytest.approx(cp.probability, abs=1e-12)


def test_cohort_without_a_sequence_the_model_reads_is_one_clear_line(tmp_path, capsys):
    _demo()
    sub = tmp_path / "cohort"
    (sub / "cases").mkdir(parents=True)
    t = pd.read_csv(DEMO_COHORT / "cohort.csv", dtype=str)
    t[t["case_id"].isin(CASES)].to_csv(sub / "cohort.csv", index=False)
    for cid in CASES:
        shutil.copytree(DEMO_COHORT / "cases" / cid, sub / "cases" / cid)
        (sub / "cases" / cid / "T2.nii.gz").unlink()
    rc = cli(["predict", "--bundle", str(DEMO_BUNDLE), "--cohort", str(sub),
              "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "no case of the cohort has T2" in err and "Traceback" not in err


def test_bundle_checksum_is_one_definition_for_the_reader_study(tmp_path):
    _demo()
    from her2core.bundle import bundle_checksum, load_bundle
    from her2core.reader_study.inputs import bundle_checksum as study_checksum
    assert study_checksum(DEMO_BUNDLE) == bundle_checksum(DEMO_BUNDLE) == load_bundle(DEMO_BUNDLE).checksum


def test_uploaded_bundle_zip_is_verified_and_nothing_is_unpickled(tmp_path):
    _demo()
    import zipfile

    from her2core.bundle import load_bundle_archive
    from her2core.errors import BundleError
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in DEMO_BUNDLE.iterdir():
            zf.write(f, f"demo_bundle/{f.name}")
    b = load_bundle_archive(z, tmp_path / "x")
    assert b.checksum == load_bundle_archive(z, tmp_path / "y").checksum
    bad = tmp_path / "tampered.zip"
    with zipfile.ZipFile(z) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("training.json"):
                data = data.replace(b'"n"', b'"N"')
            dst.writestr(item, data)
    with pytest.raises(BundleError, match="checksum does not match"):
        load_bundle_archive(bad, tmp_path / "z")
    trav = tmp_path / "trav.zip"
    with zipfile.ZipFile(trav, "w") as zf:
        zf.writestr("../evil/MANIFEST", "x")
    with pytest.raises(Exception, match="outside|traversal|unsafe"):
        load_bundle_archive(trav, tmp_path / "w")
    notzip = tmp_path / "n.zip"
    notzip.write_bytes(b"\x80\x04pickle")
    with pytest.raises(BundleError, match="not a zip"):
        load_bundle_archive(notzip, tmp_path / "v")
