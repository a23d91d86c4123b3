"""Study-level report of a model bundle on a cohort: the tables and figures of papers 000-003.

``report_study(bundle, cohort, out_dir=...)`` writes, per task (HER2-positive vs negative,
and HER2-low vs HER2-zero when the bundle has that task):

* Table 1 by set (training / internal / external): ``table1.csv`` (her2) and
  ``table1_her2_low.csv`` (her2core.metrics.table1);
* univariable and multivariable odds ratios of the clinical model (``odds_ratios*.csv``);
* ROC with DeLong CIs per model and set, the DeLong matrix between models (``roc*.csv``,
  ``delong*.csv``);
* calibration per set (Hosmer-Lemeshow, rms val.prob) and the bias-corrected calibration
  curve of the clinical model (rms calibrate; ``calibration*.csv``, ``calibrate_curve*.csv``);
* decision curves with treat all / none per set (``decision_curves*.csv``);
* NRI (categorical at ``nri_cutoffs`` and continuous) and IDI of the bundle's model against
  the clinical reference model (``reclassification*.csv``);
* sensitivity, specificity, PPV, NPV, F1 at the Youden threshold and at ``threshold``, Wilson
  CIs (``thresholds*.csv``);
* ``report.html`` and ``report.pdf`` with every table and figure, PNG figures, and
  ``report.json`` (everything, JSON-safe).

The sets. The bundle's own validation predictions (``validation_predictions.csv`` in the
bundle folder: case_id, task, set, y, p; "internal" = out-of-fold, "external" = held-out
cases) are used when present. Cases of the cohort that match the bundle's ``where_held_out``
form the external set; the others are the training set, scored by the fitted bundle
(apparent performance, optimistic by construction).

The clinical model (odds ratios, reference for NRI / IDI) is fitted here, honestly: on the
training set only, with the clinical predictors of the bundle's recipe screened by the
univariable Wald test (p < ``screen_alpha``) and the survivors in one multivariable logistic
model; its internal-set predictions are out-of-fold (5-fold stratified CV, screening redone
in every fold); its external predictions come from the training fit.

Bad input never stops the report: a problem (cases that do not match, a set with one class,
a variable with a single level, ...) is written in ``problems`` with what is wrong, and the
rest is still computed and written.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from her2core import DISCLAIMER, __version__
from her2core.errors import CohortError, Her2Error
from her2core.jsonutil import jsonable

log = logging.getLogger(__name__)

__all__ = ["StudyReportResult", "report_study", "study_predictions", "clinical_model_predictions",
           "SET_ORDER"]

SET_ORDER = ("training", "internal", "external")
VALIDATION_FILE = "validation_predictions.csv"
TASK_LABELS = {"her2": ("HER2-positive", "HER2-negative"), "her2_low": ("HER2-low", "HER2-zero")}
NOT_VARIABLES = {"her2", "her2_ihc", "case_id"}
ProgressFn = Callable[[int, int, str], None]


@dataclass
class StudyReportResult:
    out_dir: Path
    files: dict[str, str]
    tasks: list[str]
    sets: dict[str, dict[str, int]]           # task -> set -> n cases
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)   # headline numbers per task

    def to_dict(self) -> dict:
        return jsonable({"out_dir": str(self.out_dir), "files": self.files, "tasks": self.tasks,
                         "sets": self.sets, "problems": self.problems, "notes": self.notes,
                         "summary": self.summary})


# ----------------------------------------------------------------------------- predictions
def study_predictions(bundle, cohort, *, cache_dir=None, weights_dir=None) -> tuple[pd.DataFrame, list[str]]:
    """Long table (case_id, task, set, p, score columns) of the bundle's predictions.

    The bundle's own validation predictions (``Bundle.validation_predictions``: internal =
    out-of-fold, external = held-out) plus the apparent predictions of ``cohort``'s cases
    by :func:`her2core.workflows.predict.predict_cohort` ("training" set; cases matching
    the bundle's ``where_held_out`` are "external"). Returns (table, problems)."""
    from her2core.workflows.predict import predict_cohort

    problems: list[str] = []
    card = getattr(bundle, "model_card", {}) or {}
    held_out = (card.get("data") or {}).get("where_held_out")
    frames = []
    val = bundle.validation_predictions() if hasattr(bundle, "validation_predictions") else None
    if val is not None and len(val):
        frames.append(val[["case_id", "task", "set", "p"]].copy())
    else:
        val = None
    res = predict_cohort(bundle, cohort, weights_dir=weights_dir, cache_dir=cache_dir)
    preds, errors = res.table, res.errors
    problems += [f"prediction skipped: {e}" for e in errors]
    ext_ids = set(cohort.subset(held_out).case_ids) if held_out else set()
    preds = preds.copy()
    preds["case_id"] = preds["case_id"].astype(str)
    for task in getattr(bundle, "tasks", []):
        col = "p_her2" if task == "her2" else f"p_{task}"
        if col not in preds:
            continue
        suffix = "" if task == "her2" else f"_{task}"
        extra = [c for c in preds.columns if c.startswith("dscore_") and
                 (c.endswith(suffix) if suffix else not c.endswith("_her2_low"))]
        f = preds[["case_id", col] + extra].rename(columns={col: "p"})
        f = f.rename(columns={c: c[: len(c) - len(suffix)] if suffix else c for c in extra})
        f["task"] = task
        f["set"] = np.where(f["case_id"].isin(ext_ids), "external", "training")
        if val is not None:  # the bundle's own external predictions take precedence
            vt = val[(val["task"] == task) & (val["set"] == "external")]
            f = f[~(f["case_id"].isin(set(vt["case_id"])) & (f["set"] == "external"))]
        frames.append(f)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["case_id", "task", "set", "p"])
    return out, problems


# ----------------------------------------------------------------------------- clinical model
def _screen(data: pd.DataFrame, y: pd.Series, predictors, alpha: float) -> list[str]:
    from her2core.metrics.odds import odds_ratio_table

    tab = odds_ratio_table(data, y, predictors, multivariable=[])
    keep = []
    for v in predictors:
        ps = [r.uni_p for r in tab.rows if r.variable == v and np.isfinite(r.uni_p)]
        if ps and min(ps) < alpha:
            keep.append(v)
    return keep


def _fit_clinical(data, y, predictors, alpha):
    from her2core.metrics.odds import fit_logistic

    chosen = _screen(data, y, predictors, alpha)
    if not chosen:
        prev = float(np.mean(y))
        return (lambda d: np.full(len(d), prev)), chosen
    m = fit_logistic(data, y, chosen)
    return m.predict_proba, chosen


def clinical_model_predictions(data: pd.DataFrame, y: pd.Series, sets: pd.Series,
                               predictors: Sequence[str], *, screen_alpha: float = 0.05,
                               folds: int = 5, seed: int = 0) -> tuple[pd.Series, list[str], Callable]:
    """Predictions of the clinical model (see the module docstring): training = apparent,
    internal = out-of-fold over the training cases, external = training fit. Returns
    (probabilities indexed like ``data``, chosen predictors, refit function for calibrate)."""
    from sklearn.model_selection import StratifiedKFold

    tr = sets == "training"
    def refit(Xs, ys):  # noqa: E306 - the whole model, screening included
        pr, _ = _fit_clinical(Xs, pd.Series(np.asarray(ys), index=Xs.index), predictors,
                              screen_alpha)
        return pr

    predict, chosen = _fit_clinical(data[tr], y[tr], predictors, screen_alpha)
    out = pd.Series(np.nan, index=data.index)
    notin = ~tr & (sets != "internal")
    out[tr] = predict(data[tr])
    if notin.any():
        out[notin] = predict(data[notin])
    internal = sets == "internal"
    if internal.any():
        ids = data.index[internal]
        Xi, yi = data.loc[ids], y.loc[ids]
        k = int(min(folds, yi.value_counts().min())) if yi.nunique() == 2 else 0
        if k >= 2:
            skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            for a, b in skf.split(Xi, yi):
                pr = refit(Xi.iloc[a], yi.iloc[a])
                out.loc[ids[b]] = pr(Xi.iloc[b])
    return out, chosen, refit


# ----------------------------------------------------------------------------- figures
def _mpl():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    _mpl().close(fig)
    return buf.getvalue()


def _roc_png(curves: dict, sets: list[str], title: str) -> bytes:
    plt = _mpl()
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 4.2), squeeze=False)
    for ax, s in zip(axes[0], sets):
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, ls="--")
        for i, (model, c) in enumerate(curves.get(s, {}).items()):
            ax.plot(c["fpr"], c["tpr"], color=COLORS[i % len(COLORS)], lw=1.6,
                    label=f"{model}: {c['auc']:.3f} ({c['lower']:.3f}-{c['upper']:.3f})")
        ax.set_title(f"{s}", fontsize=10)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_aspect("equal")
        ax.legend(fontsize=6.5, loc="lower right", title="AUC (95% DeLong CI)", title_fontsize=6.5)
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def _calibration_png(cal: dict, sets: list[str], title: str) -> bytes:
    plt = _mpl()
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 4.2), squeeze=False)
    for ax, s in zip(axes[0], sets):
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=1, ls="--", label="ideal")
        for i, (model, c) in enumerate(cal.get(s, {}).items()):
            col = COLORS[i % len(COLORS)]
            ax.plot(c["smooth_x"], c["smooth_y"], color=col, lw=1.5,
                    label=f"{model} (HL p = {c['hl_p']:.2g})" if np.isfinite(c["hl_p"])
                    else model)
            ax.scatter(c["bin_x"], c["bin_y"], color=col, s=12)
        if s == "training" and cal.get("_calibrate"):
            cc = cal["_calibrate"]
            ax.plot(cc["predy"], cc["apparent"], color="black", lw=1, ls=":",
                    label="clinical: apparent (rms)")
            ax.plot(cc["predy"], cc["corrected"], color="black", lw=1.4,
                    label=f"clinical: bias-corrected (B={cc['B']})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed fraction")
        ax.legend(fontsize=6.5, loc="upper left")
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def _dca_png(dcas: dict, sets: list[str], title: str) -> bytes:
    plt = _mpl()
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sets):
        d = dcas.get(s)
        if d is None:
            ax.set_axis_off()
            continue
        t = np.asarray(d.thresholds)
        ax.plot(t, d.treat_all.net_benefit, color="#777777", lw=1, label="treat all")
        ax.plot(t, np.zeros_like(t), color="black", lw=1, label="treat none")
        for i, (m, c) in enumerate(d.models.items()):
            ax.plot(t, c.net_benefit, color=COLORS[i % len(COLORS)], lw=1.5, label=m)
        ax.set_ylim(-0.05, max(0.05, d.prevalence * 1.1))
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("threshold probability")
        ax.set_ylabel("net benefit")
        ax.legend(fontsize=6.5)
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def _forest_png(odds: pd.DataFrame, title: str) -> bytes:
    plt = _mpl()
    ok = np.isfinite(odds["uni_lower"]) & np.isfinite(odds["uni_upper"]) & \
        (odds["uni_upper"] < 1e3) & (odds["uni_lower"] > 1e-3)
    d = odds[ok].copy()  # separated fits (infinite CIs) are in the table, not the plot
    for c in ("multi_or", "multi_lower", "multi_upper"):
        bad = ~np.isfinite(d[c]) | (d[c] > 1e3) | (d[c] < 1e-3)
        d.loc[bad, "in_multivariable"] = False
    fig, ax = plt.subplots(figsize=(7, 0.32 * max(len(d), 1) + 1.3))
    y = np.arange(len(d))[::-1]
    ax.errorbar(d["uni_or"], y + 0.15, xerr=[d["uni_or"] - d["uni_lower"], d["uni_upper"] - d["uni_or"]],
                fmt="o", color=COLORS[0], ms=4, lw=1, label="univariable")
    m = d[d["in_multivariable"]]
    ym = y[d["in_multivariable"].to_numpy()]
    if len(m):
        ax.errorbar(m["multi_or"], ym - 0.15, xerr=[m["multi_or"] - m["multi_lower"],
                                                  m["multi_upper"] - m["multi_or"]],
                    fmt="s", color=COLORS[1], ms=4, lw=1, label="multivariable")
    ax.axvline(1, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, d["term"], fontsize=7)
    ax.set_xlabel("odds ratio (95% CI, log scale)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _png(fig)


# ----------------------------------------------------------------------------- per task
def _variables(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in NOT_VARIABLES and not c.startswith("synthetic_")]


def _curve_points(y, p):
    from her2core.metrics import roc_curve
    c = roc_curve(y, p)
    return c.fpr[::-1], c.sensitivity[::-1]


def _model_in_set(M, val_prob, s, m, ys, sc, prob_models, opts, curves, cal_fig, roc_rows,
                  thr_rows, cal_rows):
    ci = M.ci_auc_delong(ys, sc)
    fx, ty = _curve_points(ys, sc)
    curves[s][m] = {"fpr": fx, "tpr": ty, "auc": ci.auc, "lower": ci.lower, "upper": ci.upper}
    roc_rows.append({"set": s, "model": m, "n": len(ys), "positives": int(ys.sum()),
                     "auc": ci.auc, "lower": ci.lower, "upper": ci.upper})
    if m not in prob_models or not M.is_probability(sc):
        return
    if np.ptp(sc) == 0:
        raise ValueError("the predicted probability is the same for every case: no threshold, "
                         "calibration curve or Hosmer-Lemeshow test")
    for chosen_by, tm in (("youden", M.youden_metrics(ys, sc, n_boot=opts["n_boot"])),
                          ("chosen", M.threshold_metrics(ys, sc, opts["threshold"],
                                                         n_boot=opts["n_boot"]))):
        fl = tm.flat()
        thr_rows.append({"set": s, "model": m, "threshold_rule": chosen_by,
                         **{k: (v if not isinstance(v, list) else None) for k, v in fl.items()},
                         **{f"{k}_lower": fl[f"{k}_ci"][0] for k in
                            ("sensitivity", "specificity", "ppv", "npv", "f1")},
                         **{f"{k}_upper": fl[f"{k}_ci"][1] for k in
                            ("sensitivity", "specificity", "ppv", "npv", "f1")}})
    hl = M.hosmer_lemeshow(ys, sc)
    vp = val_prob(ys, sc)
    bc = M.binned_calibration(ys, sc, n_bins=min(10, max(3, len(ys) // 10)))
    sm = M.loess_calibration(ys, sc)
    cal_rows.append({"set": s, "model": m, "hl_chi2": hl.statistic, "hl_df": hl.df, "hl_p": hl.p,
                     "hl_note": hl.note or "", **vp.as_r()})
    cal_fig[s][m] = {"smooth_x": sm.predicted, "smooth_y": sm.observed,
                     "bin_x": bc.mean_predicted, "bin_y": bc.observed, "hl_p": hl.p}


def _task_report(task, frame, table, card_predictors, opts, problems, progress, step):
    """Everything for one task; returns (tables {name: DataFrame}, figures [(title, png)], summary)."""
    from her2core import metrics as M
    from her2core.metrics.calibrate import calibrate_boot, val_prob
    from her2core.metrics.odds import odds_ratio_table
    from her2core.metrics.reclassification import reclassification
    from her2core.metrics.table1 import table1

    pos, neg = TASK_LABELS[task]
    tables: dict[str, pd.DataFrame] = {}
    figures: list[tuple[str, bytes, str]] = []
    summary: dict[str, Any] = {}
    sets = [s for s in SET_ORDER if s in set(frame["set"])] + sorted(
        set(frame["set"]) - set(SET_ORDER))
    y = frame["y"].astype(int)

    # Table 1 (one row per case: cases in several sets, e.g. training and internal, count in each)
    t1src = frame[["case_id", "set", "y"]]
    ids = {k: set(g["case_id"]) for k, g in t1src.groupby("set")}
    if "internal" in ids and ids["internal"] == ids.get("training"):
        t1src = t1src[t1src["set"] != "internal"]  # the same cases as training
    t1rows = t1src.merge(table, left_on="case_id", right_index=True)
    t1rows.index = range(len(t1rows))
    t1 = table1(t1rows, "y", sets="set", variables=_variables(table), positive_label=pos,
                negative_label=neg)
    problems += [f"{task} Table 1: {n}" for n in t1.notes]
    tables["table1"] = t1.to_frame()
    tables["table1_levels"] = t1.levels_frame()
    step("Table 1")

    # clinical model: fitted on the training set only
    base = frame.drop_duplicates("case_id").set_index("case_id")
    tr_ids = frame.loc[frame["set"] == "training", "case_id"]
    predictors = [p for p in card_predictors if p in table.columns] or [
        c for c in _variables(table) if c != "center"]
    clin = pd.Series(np.nan, index=frame.index)
    refit = None
    if len(tr_ids) and frame.loc[frame["set"] == "training", "y"].nunique() == 2:
        data = table.loc[frame["case_id"]].reset_index(drop=True)
        data.index = frame.index
        pr, chosen, refit = clinical_model_predictions(data, y, frame["set"], predictors,
                                                       screen_alpha=opts["screen_alpha"])
        clin = pr
        trd = table.loc[tr_ids]
        ytr = base.loc[tr_ids, "y"].astype(int)
        odds = odds_ratio_table(trd, ytr.to_numpy(), predictors, multivariable=chosen)
        problems += [f"{task} odds ratios: {n}" for n in odds.notes]
        tables["odds_ratios"] = odds.to_frame()
        summary["clinical_model"] = {"predictors_considered": predictors, "chosen": chosen,
                                     "n_training": int(len(tr_ids))}
        figures.append((f"{task}: odds ratios of the clinical model (training set)",
                        _forest_png(tables["odds_ratios"], f"{pos} vs {neg}: odds ratios"),
                        "Univariable (all candidate predictors) and multivariable (those with "
                        f"univariable p < {opts['screen_alpha']}) logistic regression on the "
                        "training set."))
    else:
        problems.append(f"{task}: the training set has no cases of both classes; no clinical "
                        "model, no odds ratios, no NRI / IDI")
    frame = frame.assign(clinical=clin)
    step("clinical model")

    models = ["model"] + [c for c in frame.columns if c.startswith("dscore_")] + ["clinical"]
    prob_models = ["model", "clinical"]
    roc_rows, delong_rows, cal_rows, thr_rows, dca_rows, nri_rows = [], [], [], [], [], []
    curves: dict = {}
    cal_fig: dict = {}
    dcas: dict = {}
    for s in sets:
        f = frame[frame["set"] == s]
        ys = f["y"].astype(int).to_numpy()
        if len(np.unique(ys)) < 2:
            problems.append(f"{task}, set {s}: only {'positive' if ys.min() == 1 else 'negative'} "
                            f"cases ({len(ys)}): no ROC, calibration, decision curve or NRI")
            continue
        curves[s], cal_fig[s] = {}, {}
        avail = [m for m in models if m in f and f[m].notna().all()]
        for m in avail:
            try:
                _model_in_set(M, val_prob, s, m, ys, f[m].to_numpy(float), prob_models, opts,
                              curves, cal_fig, roc_rows, thr_rows, cal_rows)
            except ValueError as exc:
                problems.append(f"{task}, set {s}, {m}: {exc}")
        for i, a in enumerate(avail):
            for b in avail[i + 1:]:
                try:
                    t = M.delong_test_paired(ys, f[a].to_numpy(float), f[b].to_numpy(float))
                except ValueError as exc:
                    problems.append(f"{task}, set {s}: DeLong {a} vs {b}: {exc}")
                    continue
                delong_rows.append({"set": s, "model_a": a, "model_b": b, "auc_a": t.auc_a,
                                    "auc_b": t.auc_b, "difference": t.auc_difference,
                                    "lower": t.ci_difference[0], "upper": t.ci_difference[1],
                                    "z": t.statistic, "p": t.p})
        pm = {m: f[m].to_numpy(float) for m in prob_models if m in avail
              and M.is_probability(f[m].to_numpy(float))}
        try:
            if pm:
                d = M.decision_curves(ys, pm)
                dcas[s] = d
                for lab, c in list(d.models.items()) + [("treat all", d.treat_all),
                                                         ("treat none", d.treat_none)]:
                    for r in c.rows():
                        dca_rows.append({"set": s, "strategy": lab, **r})
            if "model" in pm and "clinical" in pm:
                rc = reclassification(ys, pm["clinical"], pm["model"], opts["nri_cutoffs"],
                                      new="model", reference="clinical")
                for kind, n in (("categorical NRI", rc.categorical),
                                ("continuous NRI", rc.continuous)):
                    if n is None:
                        continue
                    nri_rows.append({"set": s, "measure": kind, "estimate": n.nri, "se": n.se,
                                     "lower": n.lower, "upper": n.upper, "p": n.p,
                                     "events": n.nri_events, "nonevents": n.nri_nonevents,
                                     "cutoffs": ";".join(f"{c:g}" for c in n.cutoffs)})
                i_ = rc.idi
                nri_rows.append({"set": s, "measure": "IDI", "estimate": i_.idi, "se": i_.se,
                                 "lower": i_.lower, "upper": i_.upper, "p": i_.p,
                                 "events": i_.mean_change_events,
                                 "nonevents": -i_.mean_change_nonevents, "cutoffs": ""})
        except ValueError as exc:
            problems.append(f"{task}, set {s}: decision curves / NRI: {exc}")
        step(f"set {s}")

    # bias-corrected calibration curve of the clinical model (training set, whole model refitted)
    if refit is not None:
        trf = frame[frame["set"] == "training"].drop_duplicates("case_id")
        Xtr = table.loc[trf["case_id"]]
        ytr = trf["y"].astype(int).to_numpy()
        try:
            cb = calibrate_boot(refit, Xtr, ytr, B=opts["n_calibrate"], seed=opts["seed"])
            cal_fig["_calibrate"] = cb.to_dict()
            tables["calibrate_curve"] = pd.DataFrame({"predy": cb.predy, "apparent": cb.apparent,
                                                      "corrected": cb.corrected,
                                                      "optimism": cb.optimism, "n": cb.n_used})
            summary["calibrate"] = {"B": cb.B, "mean_absolute_error": cb.mean_absolute_error,
                                    "n_failed": cb.n_failed}
        except ValueError as exc:
            problems.append(f"{task}: bias-corrected calibration curve not computed: {exc}")
    step("calibrate")

    tables["roc"] = pd.DataFrame(roc_rows)
    tables["delong"] = pd.DataFrame(delong_rows)
    tables["calibration"] = pd.DataFrame(cal_rows)
    tables["decision_curves"] = pd.DataFrame(dca_rows)
    tables["reclassification"] = pd.DataFrame(nri_rows)
    tables["thresholds"] = pd.DataFrame(thr_rows)
    tables["predictions"] = frame
    fsets = [s for s in sets if s in curves]
    if fsets:
        figures.insert(0, (f"{task}: ROC curves", _roc_png(curves, fsets, f"{pos} vs {neg}: ROC"),
                           "Empirical ROC curves; AUC with 95% DeLong CI (pROC conventions)."))
        figures.append((f"{task}: calibration", _calibration_png(cal_fig, fsets,
                                                                 f"{pos} vs {neg}: calibration"),
                        "LOWESS curves (R lowess), binned observed fractions (points), "
                        "Hosmer-Lemeshow p; training panel: the clinical model's apparent and "
                        "bias-corrected curves (rms calibrate, whole model refitted per resample)."))
    if dcas:
        figures.append((f"{task}: decision curves", _dca_png(dcas, [s for s in fsets if s in dcas],
                                                             f"{pos} vs {neg}: decision curves"),
                        "Net benefit (dcurves conventions) with treat all / treat none."))
    summary["auc"] = {f"{r['model']} / {r['set']}": r["auc"] for r in roc_rows}
    return tables, figures, summary


# ----------------------------------------------------------------------------- output
def _fmt(v, digits=3):
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return ""
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(v)


# the tables shown in the HTML / PDF (all are in the CSVs), with their columns
SHOWN = {
    "table1": ("Table 1", ["variable", "set", "summary_pos", "summary_neg", "test", "p", "p_fdr"]),
    "odds_ratios": ("Odds ratios of the clinical model (training set)",
                    ["term", "uni_or", "uni_lower", "uni_upper", "uni_p", "multi_or", "multi_lower",
                     "multi_upper", "multi_p"]),
    "roc": ("AUC with 95% DeLong CI", ["set", "model", "n", "positives", "auc", "lower", "upper"]),
    "delong": ("DeLong tests between models (paired)",
               ["set", "model_a", "model_b", "difference", "lower", "upper", "p"]),
    "calibration": ("Calibration (Hosmer-Lemeshow, rms val.prob)",
                    ["set", "model", "hl_chi2", "hl_p", "Intercept", "Slope", "Brier", "Emax",
                     "Eavg", "S:p"]),
    "reclassification": ("NRI and IDI: model vs clinical reference model",
                         ["set", "measure", "estimate", "lower", "upper", "p", "events", "nonevents"]),
    "thresholds": ("Sensitivity, specificity, PPV, NPV, F1 (Wilson CIs; F1 bootstrap)",
                   ["set", "model", "threshold_rule", "threshold", "sensitivity", "specificity",
                    "ppv", "npv", "f1"]),
}


def _html(meta, sections, problems, notes) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>Study report</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;font-size:13px}"
           "table{border-collapse:collapse;margin:6px 0 14px}td,th{border:1px solid #bbb;"
           "padding:2px 5px;font-size:12px}th{background:#eee}.warn{color:#a00}"
           "img{max-width:100%}</style></head><body>",
           f"<h1>{e(meta['title'])}</h1><p><b>{e(DISCLAIMER)}</b></p>"]
    for k, v in meta["rows"]:
        out.append(f"<div><b>{e(k)}</b>: {e(str(v))}</div>")
    if problems:
        out.append("<h2>Problems found (the rest of the report is complete)</h2><ul>")
        out += [f"<li class='warn'>{e(p)}</li>" for p in problems]
        out.append("</ul>")
    for task, tables, figures in sections:
        out.append(f"<h2>{e(task)}</h2>")
        for title, png, caption in figures:
            b64 = base64.b64encode(png).decode()
            out.append(f"<h3>{e(title)}</h3><img src='data:image/png;base64,{b64}'>"
                       f"<p><i>{e(caption)}</i></p>")
        for key, (title, cols) in SHOWN.items():
            t = tables.get(key)
            if t is None or t.empty:
                continue
            cols = [c for c in cols if c in t.columns]
            out.append(f"<h3>{e(title)}</h3><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols)
                       + "</tr>")
            for _, r in t.iterrows():
                out.append("<tr>" + "".join(f"<td>{e(_fmt(r[c]))}</td>" for c in cols) + "</tr>")
            out.append("</table>")
    out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)


def _pdf(meta, sections, problems, notes) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import (Image as RLImage, KeepTogether, PageBreak, Paragraph,
                                    SimpleDocTemplate, Spacer, Table, TableStyle)
    from PIL import Image as PILImage

    buf = io.BytesIO()
    page = landscape(A4)
    doc = SimpleDocTemplate(buf, pagesize=page, leftMargin=12 * mm, rightMargin=12 * mm,
                            topMargin=12 * mm, bottomMargin=12 * mm, title=meta["title"],
                            author="her2core", subject="research / teaching report")
    ss = getSampleStyleSheet()
    small = ss["BodyText"].clone("small", fontSize=7, leading=8.5)
    e = html.escape
    width = page[0] - 24 * mm
    story: list[Any] = [Paragraph(e(meta["title"]), ss["Title"]),
                        Paragraph(f"<b>{e(DISCLAIMER)}</b>", ss["Normal"]), Spacer(1, 4)]
    for k, v in meta["rows"]:
        story.append(Paragraph(f"<b>{e(k)}</b>: {e(str(v))}", ss["Normal"]))
    if problems:
        story.append(Paragraph("Problems found (the rest of the report is complete)", ss["Heading2"]))
        for p in problems:
            story.append(Paragraph(e("- " + p), small))
    for task, tables, figures in sections:
        story += [PageBreak(), Paragraph(e(task), ss["Heading1"])]
        for title, png, caption in figures:
            w, h = PILImage.open(io.BytesIO(png)).size
            fw = min(width, w * 0.55)
            fh = fw * h / w
            if fh > 150 * mm:
                fh = 150 * mm
                fw = fh * w / h
            story.append(KeepTogether([Paragraph(e(title), ss["Heading3"]),
                                       RLImage(io.BytesIO(png), width=fw, height=fh),
                                       Paragraph(f"<i>{e(caption)}</i>", small), Spacer(1, 4)]))
        for key, (title, cols) in SHOWN.items():
            t = tables.get(key)
            if t is None or t.empty:
                continue
            cols = [c for c in cols if c in t.columns]
            rows = [[Paragraph(f"<b>{e(c)}</b>", small) for c in cols]]
            for _, r in t.iterrows():
                rows.append([Paragraph(e(_fmt(r[c])), small) for c in cols])
            wide = {"summary_pos": 3, "summary_neg": 3, "variable": 1.6, "term": 2.4, "model_a": 1.4,
                    "model_b": 1.4, "model": 1.4, "measure": 1.4, "threshold_rule": 1.1}
            wts = np.array([wide.get(c, 1.0) for c in cols])
            tb = Table(rows, colWidths=list(width * wts / wts.sum()), repeatRows=1, hAlign="LEFT")
            tb.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                                    ("VALIGN", (0, 0), (-1, -1), "TOP")]))
            story += [KeepTogether([Paragraph(e(title), ss["Heading3"]), tb])
                      if len(rows) < 25 else Paragraph(e(title), ss["Heading3"])]
            if len(rows) >= 25:
                story.append(tb)
    story += [PageBreak(), Paragraph("Notes", ss["Heading2"])]
    for n in notes:
        story.append(Paragraph(e("- " + n), ss["Normal"]))
    doc.build(story)
    return buf.getvalue()


# ----------------------------------------------------------------------------- main
def report_study(bundle, cohort, out_dir, *, where: str | None = None,
                 tasks: Sequence[str] | None = None, threshold: float = 0.5,
                 nri_cutoffs: Sequence[float] = (0.3, 0.7), screen_alpha: float = 0.05,
                 n_calibrate: int = 200, n_boot: int = 2000, seed: int = 20240601,
                 predictions: pd.DataFrame | None = None, cache_dir=None, weights_dir=None,
                 formats: Sequence[str] = ("html", "pdf"),
                 progress: ProgressFn | None = None) -> StudyReportResult:
    """Write the study report of ``bundle`` (path or loaded Bundle) on ``cohort`` (path or
    Cohort) into ``out_dir`` (see the module docstring). ``where``: only the cohort's cases
    matching COL=VALUE. ``predictions``: a long table (case_id, task, set, p[, dscore_*])
    instead of :func:`study_predictions` (tests, or predictions made elsewhere)."""
    from her2core.cohort import read_cohort

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    notes: list[str] = []
    prog = progress or (lambda d, t, m: None)
    if isinstance(bundle, (str, Path)):
        from her2core.bundle import load_bundle
        bundle = load_bundle(bundle)
    cohort_path = cohort if isinstance(cohort, (str, Path)) else getattr(cohort, "root", "")
    if isinstance(cohort, (str, Path)):
        cohort = read_cohort(cohort)
    if where:
        cohort = cohort.subset(where)
        if len(cohort) == 0:
            raise CohortError(f"no case matches --where {where}", file=cohort_path)
    problems += [str(p) for p in getattr(cohort, "problems", [])]
    card = getattr(bundle, "model_card", {}) or {}
    tasks = list(tasks or getattr(bundle, "tasks", None) or ["her2"])
    total = 2 + 6 * len(tasks)
    done = 0

    def step(msg):
        nonlocal done
        done += 1
        prog(min(done, total), total, msg)

    if predictions is None:
        prog(0, total, "predicting the cohort with the bundle")
        predictions, pp = study_predictions(bundle, cohort, cache_dir=cache_dir,
                                            weights_dir=weights_dir)
        problems += pp
    step("predictions")
    predictions = predictions.copy()
    predictions["case_id"] = predictions["case_id"].astype(str)
    table = cohort.table.copy()
    table.index = table.index.astype(str)
    unknown = sorted(set(predictions["case_id"]) - set(table.index))
    if unknown:
        problems.append(f"{len(unknown)} predicted case(s) are not in the cohort (e.g. "
                        f"{', '.join(unknown[:5])}); they are left out")
        predictions = predictions[~predictions["case_id"].isin(unknown)]
    recipe = card.get("recipe") or {}
    card_predictors = list(recipe.get("clinical_predictors") or [])
    sections = []
    files: dict[str, str] = {}
    sets_n: dict[str, dict[str, int]] = {}
    summary: dict[str, Any] = {}
    all_tables: dict[str, dict] = {}
    for task in tasks:
        try:
            labels = cohort.labels(task)
        except (Her2Error, ValueError) as exc:
            problems.append(f"{task}: no labels ({exc})")
            continue
        labels.index = labels.index.astype(str)
        fr = predictions[predictions["task"] == task].copy()
        no_pred = sorted(set(labels.index) - set(fr["case_id"]))
        if no_pred and len(fr):
            problems.append(f"{task}: {len(no_pred)} labelled case(s) of the cohort have no "
                            f"prediction (e.g. {', '.join(no_pred[:5])})")
        fr = fr[fr["case_id"].isin(labels.index)]
        if fr.empty:
            problems.append(f"{task}: no predicted case with a known label; section skipped")
            continue
        fr["y"] = labels.loc[fr["case_id"]].to_numpy()
        fr = fr.rename(columns={"p": "model"})
        if not (fr["set"] == "internal").any() and (fr["set"] == "training").any():
            internal = fr[fr["set"] == "training"].copy()
            internal["set"] = "internal"
            score_cols = ["model"] + [c for c in fr.columns if c.startswith("dscore_")]
            internal[score_cols] = np.nan
            fr = pd.concat([fr, internal], ignore_index=True)
            notes.append(f"{task}: the bundle has no out-of-fold predictions ({VALIDATION_FILE}); "
                         "its internal set shows the clinical model only (out-of-fold).")
        fr = fr.reset_index(drop=True)
        sets_n[task] = {s: int((fr["set"] == s).sum()) for s in SET_ORDER if (fr["set"] == s).any()}
        tables, figures, summ = _task_report(task, fr, table, card_predictors,
                                             dict(threshold=threshold, nri_cutoffs=nri_cutoffs,
                                                  screen_alpha=screen_alpha,
                                                  n_calibrate=n_calibrate, n_boot=n_boot,
                                                  seed=seed), problems, prog, step)
        summary[task] = summ
        suffix = "" if task == "her2" else f"_{task}"
        for name, t in tables.items():
            p = out / f"{name}{suffix}.csv"
            t.to_csv(p, index=False, float_format="%.10g")
            files[f"{name}{suffix}"] = str(p)
        for i, (title, png, _) in enumerate(figures):
            p = out / f"figure{suffix}_{i + 1}.png"
            p.write_bytes(png)
            files[f"figure{suffix}_{i + 1}"] = str(p)
        pos, neg = TASK_LABELS[task]
        sections.append((f"{pos} vs {neg}", tables, figures))
        all_tables[task] = {k: v.to_dict("records") for k, v in tables.items() if k != "predictions"}
    notes += [
        "Sets: training = cases the bundle was fitted on, scored by the fitted bundle (apparent, "
        "optimistic); internal = out-of-fold predictions; external = held-out cases "
        f"(the bundle's where_held_out: {(card.get('data') or {}).get('where_held_out')}).",
        "Clinical model: fitted on the training set only; candidate predictors = the bundle "
        f"recipe's clinical predictors, kept when univariable Wald p < {screen_alpha}; one "
        "multivariable logistic regression; internal predictions out-of-fold (5-fold, screening "
        "redone per fold); it is the reference model of NRI / IDI.",
        "Table 1: Welch t-test or Wilcoxon-Mann-Whitney chosen by Shapiro-Wilk (p > 0.05 in both "
        "classes), chi-squared (Yates on 2 x 2) or Fisher's exact test chosen by expected counts "
        "(all >= 5), Benjamini-Hochberg FDR within each set.",
        f"Thresholds: Youden-optimal (chosen on the same data: optimistic) and {threshold}; NRI "
        f"cut-offs {', '.join(f'{c:g}' for c in nri_cutoffs)}. NRI / IDI favour a model on the "
        "data it was fitted to.",
    ]
    if getattr(bundle, "random_init", False):
        notes.insert(0, "Demo model: random-initialised network weights; the numbers carry no "
                        "clinical meaning.")
    meta = {"title": f"Study report: {card.get('model') or 'model bundle'}",
            "rows": [("bundle", getattr(bundle, "path", "")), ("cohort", str(cohort_path)),
                     ("where", where or "all cases"), ("tasks", ", ".join(tasks)),
                     ("cases per set", json.dumps(sets_n)), ("her2core", __version__),
                     ("random-init weights", bool(getattr(bundle, "random_init", False)))]}
    if "html" in formats:
        p = out / "report.html"
        p.write_text(_html(meta, sections, problems, notes), encoding="utf-8")
        files["html"] = str(p)
    if "pdf" in formats:
        p = out / "report.pdf"
        p.write_bytes(_pdf(meta, sections, problems, notes))
        files["pdf"] = str(p)
    res = StudyReportResult(out_dir=out, files=files, tasks=list(sets_n), sets=sets_n,
                            problems=problems, notes=notes, summary=summary)
    (out / "report.json").write_text(json.dumps(jsonable({**res.to_dict(), "tables": all_tables},
                                                         unknown=str), indent=1, allow_nan=False),
                                     encoding="utf-8")
    files["json"] = str(out / "report.json")
    prog(total, total, "done")
    return res
