"""Evaluation of predictions against a cohort's labels: the library behind `evaluate`
and the app's Cohort page.

Joins a predictions table (case_id + score columns) with the labels of a cohort
on case_id. Every numeric column except case_id is a score unless ``scores``
names some. A score is taken as "higher = HER2-positive" (pROC direction "<").
Cases without a label or without a score are counted under "excluded".
Calibration, Brier, Hosmer-Lemeshow and decision curves are computed only for
columns whose values all lie in [0, 1]; other columns are scores, not
probabilities, and the result says so.

``compare`` gives the paired DeLong test of two scores on the cases that have
both (default: every pair); ``compare_groups`` the unpaired DeLong test (pROC
roc.test, paired=FALSE) of each score between the two groups of a cohort column
such as center.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
import io
import itertools
import json
import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from her2core.errors import CohortError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ inputs
def read_predictions(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise CohortError("predictions file not found", file=path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CohortError("not UTF-8 text", file=path, hint="save the predictions as UTF-8 CSV")
    if not text.strip():
        raise CohortError("empty file", file=path)
    try:
        df = pd.read_csv(io.StringIO(text), dtype={"case_id": str}, keep_default_na=True)
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        raise CohortError(f"cannot read as CSV: {str(exc).splitlines()[0]}", file=path)
    df.columns = [str(c).strip() for c in df.columns]
    if "case_id" not in df.columns:
        raise CohortError("no case_id column", file=path,
                          hint=f"columns found: {', '.join(map(str, df.columns[:10]))}")
    df["case_id"] = df["case_id"].astype(str).str.strip()
    if df["case_id"].isin(["", "nan"]).any():
        raise CohortError("a row has an empty case_id", file=path)
    dup = df["case_id"][df["case_id"].duplicated()].unique()
    if dup.size:
        raise CohortError(f"duplicate case_id: {', '.join(dup[:5])}", case_id=str(dup[0]),
                          file=path, hint="one row per case")
    return df.set_index("case_id")


def pick_scores(pred: pd.DataFrame, wanted: list[str] | None, path: Path) -> list[str]:
    numeric = [c for c in pred.columns if pd.api.types.is_numeric_dtype(pred[c])]
    if wanted:
        missing = [c for c in wanted if c not in pred.columns]
        if missing:
            raise CohortError(f"no column {', '.join(missing)}", file=path,
                              hint=f"score columns found: {', '.join(numeric) or 'none'}")
        bad = [c for c in wanted if c not in numeric]
        if bad:
            raise CohortError(f"column {', '.join(bad)} is not numeric", file=path)
        return list(wanted)
    # the three-way call's class probabilities are evaluated per class (three_way_roc)
    # (and the predictions' flag columns, numeric only when empty, are no scores)
    numeric = [c for c in numeric if c not in _THREE_WAY and c not in ("imputed", "out_of_range")]
    if not numeric:
        raise CohortError("no numeric score column besides case_id", file=path)
    return numeric


_THREE_WAY = ("p_positive", "p_low", "p_zero")


def three_way_labels(truth: Path, cohort=None) -> pd.Series:
    """positive / low / zero of every case whose HER2 status is known that far (a negative
    without an IHC score has no three-way label), indexed by case_id."""
    cohort = read_truth(truth) if cohort is None else cohort
    her2, _, _ = read_labels(truth, "her2", cohort)
    try:
        low, _, _ = read_labels(truth, "her2_low", cohort)
    except CohortError:
        low = pd.Series(dtype=int)
    out = pd.Series("positive", index=her2.index[her2 == 1], dtype=object)
    neg = low.reindex(her2.index[her2 == 0]).dropna()
    out = pd.concat([out, neg.map({1: "low", 0: "zero"})])
    return out.rename("her2_three_way")


def three_way_roc(pred: pd.DataFrame, truth: Path, *, with_figures: bool = False, cohort=None):
    """Per-class ROC of the three-way call (one class against the other two, each with its
    own probability column; DeLong 95 % CI as pROC), or (None, None) when the predictions lack
    the columns. Cases without a three-way label are left out and counted."""
    from her2core.metrics.delong import ci_auc_delong
    from her2core.metrics.roc import roc_curve
    if not all(c in pred.columns for c in _THREE_WAY):
        return None, None
    labels = three_way_labels(truth, cohort)
    have = pred[list(_THREE_WAY)].dropna()
    ids = [c for c in have.index if c in labels.index]
    lab = labels.loc[ids]
    out = {"n": len(ids), "excluded": int(len(pred) - len(ids)),
           "method": "one-vs-rest ROC of each class probability (p_positive, p_low, p_zero); "
                     "DeLong 95 % CI", "classes": {}}
    curves = {}
    for cls in ("positive", "low", "zero"):
        y = (lab == cls).astype(int).to_numpy()
        entry = {"n_class": int(y.sum())}
        if 0 < y.sum() < len(y):
            s = have.loc[ids, f"p_{cls}"].to_numpy(float)
            ci = ci_auc_delong(y, s)
            entry.update(auc=float(ci.auc), ci95=[float(ci.lower), float(ci.upper)])
            if with_figures:
                curves[cls] = roc_curve(y, s)
        else:
            entry["note"] = "one class only among the labelled cases: no ROC"
        out["classes"][cls] = entry
    called = pred.loc[ids, "three_way_call"] if "three_way_call" in pred.columns else None
    if called is not None:
        out["accuracy_of_call"] = float(np.mean(called.to_numpy() == lab.to_numpy())) if ids else None
    return out, curves


def read_truth(truth: Path):
    """The Cohort of a truth argument: a cohort folder, its cohort.csv, or a CSV with labels."""
    from her2core.cohort import read_cohort

    truth = Path(truth)
    if truth.is_dir():
        return read_cohort(truth)
    if truth.is_file():
        if truth.name == "cohort.csv":
            return read_cohort(truth.parent)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "cohort.csv").write_bytes(truth.read_bytes())
            try:
                return read_cohort(tmp)
            except CohortError as err:
                err.file = str(truth)
                err.args = (str(err),)
                raise
    raise CohortError("truth not found", file=truth, hint="give cohort.csv or the cohort folder")


def read_labels(truth: Path, task: str, cohort=None) -> tuple[pd.Series, list[str], pd.DataFrame]:
    """Labels (int Series indexed by case_id), the case_ids left out of the
    cohort table because their row had problems, and the cohort table
    (``cohort``: the truth already read, else it is read here)."""
    cohort = read_truth(truth) if cohort is None else cohort
    bad_rows = sorted({e.case_id for e in cohort.problems if e.case_id})
    try:
        labels = cohort.labels(task)
    except CohortError as err:
        raise err.with_context(file=truth)
    labels.index = labels.index.astype(str)
    table = cohort.table.copy()
    table.index = table.index.astype(str)
    return labels, bad_rows, table


def _parse_range(text: str) -> np.ndarray:
    try:
        start, stop, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise CohortError(f"--dca-thresholds must be START:STOP:STEP, got {text!r}")
    if not (0 < start <= stop < 1 and step > 0):
        raise CohortError("--dca-thresholds must lie strictly between 0 and 1 with a positive step")
    k = int(math.floor((stop - start) / step + 1e-9))
    return np.round(start + step * np.arange(k + 1), 10)


# ------------------------------------------------------------------ compute
def evaluate_scores(y: pd.Series, pred: pd.DataFrame, scores: list[str], *,
                    threshold=None, n_boot=2000, seed=20240601, hl_groups=10,
                    dca_thresholds=None, prevalence=None, ci_method="wilson",
                    compare=None, with_figures=False) -> tuple[dict, dict]:
    """Compute everything for the joined data; returns (json_dict, figure_inputs)."""
    from her2core import metrics as M

    out_scores: dict = {}
    figs = {"roc": {}, "band": {}, "ci": {}, "youden": {}, "binned": {}, "smooth": {},
            "fits": {}, "dca_models": {}}
    yv = y.to_numpy().astype(int)
    for col in scores:
        s = pred.loc[y.index, col].to_numpy(dtype=float)
        ok = np.isfinite(s)
        ys, ss = yv[ok], s[ok]
        entry: dict = {"n": int(ok.sum()), "positives": int(ys.sum()), "direction": "<",
                       "direction_note": "higher score = HER2-positive (pROC direction '<')"}
        out_scores[col] = entry
        if ys.min(initial=1) == ys.max(initial=0) or ok.sum() < 2:
            entry["error"] = "needs at least one positive and one negative case with a score"
            continue
        dl = M.ci_auc_delong(ys, ss)
        bt = M.ci_auc_bootstrap(ys, ss, n_boot=n_boot, seed=seed)
        entry.update(auc=dl.auc, auc_ci_delong=[dl.lower, dl.upper], auc_var_delong=dl.var,
                     auc_ci_bootstrap=[bt.lower, bt.upper],
                     auc_ci_bootstrap_settings={"n_boot": n_boot, "seed": seed,
                                                "stratified": True, "type": "percentile"})
        try:
            yd = M.youden_metrics(ys, ss, n_boot=n_boot, seed=seed, ci_method=ci_method)
            entry["youden"] = yd.flat()
        except ValueError as exc:
            entry["youden"] = None
            entry["youden_error"] = str(exc)
        if threshold is not None:
            entry["at_threshold"] = M.threshold_metrics(
                ys, ss, threshold, n_boot=n_boot, seed=seed, ci_method=ci_method).flat()
        entry["ci_methods"] = {"proportions": ci_method, "f1": "stratified bootstrap percentile"}
        prob = M.is_probability(ss)
        entry["is_probability"] = bool(prob)
        if with_figures:
            figs["roc"][col] = M.roc_curve(ys, ss)
            figs["band"][col] = M.roc_band(ys, ss, n_boot=min(n_boot, 1000), seed=seed)
            figs["ci"][col] = dl
            if entry.get("youden"):
                figs["youden"][col] = entry["youden"]
        if not prob:
            entry.update(brier=None, calibration_intercept=None, calibration_slope=None,
                         hosmer_lemeshow=None, dca=None,
                         note="values outside [0, 1]: a score, not a probability; calibration, "
                              "Brier, Hosmer-Lemeshow and decision curves not computed")
            continue
        cal = M.calibration_intercept_slope(ys, ss)
        entry.update(brier=M.brier_score(ys, ss), calibration_intercept=cal.intercept,
                     calibration_intercept_ci=list(cal.intercept_ci),
                     calibration_slope=cal.slope, calibration_slope_ci=list(cal.slope_ci))
        if cal.warnings or cal.n_clipped:
            entry["calibration_warnings"] = cal.warnings + (
                [f"{cal.n_clipped} probabilities of exactly 0 or 1 clipped to 1e-12 from the "
                 "bound for the logistic fits"] if cal.n_clipped else [])
        hl = M.hosmer_lemeshow(ys, ss, g=hl_groups)
        if hl.note:
            entry["hosmer_lemeshow"] = {"statistic": None, "df": None, "p": None,
                                        "groups": hl.groups,
                                        "groups_requested": hl.groups_requested,
                                        "error": hl.note}
        else:
            entry["hosmer_lemeshow"] = {"statistic": hl.statistic, "df": hl.df, "p": hl.p,
                                        "groups": hl.groups, "groups_requested": hl.groups_requested}
        dca = M.decision_curves(ys, {col: ss}, thresholds=dca_thresholds, prevalence=prevalence)
        entry["dca"] = dca.models[col].rows()
        figs["dca_models"][col] = ss if bool(ok.all()) else None
        if with_figures:
            figs["binned"][col] = M.binned_calibration(ys, ss)
            figs["smooth"][col] = M.loess_calibration(ys, ss)
            figs["fits"][col] = cal

    result: dict = {"scores": out_scores}
    # treat all / none on every joined case
    yall = yv
    if yall.min(initial=1) != yall.max(initial=0):
        t = np.asarray(dca_thresholds if dca_thresholds is not None else M.default_thresholds())
        prev = prevalence if prevalence is not None else float(yall.mean())
        nb_all = prev - (1 - prev) * t / (1 - t)
        result["treat_all"] = [{"threshold": float(a), "net_benefit": float(b)}
                               for a, b in zip(t, nb_all)]
        result["treat_none"] = [{"threshold": float(a), "net_benefit": 0.0} for a in t]
        if with_figures:
            models = {k: v for k, v in figs["dca_models"].items() if v is not None}
            if models:
                figs["dca"] = M.decision_curves(yall, models, thresholds=t, prevalence=prevalence)
    else:
        result["treat_all"] = []
        result["treat_none"] = []

    # comparisons: paired DeLong on the cases that have both scores
    valid = [c for c in scores if "auc" in out_scores[c]]
    pairs = [tuple(p) for p in compare] if compare else list(itertools.combinations(valid, 2))
    comps = []
    for a, b in pairs:
        rec = {"a": a, "b": b, "method": "delong", "paired": True}
        if a not in pred.columns or b not in pred.columns:
            raise CohortError(f"--compare names a column that is not in the predictions: {a}, {b}")
        sa = pred.loc[y.index, a].to_numpy(dtype=float)
        sb = pred.loc[y.index, b].to_numpy(dtype=float)
        ok = np.isfinite(sa) & np.isfinite(sb)
        rec["n"] = int(ok.sum())
        yy = yv[ok]
        if yy.size < 4 or yy.min(initial=1) == yy.max(initial=0):
            rec["error"] = "not enough cases with both scores"
        else:
            t = M.delong_test_paired(yy, sa[ok], sb[ok])
            rec.update(auc_a=t.auc_a, auc_b=t.auc_b, auc_difference=t.auc_difference,
                       z=t.statistic, p=t.p, ci_difference=list(t.ci_difference))
        comps.append(rec)
    result["comparisons"] = comps
    return result, figs


def compare_groups(y: pd.Series, pred: pd.DataFrame, scores: list[str], table: pd.DataFrame,
                   column: str, truth: Path) -> list[dict]:
    """Unpaired DeLong test (pROC roc.test, paired=FALSE) of each score between
    the two groups of ``column``; cases with the column empty are left out."""
    from her2core.metrics import delong_test_unpaired

    if column not in table.columns:
        raise CohortError(f"no column {column!r} in the cohort table", file=truth)
    g = table.loc[y.index, column]
    levels = sorted(g.dropna().astype(str).unique())
    if len(levels) != 2:
        raise CohortError(f"--compare-groups needs a column with exactly two values among the "
                          f"evaluated cases; {column} has {len(levels)}: "
                          f"{', '.join(levels[:5])}", file=truth)
    gs = g.astype(str).where(g.notna())
    out = []
    for col in scores:
        rec = {"score": col, "column": column, "group_a": levels[0], "group_b": levels[1],
               "method": "delong", "paired": False}
        s = pred.loc[y.index, col]
        parts = []
        for lev in levels:
            sel = (gs == lev) & s.notna()
            parts.append((y[sel].to_numpy().astype(int), s[sel].to_numpy(dtype=float)))
        rec["n_a"], rec["n_b"] = len(parts[0][0]), len(parts[1][0])
        if any(len(yy) < 3 or yy.min() == yy.max() or min(yy.sum(), (1 - yy).sum()) < 2
               for yy, _ in parts):
            rec["error"] = "each group needs at least two positive and two negative cases"
        else:
            t = delong_test_unpaired(parts[0][0], parts[0][1], parts[1][0], parts[1][1])
            rec.update(auc_a=t.auc_a, auc_b=t.auc_b, auc_difference=t.auc_difference,
                       d=t.statistic, df=t.df, p=t.p)
        out.append(rec)
    return out


def evaluation_html(figs: dict, summary: dict) -> str:
    from her2core import DISCLAIMER
    from her2core import plots

    parts = []
    if figs["roc"]:
        parts.append(plots.roc_figure(figs["roc"], figs["band"], figs["ci"], figs["youden"]))
    if figs["binned"]:
        parts.append(plots.calibration_figure(figs["binned"], figs["smooth"], figs["fits"]))
    if figs.get("dca") is not None:
        parts.append(plots.decision_curve_figure(figs["dca"]))
    if figs.get("three_way_roc"):
        fig = plots.roc_figure({f"{k} vs the rest": v for k, v in figs["three_way_roc"].items()})
        fig.update_layout(title="Three-way call: one ROC per class")
        parts.append(fig)
    html = ["<html><head><meta charset='utf-8'><title>HER2 evaluation</title></head><body>",
            f"<p><b>{DISCLAIMER}</b></p>",
            f"<p>n = {summary['n']}, positives = {summary['positives']}, "
            f"excluded: {json.dumps(summary['excluded']['counts'])}</p>"]
    for i, fig in enumerate(parts):
        html.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    html.append("</body></html>")
    return "\n".join(html)




@dataclass
class EvaluationResult:
    """``summary``: the JSON-ready result (the `evaluate` command writes it as is);
    ``figures``: inputs of the plotly figures (ROC, calibration, decision curves)."""
    summary: dict
    figures: dict

    def html(self) -> str:
        return evaluation_html(self.figures, self.summary)


def evaluate_predictions(predictions, truth, *, task: str = "her2", scores=None, threshold=None,
                         n_boot: int = 2000, seed: int = 20240601, hl_groups: int = 10,
                         dca_thresholds: str | np.ndarray = "0.01:0.99:0.01", prevalence=None,
                         ci_method: str = "wilson", compare=None, compare_groups_by=None,
                         with_figures: bool = False, predictions_name: str | None = None,
                         report=None) -> EvaluationResult:
    """Evaluate a predictions table (DataFrame with case_id, or a CSV path) against a cohort
    (folder, cohort.csv or a CSV with labels). ``report(message)`` receives the exclusion
    notes (the command prints them on stderr). Raises CohortError for unusable input."""
    if isinstance(predictions, pd.DataFrame):
        pred = predictions.copy()
        if "case_id" in pred.columns:
            pred["case_id"] = pred["case_id"].astype(str)
            pred = pred.set_index("case_id")
        pred_path = Path(predictions_name or "predictions")
    else:
        pred_path = Path(predictions)
        pred = read_predictions(pred_path)
    scores = pick_scores(pred, scores, pred_path)
    if compare:
        for a, b in compare:
            for c in (a, b):
                if c not in scores:
                    raise CohortError(f"--compare column {c} is not an evaluated score",
                                      file=pred_path, hint=f"scores: {', '.join(scores)}")
    truth_cohort = read_truth(Path(truth))
    labels, bad_rows, table = read_labels(Path(truth), task, truth_cohort)
    if hl_groups < 3:
        raise CohortError(f"--hl-groups must be at least 3, got {hl_groups}")
    if n_boot < 100:
        raise CohortError(f"--n-boot must be at least 100, got {n_boot}")
    dca_t = _parse_range(dca_thresholds) if isinstance(dca_thresholds, str) else \
        np.asarray(dca_thresholds, float)
    if prevalence is not None and not 0 < prevalence < 1:
        raise CohortError(f"--prevalence must be between 0 and 1, got {prevalence}")
    say = report or (lambda msg: log.info("%s", msg))

    in_pred = pd.Index(pred.index)
    no_label = sorted(set(in_pred) - set(labels.index))
    no_pred = sorted(set(labels.index) - set(in_pred))
    joined = [c for c in pred.index if c in labels.index]
    y = labels.loc[joined]
    missing_score = {c: sorted(pred.loc[joined, c][pred.loc[joined, c].isna()].index.tolist())
                     for c in scores}
    excluded = {
        "counts": {"predictions_without_label": len(no_label),
                   "labels_without_predictions": len(no_pred),
                   "truth_rows_with_problems": len(bad_rows),
                   "missing_score": {c: len(v) for c, v in missing_score.items()}},
        "predictions_without_label": no_label,
        "labels_without_predictions": no_pred,
        "truth_rows_with_problems": bad_rows,
        "missing_score": missing_score,
        "task": task,
    }
    for what, ids in (("prediction rows without a label", no_label),
                      ("labelled cases without a prediction row", no_pred),
                      ("truth rows left out for problems", bad_rows)):
        if ids:
            say(f"excluded {len(ids)} {what}: {', '.join(ids[:10])}" + (" ..." if len(ids) > 10 else ""))
    for c, ids in missing_score.items():
        if ids:
            say(f"excluded {len(ids)} cases without a value of {c}: {', '.join(ids[:10])}"
                + (" ..." if len(ids) > 10 else ""))
    if len(y) == 0:
        raise CohortError("no case of the predictions has a label in the truth",
                          file=truth, hint="check that case_id values match")
    if y.nunique() < 2:
        raise CohortError(f"all {len(y)} joined cases have the same label ({int(y.iloc[0])}); "
                          "ROC analysis needs both classes", file=truth)
    if threshold is not None and not math.isfinite(threshold):
        raise CohortError("--threshold must be a finite number")

    result, figs = evaluate_scores(
        y, pred, scores, threshold=threshold, n_boot=n_boot, seed=seed, hl_groups=hl_groups,
        dca_thresholds=dca_t, prevalence=prevalence, ci_method=ci_method, compare=compare,
        with_figures=with_figures)
    if compare_groups_by:
        result["group_comparisons"] = compare_groups(y, pred, scores, table, compare_groups_by,
                                                     Path(truth))
    three, three_curves = three_way_roc(pred, Path(truth), with_figures=with_figures,
                                        cohort=truth_cohort)
    if three is not None:
        result["three_way"] = three
        if with_figures:
            figs["three_way_roc"] = three_curves
        say("three-way call: per-class AUC " + ", ".join(
            f"{k} {v['auc']:.3f}" for k, v in three["classes"].items() if "auc" in v)
            + f" ({three['n']} cases with a three-way label)")
    from her2core import DISCLAIMER, __version__
    summary = {"n": int(len(y)), "positives": int(y.sum()), "task": task,
               "excluded": excluded, **result,
               "settings": {"n_boot": n_boot, "seed": seed, "hl_groups": hl_groups,
                            "dca_thresholds": dca_thresholds if isinstance(dca_thresholds, str)
                            else [float(t) for t in dca_t],
                            "prevalence": prevalence, "threshold": threshold, "ci_method": ci_method,
                            "direction": "<", "dca_rule": "p >= threshold is positive"},
               "provenance": {"her2core": __version__, "numpy": np.__version__,
                              "pandas": pd.__version__, "predictions": str(pred_path),
                              "truth": str(truth)},
               "disclaimer": DISCLAIMER}
    return EvaluationResult(summary=summary, figures=figs)
