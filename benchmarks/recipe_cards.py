#!/usr/bin/env python3
"""Model-card summaries of recipes 000-004 trained on a tiny synthetic MRI + US cohort.

Evidence for issue 13's closing note: every paper recipe trains end to end, and its model
card says what the recipe built. The run is the CI test's (tests/test_recipes_e2e.py:
the same cohort, its ``tiny()`` sizes, random-init weights, no bootstrap, 2-fold
validation, centre B held out), with one difference: recipe 000 reads T1, T2 and DCE
(the test keeps DCE only to stay fast), so its rigid registration of T1 / T2 to DCE and
the resampling to 0.5 x 0.5 x 3 mm run on every case.

Numbers are from random-init networks on a 24-case synthetic cohort: they show that the
pipeline runs and what it selects, not how well any recipe predicts HER2.

Writes benchmarks/results/recipe_cards.json and recipe_cards.md.

    OMP_NUM_THREADS=1 python3 benchmarks/recipe_cards.py            # all five, ~15 min on 1 core
    OMP_NUM_THREADS=1 python3 benchmarks/recipe_cards.py --recipes 002 003

Besides the five recipes as written, 003 is run once more with ``final_model: lightgbm``
(its DLR model in the paper) and one case explained: the card says there is no nomogram
and SHAP is TreeExplainer's, additive to the model's log-odds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

OUT = HERE / "benchmarks" / "results"


def card_summary(path: Path, seconds: float) -> dict:
    """What the model card of the bundle at ``path`` says, for the summary table."""
    from her2core.bundle import load_bundle
    card = json.loads((path / "model_card.json").read_text())
    b = load_bundle(path)
    m = b.models["her2"]
    tr = card["data"]["training"]["her2"]
    perf = card["performance"]["her2"]
    comp = perf.get("model_comparison")
    scorers = {}
    for col, sc in m.fitted_scorers():
        info = {"selected_features": len(sc.selected_features())
                if hasattr(sc, "selected_features") else None,
                "network": type(sc).__name__ == "NetworkScore"}
        coef = sc.coefficients() if hasattr(sc, "coefficients") else {}
        if isinstance(coef, dict) and isinstance(coef.get("classifier"), dict):
            info["classifier"] = coef["classifier"].get("model")
        scorers[col] = info
    return {
        "recipe": card["recipe"]["name"], "paper": card["recipe"].get("paper", ""),
        "seconds": round(seconds, 1), "random_init": card["random_init"],
        "training": {"n": tr["n"], "positives": tr["positives"]},
        "scorers_offered": list(m.score_columns()), "scorers": scorers,
        "networks": {k: {kk: v.get(kk) for kk in ("arch", "sequence", "folds", "epochs", "size",
                                                  "oof_auc")}
                     for k, v in (card.get("networks") or {}).items()},
        "clinical_offered": list(m.clinical_inputs()),
        "second_level_variables": list(tr["second_level_variables"]),
        "final_model": perf["final_model"],
        "nomogram": b.nomogram("her2") is not None,
        "folds": {"out_of_fold": tr["folds"]["out_of_fold"], "second_level":
                  tr["folds"]["second_level"], "lasso": tr["folds"]["lasso"],
                  "lasso_used": tr["folds"].get("lasso_used"),
                  "networks": tr["folds"].get("networks")},
        "folds_note": tr["folds"]["note"],
        "icc": tr.get("icc") or None,
        "preprocessing": card.get("preprocessing"),
        "model_comparison": ({k: (v["cv_auc"] if isinstance(v, dict) and "cv_auc" in v else v)
                              for k, v in comp.items() if k != "method"} if comp else None),
        "auc": {"apparent": perf.get("apparent_auc"),
                "out_of_fold": (perf.get("out_of_fold") or {}).get("auc"),
                "external_center_B": (perf.get("external_validation") or {}).get("auc")},
        "warnings": card["warnings"],
    }


def preprocessing_of(path: Path, cohort: Path, case: str) -> dict:
    """The registration / resampling steps the bundle's feature settings apply to a case."""
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.features.extract import load_case, preprocessed
    cfg = load_bundle(path).inference_config()
    images, masks = load_case(read_cohort(cohort).files(case), cfg)
    return {"case": case, "steps": preprocessed(case, images, masks, cfg).steps}


def explained(path: Path, cohort: Path, case: str, out: Path) -> dict:
    """`explain` of one case: the SHAP method, its additivity and the notes."""
    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.workflows.explain import explain_case
    r = explain_case(load_bundle(path), read_cohort(cohort), case, out=out, gradcam=False)
    pc = r.contributions
    return {"case": case, "probability": r.probability, "method": pc.method,
            "scale": pc.scale, "approximate": pc.approximate,
            "additivity_error": pc.additivity_error, "note": pc.note, "notes": r.summary["notes"],
            "nomogram": r.summary["nomogram"]}


def markdown(results: dict) -> str:
    lines = ["# Recipe model cards on a tiny synthetic cohort", "",
             f"Run {results['date']} on {results['machine']} (load average at start "
             f"{results['loadavg_start']}, at end {results['loadavg_end']}). Cohort: "
             f"{results['cohort']}. Random-init weights, no bootstrap: the AUCs say nothing "
             "about HER2; the cards show what each recipe builds.", ""]
    for name, r in results["recipes"].items():
        if "error" in r:
            lines += [f"## {name}", "", f"FAILED: {r['error']}", ""]
            continue
        lines += [f"## {name}: {r['paper'].split(': ', 1)[-1]}"
                  + (f" ({r['variant']})" if r.get("variant") else ""), "",
                  "| | |", "| --- | --- |",
                  f"| training cases | {r['training']['n']} ({r['training']['positives']} "
                  "positive), centre A |",
                  f"| block scores offered | {', '.join(r['scorers_offered']) or 'none'} |"]
        for col, info in r["scorers"].items():
            if info.get("network"):
                lines.append(f"| {col} | the fine-tuned network's out-of-fold logit |")
                continue
            extra = f", classifier {info['classifier']}" if info.get("classifier") else ""
            lines.append(f"| {col} | {info['selected_features']} selected feature(s){extra} |")
        if r["networks"]:
            lines.append("| networks | " + "; ".join(
                f"{k}: {v['arch']} on {v['sequence']}, {v['folds']} folds x {v['epochs']} "
                f"epoch(s) at {v['size']} px" for k, v in r["networks"].items()) + " |")
        lines += [f"| clinical predictors offered | {', '.join(r['clinical_offered']) or 'none'} |",
                  f"| second-level variables kept | "
                  f"{', '.join(r['second_level_variables']) or 'none (training prevalence)'} |",
                  f"| final model | {r['final_model'].get('model')}"
                  + (" (nomogram)" if r["nomogram"] else
                     " (no nomogram: it kept no predictor)" if not r["second_level_variables"]
                     else " (no nomogram: not a logistic model)")
                  + (f", tuned {r['final_model']['best_params']}"
                     if r["final_model"].get("best_params") else "") + " |"]
        if r["model_comparison"]:
            lines.append("| model comparison (nested CV AUC) | " + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in r["model_comparison"].items()) + " |")
        if r["preprocessing"]:
            lines.append(f"| preprocessing | {r['preprocessing']['description']} |")
        if r.get("preprocessing_case"):
            pc = r["preprocessing_case"]
            lines.append(f"| preprocessing of {pc['case']} | " + "; ".join(
                f"{k}: " + (f"registered to {v['registered_to']}, translation "
                            f"{v['translation_mm']} mm, rotation {v['rotation_deg']} deg, "
                            if "registered_to" in v else "reference, ")
                + f"grid {v['size']} voxels of {v['spacing']} mm"
                for k, v in pc["steps"].items()) + " |")
        if r.get("explain"):
            e = r["explain"]
            lines.append(f"| explain {e['case']} | p = {e['probability']:.3f}; SHAP {e['method']} "
                         f"({e['scale']}), additivity error {e['additivity_error']:.1e}; "
                         + " ".join(e["notes"]) + " |")
        if r["icc"]:
            lines.append(f"| ICC filter ({next(iter(r['icc'].values()))['kind']} >= "
                         f"{next(iter(r['icc'].values()))['threshold']}) | " + "; ".join(
                             f"{k}: {v['kept']} of {v['of']} kept on {v['cases']} cases"
                             for k, v in r["icc"].items()) + " |")
        f = r["folds"]
        lines.append(f"| folds | out-of-fold {f['out_of_fold']['used']} of "
                     f"{f['out_of_fold']['requested']}"
                     + (f", second level {f['second_level']['used']} of "
                        f"{f['second_level']['requested']}" if f["second_level"] else "")
                     + (f", LASSO {f['lasso']['final_fit']} at the final fit / "
                        f"{f['lasso']['deepest']} deepest of {f['lasso']['requested']}"
                        if f["lasso"] else "") + " |")
        if r["folds_note"]:
            lines.append(f"| folds note | {r['folds_note']} |")
        a = r["auc"]
        lines.append("| AUC (random-init, synthetic) | " + ", ".join(
            f"{k} {v:.3f}" for k, v in a.items() if v is not None) + " |")
        lines += [f"| seconds | {r['seconds']} |", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", default=["000", "001", "002", "003", "004"])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--no-tree", action="store_true",
                    help="skip the extra run of 003 with a LightGBM final model")
    a = ap.parse_args(argv)
    import copy
    import logging
    import torch
    from her2core.models.recipes import load_recipe
    from her2core.synthetic import make_cohort
    from her2core.workflows.train import TrainSettings, train_bundle
    from tests.test_recipes_e2e import tiny
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="recipe_cards_"))
    cohort_args = dict(n=24, seed=5, centres=2, modalities="both", shape=(24, 24, 6),
                       us_size=48, prevalence=0.5, signal=2.0, reader2_fraction=0.5)
    cohort = make_cohort(work / "cohort", **cohort_args)
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
               "cpus": os.cpu_count(), "loadavg_start": [round(v, 2) for v in os.getloadavg()],
               "cohort": "her2core.synthetic.make_cohort(" + ", ".join(
                   f"{k}={v!r}" for k, v in cohort_args.items()) + "), centre B held out",
               "settings": "tests/test_recipes_e2e.py tiny(): 32 px inputs, 1 epoch, 2 folds, "
                           "random-init, bootstrap 0, oof_folds 2, where center=B; recipe 000 "
                           "on T1, T2 and DCE",
               "recipes": {}}
    runs = [(n, n, None) for n in a.recipes]
    if "003" in a.recipes and not a.no_tree:
        runs.append(("003-lightgbm", "003", "final_model lightgbm (a tree final model)"))
    for key, name, variant in runs:
        full = load_recipe(name)
        r = tiny(full)
        if name == "000":      # all three sequences: registration to DCE has work to do
            r["features"]["sequences"] = list(full["features"]["sequences"])
            r["features"]["backbones"] = copy.deepcopy(full["features"]["backbones"])
        if key == "003-lightgbm":
            r["final_model"] = "lightgbm"
        t0 = time.time()
        print(f"recipe {key} ...", flush=True)
        try:
            res = train_bundle(TrainSettings(cohort=cohort, out=work / f"bundle_{key}", recipe=r,
                                             bootstrap=0, random_init=True, device="cpu",
                                             oof_folds=2, where="center=B"))
            s = card_summary(res.path, time.time() - t0)
            s["variant"] = variant
            if name == "000":
                s["preprocessing_case"] = preprocessing_of(res.path, cohort, "syn-0000")
            if key == "003-lightgbm":
                s["explain"] = explained(res.path, cohort, "syn-0003", work / "explain")
            results["recipes"][key] = s
        except Exception as exc:  # noqa: BLE001 - recorded, the others still run
            results["recipes"][key] = {"error": f"{type(exc).__name__}: {exc}",
                                       "seconds": round(time.time() - t0, 1)}
        print(f"recipe {key}: {time.time() - t0:.0f} s", flush=True)
    results["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "recipe_cards.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (a.out / "recipe_cards.md").write_text(markdown(results))
    print(f"wrote {a.out / 'recipe_cards.json'} and recipe_cards.md (work folder {work})")
    return 0 if all("error" not in r for r in results["recipes"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
