"""Paper 002's predictors in the cohort format: typed levels, clear problems, the synthetic
rates, and the computed DCE kinetics reaching the models (issue 13)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from her2core.cohort import CLINICAL_BY_NAME, COMPUTED_COLUMNS, read_cohort
from her2core.errors import CohortError

NEW = ("n_category", "lesion_number", "quadrant", "accompanying_signs", "fgt", "bpe",
       "t2_signal", "mass_margin", "internal_enhancement", "dce_curve", "dce_eer")


def _write(tmp_path, text):
    root = tmp_path / "c"
    root.mkdir()
    (root / "cohort.csv").write_text(text, encoding="utf-8")
    return root


def test_the_new_columns_are_typed_with_the_papers_levels(tmp_path):
    assert all(n in CLINICAL_BY_NAME for n in NEW)
    assert CLINICAL_BY_NAME["n_category"].levels == ("N0", "N1", "N2", "N3")
    assert CLINICAL_BY_NAME["fgt"].levels == ("fatty", "scattered", "heterogeneous", "extreme")
    assert CLINICAL_BY_NAME["bpe"].levels == ("minimal", "mild", "moderate", "marked")
    assert COMPUTED_COLUMNS == {"dce_curve": "DCE_phases", "dce_eer": "DCE_phases"}
    root = _write(tmp_path, "case_id,n_category,quadrant,fgt,bpe,t2_signal,mass_margin,"
                            "accompanying_signs,lesion_number,internal_enhancement,dce_eer\n"
                            "A1,N1,central_left,extreme,mild,isointense,spiculated,1,single,rim,0.7\n"
                            "A2,,,,,,,,,,\n")
    c = read_cohort(root)
    t = c.table
    assert not c.problems
    assert list(t["n_category"].cat.categories) == ["N0", "N1", "N2", "N3"]
    assert t.loc["A1", "quadrant"] == "central_left" and pd.isna(t.loc["A2", "quadrant"])
    assert t.loc["A1", "accompanying_signs"] == 1.0 and t["dce_eer"].dtype == float


def test_a_bad_level_is_one_clear_line_naming_case_and_column(tmp_path):
    root = _write(tmp_path, "case_id,her2,n_category,bpe\nB1,1,N1,mild\nB2,0,N4,mild\n"
                            "B3,0,N0,Moderate\n")
    c = read_cohort(root)
    msgs = [str(p) for p in c.problems]
    assert msgs == [
        "case B2, file cohort.csv: column n_category: unknown value 'N4': allowed are N0, N1, "
        "N2, N3 or empty",
        "case B3, file cohort.csv: column bpe: unknown value 'Moderate': allowed are minimal, "
        "mild, moderate, marked or empty"]
    assert c.case_ids == ["B1"]                     # rows with a problem are left out
    with pytest.raises(CohortError, match="N4"):
        read_cohort(root, on_problem="raise")


def test_two_columns_of_one_finding_must_agree(tmp_path):
    root = _write(tmp_path, "case_id,multifocal,lesion_number,rim_enhancement,internal_enhancement\n"
                            "C1,1,multiple,1,rim\nC2,1,single,0,heterogeneous\n"
                            "C3,0,single,0,rim\nC4,,multiple,,homogeneous\n")
    c = read_cohort(root)
    assert [str(p) for p in c.problems] == [
        "case C2, file cohort.csv: column lesion_number: lesion_number = single contradicts "
        "multifocal = 1 (lesion_number = multiple goes with multifocal = 1, any other level "
        "with multifocal = 0)",
        "case C3, file cohort.csv: column internal_enhancement: internal_enhancement = rim "
        "contradicts rim_enhancement = 0 (internal_enhancement = rim goes with rim_enhancement "
        "= 1, any other level with rim_enhancement = 0)"]
    assert c.case_ids == ["C1", "C4"]


def test_the_app_form_is_generated_from_the_schema_with_the_new_fields():
    from webapp import clinical as clin
    names = [f.name for f in clin.FIELDS]
    assert all(n in names for n in NEW)
    v = clin.normalise({"n_category": "N2", "accompanying_signs": "1", "dce_eer": "0.8"})
    assert v["n_category"] == "N2" and v["accompanying_signs"] == 1 and v["dce_eer"] == 0.8
    assert clin.validate({"quadrant": "upper_outer", "n_category": "N1"}) == [
        "Distribution quadrant: 'upper_outer' is not one of upper_left, lower_left, upper_right, "
        "lower_right, central_left, central_right"]


def test_synthetic_rates_follow_paper_002(tmp_path):
    from her2core.synthetic import make_cohort
    root = make_cohort(tmp_path / "s", n=3000, seed=4, prevalence=0.5, modalities="none",
                       low_fraction=0.5)
    t = read_cohort(root).table
    ihc = t["her2_ihc"].astype(str)
    pos, low, zero = t[t.her2 == 1], t[(t.her2 == 0) & ihc.isin(["1+", "2+"])], t[ihc == "0"]
    assert min(len(pos), len(low), len(zero)) > 600
    # accompanying signs: Table 1 43.0 % (positives); Table 2 28.5 % (low) vs 18.4 % (zero)
    assert abs(pos.accompanying_signs.mean() - 0.430) < 0.04
    assert abs(low.accompanying_signs.mean() - 0.285) < 0.04
    assert abs(zero.accompanying_signs.mean() - 0.184) < 0.04
    # central quadrants (Table 2): left 11.1 % vs 4.8 %, right 10.3 % vs 5.6 %
    q = lambda d, lv: (d.quadrant.astype(str) == lv).mean()  # noqa: E731
    assert abs(q(low, "central_left") - 0.111) < 0.03 and abs(q(zero, "central_left") - 0.048) < 0.03
    assert abs(q(pos, "upper_right") - 0.336) < 0.04
    # lesion number is the multifocal finding; rim internal enhancement is rim_enhancement
    assert ((t.lesion_number.astype(str) == "multiple") == (t.multifocal == 1)).all()
    assert ((t.internal_enhancement.astype(str) == "rim") == (t.rim_enhancement == 1)).all()
    # N category (Table 2): N0 55.8 % vs 64.8 %
    n0 = lambda d: (d.n_category.astype(str) == "N0").mean()  # noqa: E731
    assert abs(n0(low) - 0.558) < 0.04 and abs(n0(zero) - 0.648) < 0.04
    # every level is one of the schema's
    for name in NEW[:-2]:
        f = CLINICAL_BY_NAME[name]
        obs = set(t[name].dropna().astype(str)) if f.kind == "choice" else set()
        assert obs <= set(f.levels)


def test_computed_kinetics_fill_the_model_frame_and_absent_is_missing(tmp_path):
    from her2core.models.workflow import model_frame
    from her2core.synthetic import make_cohort
    root = make_cohort(tmp_path / "k", n=6, seed=3, shape=(24, 24, 6))
    t = pd.read_csv(root / "cohort.csv", dtype={"case_id": str})
    # syn-0001: the cohort.csv value is kept; syn-0002: no DCE_phases -> missing
    t["dce_eer"] = [np.nan, 9.5, np.nan, np.nan, np.nan, np.nan]
    t.to_csv(root / "cohort.csv", index=False)
    (root / "cases" / "syn-0002" / "DCE_phases.nii.gz").unlink()
    X = model_frame(read_cohort(root), None, ["er", "dce_curve", "dce_eer"])
    assert list(X.columns) == ["er", "dce_curve", "dce_eer"]
    assert X.loc["syn-0001", "dce_eer"] == 9.5
    assert np.isnan(X.loc["syn-0002", "dce_eer"]) and pd.isna(X.loc["syn-0002", "dce_curve"])
    truth = dict(zip(t.case_id, t.enhancement_curve))     # the drawn kinetics
    for cid in ("syn-0000", "syn-0003", "syn-0004", "syn-0005"):
        assert X.loc[cid, "dce_curve"] == truth[cid]
        assert 0.3 < X.loc[cid, "dce_eer"] < 10


def test_a_model_on_computed_kinetics_predicts_the_same_on_every_path_and_flags_absent(tmp_path):
    import shutil
    from her2core.bundle import load_bundle
    from her2core.predictor import CasePredictor
    from her2core.synthetic import make_cohort
    from her2core.workflows.explain import case_clinical_values
    from her2core.workflows.predict import predict_cohort
    from her2core.workflows.train import TrainSettings, train_bundle
    root = make_cohort(tmp_path / "k", n=30, seed=8, shape=(24, 24, 6), prevalence=0.5,
                       signal=2.0)
    recipe = {"name": "kinetics", "features": None, "scorers": [],
              "clinical_predictors": ["er", "dce_curve", "dce_eer"], "clinical_selection": "none"}
    res = train_bundle(TrainSettings(cohort=root, out=tmp_path / "b", recipe=recipe, bootstrap=0,
                                     oof_folds=2, compare_zoo=False))
    b = load_bundle(res.path)
    m = b.models["her2"]
    assert set(m.used_variables()) == {"er", "dce_curve", "dce_eer"}
    # a case without DCE_phases: its kinetics are missing, imputed and flagged
    new = tmp_path / "new"
    shutil.copytree(root, new)
    (new / "cases" / "syn-0003" / "DCE_phases.nii.gz").unlink()
    coh = read_cohort(new)
    table = predict_cohort(b, coh).table.set_index("case_id")
    assert set(table.loc["syn-0003", "imputed"].split(";")) == {"dce_curve", "dce_eer"}
    assert table.loc["syn-0004", "imputed"] == ""
    # the one-case runtime (app, explain) computes the same kinetics from the images
    pred = CasePredictor(b)
    part = pred.image_part({}, {}, case_id="syn-0004", gradcam=False)
    cp = pred.clinical_part(part, case_clinical_values(coh, "syn-0004"), "her2", shap=False)
    assert cp.probability == pytest.approx(table.loc["syn-0004", "p_her2"], abs=1e-12)
    assert cp.imputed == []
