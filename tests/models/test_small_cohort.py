"""Small cohorts (issue 13): the inner CV folds adapt to the minority class and to rows
that must stay together, the model card says so, and a cohort too small for the recipe is
refused before any feature extraction with one line naming the counts."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from her2core.errors import CohortError
from her2core.selection import LassoSelector, inner_folds

# three 0/1 predictors: at most 8 distinct rows, so the LASSO's "identical rows stay in one
# fold" groups are fewer than its 10 folds (what crashed `train --recipe 000` on an
# 80-case cohort with 21 positives)
BINARY = ["aln_abnormal", "peritumoral_edema", "microcalcification"]
RECIPE = {"name": "small", "scorers": [], "clinical_predictors": BINARY,
          "clinical_selection": "lasso"}


def test_inner_folds_counts_minority_and_groups():
    y = np.r_[np.ones(21), np.zeros(59)].astype(int)
    assert inner_folds(10, y) == (10, "")
    k, why = inner_folds(10, y[-66:])           # 7 positives
    assert k == 7 and "minority class has 7" in why
    groups = np.r_[np.arange(21) % 4, np.arange(59) % 9]
    k, why = inner_folds(10, y, groups)        # 4 groups hold the positives
    assert k == 4 and "4 distinct row group" in why


def test_lasso_on_discrete_rows_uses_fewer_folds():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(21), np.zeros(59)].astype(int)
    X = rng.integers(0, 3, size=(80, 2)).astype(float)   # 9 distinct rows at most
    X[y == 1, 0] += 0.5 * (rng.random(21) < 0.8)          # a signal on feature 0
    sel = LassoSelector(cv=10).fit(X, y)                  # raised ValueError before
    groups = np.unique(X, axis=0, return_inverse=True)[1].ravel()
    expect = min(10, len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0])))
    assert sel.n_splits_ == expect < 10
    assert "distinct row group" in sel.cv_reason_
    # the adaptive path walks the grid from the strongest penalty and may stop early: what it
    # reached is finite, from the first C on
    reached = np.isfinite(sel.cv_deviance_)
    assert reached[0] and not np.any(np.diff(reached.astype(int)) > 0)


@pytest.fixture(scope="module")
def cohort80(tmp_path_factory):
    from her2core.synthetic import make_cohort
    root = make_cohort(tmp_path_factory.mktemp("small") / "c", n=80, seed=0, modalities="none",
                       prevalence=0.27)
    y = pd.read_csv(root / "cohort.csv")["her2"]
    assert (len(y), int(y.sum())) == (80, 21)
    return root


def test_train_on_80_cases_21_positives_adapts_the_lasso_folds(cohort80, tmp_path):
    from her2core.workflows.train import TrainSettings, train_bundle
    res = train_bundle(TrainSettings(cohort=cohort80, out=tmp_path / "b", recipe=RECIPE,
                                     bootstrap=0))
    card = json.loads((res.path / "model_card.json").read_text())
    folds = card["data"]["training"]["her2"]["folds"]
    assert folds["minority"] == 21 and folds["out_of_fold"]["used"] == 5
    used = folds["lasso_used"]["clinical"]
    assert used["requested"] == 10 and 2 <= used["used"] < 10
    assert "identical rows" in used["reason"]
    assert any("LASSO CV at the final fit used fewer folds" in w for w in card["warnings"])
    assert res.performance["her2"]["out_of_fold"]["folds"] == 5


def test_fold_plan_notes_fewer_folds():
    from her2core.models.recipes import fold_plan, load_recipe
    plan = fold_plan(load_recipe("000"), 6, oof_folds=5)
    # 6 positives: 5-fold validation leaves 4, 4-fold cross-fitting leaves 3
    assert plan["out_of_fold"]["used"] == 5 and plan["second_level"]["used"] == 5
    assert plan["lasso"] == {"requested": 10, "final_fit": 4, "deepest": 3}
    assert "minority class has 6" in plan["note"]
    assert fold_plan(load_recipe("000"), 21)["note"] == ""


def test_too_small_cohort_is_refused_before_feature_extraction(tmp_path, monkeypatch):
    from her2core.models import workflow
    from her2core.synthetic import make_cohort
    from her2core.workflows.train import TrainSettings, train_bundle

    def no_extraction(*a, **k):
        raise AssertionError("feature extraction started")
    monkeypatch.setattr(workflow, "compute_features", no_extraction)
    root = make_cohort(tmp_path / "c", n=10, seed=1, modalities="mri", shape=(16, 16, 4),
                       prevalence=0.3)
    y = pd.read_csv(root / "cohort.csv")["her2"]
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    assert min(pos, neg) < 4
    with pytest.raises(CohortError) as e:
        train_bundle(TrainSettings(cohort=root, out=tmp_path / "b", recipe="000", bootstrap=0,
                                   random_init=True))
    msg = str(e.value)
    assert f"{pos} positive(s) and {neg} negative(s)" in msg
    assert "at least 4 of each class" in msg and "recipe 000" in msg
    assert "\n" not in msg
