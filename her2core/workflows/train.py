"""Train a recipe on a cohort and write a bundle: the library behind `train` and the app.

Honest validation, written into the bundle:

* **internal** validation predictions (``validation_predictions.csv``, set "internal"):
  stratified K-fold cross-validation of the *whole* pipeline (features are fixed;
  every selection step, D-score and the cross-fitted second level is refitted
  without the held-out fold), so each training case gets exactly one prediction
  from a model that never saw it. Decision curves and calibration in the app are
  drawn from these.
* optimism-corrected AUC, calibration slope and Brier score by Harrell's bootstrap
  (:func:`her2core.metrics.validation.bootstrap_validate`, as rms ``validate``), or
  repeated CV;
* with ``where`` (e.g. ``center=B``) the matching cases are held out: the model is
  trained on the others and every held-out case is scored ("external" rows).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from her2core.errors import CohortError, Her2Error

log = logging.getLogger(__name__)

__all__ = ["TrainSettings", "TrainResult", "train_bundle", "TASKS"]

TASKS = ("her2", "her2_low")
ProgressFn = Callable[[int, int, str], None]


@dataclass
class TrainSettings:
    """Everything `train` takes (defaults as the command's)."""
    cohort: Any                                  # folder or a loaded Cohort
    out: str | Path
    recipe: str | dict | None = None             # 000-004, clinical, demo, a file, or a dict
    config: str | Path | None = None             # JSON / YAML merged over the recipe
    tasks: tuple[str, ...] = ("her2",)
    where: str | None = None                     # hold out COL=VALUE (external validation)
    bootstrap: int = 1000
    cv_repeats: int = 0
    oof_folds: int = 5
    random_init: bool = False
    weights_dir: str | None = None
    cache_dir: str | None = None
    device: str | None = None
    n_jobs: int = 1                              # bootstrap worker processes (-1: every core)
    compare_zoo: bool = True
    seed: int = 0
    overwrite: bool = False
    network_events: Callable[[Any], None] | None = None   # FinetuneEvent per epoch (app curves)
    cancel: Any = None                                      # threading.Event: stop fine-tuning
    networks_dir: str | Path | None = None   # keep fine-tuning runs here (resumable); default temp
    resume: bool = False                     # continue / reuse the runs in networks_dir
    executor: Any = None                     # features.distributed.RayExecutor, or None (here)


@dataclass
class TrainResult:
    path: Path
    recipe: str
    tasks: list[str]
    performance: dict                            # task -> apparent / out-of-fold / internal / external
    training: dict                               # task -> n, positives, centres, variables
    errors: list[Her2Error] = field(default_factory=list)   # cases skipped
    warnings: list[str] = field(default_factory=list)
    random_init: bool = False
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """Human-readable summary (what the command prints)."""
        out = [f"bundle: {self.path}  (recipe {self.recipe}, tasks {', '.join(self.tasks)}, "
               f"{self.seconds:.0f} s)"]
        if self.random_init:
            out.append("WEIGHTS: random-init (no pretrained weights; demonstration only)")
        for t in self.tasks:
            p, tr = self.performance[t], self.training[t]
            line = f"{t}: n={tr['n']} positives={tr['positives']} apparent AUC={p['apparent_auc']:.3f}"
            if p.get("out_of_fold"):
                line += f"  out-of-fold AUC={p['out_of_fold']['auc']:.3f}"
            if p.get("internal_validation"):
                line += f"  internal AUC={p['internal_validation']['auc']:.3f}"
            if p.get("external_validation"):
                ev = p["external_validation"]
                line += f"  external AUC ({ev['where']})={ev['auc']:.3f}"
            out.append(line)
            if not tr.get("second_level_variables"):
                out.append(f"{t}: the model kept no predictor (it predicts the training prevalence)")
        return out


class _Stages:
    """Maps the work of several stages onto one progress(done, total, message) scale."""

    def __init__(self, progress: ProgressFn | None, weights: dict[str, float]):
        self.progress, self.total = progress, float(sum(weights.values()))
        self.start, acc = {}, 0.0
        for k, w in weights.items():
            self.start[k] = (acc, w)
            acc += w

    def __call__(self, stage: str, frac: float, message: str) -> None:
        if self.progress is None:
            return
        a, w = self.start[stage]
        done = int(round(1000 * (a + w * min(max(frac, 0.0), 1.0)) / self.total))
        self.progress(done, 1000, message)

    def sub(self, stage: str, what: str) -> ProgressFn:
        return lambda d, n, m="": self(stage, d / max(n, 1), f"{what}: {m or f'{d}/{n}'}")


def _resolve_recipe(settings: TrainSettings, has_images: bool) -> dict:
    from her2core.models.recipes import load_config_over, load_recipe
    r = settings.recipe
    recipe = dict(r) if isinstance(r, dict) else load_recipe(r or ("demo" if has_images else "clinical"))
    if settings.config:
        recipe = load_config_over(recipe, settings.config)
    return recipe


def preflight(cohort, recipe: dict, tasks, oof_folds: int = 5, file=None) -> dict[str, dict]:
    """Refuse, before any feature extraction, a cohort too small for the recipe.

    For every task: the labelled training cases must hold at least
    :func:`~her2core.models.recipes.minimum_per_class` of each class (one Her2Error line
    naming the counts and the minimum otherwise). Returns ``{task: fold plan}``
    (:func:`~her2core.models.recipes.fold_plan`: the folds each CV level will use).
    """
    from her2core.models.recipes import final_estimator, fold_plan, minimum_per_class
    from her2core.models.zoo import OPTIONAL_LIBRARY, require_library
    fm = recipe.get("final_model", "nomogram")
    if fm in OPTIONAL_LIBRARY:
        require_library(OPTIONAL_LIBRARY[fm])      # a missing library: one line, up front
    elif fm != "best":
        final_estimator(fm)
    from her2core.models.recipes import scorer_specs
    for spec in scorer_specs(recipe):
        for nm in [spec.get("classifier")] + list(spec.get("classifiers") or []):
            if nm in OPTIONAL_LIBRARY:
                require_library(OPTIONAL_LIBRARY[nm])
    need, why = minimum_per_class(recipe, oof_folds)
    plans = {}
    for t in tasks:
        if t not in TASKS:
            raise Her2Error(f"unknown task {t!r}", hint="use her2, her2_low or both")
        y = cohort.labels(t).to_numpy()
        counts = np.bincount(y.astype(int), minlength=2) if len(y) else np.zeros(2, int)
        if counts.min() < need:
            raise CohortError(f"recipe {recipe.get('name')}, task {t}: the training cases hold "
                              f"{int(counts[1])} positive(s) and {int(counts[0])} negative(s); "
                              f"the recipe needs at least {need} of each class ({why})",
                              file=file, hint="add cases of the rarer class, train the other "
                                              "task, or use a recipe with fewer folds")
        plans[t] = fold_plan(recipe, int(counts.min()), oof_folds)
    return plans


SPLIT_COLUMN = "recipe_split"


def _random_split(cohort, split: dict, task: str, seed: int):
    """(cohort copy with a ``recipe_split`` column train / test, label): a stratified random
    split of the task's labelled cases (paper 003: 7:3); unlabelled cases are "train"."""
    from sklearn.model_selection import train_test_split
    frac = float(split.get("test_fraction", 0.3))
    s = int(split.get("seed", seed))
    y = cohort.labels(task)
    ids = [str(i) for i in y.index]
    try:
        tr, te = train_test_split(ids, test_size=frac, stratify=y.to_numpy(), random_state=s)
    except ValueError as exc:
        raise CohortError(f"cannot split the cohort {1 - frac:.0%}:{frac:.0%} stratified on "
                          f"{task}: {exc}", hint="add cases or drop the recipe's split") from exc
    label = f"random stratified {round(10 * (1 - frac))}:{round(10 * frac)} split (seed {s})"
    from her2core.cohort import Cohort
    table = cohort.table.copy()
    test = set(te)
    table[SPLIT_COLUMN] = ["test" if str(i) in test else "train" for i in table.index]
    return Cohort(cohort.root, table, list(cohort.problems)), label


def _preprocessing_record(recipe: dict, config) -> dict | None:
    """What the model card says about the images' preprocessing (None: the recipe asks
    none): the recipe's settings, what is applied, where and how."""
    asked = dict(recipe.get("preprocessing") or {})
    if not asked:
        return None
    from her2core.imaging.preprocess import describe_preprocessing
    applied = config.preprocessing if config is not None else {}
    rec = {"recipe": asked, "applied": applied,
           "description": describe_preprocessing(applied.get("resample_mm"),
                                                 applied.get("register_to"))
           or "none applied (the recipe's feature settings ask none, or it reads no images)"}
    if config is not None and applied:
        rec["where"] = ("her2core.imaging.preprocess.preprocess_case, called for every case "
                        "by feature extraction (train, predict, explain, the app) and by "
                        "Grad-CAM; the bundle's feature_config.json carries the settings")
    if asked.get("intensity_normalisation"):
        rec["intensity_normalisation"] = asked["intensity_normalisation"]
    return rec


def _lasso_used(model) -> dict:
    """LASSO CV folds of the fitted model's selection steps (final fit), by scorer."""
    out = {}
    for name, sc in model.fitted_scorers():
        fn = getattr(sc, "lasso_summary", None)
        if callable(fn) and fn() is not None:
            out[name] = fn()
    fn = getattr(model.final_estimator, "lasso_summary", None)
    if callable(fn) and fn() is not None:
        out["clinical"] = fn()
    return out


def _oof_predictions(model, X, y, folds: int, seed: int, stages: _Stages, task: str):
    """Out-of-fold probability (and interval) of every training case from K refits."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold
    k = int(min(folds, np.bincount(y).min()))
    if k < 2:
        return None, None, 0
    p = np.full(len(y), np.nan)
    iv = np.full((len(y), 2), np.nan)
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y)):
        stages("oof", i / k, f"{task}: out-of-fold predictions, fold {i + 1}/{k}")
        m = clone(model).fit(X.iloc[tr], y[tr])
        p[te] = m.predict_proba(X.iloc[te])[:, 1]
        ivf = m.predict_interval(X.iloc[te]) if hasattr(m, "predict_interval") else None
        if ivf is not None:
            iv[te] = ivf
    return p, (iv if np.isfinite(iv).all() else None), k


def _prediction_rows(case_ids, task, set_name, y, p, iv) -> pd.DataFrame:
    d = pd.DataFrame({"case_id": [str(c) for c in case_ids], "task": task, "set": set_name,
                      "y": np.asarray(y, int), "p": np.asarray(p, float)})
    if iv is not None:
        d["p_lo"], d["p_hi"] = iv[:, 0], iv[:, 1]
    return d


def train_bundle(settings: TrainSettings, progress: ProgressFn | None = None) -> TrainResult:
    """Fit the recipe on the cohort, validate it honestly, write the bundle; see the module doc."""
    from her2core.bundle import cohort_summary, predictor_ranges, save_bundle
    from her2core.cohort import Cohort, read_cohort
    from her2core.metrics.roc import auc
    from her2core.metrics.validation import bootstrap_validate
    from her2core.models.recipes import build_model, scorer_specs
    from her2core.models.validation import external_validation, repeated_cv
    from her2core.models.workflow import (compute_features, feature_config_for, model_frame,
                                          nomogram_for)
    from her2core.predictor import INTERVAL_METHOD

    t0 = time.time()
    tasks = list(dict.fromkeys(settings.tasks))
    cohort = settings.cohort if isinstance(settings.cohort, Cohort) else read_cohort(settings.cohort)
    cohort_file = Path(cohort.root)
    recipe = _resolve_recipe(settings, cohort.has_images)
    where = held_out = settings.where
    if not where and recipe.get("split"):
        # the split is a column of this run's cohort copy, so every step (networks too)
        # holds out the same cases through the one `where` path
        cohort, held_out = _random_split(cohort, recipe["split"], tasks[0], settings.seed)
        where = f"{SPLIT_COLUMN}=test"
    if where:
        train_c, test_c = cohort.exclude(where), cohort.subset(where)
        if len(test_c) == 0:
            raise CohortError(f"no case matches --where {where}", file=cohort_file)
        if len(train_c) == 0:
            raise CohortError(f"every case matches --where {where}: nothing left to "
                              "train on", file=cohort_file)
    else:
        train_c, test_c = cohort, None
    # before any feature extraction: the cohort is large enough for the recipe
    plans = preflight(train_c, recipe, tasks, settings.oof_folds, file=cohort_file)
    for t, plan in plans.items():
        if plan["note"]:
            log.info("task %s: %s", t, plan["note"])
    from her2core.models.recipes import network_specs
    nets = network_specs(recipe)
    stages = _Stages(progress, {"networks": 60 if nets else 0.001, "features": 50, "fit": 5,
                                "oof": 15, "internal": 25, "write": 5})

    config = feature_config_for(recipe, random_init=settings.random_init,
                                weights_dir=settings.weights_dir, device=settings.device)
    warnings: list[str] = []
    preprocessing = _preprocessing_record(recipe, config)
    feats = second = None
    weights, prov, errors = {}, {}, []
    if config is not None and not cohort.has_images:
        warnings.append("the cohort has no images: the clinical nomogram was trained alone")
        config = None
    if config is not None:
        wants_icc = any(s.get("icc") for s in scorer_specs(recipe))
        res = compute_features(cohort, config, cache_dir=settings.cache_dir, second_roi=wants_icc,
                               progress=stages.sub("features", "image features"),
                               executor=settings.executor)
        feats, second, errors = res["features"], res["second"], res["errors"]
        weights, prov = res["weights"], res["provenance"]
        if res["warning"]:
            warnings.append(res["warning"])
        if res["second_errors"]:
            warnings.append(f"ICC: no second-ROI features for {len(res['second_errors'])} case(s); "
                            "the ICC is computed on the others")
        if feats.shape[1] == 0 or len(feats) == 0:
            raise Her2Error("no case gave image features", file=cohort_file,
                            hint="see the messages above; fix the cases or use --recipe clinical")
    stages("features", 1.0, "features done")

    # (networks only, paper 001: feats is None and the rows are every case of the cohort)
    X_common = model_frame(cohort, feats, list(recipe.get("clinical_predictors", [])))
    models, training, perf_all, nomos, backgrounds, rows = {}, {}, {}, {}, {}, []
    networks_out: dict = {}
    staging = None
    for ti, task in enumerate(tasks):
        X_all = X_common
        if nets:
            import tempfile
            if settings.networks_dir is not None:
                runs = Path(settings.networks_dir)
                runs.mkdir(parents=True, exist_ok=True)
            else:
                staging = staging or Path(tempfile.mkdtemp(prefix="her2_networks_"))
                runs = staging
            cols, descr, errs = _train_networks(nets, cohort, task, settings, where, runs,
                                                stages.sub("networks", f"{task}: fine-tuning"),
                                                warnings)
            errors += errs
            networks_out.update(descr)
            X_all = X_common.join(cols, how="left")
        y_train = train_c.labels(task)
        ids = [c for c in y_train.index.astype(str) if c in X_all.index]
        if len(ids) < len(y_train):
            log.warning("task %s: %d labelled training case(s) without features skipped",
                        task, len(y_train) - len(ids))
        X, y = X_all.loc[ids], y_train.loc[ids].to_numpy().astype(int)
        if len(np.unique(y)) < 2 or min(np.bincount(y)) < 3:
            raise Her2Error(f"task {task}: training cases need at least 3 of each class "
                            f"(got {np.bincount(y, minlength=2).tolist()})", file=cohort_file)
        model = build_model(recipe, X.columns, icc_second=second, random_state=settings.seed,
                            final_model="nomogram" if recipe.get("final_model") == "best" else None)
        stages("fit", ti / len(tasks), f"{task}: fitting recipe {recipe['name']} on {len(y)} cases")
        model.fit(X, y)
        comparison = None
        if recipe.get("final_model") == "best":
            # paper 003: the zoo classifier with the best nested-CV AUC is the final model
            comparison = _compare_zoo(recipe["compare_zoo"], model, X, y, settings.seed)
            ok = {k: v["cv_auc"] for k, v in comparison.items()
                  if isinstance(v, dict) and np.isfinite(v.get("cv_auc", np.nan))}
            if not ok:
                raise Her2Error(f"task {task}: no classifier of compare_zoo could be evaluated",
                                hint="see the log; pick final_model nomogram or another zoo")
            best = max(ok, key=ok.get)
            comparison["chosen"] = best
            log.info("task %s: final model %s (nested CV AUC %.3f)", task, best, ok[best])
            model = build_model(recipe, X.columns, icc_second=second, random_state=settings.seed,
                                final_model=best)
            model.fit(X, y)
        perf: dict[str, Any] = {"apparent_auc": float(auc(y, model.predict_proba(X)[:, 1]))}
        p_oof, iv_oof, k = _oof_predictions(model, X, y, settings.oof_folds, settings.seed, stages, task)
        if p_oof is not None:
            perf["out_of_fold"] = {"auc": float(auc(y, p_oof)), "folds": k, "n": int(len(y)),
                                   "method": f"stratified {k}-fold CV of the whole pipeline "
                                             "(every selection step refitted without the fold)"}
            rows.append(_prediction_rows(ids, task, "internal", y, p_oof, iv_oof))
        stages("internal", ti / len(tasks), f"{task}: internal validation")
        if settings.cv_repeats:
            iv = repeated_cv(model, X, y, n_splits=5, n_repeats=settings.cv_repeats,
                             random_state=settings.seed)
            perf["internal_validation"] = {"auc": iv.auc, "method": iv.method,
                                           "corrected": iv.corrected, "n_resamples": iv.n_resamples,
                                           "n_failed": iv.n_failed}
        elif settings.bootstrap > 0:
            bv = bootstrap_validate(
                model, X, y, B=settings.bootstrap, seed=settings.seed, n_jobs=settings.n_jobs,
                progress=lambda d, n, ti=ti, task=task: stages(
                    "internal", (ti + d / max(n, 1)) / len(tasks), f"{task}: bootstrap {d}/{n}"))
            perf["internal_validation"] = {
                "auc": bv.corrected["auc"], "method": bv.method + f", B={bv.B}",
                "apparent": bv.apparent, "optimism": bv.optimism, "corrected": bv.corrected,
                "n_resamples": bv.n_success, "n_failed": bv.n_failed}
        if test_c is not None:
            y_test = test_c.labels(task)
            tids = [c for c in y_test.index.astype(str) if c in X_all.index]
            if tids:
                Xt, yt = X_all.loc[tids], y_test.loc[tids].to_numpy().astype(int)
                pt = model.predict_proba(Xt)[:, 1]
                rows.append(_prediction_rows(tids, task, "external", yt, pt,
                                             model.predict_interval(Xt)))
                if len(np.unique(yt)) == 2:
                    ev = external_validation(model, Xt, yt, label=held_out)
                    perf["external_validation"] = {"auc": ev.auc, "where": held_out, "n": ev.n,
                                                   "positives": ev.n_positive, **ev.extra,
                                                   "brier": ev.corrected["brier"],
                                                   "calibration_slope": ev.corrected["slope"]}
                else:
                    warnings.append(f"task {task}: held-out cases ({held_out}) lack both "
                                    "classes: no external AUC (their predictions are stored)")
        if comparison is not None:
            perf["model_comparison"] = comparison
        elif recipe.get("compare_zoo") and settings.compare_zoo:
            perf["model_comparison"] = _compare_zoo(recipe["compare_zoo"], model, X, y, settings.seed)
        fin = model.final_estimator
        if not model.is_nomogram():
            perf["final_model"] = fin.summary() if hasattr(fin, "summary") else \
                {"model": type(fin).__name__}
            warnings.append(f"task {task}: the final model is {perf['final_model']['model']}, not a "
                            "logistic nomogram: no nomogram and no probability interval")
        else:
            perf["final_model"] = {"model": "nomogram (logistic regression)"}
        models[task] = model
        centres = train_c.table.loc[[i for i in train_c.table.index if str(i) in set(ids)], "center"] \
            if "center" in train_c.table.columns else None
        summ = cohort_summary(y, None if centres is None else centres.to_numpy(), task)
        summ["predictor_ranges"] = predictor_ranges(model.second_level(X))
        summ["selected"] = {name: sc.selected_features() for name, sc in model.fitted_scorers()
                            if hasattr(sc, "selected_features")}
        summ["second_level_variables"] = model.used_variables()
        folds = dict(plans[task])
        folds["lasso_used"] = _lasso_used(model)
        summ["folds"] = folds
        if folds["note"]:
            warnings.append(f"task {task}: {folds['note']}")
        fewer = {k: v for k, v in folds["lasso_used"].items() if v["used"] < v["requested"]}
        if fewer:
            line = (f"task {task}: LASSO CV at the final fit used fewer folds than asked: "
                    + "; ".join(f"{k} {v['used']} of {v['requested']} ({v['reason']})"
                                for k, v in fewer.items()))
            log.info(line)
            warnings.append(line)
        summ["icc"] = {name: sc.icc_summary() for name, sc in model.fitted_scorers()
                       if hasattr(sc, "icc_summary") and sc.icc_summary() is not None}
        training[task] = summ
        perf_all[task] = perf
        nomos[task] = nomogram_for(model, X)
        backgrounds[task] = model.out_of_fold_second_level(X).reset_index(drop=True)
    stages("internal", 1.0, "validation done")

    random_init = any(str(v).startswith("random-init") for v in weights.values()) or \
        any(info.get("random_init") for info, _ in networks_out.values())
    backbones = {name: {"weights": ident, "settings": prov.get("backbones", {}).get(name)}
                 for name, ident in weights.items()}
    head = perf_all[tasks[0]]
    card = {
        "model": f"recipe {recipe['name']}: {recipe.get('paper', '')}",
        "recipe": recipe,
        "description": recipe.get("description", ""),
        "data": {"cohort": str(cohort.root), "where_held_out": held_out,
                 "training": {t: {k: v for k, v in training[t].items() if k != "predictor_ranges"}
                              for t in tasks},
                 "skipped_cases": [str(e) for e in errors]},
        "performance": perf_all,
        "internal_validation": head.get("internal_validation"),
        "validation_predictions": "validation_predictions.csv: internal = out-of-fold "
                                  "(each training case once), external = held-out cases",
        "interval": INTERVAL_METHOD,
        "preprocessing": preprocessing,
        "random_init": random_init,
        "weights": weights,
        "warnings": warnings,
        "seed": settings.seed,
    }
    if "external_validation" in head:
        card["external_validation"] = head["external_validation"]
    stages("write", 0.5, "writing the bundle")
    vp = pd.concat(rows, ignore_index=True) if rows else None
    if networks_out:
        card["networks"] = {k: info for k, (info, _) in networks_out.items()}
    try:
        path = save_bundle(settings.out, models, model_card=card, training=training,
                           feature_config=config, backbones=backbones, nomograms=nomos,
                           validation_predictions=vp, backgrounds=backgrounds,
                           networks=networks_out or None, overwrite=settings.overwrite)
    finally:
        if staging is not None:
            import shutil
            shutil.rmtree(staging, ignore_errors=True)
    stages("write", 1.0, "done")
    return TrainResult(path=Path(path), recipe=str(recipe["name"]), tasks=tasks,
                       performance=perf_all, training=training, errors=list(errors),
                       warnings=warnings, random_init=random_init, seconds=time.time() - t0)


def _network_settings(spec: dict, task: str, settings: TrainSettings):
    """FinetuneSettings of a recipe network: its preset, its overrides, this run's choices."""
    from her2core.finetune import FinetuneSettings
    over = dict(spec.get("settings") or {})
    over.update(sequence=spec["sequence"], arch=spec["arch"], task=task, seed=settings.seed)
    if settings.random_init:
        over["random_init"] = True
    if settings.weights_dir:
        over["weights_dir"] = str(settings.weights_dir)
    if settings.device:
        over["device"] = settings.device
    if spec.get("preset"):
        return FinetuneSettings.preset(spec["preset"], **over)
    return FinetuneSettings(**over)


def _train_networks(nets, cohort, task, settings: TrainSettings, where, staging: Path, progress,
                    warnings: list[str]):
    """Fine-tune the recipe's networks for one task (their own stratified K-fold).

    Returns (columns: the out-of-fold logit / penultimate features of every training case
    and the ensemble's of the held-out cases, {key: (description, folder)}, errors).
    Training cases are the task's labelled cases outside ``where``, the same as
    the second level's."""
    from her2core.features.networks import oof_columns
    from her2core.finetune import FineTunedEnsemble, finetune

    frames, out, errors = [], {}, []
    for i, spec in enumerate(nets):
        fs = _network_settings(spec, task, settings)
        key = f"{spec['name']}_{task}"
        folder = staging / key
        sub = (lambda d, n, m="", i=i: progress(i * 1000 + int(1000 * d / max(n, 1)),
                                                 1000 * len(nets), f"{spec['name']}: {m}"))

        def events(ev, sub=sub):
            sub(ev.done, ev.total, ev.message)
            if settings.network_events is not None:
                settings.network_events(ev)

        res = finetune(cohort, fs, folder, where=where, progress=events,
                       cancel=settings.cancel, resume=settings.resume)
        ens = FineTunedEnsemble.load(folder)
        cols, errs = oof_columns(res, ens, cohort, features=bool(spec.get("features")),
                                 name=spec["name"])
        frames.append(cols)
        errors += list(errs)
        if res.warning:
            warnings.append(f"network {spec['name']} ({task}): {res.warning}")
        out[key] = ({"name": spec["name"], "task": task, "sequence": fs.sequence, "arch": fs.arch,
                     "column": f"ft__{spec['name']}", "features": bool(spec.get("features")),
                     "random_init": bool(ens.random_init), "weights": ens.weights_identity,
                     "oof_auc": res.oof_auc, "heldout_auc": res.heldout_auc,
                     "folds": fs.folds, "epochs": fs.epochs, "size": fs.size}, folder)
    cols = pd.concat(frames, axis=1) if frames else pd.DataFrame()
    return cols, out, errors


def _compare_zoo(names, model, X, y, seed) -> dict:
    """Nested CV AUC of model-zoo classifiers on the second-level inputs.

    Inputs: the out-of-fold block scores + clinical predictors of the fitted
    StackedNomogram (papers 002 / 003 compare classifiers on such inputs); outer
    stratified 5-fold CV, inner 5-fold grid search. The out-of-fold scores were
    computed once on all training cases, so this comparison is approximate.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from her2core.models.zoo import make_zoo_model

    Z = model.out_of_fold_second_level(X)
    # folds adapt to the minority class (outer k, inner k on the outer training part)
    m = int(np.bincount(y).min())
    k_out = max(2, min(5, m))
    k_in = max(2, min(5, m - -(-m // k_out)))
    out = {"method": f"nested CV: outer stratified {k_out}-fold, inner {k_in}-fold grid search, "
                     "ROC AUC, on out-of-fold block scores + clinical predictors"}
    for name in names:
        t = time.time()
        try:
            s = cross_val_score(make_zoo_model(name, cv=k_in, random_state=seed), Z, y,
                                cv=StratifiedKFold(k_out, shuffle=True, random_state=seed),
                                scoring="roc_auc", error_score="raise")
            out[name] = {"cv_auc": float(np.mean(s)), "sd": float(np.std(s, ddof=1)),
                         "seconds": round(time.time() - t, 1)}
        except Exception as exc:  # one classifier failing does not stop training
            log.warning("model zoo %s failed: %s", name, exc)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        log.info("model zoo %s: %s", name, out[name])
    return out
