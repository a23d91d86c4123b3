"""Predict a cohort with a bundle: the library behind `predict` and the app's Cohort page.

Columns of the predictions table (cohort-format.md "Predictions"): case_id, p_her2,
p_her2_lo / p_her2_hi (95 % interval, see :data:`her2core.predictor.INTERVAL_METHOD`),
the block scores ``dscore_*`` (log-odds), nomogram_total_points; the same with the
suffix ``_her2_low`` (p_her2_low, p_her2_low_lo, ...) when the bundle has that task;
with both tasks, the three-way call p_positive / p_low / p_zero (summing to 1) and
``three_way_call`` (the likeliest class); ``imputed`` (the final models' predictors that
were missing for the case and took
their training value, ";"-joined) and ``out_of_range`` (predictors outside the
training ranges). Cases whose features fail are reported and left out; the others
are written. A cohort in which no case has a sequence the model reads is one
clear error naming it; a missing clinical column is imputed and flagged, never
fatal.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from her2core.errors import CohortError, Her2Error

log = logging.getLogger(__name__)

__all__ = ["CohortPredictions", "predict_cohort", "prediction_columns"]

ProgressFn = Callable[[int, int, str], None]


@dataclass
class CohortPredictions:
    table: pd.DataFrame                       # one row per predicted case (case_id column)
    errors: list[Her2Error] = field(default_factory=list)   # cases skipped, with the reason
    notes: list[str] = field(default_factory=list)
    random_init: bool = False

    @property
    def n_imputed(self) -> int:
        return int((self.table["imputed"] != "").sum()) if len(self.table) else 0

    @property
    def n_out_of_range(self) -> int:
        return int((self.table["out_of_range"] != "").sum()) if len(self.table) else 0


def prediction_columns(task: str) -> dict[str, str]:
    """Names of a task's columns: probability, interval, total points (and the suffix)."""
    sfx = "" if task == "her2" else f"_{task}"
    p = "p_her2" if task == "her2" else f"p_{task}"
    return {"p": p, "lo": f"{p}_lo", "hi": f"{p}_hi", "points": f"nomogram_total_points{sfx}",
            "suffix": sfx}


#: The three-way call's columns (class probabilities that sum to 1, and the likeliest class).
THREE_WAY_COLUMNS = ("p_positive", "p_low", "p_zero", "three_way_call")


def three_way_columns(out: pd.DataFrame, bundle, notes: list[str]) -> None:
    """Add the three-way call (paper 002's readers' answer) to a predictions table in place:
    p_positive / p_low / p_zero from the sequential pair of models
    (:func:`her2core.predictor.three_way`) and ``three_way_call``, the likeliest class. Only for
    a bundle with both tasks, and only when its HER2-low model keeps a predictor (otherwise low
    vs zero would be the training prevalence for every case: a note says so)."""
    from her2core.predictor import three_way
    models = getattr(bundle, "models", {})
    if not {"her2", "her2_low"} <= set(models) or "p_her2" not in out or "p_her2_low" not in out:
        return
    if not models["her2_low"].used_variables():
        notes.append("the HER2-low model kept no predictor: no three-way call (low vs zero "
                     "would be the training prevalence for every case)")
        return
    rows = [three_way(a, b) for a, b in zip(out["p_her2"], out["p_her2_low"])]
    for k in ("positive", "low", "zero"):
        out[f"p_{k}"] = [r[k] for r in rows]
    out["three_way_call"] = [max(r, key=r.get) for r in rows]


def _check_sequences(bundle, cohort, sequences) -> None:
    """One clear line when the cohort has none of a sequence the model reads."""
    absent = []
    for seq in sequences:
        key = seq
        if not any(getattr(cohort.files(c), key, None) is not None for c in cohort.case_ids):
            absent.append(seq)
    if absent:
        raise CohortError(f"no case of the cohort has {', '.join(absent)} image(s), which the model "
                          f"reads (bundle {bundle.name}: sequences {', '.join(sequences)})",
                          file=cohort.root, hint="use a bundle trained on the sequences this cohort "
                          "has, or add the images")


def predict_cohort(bundle, cohort, *, weights_dir=None, cache_dir=None, device=None,
                   progress: ProgressFn | None = None, executor=None) -> CohortPredictions:
    """Predictions of every case of ``cohort`` (a Cohort) for every task of ``bundle``."""
    from her2core.bundle import out_of_range
    from her2core.models.workflow import compute_features, model_frame, total_points

    from her2core.features.networks import NetworkRunner

    feats, errors, notes = None, [], []
    config = bundle.inference_config(weights_dir=weights_dir, device=device)
    runners = {t: NetworkRunner(bundle.networks_for(t)) for t in bundle.tasks}
    sequences = list(config.sequences) if config is not None else []
    for r in runners.values():
        sequences += [q for q in r.sequences if q not in sequences]
    if sequences:
        _check_sequences(bundle, cohort, sequences)
    if config is not None:
        res = compute_features(cohort, config, cache_dir=cache_dir, progress=progress,
                               executor=executor)
        feats, errors = res["features"], list(res["errors"])
        bundle.check_weights(res["weights"])
    clinical: list[str] = []
    for m in bundle.models.values():
        clinical += [c for c in m.clinical_inputs() if c not in clinical]
    X = model_frame(cohort, feats, clinical)      # computed columns (DCE kinetics) included
    absent_cols = [c for c in clinical if c not in X.columns]
    if feats is not None:
        X = X.loc[[c for c in X.index if c in feats.index]]
    for c in absent_cols:
        X[c] = np.nan
    out = pd.DataFrame(index=pd.Index(X.index, name="case_id"))
    flags: dict[str, set] = {}
    imputed: dict[str, set] = {}
    net_cols: dict[str, pd.DataFrame] = {}
    for task, runner in runners.items():
        if runner.entries and len(X):
            cols, errs = runner.cohort_columns(cohort, list(X.index))
            errors += list(errs)
            net_cols[task] = cols
            X = X.loc[[c for c in X.index if c in set(cols.index)]]
            out = out.loc[[c for c in out.index if c in set(X.index)]]
    for task, model in bundle.models.items():
        names = prediction_columns(task)
        if len(X) == 0:
            for k in ("p", "lo", "hi"):
                out[names[k]] = []
            continue
        Xt = X.join(net_cols[task]) if task in net_cols else X
        Z = model.second_level(Xt)
        out[names["p"]] = model.predict_proba(Xt)[:, 1]
        iv = model.predict_interval(Xt) if hasattr(model, "predict_interval") else None
        if iv is not None:
            out[names["lo"]], out[names["hi"]] = iv[:, 0], iv[:, 1]
        for c in model.score_columns():
            out[c + names["suffix"]] = Z[c].to_numpy()
        pts = total_points(bundle.nomogram(task), model, Xt)
        if pts is not None:
            out[names["points"]] = pts
        used = [c for c in model.used_variables() if c in Z.columns]
        for case, cols in out_of_range(Z[used], bundle.ranges(task)).items():
            flags.setdefault(case, set()).update(cols)
        miss = Z[used].isna()
        for case in Z.index[miss.any(axis=1)]:
            imputed.setdefault(str(case), set()).update(miss.columns[miss.loc[case]])
        dropped = [c for c in absent_cols if c in used]
        if dropped:
            notes.append(f"task {task}: the cohort has no column {', '.join(dropped)}: every case "
                         "takes the training value (column imputed)")
    three_way_columns(out, bundle, notes)
    out["imputed"] = [";".join(sorted(imputed.get(str(c), ()))) for c in out.index]
    out["out_of_range"] = [";".join(sorted(flags.get(str(c), ()))) for c in out.index]
    lead = [c for c in ("p_her2", "p_her2_lo", "p_her2_hi") if c in out.columns]
    out = out[lead + [c for c in out.columns if c not in lead]]
    return CohortPredictions(table=out.reset_index(), errors=errors, notes=notes,
                             random_init=bundle.random_init)
