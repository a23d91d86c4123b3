"""`python -m her2core train`: fit a recipe on a cohort and write a model bundle.

Internal validation refits the whole pipeline (features are fixed; every
selection step, D-score, the cross-fitted second level) in each of B bootstrap
resamples (optimism correction, as rms validate) or in repeated CV. With
``--where center=B`` the cases matching the condition are held out: the model
is trained on the others and validated externally on them.
"""
from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from her2core.errors import CohortError, Her2Error

NAME = "train"
HELP = "train a model (recipe 000-004, clinical, demo) on a cohort and write a bundle"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", required=True, help="cohort folder (cohort.csv + cases/)")
    parser.add_argument("--where", default=None,
                        help="hold out the cases matching COL=VALUE (e.g. center=B) for external "
                             "validation; train on the rest")
    parser.add_argument("--task", default="her2",
                        help="her2, her2_low, or both separated by a comma (default her2)")
    parser.add_argument("--recipe", default=None,
                        help="000, 001, 002, 003, 004, clinical, demo or a recipe file "
                             "(default: demo when the cohort has images, else clinical)")
    parser.add_argument("--config", default=None,
                        help="JSON/YAML merged over the recipe (features, scorer_settings, ...)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap resamples for optimism-corrected internal validation "
                             "(default 1000; 0 = none)")
    parser.add_argument("--cv-repeats", type=int, default=0,
                        help="use repeated 5-fold CV with this many repeats instead of the bootstrap")
    parser.add_argument("--random-init", action="store_true",
                        help="use randomly initialised backbones (explicit; recorded in the bundle)")
    parser.add_argument("--weights-dir", default=None, help="folder with local backbone weights")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel bootstrap workers")
    parser.add_argument("--no-zoo", action="store_true",
                        help="skip the model-zoo comparison of recipes that list compare_zoo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")


def run(args) -> int:
    from her2core.bundle import cohort_summary, predictor_ranges, save_bundle
    from her2core.cohort import read_cohort
    from her2core.models.recipes import build_model, load_config_over, load_recipe
    from her2core.models.validation import bootstrap_optimism, external_validation, repeated_cv
    from her2core.models.workflow import (compute_features, feature_config_for, model_frame,
                                          nomogram_for)

    t0 = time.time()
    tasks = [t.strip() for t in str(args.task).split(",") if t.strip()]
    for t in tasks:
        if t not in ("her2", "her2_low"):
            raise Her2Error(f"unknown task {t!r}", hint="use her2, her2_low or her2,her2_low")
    cohort = read_cohort(args.cohort)
    recipe = load_recipe(args.recipe or ("demo" if cohort.has_images else "clinical"))
    if args.config:
        recipe = load_config_over(recipe, args.config)
    if args.where:
        train_c, test_c = cohort.exclude(args.where), cohort.subset(args.where)
        if len(test_c) == 0:
            raise CohortError(f"no case matches --where {args.where}", file=args.cohort)
        if len(train_c) == 0:
            raise CohortError(f"every case matches --where {args.where}: nothing left to train on",
                              file=args.cohort)
    else:
        train_c, test_c = cohort, None

    config = feature_config_for(recipe, random_init=args.random_init, weights_dir=args.weights_dir,
                                device=args.device)
    feats = second = None
    weights, prov, errors = {}, {}, []
    if config is not None and not cohort.has_images:
        log.warning("the cohort has no images: training the clinical nomogram alone")
        config = None
    if config is not None:
        from her2core.models.recipes import scorer_specs
        wants_icc = any(s.get("icc") for s in scorer_specs(recipe))
        res = compute_features(cohort, config, cache_dir=args.cache_dir, second_roi=wants_icc)
        feats, second, errors = res["features"], res["second"], res["errors"]
        weights, prov = res["weights"], res["provenance"]
        if res["warning"]:
            print("WARNING: " + res["warning"])
        if res["second_errors"]:
            print(f"ICC: no second-ROI features for {len(res['second_errors'])} case(s); the ICC "
                  "is computed on the others")
        if feats.shape[1] == 0 or len(feats) == 0:
            raise Her2Error("no case gave image features", file=args.cohort,
                            hint="see the messages above; fix the cases or use --recipe clinical")

    clinical_cols = list(recipe.get("clinical_predictors", []))
    X_all = model_frame(cohort, feats, clinical_cols)
    models, training, card_perf, nomos = {}, {}, {}, {}
    for task in tasks:
        y_train = train_c.labels(task)
        ids = [c for c in y_train.index.astype(str) if c in X_all.index]
        if len(ids) < len(y_train):
            log.warning("task %s: %d labelled training case(s) without features skipped",
                        task, len(y_train) - len(ids))
        X, y = X_all.loc[ids], y_train.loc[ids].to_numpy()
        if len(np.unique(y)) < 2 or min(np.bincount(y)) < 3:
            raise Her2Error(f"task {task}: training cases need at least 3 of each class "
                            f"(got {np.bincount(y, minlength=2).tolist()})", file=args.cohort)
        model = build_model(recipe, X.columns, icc_second=second, random_state=args.seed)
        log.info("task %s: fitting recipe %s on %d cases (%d positive)", task, recipe["name"],
                 len(y), int(y.sum()))
        model.fit(X, y)
        perf = {}
        if args.cv_repeats:
            iv = repeated_cv(model, X, y, n_splits=5, n_repeats=args.cv_repeats,
                             random_state=args.seed)
        elif args.bootstrap > 0:
            iv = bootstrap_optimism(model, X, y, n_bootstrap=args.bootstrap, random_state=args.seed,
                                    n_jobs=args.n_jobs, fitted=model)
        else:
            iv = None
        if iv is not None:
            perf["internal_validation"] = {
                "auc": iv.auc, "method": iv.method, "apparent": iv.apparent,
                "optimism": iv.optimism, "corrected": iv.corrected,
                "n_resamples": iv.n_resamples, "n_failed": iv.n_failed}
        apparent = float(_auc(y, model.predict_proba(X)[:, 1]))
        perf["apparent_auc"] = apparent
        if test_c is not None:
            y_test = test_c.labels(task)
            tids = [c for c in y_test.index.astype(str) if c in X_all.index]
            if len(tids) and len(np.unique(y_test.loc[tids])) == 2:
                ev = external_validation(model, X_all.loc[tids], y_test.loc[tids].to_numpy(),
                                         label=args.where)
                perf["external_validation"] = {"auc": ev.auc, "where": args.where, "n": ev.n,
                                               "positives": ev.n_positive, **ev.extra,
                                               "brier": ev.corrected["brier"],
                                               "calibration_slope": ev.corrected["slope"]}
            else:
                log.warning("task %s: held-out cases (%s) lack both classes: no external AUC",
                            task, args.where)
        if recipe.get("compare_zoo") and not args.no_zoo:
            perf["model_comparison"] = _compare_zoo(recipe["compare_zoo"], model, X, y, args.seed)
        models[task] = model
        centres = train_c.table.loc[[i for i in train_c.table.index if str(i) in set(ids)], "center"] \
            if "center" in train_c.table.columns else None
        summ = cohort_summary(y, None if centres is None else centres.to_numpy(), task)
        summ["predictor_ranges"] = predictor_ranges(model.second_level(X))
        summ["selected"] = {name: list(sc.selected_features_)
                            for name, sc in model.scorers_ if hasattr(sc, "selected_features_")}
        summ["second_level_variables"] = list(model.final_.variables_)
        summ["icc"] = {name: {"kept": int(sc.pipeline_.named_steps["icc"].support_.sum()),
                              "of": len(sc.columns_),
                              "cases": int(sc.pipeline_.named_steps["icc"].n_matched_),
                              "threshold": sc.icc_threshold, "kind": sc.icc_kind}
                       for name, sc in model.scorers_
                       if hasattr(sc, "pipeline_") and "icc" in sc.pipeline_.named_steps}
        training[task] = summ
        card_perf[task] = perf
        nomos[task] = nomogram_for(model, X)

    random_init = any(v == "random-init" for v in weights.values())
    backbones = {name: {"weights": ident, "settings": prov.get("backbones", {}).get(name)}
                 for name, ident in weights.items()}
    head = card_perf[tasks[0]]
    card = {
        "model": f"recipe {recipe['name']}: {recipe.get('paper', '')}",
        "recipe": recipe,
        "description": recipe.get("description", ""),
        "data": {"cohort": str(args.cohort), "where_held_out": args.where,
                 "training": {t: {k: v for k, v in training[t].items() if k != "predictor_ranges"}
                              for t in tasks},
                 "skipped_cases": [str(e) for e in errors]},
        "performance": card_perf,
        "internal_validation": head.get("internal_validation"),
        "random_init": random_init,
        "weights": weights,
        "warnings": ([prov.get("warning")] if prov.get("warning") else []),
        "seed": args.seed,
    }
    if "external_validation" in head:
        card["external_validation"] = head["external_validation"]
    save_bundle(args.out, models, model_card=card, training=training,
                feature_config=config.to_dict() if config is not None else None,
                backbones=backbones, nomograms=nomos, overwrite=args.overwrite)
    print(f"bundle: {args.out}  (recipe {recipe['name']}, tasks {', '.join(tasks)}, "
          f"{time.time() - t0:.0f} s)")
    if random_init:
        print("WEIGHTS: random-init (no pretrained weights; demonstration only)")
    for t in tasks:
        p = card_perf[t]
        line = f"{t}: n={training[t]['n']} positives={training[t]['positives']} " \
               f"apparent AUC={p['apparent_auc']:.3f}"
        if p.get("internal_validation"):
            line += f"  internal AUC={p['internal_validation']['auc']:.3f}"
        if p.get("external_validation"):
            line += f"  external AUC ({args.where})={p['external_validation']['auc']:.3f}"
        print(line)
    if errors:
        bad = sorted({str(e.case_id) for e in errors if getattr(e, "case_id", None)})
        print(f"{len(bad)} case(s) skipped: {', '.join(bad)} (model_card.json data.skipped_cases)")
        for e in errors:
            print(f"  {e}")
    return 0


def _compare_zoo(names, model, X, y, seed) -> dict:
    """Nested CV AUC of model-zoo classifiers on the second-level inputs.

    Inputs: the out-of-fold block scores + clinical predictors of the fitted
    StackedNomogram (papers 002 / 003 compare classifiers on such inputs); outer
    stratified 5-fold CV, inner 5-fold grid search. The out-of-fold scores were
    computed once on all training cases, so this comparison is approximate.
    """
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from her2core.models.zoo import make_zoo_model

    Z = pd.concat([model.oof_scores_, X[model.clinical_columns_]], axis=1)
    out = {"method": "nested CV: outer stratified 5-fold, inner 5-fold grid search, ROC AUC, "
                     "on out-of-fold block scores + clinical predictors"}
    for name in names:
        t = time.time()
        try:
            s = cross_val_score(make_zoo_model(name, cv=5, random_state=seed), Z, y,
                                cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                                scoring="roc_auc", error_score="raise")
            out[name] = {"cv_auc": float(np.mean(s)), "sd": float(np.std(s, ddof=1)),
                         "seconds": round(time.time() - t, 1)}
        except Exception as exc:  # one classifier failing does not stop training
            log.warning("model zoo %s failed: %s", name, exc)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        log.info("model zoo %s: %s", name, out[name])
    return out


def _auc(y, p):
    from her2core.models.validation import auc
    return auc(y, p)
