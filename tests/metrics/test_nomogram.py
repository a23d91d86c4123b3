"""Nomogram points against R rms::nomogram (tests/reference/make_rms_nomogram.R)."""
import json

import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.nomogram import Nomogram

from ._refs import VENDORED

CATEGORICAL = {"wfns": {"1": None, "2": "wfns=2", "3": "wfns=3", "4": "wfns=4", "5": "wfns=5"},
               "gender": {"Female": None, "Male": "gender=Male"}}


def _rms_nomogram() -> Nomogram:
    coef = pd.read_csv(VENDORED / "rms_nomogram_coef.csv").set_index("term").coef
    d = pd.read_csv(VENDORED / "aSAH.csv")
    return Nomogram.from_coefficients(
        coef["Intercept"], {k: v for k, v in coef.items() if k != "Intercept"},
        ranges={"age": (d.age.min(), d.age.max()), "s100b": (d.s100b.min(), d.s100b.max())},
        categorical=CATEGORICAL)


def test_points_match_rms():
    nom = _rms_nomogram()
    ref = pd.read_csv(VENDORED / "rms_nomogram_points.csv")
    for r in ref.itertuples():
        value = r.value if r.variable in CATEGORICAL else float(r.value)
        assert_allclose(nom.points_for(r.variable, value), r.points, atol=1e-9)
    # s100b has the widest linear-predictor range: exactly 0..100
    assert_allclose([nom.points_for("s100b", 0.03), nom.points_for("s100b", 2.07)], [0, 100])


def test_patient_probability_matches_rms_predict():
    nom = _rms_nomogram()
    ref = pd.read_csv(VENDORED / "rms_nomogram_patients.csv", dtype={"wfns": str})
    for r in ref.itertuples():
        pp = nom.patient_points({"age": r.age, "s100b": r.s100b, "wfns": r.wfns,
                                 "gender": r.gender})
        assert_allclose(pp["probability"], r.probability, atol=1e-12)
        assert_allclose(nom.total_points_to_probability(pp["total_points"]), r.probability,
                        atol=1e-12)
        assert_allclose(pp["total_points"], sum(pp["points"].values()))
        assert pp["out_of_range"] == []


def test_probability_axis_close_to_rms():
    """rms places fun.at ticks by linear interpolation on a grid; ours is exact."""
    nom = _rms_nomogram()
    ref = pd.read_csv(VENDORED / "rms_nomogram_probability_axis.csv")
    assert_allclose(nom.probability_to_total_points(ref.probability.to_numpy()),
                    ref.total_points, atol=1e-3)
    assert_allclose(nom.total_points_to_probability(
        nom.probability_to_total_points(0.3)), 0.3, atol=1e-12)


def test_out_of_range_dummies_json():
    nom = _rms_nomogram()
    pp = nom.patient_points({"age": 90, "s100b": 0.1, "wfns=3": 1, "wfns=2": 0, "wfns=4": 0,
                             "wfns=5": 0, "gender=Male": 0})
    assert pp["out_of_range"] == ["age"]
    assert pp["points"]["age"] > nom.points_for("age", 81)
    assert_allclose(pp["points"]["wfns"], nom.points_for("wfns", "3"))
    assert pp["points"]["gender"] == 0.0
    back = Nomogram.from_dict(json.loads(json.dumps(nom.to_dict())))
    assert back == nom
    with pytest.raises(ValueError, match="unknown category"):
        nom.patient_points({"age": 50, "s100b": 0.1, "wfns": "7", "gender": "Male"})
    with pytest.raises(ValueError, match="no value for age"):
        nom.patient_points({"s100b": 0.1, "wfns": 1, "gender": "Male"})
    assert nom.patient_points({"age": 50, "s100b": 0.1, "wfns": 2, "gender": "Male"})[
        "points"]["wfns"] == nom.points_for("wfns", "2")
    ax = nom.axis("age")
    assert ax[0]["value"] == 18 and ax[-1]["value"] == 81 and ax[0]["points"] == 0


def test_from_sklearn_folds_the_scaler():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = pd.read_csv(VENDORED / "aSAH.csv")
    X = pd.DataFrame({"age": d.age, "s100b": d.s100b, "male": (d.gender == "Male").astype(float)})
    y = (d.outcome == "Poor").astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1e6, max_iter=1000)).fit(X, y)
    nom = Nomogram.from_sklearn(pipe, list(X.columns), X)
    lr = pipe[-1]
    for i in range(5):
        row = X.iloc[i]
        pp = nom.patient_points(row)
        assert_allclose(pp["probability"], pipe.predict_proba(X.iloc[[i]])[0, 1], atol=1e-10)
    assert nom.variable("male").low == 0 and nom.variable("male").high == 1
    plain = LogisticRegression(C=1e6, max_iter=5000).fit(X, y)
    nom2 = Nomogram.from_sklearn(plain, list(X.columns), X)
    assert_allclose(nom2.patient_points(X.iloc[0])["probability"],
                    plain.predict_proba(X.iloc[[0]])[0, 1], atol=1e-10)
    assert lr.coef_.shape == (1, 3)
    from sklearn.decomposition import PCA
    with pytest.raises(ValueError, match="not a linear scaler"):
        Nomogram.from_sklearn(make_pipeline(PCA(2), LogisticRegression()).fit(X, y),
                              ["pc1", "pc2"], X)
