"""Delta-method probability intervals of the logistic level against R (glm + predict se.fit)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.models.clinical import ClinicalModel

REF = Path(__file__).resolve().parents[1] / "reference"


@pytest.fixture(scope="module")
def fitted():
    d = pd.read_csv(REF / "df_binary.csv")
    X = d[["age", "famhistory", "marker", "risk_group"]]
    y = d["cancer"].astype(bool).astype(int).to_numpy()
    return ClinicalModel(selection="none").fit(X, y), X


def test_probability_interval_matches_r_predict_se_fit(fitted):
    model, X = fitted
    ref = pd.read_csv(REF / "glm_predict_se.csv")
    assert_allclose(model.decision_function(X), ref["lp"], rtol=0, atol=1e-6)
    iv = model.predict_interval(X)
    assert_allclose(iv[:, 0], ref["lo"], rtol=0, atol=1e-6)
    assert_allclose(iv[:, 1], ref["hi"], rtol=0, atol=1e-6)
    p = model.predict_proba(X)[:, 1]
    assert np.all(iv[:, 0] <= p) and np.all(p <= iv[:, 1])


def test_coefficient_covariance_of_coding_invariant_terms_matches_r_vcov(fitted):
    model, _ = fitted
    V = model.coefficient_covariance()
    ref = pd.read_csv(REF / "glm_predict_vcov.csv").set_index("term")
    names = ["(Intercept)"] + model.design(pd.read_csv(REF / "df_binary.csv")[
        ["age", "famhistory", "marker", "risk_group"]]).columns.tolist()
    pos = {n: i for i, n in enumerate(names)}
    # continuous and 0/1 terms do not depend on the reference level of risk_group
    for a in ("age", "famhistory", "marker"):
        for b in ("age", "famhistory", "marker"):
            assert V[pos[a], pos[b]] == pytest.approx(ref.loc[a, b], rel=1e-5)


def test_wider_level_gives_wider_interval(fitted):
    model, X = fitted
    a, b = model.predict_interval(X.iloc[:20], 0.8), model.predict_interval(X.iloc[:20], 0.99)
    assert np.all(b[:, 0] <= a[:, 0]) and np.all(a[:, 1] <= b[:, 1])
    with pytest.raises(ValueError):
        model.predict_interval(X, 1.5)
