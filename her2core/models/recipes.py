"""Recipes: the five papers' pipelines as JSON presets (her2core/models/recipes/*.json).

A recipe holds

- ``features``: a FeatureConfig dict (None: no images, clinical model only);
- ``scorers``: a list of block scorers ``{"name", "block", "sequences", "pca", ...}``
  or ``"per_backbone"`` (one D-score per backbone of the feature config, across
  its sequences, as paper 000);
- ``scorer_settings``: defaults for every scorer (``icc``, ``icc_threshold``,
  ``univariate``, ``alpha``, ``corr_threshold``, ``lasso_rule``, ``lasso_cv``, ``C``);
- ``clinical_predictors``, ``clinical_selection`` ("univariate" / "lasso" / "none"),
  ``stepwise``;
- optionally ``compare_zoo``: model-zoo names compared by nested CV (model card);
- optionally ``networks``: fine-tuned networks (papers 001, 003, 004), each
  ``{"name", "sequence", "arch", "preset"?, "settings"?: FinetuneSettings overrides,
  "features"?: true to add its penultimate features as a block ``ft_<name>``}``. Each is
  trained per task by her2core.finetune (its own K-fold: out-of-fold logits for the
  training cases) during `train`; its logit enters the second level as the score
  ``dscore_ft_<name>`` (:class:`~her2core.models.network.NetworkScore`).

``build_model(recipe, columns, icc_second=None)`` turns a recipe into one
:class:`~her2core.models.nomogram_model.StackedNomogram` for the columns at hand:
scorers whose block has no column (e.g. a cohort without images) are left out
with a log line, clinical predictors absent from the cohort likewise.
A ``--config`` file (JSON, or YAML when PyYAML is installed) is merged over the
recipe: top-level keys replace, ``features`` and ``scorer_settings`` merge.
"""
from __future__ import annotations

import copy
import json
import math
import logging
from pathlib import Path

from her2core.errors import Her2Error
from her2core.models.deepscore import DeepScore, block_columns
from her2core.models.network import NetworkScore, network_column
from her2core.models.nomogram_model import StackedNomogram
from her2core.selection import SideTable

log = logging.getLogger(__name__)

__all__ = ["RECIPE_DIR", "RECIPES", "load_recipe", "merge_config", "build_model", "scorer_specs",
           "network_specs", "NETWORK_KEYS", "fold_plan", "minimum_per_class", "check_recipe",
           "recipe_catalogue", "save_recipe", "final_estimator", "RECIPE_KEYS", "EDITABLE_KEYS",
           "editable_text", "edit_recipe", "user_recipes"]

#: keys the app's recipe editor may change (the rest are shown read-only)
EDITABLE_KEYS = ("description", "features", "preprocessing", "scorers", "scorer_settings",
                 "clinical_predictors",
                 "clinical_selection", "clinical_fdr", "alpha", "multivariable_p", "stepwise",
                 "stepwise_p", "compare_zoo", "final_model", "networks", "split")

RECIPE_DIR = Path(__file__).with_name("recipes")
RECIPES = ["000", "001", "002", "003", "004", "clinical", "demo"]
_SCORER_KEYS = {"icc", "icc_threshold", "icc_kind", "univariate", "alpha", "corr_threshold",
                "corr_strategy", "lasso", "lasso_rule", "lasso_cv", "lasso_n_Cs", "lasso_path",
                "max_features",
                "C", "pca", "sequences", "block", "name", "classifier", "classifiers"}
#: every top-level key a recipe may hold (anything else is refused by name)
RECIPE_KEYS = {"name", "paper", "description", "features", "scorers", "scorer_settings",
               "clinical_predictors", "clinical_selection", "clinical_fdr", "alpha",
               "multivariable_p", "stepwise", "stepwise_p", "score_selection", "compare_zoo",
               "final_model", "networks", "split", "min_per_class", "preprocessing", "cv"}
CLINICAL_SELECTIONS = ("univariate", "lasso", "univariate+lasso", "none")
#: recipe ``preprocessing`` keys (paper 000): resample_mm [x, y, z] and
#: rigid_registration_to (an MRI sequence) are applied in feature extraction;
#: intensity_normalisation is a description of what features/deep.py does
PREPROCESSING_KEYS = {"resample_mm", "rigid_registration_to", "intensity_normalisation"}
STEPWISE = (False, True, "aic", "p", "none")
#: final models: the logistic nomogram, or a model-zoo classifier tuned by grid search
#: ("best": the zoo classifier of ``compare_zoo`` with the highest nested-CV AUC)
FINAL_MODELS = ("nomogram", "best", "lr", "svm", "tree", "knn", "mlp", "rf", "extratrees", "gbm",
                "xgboost", "lightgbm")


def _read_config_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Her2Error(f"cannot read the config: {exc}", file=path) from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise Her2Error("YAML configs need PyYAML", file=path,
                            hint="pip install pyyaml, or write the config as JSON") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise Her2Error(f"config is not valid YAML: {exc}", file=path) from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Her2Error(f"config is not valid JSON: {exc}", file=path) from exc
    if not isinstance(data, dict):
        raise Her2Error("config must be a mapping (JSON object)", file=path)
    return data


def load_recipe(name_or_path: str | Path = "clinical") -> dict:
    """A recipe by name (000, 001, 002, 003, 004, clinical, demo) or from a file."""
    p = Path(str(name_or_path))
    if str(name_or_path) in RECIPES:
        p = RECIPE_DIR / f"{name_or_path}.json"
    elif not p.is_file():
        raise Her2Error(f"unknown recipe {name_or_path!r}",
                        hint="use one of " + ", ".join(RECIPES) + " or a JSON/YAML file")
    recipe = _read_config_file(p)
    recipe.setdefault("name", p.stem)
    _check(recipe, p)
    return recipe


def recipe_catalogue() -> dict[str, dict]:
    """{name: {"paper", "description"}} of the built-in recipes, read from their files
    (the one source of the app's recipe labels)."""
    out = {}
    for name in RECIPES:
        r = load_recipe(name)
        out[name] = {"paper": r.get("paper", ""), "description": r.get("description", "")}
    return out


def save_recipe(recipe: dict, folder, name: str | None = None, overwrite: bool = False) -> Path:
    """Validate ``recipe`` and write it as YAML (JSON when PyYAML is missing) to
    ``folder/<name>.yaml``; a built-in recipe name or an existing file is refused."""
    rec = copy.deepcopy(recipe)
    if name is not None:
        rec["name"] = str(name)
    nm = str(rec.get("name", "")).strip()
    if not nm or not all(ch.isalnum() or ch in "-_" for ch in nm):
        raise Her2Error(f"recipe name {nm!r}: letters, digits, - and _ only")
    if nm in RECIPES:
        raise Her2Error(f"recipe name {nm!r} is a built-in recipe", hint="choose a new name")
    check_recipe(rec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import yaml
        path = folder / f"{nm}.yaml"
        text = yaml.safe_dump(rec, sort_keys=False, allow_unicode=True)
    except ImportError:
        path = folder / f"{nm}.json"
        text = json.dumps(rec, indent=2) + "\n"
    if path.exists() and not overwrite:
        raise Her2Error(f"a recipe named {nm} exists already", file=path,
                        hint="choose another name")
    path.write_text(text, encoding="utf-8")
    load_recipe(path)   # what is written reads back through the same validation
    return path


def merge_config(recipe: dict, config: dict) -> dict:
    """``config`` over ``recipe``: ``features`` / ``scorer_settings`` merge, others replace."""
    out = copy.deepcopy(recipe)
    for k, v in config.items():
        if k in ("features", "scorer_settings") and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = copy.deepcopy(v)
    _check(out, None)
    return out


def load_config_over(recipe: dict, path) -> dict:
    return merge_config(recipe, _read_config_file(Path(path)))


NETWORK_KEYS = {"name", "sequence", "arch", "preset", "settings", "features"}


def network_specs(recipe: dict) -> list[dict]:
    """The recipe's fine-tuned networks (``networks`` key), checked."""
    return [dict(n) for n in recipe.get("networks") or []]


def check_recipe(recipe: dict, path=None) -> dict:
    """Validate a recipe (what :func:`load_recipe` does after reading a file): unknown keys,
    wrong types or values raise Her2Error naming the key. Returns the recipe."""
    if not isinstance(recipe, dict):
        raise Her2Error("a recipe must be a mapping (JSON object / YAML mapping)", file=path)
    _check(recipe, path)
    return recipe


def _num(recipe, key, lo, hi, path, optional=True):
    v = recipe.get(key)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
        raise Her2Error(f"recipe {key} must be a number between {lo} and {hi}, got {v!r}",
                        file=path)


def _check(recipe: dict, path) -> None:
    bad_keys = sorted(set(recipe) - RECIPE_KEYS)
    if bad_keys:
        raise Her2Error(f"unknown recipe key(s) {bad_keys}", file=path,
                        hint="keys: " + ", ".join(sorted(RECIPE_KEYS)))
    for k in ("name", "paper", "description"):
        if k in recipe and not isinstance(recipe[k], str):
            raise Her2Error(f"recipe {k} must be text", file=path)
    if recipe.get("name") is not None and not str(recipe["name"]).strip():
        raise Her2Error("recipe name is empty", file=path)
    feats = recipe.get("features")
    if feats is not None and not isinstance(feats, dict):
        raise Her2Error("recipe 'features' must be a mapping (a feature config) or null", file=path)
    cp = recipe.get("clinical_predictors", [])
    if not isinstance(cp, list) or not all(isinstance(c, str) for c in cp):
        raise Her2Error("recipe clinical_predictors must be a list of cohort.csv column names",
                        file=path)
    for key in ("alpha", "multivariable_p", "stepwise_p"):
        _num(recipe, key, 1e-6, 1.0, path)
    if recipe.get("stepwise", False) not in STEPWISE:
        raise Her2Error(f"recipe stepwise {recipe.get('stepwise')!r} must be false, \"aic\" "
                        "or \"p\"", file=path)
    if not isinstance(recipe.get("clinical_fdr", False), bool):
        raise Her2Error("recipe clinical_fdr must be true or false", file=path)
    fm = recipe.get("final_model", "nomogram")
    if fm not in FINAL_MODELS:
        raise Her2Error(f"recipe final_model {fm!r} is not one of {', '.join(FINAL_MODELS)}",
                        file=path)
    if fm == "best" and not recipe.get("compare_zoo"):
        raise Her2Error("recipe final_model \"best\" needs compare_zoo (the classifiers to "
                        "choose from)", file=path)
    zoo = recipe.get("compare_zoo") or []
    if not isinstance(zoo, list) or any(z not in FINAL_MODELS[2:] for z in zoo):
        raise Her2Error(f"recipe compare_zoo {zoo!r}: a list of {', '.join(FINAL_MODELS[2:])}",
                        file=path)
    split = recipe.get("split")
    if split is not None:
        if not isinstance(split, dict) or split.get("kind") not in ("random",) or \
                set(split) - {"kind", "test_fraction", "seed"}:
            raise Her2Error(f"recipe split {split!r} must be {{\"kind\": \"random\", "
                            "\"test_fraction\": 0.3, \"seed\": 0}", file=path)
        _num(split, "test_fraction", 0.05, 0.8, path)
    if recipe.get("min_per_class") is not None:
        _num(recipe, "min_per_class", 2, 10000, path)
    if recipe.get("score_selection", "screen") not in ("screen", "force"):
        raise Her2Error("recipe score_selection must be \"screen\" or \"force\"", file=path)
    nets = recipe.get("networks") or []
    if not isinstance(nets, list):
        raise Her2Error("recipe 'networks' must be a list", file=path)
    names = set()
    for n in nets:
        bad = set(n) - NETWORK_KEYS if isinstance(n, dict) else {"(not a mapping)"}
        if bad or not {"name", "sequence", "arch"} <= set(n):
            raise Her2Error(f"recipe network {n} has unknown keys {sorted(bad)} or lacks name / "
                            "sequence / arch", file=path, hint="keys: " + ", ".join(sorted(NETWORK_KEYS)))
        if n["name"] in names or "__" in str(n["name"]):
            raise Her2Error(f"recipe network name {n['name']!r} repeats or contains '__'", file=path)
        names.add(n["name"])
    sc = recipe.get("scorers", [])
    if sc != "per_backbone" and not isinstance(sc, list):
        raise Her2Error("recipe 'scorers' must be a list or \"per_backbone\"", file=path)
    for s in sc if isinstance(sc, list) else []:
        bad = set(s) - _SCORER_KEYS
        if bad or "block" not in s:
            raise Her2Error(f"recipe scorer {s} has unknown keys {sorted(bad)} or no 'block'",
                            file=path, hint="keys: " + ", ".join(sorted(_SCORER_KEYS)))
    bad = set(recipe.get("scorer_settings", {})) - _SCORER_KEYS
    if bad:
        raise Her2Error(f"unknown scorer_settings {sorted(bad)}", file=path)
    for s in sc if isinstance(sc, list) else []:
        clf = s.get("classifier", "logistic")
        if clf not in ("logistic",) + FINAL_MODELS[1:]:
            raise Her2Error(f"recipe scorer {s.get('name', s['block'])}: classifier {clf!r} is not "
                            "logistic, best or a model-zoo name", file=path)
        if clf == "best" and not s.get("classifiers"):
            raise Her2Error(f"recipe scorer {s.get('name', s['block'])}: classifier \"best\" needs "
                            "classifiers (the names to choose from)", file=path)
        if s.get("corr_strategy", "label") not in ("label", "greedy"):
            raise Her2Error(f"recipe scorer {s.get('name', s['block'])}: corr_strategy must be "
                            "label or greedy", file=path)
        if isinstance(s["block"], list) and s.get("pca") is not None and \
                not isinstance(s["pca"], dict):
            raise Her2Error(f"recipe scorer {s.get('name')}: with several blocks (early fusion) "
                            "pca maps a block to its components, e.g. {\"ft_resnet101\": 64}",
                            file=path)
    pre = recipe.get("preprocessing")
    if pre is not None:
        if not isinstance(pre, dict) or set(pre) - PREPROCESSING_KEYS:
            raise Her2Error(f"recipe preprocessing {pre!r}: a mapping of "
                            + ", ".join(sorted(PREPROCESSING_KEYS)), file=path)
        from her2core.imaging.preprocess import check_preprocessing
        seqs = (feats or {}).get("sequences")
        try:
            check_preprocessing(pre.get("resample_mm"), pre.get("rigid_registration_to"), seqs)
        except Her2Error as err:
            raise Her2Error(f"recipe preprocessing: {err.message}", file=path,
                            hint=err.hint) from None
    if recipe.get("clinical_selection", "univariate") not in CLINICAL_SELECTIONS:
        raise Her2Error(f"clinical_selection {recipe.get('clinical_selection')!r} must be "
                        + ", ".join(CLINICAL_SELECTIONS), file=path)


def scorer_specs(recipe: dict) -> list[dict]:
    """The recipe's scorers with ``scorer_settings`` applied (per_backbone expanded)."""
    settings = dict(recipe.get("scorer_settings", {}))
    sc = recipe.get("scorers", [])
    if sc == "per_backbone":
        feats = recipe.get("features") or {}
        names = []
        for seq in feats.get("sequences", []):
            for b in feats.get("backbones", {}).get(seq, []):
                if b not in names:
                    names.append(b)
        sc = [{"name": b, "block": b} for b in names]
        if feats.get("radiomics"):
            sc.append({"name": "radiomics", "block": "radiomics"})
    return [{**settings, **s} for s in sc]


def build_model(recipe: dict, columns, icc_second=None, random_state: int = 0,
                cv: int = 5, final_model: str | None = None) -> StackedNomogram:
    """One StackedNomogram for the recipe, restricted to what ``columns`` holds."""
    columns = [str(c) for c in columns]
    scorers = []
    side = icc_second if icc_second is None or isinstance(icc_second, SideTable) \
        else SideTable(icc_second)
    for spec in scorer_specs(recipe):
        block, seqs = spec["block"], spec.get("sequences")
        if isinstance(block, list):
            present = [b for b in block if block_columns(columns, b, seqs)]
            if not present:
                log.warning("recipe %s: no %s feature columns: score %s left out",
                            recipe.get("name"), "+".join(block), spec.get("name"))
                continue
            if len(present) < len(block):
                log.warning("recipe %s: early fusion %s without %s (no columns)", recipe.get("name"),
                            spec.get("name"), ", ".join(b for b in block if b not in present))
            block = present if len(present) > 1 else present[0]
            if not isinstance(block, list) and isinstance(spec.get("pca"), dict):
                spec = {**spec, "pca": spec["pca"].get(block)}
        if not block_columns(columns, block, seqs):
            log.warning("recipe %s: no %s feature columns%s: score %s left out", recipe.get("name"),
                        block, f" for {seqs}" if seqs else "", spec.get("name", block))
            continue
        use_icc = bool(spec.get("icc", False)) and side is not None
        if spec.get("icc") and side is None:
            log.warning("recipe asks for the ICC filter but no second-ROI features were given: "
                        "ICC filtering skipped for %s", block)
        scorers.append((spec.get("name", block if isinstance(block, str) else "+".join(block)), DeepScore(
            block=block, sequences=seqs, icc_second=side if use_icc else None,
            icc_threshold=spec.get("icc_threshold", 0.9), icc_kind=spec.get("icc_kind", "ICC(3,1)"),
            pca=spec.get("pca"), univariate=spec.get("univariate", "ttest"),
            alpha=spec.get("alpha", 0.05), corr_threshold=spec.get("corr_threshold", 0.8),
            lasso=spec.get("lasso", True), lasso_rule=spec.get("lasso_rule", "1se"),
            lasso_cv=spec.get("lasso_cv", 10), lasso_n_Cs=spec.get("lasso_n_Cs", 12),
            lasso_path=spec.get("lasso_path", "adaptive"),
            max_features=spec.get("max_features"), C=spec.get("C", 1.0),
            corr_strategy=spec.get("corr_strategy", "label"),
            classifier=spec.get("classifier", "logistic"), classifiers=spec.get("classifiers"),
            random_state=random_state)))
    for net in network_specs(recipe):
        col = network_column(net["name"])
        if col not in columns:
            log.warning("recipe %s: no logit column %s for network %s: score left out",
                        recipe.get("name"), col, net["name"])
            continue
        scorers.append((f"ft_{net['name']}", NetworkScore(column=col, block=f"ft_{net['name']}")))
    wanted = recipe.get("clinical_predictors", [])
    clinical = [c for c in wanted if c in columns]
    absent = [c for c in wanted if c not in columns]
    if absent:
        log.warning("clinical predictors not in the cohort, left out: %s", ", ".join(absent))
    if not scorers and not clinical:
        raise Her2Error(f"recipe {recipe.get('name')}: nothing to train on (no feature column "
                        "for any scorer and no clinical predictor in the cohort)",
                        hint="check the cohort's images and cohort.csv columns, or pick another "
                             "--recipe")
    stepwise = recipe.get("stepwise", False)
    return StackedNomogram(scorers=scorers, clinical_predictors=clinical,
                           clinical_selection=recipe.get("clinical_selection", "univariate"),
                           alpha=recipe.get("alpha", 0.05),
                           stepwise=stepwise if stepwise in ("aic", "p") else bool(stepwise),
                           score_selection=recipe.get("score_selection", "screen"),
                           fdr=bool(recipe.get("clinical_fdr", False)),
                           multivariable_p=recipe.get("multivariable_p"),
                           stepwise_p=recipe.get("stepwise_p", 0.05),
                           final=final_estimator(final_model or recipe.get("final_model"),
                                                 random_state),
                           cv=int(recipe.get("cv", cv)), random_state=random_state)


def final_estimator(name, random_state: int = 0):
    """The second level of a recipe: None for the logistic nomogram, else an unfitted
    :class:`~her2core.models.zoo.TunedClassifier` (grid search inside ``fit``)."""
    if name in (None, "nomogram"):
        return None
    if name == "best":
        raise Her2Error("final_model \"best\" is resolved by train (nested CV of compare_zoo) "
                        "before the model is built")
    from her2core.models.zoo import OPTIONAL_LIBRARY, TunedClassifier, require_library
    if name in OPTIONAL_LIBRARY:
        require_library(OPTIONAL_LIBRARY[name])
    return TunedClassifier(name=name, cv=5, random_state=random_state)


# ---------------------------------------------------------------- small cohorts
#: folds of the second level's cross-fitted scores (StackedNomogram ``cv``)
SECOND_LEVEL_CV = 5
#: folds of the clinical LASSO (ClinicalModel selection "lasso")
CLINICAL_LASSO_CV = 10


def _train_part(m: int, k: int) -> int:
    """Minority cases left in the training part of a stratified k-fold split of m."""
    return m - math.ceil(m / k) if k >= 2 else m


def _lasso_cv(recipe: dict) -> int:
    """The largest LASSO CV the recipe asks for (0: no LASSO step)."""
    ks = [int(s.get("lasso_cv", 10)) for s in scorer_specs(recipe) if s.get("lasso", True)]
    if recipe.get("clinical_selection") == "lasso" and recipe.get("clinical_predictors"):
        ks.append(CLINICAL_LASSO_CV)
    return max(ks, default=0)


def fold_plan(recipe: dict, n_minority: int, oof_folds: int = 5) -> dict:
    """The folds each cross-validation level of ``train`` uses for a minority class of
    ``n_minority`` training cases (every level adapts: k = min(requested, minority)).

    ``out_of_fold``: the whole-pipeline CV of the validation predictions; ``second_level``:
    the cross-fitted block scores; ``lasso``: requested, at the final fit (inside a
    second-level fold) and at the deepest level (inside an out-of-fold refit's
    second-level fold); ``networks``: each fine-tuned network's folds. ``note``: a sentence
    for the model card when a level has fewer folds than asked ("" when none has).
    """
    m = int(n_minority)
    k_oof = min(int(oof_folds), m) if m >= 2 and int(oof_folds) >= 2 else 0
    has_scores = bool(scorer_specs(recipe)) or bool(network_specs(recipe))
    k2 = max(2, min(SECOND_LEVEL_CV, m))
    m_final = _train_part(m, k2) if has_scores else m
    m_oof = _train_part(m, k_oof)
    k2_oof = max(2, min(SECOND_LEVEL_CV, m_oof))
    m_deep = _train_part(m_oof, k2_oof) if has_scores else m_oof
    L = _lasso_cv(recipe)
    plan = {"minority": m, "out_of_fold": {"requested": int(oof_folds), "used": k_oof},
            "second_level": {"requested": SECOND_LEVEL_CV, "used": k2} if has_scores else None,
            "lasso": {"requested": L, "final_fit": min(L, m_final), "deepest": min(L, m_deep)}
            if L else None,
            "networks": {n["name"]: int((n.get("settings") or {}).get("folds", _net_folds(n)))
                         for n in network_specs(recipe)}}
    notes = []
    if k_oof < int(oof_folds):
        notes.append(f"out-of-fold validation {k_oof} folds instead of {oof_folds}")
    if has_scores and k2 < SECOND_LEVEL_CV:
        notes.append(f"second-level cross-fitting {k2} folds instead of {SECOND_LEVEL_CV}")
    if L and min(L, m_deep) < L:
        notes.append(f"LASSO CV {min(L, m_final)} folds at the final fit and {min(L, m_deep)} "
                     f"inside the validation refits instead of {L}")
    plan["note"] = (f"small cohort: the minority class has {m} training case(s), so "
                    + "; ".join(notes) + " (folds = min(requested, minority count)); the LASSO "
                    "CV also joins identical rows into one fold group") if notes else ""
    return plan


def _net_folds(spec: dict) -> int:
    from her2core.finetune import FinetuneSettings
    try:
        if spec.get("preset"):
            return int(FinetuneSettings.preset(spec["preset"]).folds)
        return int(FinetuneSettings.__dataclass_fields__["folds"].default)
    except Exception:  # an unknown preset is reported when the network is trained
        return 2


def minimum_per_class(recipe: dict, oof_folds: int = 5) -> tuple[int, str]:
    """The fewest cases of each class the recipe trains on, and why.

    3 for any model (a univariable screen and a logistic fit); with a LASSO step, enough
    that its CV keeps 2 folds at the deepest nesting (inside an out-of-fold refit's
    second-level fold); with fine-tuned networks, their K-fold's K.
    """
    need, why = 3, "a logistic second level needs 3 of each class"
    L = _lasso_cv(recipe)
    if L:
        m = 3
        while fold_plan(recipe, m, oof_folds)["lasso"]["deepest"] < 2:
            m += 1
        if m > need:
            need, why = m, (f"its LASSO CV needs 2 folds inside the {min(oof_folds, m)}-fold "
                            "validation and 5-fold cross-fitting")
    for name, k in fold_plan(recipe, 100, oof_folds)["networks"].items():
        if k > need:
            need, why = k, f"network {name} is fine-tuned with {k}-fold CV"
    explicit = recipe.get("min_per_class")
    if explicit is not None and int(explicit) > need:
        need, why = int(explicit), "the recipe's min_per_class"
    return need, why


# ---------------------------------------------------------------- the app's recipe editor
def editable_text(recipe: dict) -> str:
    """The recipe's editable keys (:data:`EDITABLE_KEYS`) as YAML (JSON without PyYAML)."""
    part = {k: copy.deepcopy(recipe[k]) for k in EDITABLE_KEYS if k in recipe}
    try:
        import yaml
        return yaml.safe_dump(part, sort_keys=False, allow_unicode=True, width=100)
    except ImportError:
        return json.dumps(part, indent=2)


def edit_recipe(base: dict, text: str, name: str) -> dict:
    """``base`` with the editable keys replaced by those in ``text`` (YAML or JSON), named
    ``name``, checked by :func:`check_recipe`. A key outside :data:`EDITABLE_KEYS`, text
    that does not parse, or a recipe that does not validate raises Her2Error (one line)."""
    text = str(text or "").strip()
    try:
        import yaml
        try:
            data = yaml.safe_load(text) if text else {}
        except yaml.YAMLError as exc:
            raise Her2Error(f"the recipe text is not valid YAML: {str(exc).splitlines()[0]}") from exc
    except ImportError:
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise Her2Error(f"the recipe text is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise Her2Error("the recipe text must be a mapping of keys to values")
    locked = sorted(set(data) - set(EDITABLE_KEYS))
    if locked:
        raise Her2Error(f"key(s) {locked} cannot be edited here",
                        hint="editable: " + ", ".join(EDITABLE_KEYS))
    out = copy.deepcopy(base)
    for k in EDITABLE_KEYS:       # a key removed from the text is removed from the recipe
        if k in out and k not in data and k != "description":
            del out[k]
    out.update(copy.deepcopy(data))
    out["name"] = str(name)
    base_name = base.get("name")
    if base_name and base_name != name:
        out["paper"] = f"{base.get('paper') or base_name} (edited: {name})"
    return check_recipe(out)


def user_recipes(folder) -> dict[str, Path]:
    """{name: file} of the recipes saved in ``folder`` (``*.yaml``, ``*.yml``, ``*.json``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in (".yaml", ".yml", ".json") and p.is_file()}
