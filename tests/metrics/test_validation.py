"""Optimism bootstrap (rms validate) on small pipelines; the default B stays 1000."""
import inspect

import numpy as np
from numpy.testing import assert_allclose

from her2core.metrics import bootstrap_validate


def _noise(n=80, p=30, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)), rng.integers(0, 2, n)


def test_default_is_1000_resamples():
    assert inspect.signature(bootstrap_validate).parameters["B"].default == 1000


def test_selection_inside_the_pipeline_is_refit():
    """On pure noise, selecting 3 of 30 features makes the apparent AUC look
    good; because the selector refits in every resample, the optimism-corrected
    AUC falls back towards 0.5 and the corrected slope well below 1."""
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _noise()
    pipe = make_pipeline(StandardScaler(), SelectKBest(f_classif, k=3),
                         LogisticRegression(C=1e4, solver="liblinear"))
    r = bootstrap_validate(pipe, X, y, B=200, seed=1)
    assert r.n_success + r.n_failed == 200 and r.n_success >= 195
    assert r.apparent["auc"] > 0.65
    assert r.corrected["auc"] < 0.6
    assert r.optimism["auc"] > 0.1
    # an unpenalised logistic model is perfectly calibrated on its own data
    assert_allclose(r.apparent["calibration_slope"], 1.0, atol=1e-3)
    assert_allclose(r.apparent["calibration_intercept"], 0.0, atol=1e-3)
    assert r.corrected["calibration_slope"] < 0.6
    for k in r.apparent:
        assert_allclose(r.corrected[k], r.apparent[k] - r.optimism[k])
        assert_allclose(r.optimism[k], r.training_mean[k] - r.test_mean[k])
    a = bootstrap_validate(pipe, X, y, B=10, seed=3)
    b = bootstrap_validate(pipe, X, y, B=10, seed=3)
    assert a.corrected == b.corrected


def test_informative_model_little_optimism():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    X = rng.normal(size=(150, 2))
    y = (rng.random(150) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(int)
    r = bootstrap_validate(LogisticRegression(C=1e4, solver="liblinear"), X, y, B=100, seed=2)
    assert r.apparent["auc"] > 0.75
    assert 0 <= r.optimism["auc"] < 0.03
    assert 0.85 < r.corrected["calibration_slope"] < 1.0


def test_against_rms_validate():
    """tests/reference/make_rms_validate.R: rms validate(lrm, B=1000) on aSAH.
    The apparent indexes are deterministic; the optimism agrees within
    Monte-Carlo error (different random resamples; B = 200 here)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from ._refs import VENDORED, asah

    d, y = asah()
    X = np.column_stack([d.age, d.s100b, d.ndka, d.wfns, (d.gender == "Male").astype(float)])
    ref = pd.read_csv(VENDORED / "rms_validate.csv").set_index("index")
    r = bootstrap_validate(LogisticRegression(C=np.inf, solver="newton-cholesky", max_iter=200),
                           X, y, B=200, seed=11)
    assert r.n_failed == 0
    assert_allclose(2 * r.apparent["auc"] - 1, ref.loc["Dxy", "apparent"], atol=1e-9)
    assert_allclose(r.apparent["brier"], ref.loc["B", "apparent"], atol=1e-7)
    assert_allclose(r.apparent["calibration_slope"], 1.0, atol=1e-6)
    assert_allclose(2 * r.optimism["auc"], ref.loc["Dxy", "optimism"], atol=0.02)
    assert_allclose(r.optimism["calibration_slope"], ref.loc["Slope", "optimism"], atol=0.06)
    assert_allclose(r.optimism["brier"], ref.loc["B", "optimism"], atol=0.006)
