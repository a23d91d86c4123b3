"""Cohort evaluation from labels and score columns (metrics + plots of her2core)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Evaluation:
    n: int
    n_pos: int
    table: pd.DataFrame                      # one row per score: AUC, CI, HL, Brier
    comparisons: pd.DataFrame                # paired DeLong tests
    confusion: dict[str, dict[str, Any]]     # score -> counts and rates at the threshold
    figures: dict[str, Any] = field(default_factory=dict)
    excluded: int = 0


def evaluate(labels: pd.Series, scores: pd.DataFrame, threshold: float = 0.5,
             n_boot: int = 500) -> Evaluation:
    """ROC + DeLong CI, paired DeLong tests, calibration + Hosmer-Lemeshow (probability
    columns), decision curves, confusion table at ``threshold``."""
    from her2core.metrics import calibration as C
    from her2core.metrics import dca as D
    from her2core.metrics import delong as DL
    from her2core.metrics import roc as R
    from her2core.metrics import thresholds as T
    from her2core import plots

    df = pd.concat([labels.rename("__y"), scores], axis=1, join="inner").dropna()
    excluded = int(len(set(labels.index) | set(scores.index)) - len(df))
    y = df.pop("__y").astype(int).to_numpy()
    if y.min() == y.max():
        raise ValueError("the cohort needs both HER2-positive and HER2-negative cases with scores")
    rows, curves, cis, binned, fits, probs = [], {}, {}, {}, {}, {}
    confusion = {}
    for col in df.columns:
        s = df[col].to_numpy(float)
        curves[col] = R.roc_curve(y, s)
        cis[col] = DL.ci_auc_delong(y, s)
        row = {"score": col, "AUC": cis[col].auc if hasattr(cis[col], "auc") else R.auc(y, s),
               "CI low": cis[col].lower, "CI high": cis[col].upper}
        if s.min() >= 0 and s.max() <= 1:
            probs[col] = s
            hl = C.hosmer_lemeshow(y, s)
            row.update({"Brier": C.brier_score(y, s), "HL chi2": hl.statistic, "HL p": hl.p})
            binned[col] = C.binned_calibration(y, s, n_bins=min(10, max(2, len(y) // 10)))
            try:
                fits[col] = C.calibration_intercept_slope(y, s)
            except Exception:  # noqa: BLE001 - degenerate fits are left out of the legend
                pass
            tm = T.threshold_metrics(y, s, threshold, n_boot=min(n_boot, 200))
            confusion[col] = {"threshold": threshold, "TP": tm.tp, "FP": tm.fp, "TN": tm.tn,
                              "FN": tm.fn, "sensitivity": tm.sensitivity.value,
                              "specificity": tm.specificity.value}
        rows.append(row)
    comps = []
    for a, b in itertools.combinations(df.columns, 2):
        t = DL.delong_test_paired(y, df[a].to_numpy(float), df[b].to_numpy(float))
        d = t.to_dict()
        comps.append({"A": a, "B": b, "AUC A": d.get("auc_a"), "AUC B": d.get("auc_b"),
                      "z": d.get("statistic"), "p": d.get("p")})
    figs = {"roc": plots.roc_figure(curves, cis=cis)}
    if probs:
        figs["calibration"] = plots.calibration_figure(binned=binned, fits=fits)
        figs["dca"] = plots.decision_curve_figure(D.decision_curves(y, probs))
    return Evaluation(n=int(len(y)), n_pos=int(y.sum()), table=pd.DataFrame(rows),
                      comparisons=pd.DataFrame(comps), confusion=confusion, figures=figs,
                      excluded=excluded)
