"""Model bundles: a directory, no pickle, a checksum manifest verified on load.

Layout of a bundle directory::

    model_<task>.skops      fitted estimator per task ("her2", "her2_low"), skops format
    coefficients.json       plain-JSON coefficients of the logistic second level per task
    feature_config.json     FeatureConfig (JSON) used to compute the image features
    backbones.json          backbone settings and weights identity ("sha256:..." or "random-init")
    training.json           training cohort summary (n, positives, centres) and the range of
                            every predictor (min/max continuous, levels categorical)
    nomogram_<task>.json    points scales (her2core.nomogram), when available
    model_card.json         intended use, data, performance, validation, provenance
    validation_predictions.csv  case_id, task, set, y, p (+ p_lo, p_hi): "internal" = out-of-
                            fold predictions in which every selection step was refitted
                            without the case (each training case once); "external" = every
                            held-out case (--where), scored by the final model
    background_<task>.csv   the training cases' second-level inputs (out-of-fold block
                            scores + clinical predictors, no case ids): the SHAP reference
    networks.json           fine-tuned networks: {"<name>_<task>": {name, task, sequence, arch,
                            column, features, random_init, weights}}
    networks/<name>_<task>/ the fold models (safetensors), finetune.json, oof.csv, heldout.csv
    MANIFEST                "<sha256>  <file>" per file, then "overall <sha256>"

The bundle's identity is the MANIFEST's overall line (:attr:`Bundle.checksum`,
:func:`bundle_checksum`): one definition, used by the app, the reader study and
every report.

Loading verifies every file against MANIFEST and the overall checksum (a
changed byte, an extra or missing file, or a directory that is not a bundle is
refused with :class:`~her2core.errors.BundleError`), then loads the estimators
with ``skops.io.load`` and an explicit trusted-type list computed from the
project's own estimator classes plus a short list of scikit-learn / numpy
types: a file naming any other type is refused. The checksum protects against
corruption and accidental edits, not against a deliberate forgery (anyone can
recompute it); the type check is what makes a foreign file safe to open.
"""
from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import inspect
import json
import logging
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from her2core import DISCLAIMER, __version__
from her2core.errors import BundleError
from her2core.jsonutil import jsonable as _jsonable

log = logging.getLogger(__name__)

__all__ = ["BUNDLE_FORMAT", "Bundle", "save_bundle", "load_bundle", "load_bundle_archive",
           "verify_bundle", "bundle_checksum", "is_random_init", "VALIDATION_FILE",
           "trusted_types", "predictor_ranges", "cohort_summary", "out_of_range"]

BUNDLE_FORMAT = "her2core-bundle/1"
MANIFEST = "MANIFEST"

#: scikit-learn / numpy types (beyond skops' defaults) our estimators may contain.
_EXTRA_TRUSTED = [
    "numpy.dtype",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.model_selection._split.StratifiedGroupKFold",
    "sklearn.model_selection._search.GridSearchCV",
    "sklearn.model_selection._search.RandomizedSearchCV",
    "sklearn.utils._metadata_requests.MetadataRequest",
]
_OUR_MODULES = ["her2core.selection", "her2core.models.clinical", "her2core.models.deepscore",
                "her2core.models.nomogram_model", "her2core.models.network", "her2core.models.zoo"]


def trusted_types() -> list[str]:
    """Type names skops may load: the project's estimator classes + a short explicit list."""
    import importlib

    from sklearn.base import BaseEstimator

    names = set(_EXTRA_TRUSTED)
    for modname in _OUR_MODULES:
        mod = importlib.import_module(modname)
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if obj.__module__ == modname and issubclass(obj, BaseEstimator):
                names.add(f"{obj.__module__}.{obj.__qualname__}")
    return sorted(names)


# ---------------------------------------------------------------------------- helpers

def _sha256(path: Path) -> str:
    from her2core.provenance import file_sha256
    return file_sha256(path)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _strip_for_saving(model):
    """A copy of ``model`` without side inputs or per-case tables (no case ids in bundles)."""
    from sklearn.base import BaseEstimator

    model = copy.deepcopy(model)
    seen = set()

    def visit(obj):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, BaseEstimator):
            for k, v in list(vars(obj).items()):
                if k in ("second", "icc_second"):
                    setattr(obj, k, None)
                elif isinstance(v, (pd.DataFrame, pd.Series)):
                    setattr(obj, k, None)
                else:
                    visit(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v)

    visit(model)
    return model


def predictor_ranges(frame: pd.DataFrame) -> dict:
    """Range of every column: {"kind": "continuous", "min", "max", "missing"} or
    {"kind": "categorical", "levels": [...]} (0/1 columns count as categorical)."""
    out = {}
    for c in frame.columns:
        s = frame[c]
        num = pd.to_numeric(s, errors="coerce")
        if s.notna().sum() and num[s.notna()].notna().all():
            obs = num.dropna()
            if set(np.unique(obs)) <= {0.0, 1.0}:
                out[str(c)] = {"kind": "categorical", "levels": sorted(int(v) for v in np.unique(obs)),
                               "missing": int(s.isna().sum())}
            else:
                out[str(c)] = {"kind": "continuous", "min": float(obs.min()),
                               "max": float(obs.max()), "missing": int(s.isna().sum())}
        else:
            out[str(c)] = {"kind": "categorical",
                           "levels": sorted(str(v) for v in s.dropna().unique()),
                           "missing": int(s.isna().sum())}
    return out


def out_of_range(frame: pd.DataFrame, ranges: dict) -> dict[str, list[str]]:
    """Per case (index), the predictors outside the training ranges (the app flags them)."""
    flags: dict[str, list[str]] = {}
    for c, r in ranges.items():
        if c not in frame.columns:
            continue
        s = frame[c]
        for case, v in s.items():
            if pd.isna(v):
                continue
            bad = False
            if r["kind"] == "continuous":
                try:
                    fv = float(v)
                    bad = fv < r["min"] or fv > r["max"]
                except (TypeError, ValueError):
                    bad = True
            else:
                lv = r["levels"]
                bad = (int(float(v)) not in lv) if lv and isinstance(lv[0], int) else str(v) not in lv
            if bad:
                flags.setdefault(str(case), []).append(c)
    return flags


def cohort_summary(y, centres=None, task: str = "her2") -> dict:
    """n, positives and per-centre counts of a training set (no case ids)."""
    y = pd.Series(np.asarray(y)).astype(int)
    out = {"task": task, "n": int(len(y)), "positives": int(y.sum()),
           "negatives": int((1 - y).sum())}
    if centres is not None:
        c = pd.Series(np.asarray(centres, dtype=object)).fillna("(none)").astype(str)
        out["centres"] = {k: {"n": int((c == k).sum()), "positives": int(y[(c == k).to_numpy()].sum())}
                          for k in sorted(c.unique())}
    return out


def _library_versions() -> dict:
    from her2core.provenance import library_versions
    return library_versions("her2core", "python", "numpy", "pandas", "sklearn", "skops")


def coefficients_of(model) -> dict:
    """Plain-JSON description of a fitted StackedNomogram / ClinicalModel / DeepScore."""
    from her2core.models.clinical import ClinicalModel
    from her2core.models.deepscore import DeepScore
    from her2core.models.nomogram_model import StackedNomogram

    if isinstance(model, StackedNomogram):
        out = {"type": "StackedNomogram", "scores": {}}
        for name, sc in model.fitted_scorers():
            out["scores"][name] = coefficients_of(sc)
        out["second_level"] = coefficients_of(model.final_estimator)
        out["clinical_columns"] = model.clinical_inputs()
        return out
    if isinstance(model, ClinicalModel):
        d = model.coefficients()
        enc = model.encoding()
        d.update({"type": "ClinicalModel", "variables": model.used_variables(),
                  "reference_levels": enc["reference_levels"], "imputation": enc["imputation"],
                  "kinds": enc["kinds"]})
        return d
    if isinstance(model, DeepScore):
        return {"type": "DeepScore", **model.coefficients()}
    if hasattr(model, "coefficients") and type(model).__name__ == "NetworkScore":
        return {"type": "NetworkScore", **model.coefficients()}
    return {"type": type(model).__name__}


# ---------------------------------------------------------------------------- bundle

VALIDATION_FILE = "validation_predictions.csv"
VALIDATION_COLUMNS = ["case_id", "task", "set", "y", "p"]
VALIDATION_SETS = ("internal", "external")


@dataclass
class Bundle:
    """A verified, loaded bundle: the single identity of a model.

    ``feature_config`` is the typed FeatureConfig (None for a clinical-only model),
    ``nomograms`` the typed Nomogram per task; ``checksum`` the MANIFEST's overall line.
    """
    path: Path
    models: dict
    model_card: dict
    training: dict = field(default_factory=dict)
    feature_config: object | None = None
    backbones: dict = field(default_factory=dict)
    coefficients: dict = field(default_factory=dict)
    nomograms: dict = field(default_factory=dict)
    checksum: str = ""
    networks: dict = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.models)

    @property
    def name(self) -> str:
        return str(self.model_card.get("name") or self.model_card.get("model") or self.path.name)

    @property
    def random_init(self) -> bool:
        """True when any backbone or fine-tuned network started from random weights (the one
        rule, used everywhere)."""
        return any(is_random_init(v) for v in self.backbones.values()) or \
            any(bool(n.get("random_init")) for n in self.networks.values())

    @property
    def weights(self) -> dict[str, str]:
        """Backbone (or fine-tuned network) -> weights identity ("sha256:..." or
        "random-init"; a network's is the identity it was fine-tuned from)."""
        out = {str(k): weights_identity(v) for k, v in self.backbones.items()}
        for key, n in self.networks.items():
            out[f"ft_{key}"] = "random-init" if n.get("random_init") else str(n.get("weights") or "")
        return out

    def networks_for(self, task: str) -> list[dict]:
        """The task's fine-tuned networks: dicts with name, task, sequence, arch, column,
        features and ``folder`` (the fold models)."""
        return [dict(n, key=k, folder=self.path / "networks" / k)
                for k, n in self.networks.items() if n.get("task") == task]

    def ranges(self, task: str = "her2") -> dict:
        return self.training.get(task, {}).get("predictor_ranges", {})

    def nomogram(self, task: str = "her2"):
        """The task's Nomogram, or None (a non-logistic second level has none)."""
        return self.nomograms.get(task)

    def inference_config(self, *, weights_dir=None, device=None):
        """The FeatureConfig to compute this bundle's features on new cases: the training
        settings, the same initialisation per backbone, optional local weights folder /
        device. None for a clinical-only bundle."""
        if self.feature_config is None:
            return None
        import dataclasses
        cfg = self.feature_config
        weights = dict(cfg.weights)
        for name, info in self.backbones.items():
            if is_random_init(info):
                weights[name] = "random-init"
        changes = {"weights": weights}
        if weights_dir:
            changes["weights_dir"] = str(weights_dir)
        if device:
            changes["device"] = device
        return dataclasses.replace(cfg, **changes)

    def check_weights(self, found: dict[str, str]) -> None:
        """Refuse backbones whose weights differ from the ones the model was trained with."""
        for name, ident in found.items():
            want = self.weights.get(name)
            if want and ident != want:
                raise BundleError(f"backbone {name}: weights {ident} differ from the bundle's {want}",
                                  file=self.path,
                                  hint="provide the weights the model was trained with (--weights-dir)")

    def validation_predictions(self, task: str | None = None, set: str | None = None) -> pd.DataFrame:
        """The predictions written at training time (empty frame when the bundle has none)."""
        f = self.path / VALIDATION_FILE
        if not f.is_file():
            return pd.DataFrame(columns=VALIDATION_COLUMNS)
        d = pd.read_csv(f, dtype={"case_id": str, "task": str, "set": str})
        if task is not None:
            d = d[d["task"] == task]
        if set is not None:
            d = d[d["set"] == set]
        return d.reset_index(drop=True)

    def background(self, task: str = "her2") -> pd.DataFrame | None:
        """The SHAP reference population of a task: training second-level rows (or None)."""
        f = self.path / f"background_{task}.csv"
        if not f.is_file():
            return None
        return _read_background(f)

    def summary(self) -> dict:
        """What a user must know before trusting an output: the model card in brief."""
        card = self.model_card
        data = card.get("data", {}) or {}
        perf = card.get("performance", {}) or {}
        out = {"name": self.name, "checksum": self.checksum, "tasks": self.tasks,
               "created": card.get("created"), "intended_use": card.get("intended_use"),
               "recipe": (card.get("recipe") or {}).get("name") if isinstance(card.get("recipe"), dict)
               else card.get("recipe"),
               "random_init": self.random_init, "weights": self.weights,
               "training": {t: {k: v for k, v in (data.get("training", {}) or {}).get(t, {}).items()
                                if k in ("n", "positives", "negatives", "centres",
                                         "second_level_variables")}
                            for t in self.tasks},
               "held_out": data.get("where_held_out"),
               "validation": {}, "interval": card.get("interval"),
               "warnings": list(card.get("warnings", []) or [])}
        for t in self.tasks:
            p = perf.get(t, {}) or {}
            v = {"apparent_auc": p.get("apparent_auc")}
            if p.get("internal_validation"):
                v["internal"] = {k: p["internal_validation"].get(k) for k in ("auc", "method")}
            if p.get("out_of_fold"):
                v["out_of_fold"] = p["out_of_fold"]
            if p.get("external_validation"):
                v["external"] = {k: p["external_validation"].get(k) for k in ("auc", "where", "n")}
            out["validation"][t] = v
        return out


def weights_identity(info) -> str:
    """The weights identity of a backbones.json entry: {"weights": "sha256:..."},
    {"weights": {"identity": ...}} (older bundles) or the identity itself."""
    w = info.get("weights", info.get("identity", "")) if isinstance(info, dict) else info
    if isinstance(w, dict):
        w = w.get("identity", "")
    return str(w)


def is_random_init(info) -> bool:
    """A backbone entry (or weights identity) that says random initialisation."""
    return weights_identity(info).startswith("random-init")


def _read_background(f: Path) -> pd.DataFrame:
    d = pd.read_csv(f)
    for c in d.columns:            # text columns (categorical predictors) keep NaN as missing
        if d[c].dtype == object:
            d[c] = d[c].astype(object).where(d[c].notna(), np.nan)
    return d


def bundle_checksum(path) -> str:
    """The bundle's identity: "sha256:" + the MANIFEST's overall checksum (verified)."""
    path = Path(path)
    verify_bundle(path)
    last = (path / MANIFEST).read_text(encoding="utf-8").strip().splitlines()[-1]
    return "sha256:" + last.split(" ", 1)[1].strip()


def save_bundle(path, models: dict, *, model_card: dict, training: dict | None = None,
                feature_config=None, backbones: dict | None = None,
                nomograms: dict | None = None, validation_predictions: pd.DataFrame | None = None,
                backgrounds: dict | None = None, networks: dict | None = None,
                overwrite: bool = False) -> Path:
    """Write a bundle directory (see module doc). ``models``: {task: fitted estimator}.

    ``feature_config``: a FeatureConfig (or its dict); ``nomograms``: {task: Nomogram or its
    dict}; ``validation_predictions``: DataFrame with at least VALIDATION_COLUMNS;
    ``backgrounds``: {task: second-level DataFrame} (SHAP reference, written without index);
    ``networks``: {"<name>_<task>": (description dict, folder of the fine-tuned ensemble)},
    copied into ``networks/`` and listed in networks.json.
    """
    import skops.io as sio

    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise BundleError("exists and is not a directory", file=path,
                              hint="choose another --out")
        if any(path.iterdir()):
            if not overwrite and not (path / MANIFEST).exists():
                raise BundleError("directory is not empty and is not a bundle", file=path,
                                  hint="choose an empty or new --out directory")
            import shutil
            for f in path.iterdir():
                if f.is_file():
                    f.unlink()
                elif f.name == "networks" and (path / MANIFEST).exists():
                    shutil.rmtree(f)
    path.mkdir(parents=True, exist_ok=True)
    trusted = set(trusted_types())
    coefs = {}
    for task, model in models.items():
        clean = _strip_for_saving(model)
        data = sio.dumps(clean, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        unknown = sorted(set(sio.get_untrusted_types(data=data)) - trusted)
        if unknown:
            raise BundleError(f"model for task {task} contains types that a bundle cannot hold "
                              f"safely: {unknown}", file=path,
                              hint="use a logistic / scikit-learn model for the bundle")
        (path / f"model_{task}.skops").write_bytes(data)
        coefs[task] = coefficients_of(model)
    _write_json(path / "coefficients.json", coefs)
    if feature_config is not None and hasattr(feature_config, "to_dict"):
        feature_config = feature_config.to_dict()
    _write_json(path / "feature_config.json", feature_config)
    if validation_predictions is not None and len(validation_predictions):
        vp = validation_predictions.copy()
        missing = [c for c in VALIDATION_COLUMNS if c not in vp.columns]
        if missing:
            raise BundleError(f"validation predictions lack column(s) {missing}", file=path)
        bad = sorted(set(vp["set"]) - set(VALIDATION_SETS))
        if bad:
            raise BundleError(f"unknown validation set(s) {bad}", file=path)
        vp.to_csv(path / VALIDATION_FILE, index=False, float_format="%.10g")
    for task, bg in (backgrounds or {}).items():
        if bg is not None and len(bg):
            bg.to_csv(path / f"background_{task}.csv", index=False, float_format="%.12g")
    if networks:
        import shutil
        desc = {}
        for key, (info, folder) in networks.items():
            dest = path / "networks" / key
            shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("state", "*.tmp"))
            desc[key] = dict(info)
        _write_json(path / "networks.json", desc)
    _write_json(path / "backbones.json", backbones or {})
    _write_json(path / "training.json", training or {})
    for task, nomo in (nomograms or {}).items():
        if nomo is not None:
            _write_json(path / f"nomogram_{task}.json", nomo.to_dict() if hasattr(nomo, "to_dict")
                        else nomo)
    card = {"format": BUNDLE_FORMAT,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "intended_use": DISCLAIMER,
            "tasks": list(models), "library_versions": _library_versions()}
    card.update(model_card)
    card["format"] = BUNDLE_FORMAT
    _write_json(path / "model_card.json", card)
    _write_manifest(path)
    log.info("bundle written to %s (tasks: %s)", path, ", ".join(models))
    return path


def _manifest_text(path: Path) -> str:
    lines = []
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = f.relative_to(path).as_posix()
        lines.append(f"{_sha256(f)}  {rel}")
    return "\n".join(lines) + "\n"


def _write_manifest(path: Path) -> None:
    body = _manifest_text(path)
    overall = hashlib.sha256(body.encode()).hexdigest()
    (path / MANIFEST).write_text(body + f"overall {overall}\n", encoding="utf-8")


def verify_bundle(path) -> dict[str, str]:
    """Check MANIFEST against the files; returns {file: sha256}. Raises BundleError."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError("not a directory; a bundle is a directory", file=path,
                          hint="pass the bundle folder made by `python -m her2core train`")
    man = path / MANIFEST
    if not man.is_file():
        raise BundleError("not a her2core bundle (no MANIFEST)", file=path,
                          hint="pass a bundle made by `python -m her2core train`")
    text = man.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if not lines or not lines[-1].startswith("overall "):
        raise BundleError("MANIFEST has no overall checksum", file=man,
                          hint="the bundle is damaged or not ours; retrain or re-download it")
    body = "\n".join(lines[:-1]) + "\n"
    if hashlib.sha256(body.encode()).hexdigest() != lines[-1].split(" ", 1)[1].strip():
        raise BundleError("MANIFEST overall checksum does not match", file=man,
                          hint="the bundle was modified; retrain or re-download it")
    listed = {}
    for ln in lines[:-1]:
        digest, _, rel = ln.partition("  ")
        if not rel or len(digest) != 64:
            raise BundleError(f"malformed MANIFEST line {ln!r}", file=man)
        listed[rel] = digest
    actual = {f.relative_to(path).as_posix() for f in path.rglob("*")
              if f.is_file() and f.name != MANIFEST}
    extra = sorted(actual - set(listed))
    if extra:
        raise BundleError(f"files not in the MANIFEST: {extra}", file=path,
                          hint="the bundle was modified; remove them or retrain")
    for rel, digest in listed.items():
        f = path / rel
        if not f.is_file():
            raise BundleError("listed in MANIFEST but missing", file=f,
                              hint="the bundle is incomplete; retrain or re-download it")
        if _sha256(f) != digest:
            raise BundleError("checksum does not match the MANIFEST (file changed)", file=f,
                              hint="the bundle was modified or damaged; retrain or re-download it")
    return listed


def load_bundle(path) -> Bundle:
    """Verify and load a bundle. Raises BundleError for anything not ours or changed."""
    import skops.io as sio

    path = Path(path)
    listed = verify_bundle(path)
    try:
        card = json.loads((path / "model_card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"model_card.json unreadable: {exc}", file=path / "model_card.json")
    if card.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"unknown bundle format {card.get('format')!r} (expected {BUNDLE_FORMAT})",
                          file=path / "model_card.json")
    trusted = trusted_types()
    models = {}
    for rel in sorted(listed):
        if not (rel.startswith("model_") and rel.endswith(".skops")):
            continue
        task = rel[len("model_"):-len(".skops")]
        f = path / rel
        try:
            untrusted = sio.get_untrusted_types(file=f)
        except Exception as exc:
            raise BundleError(f"not a readable skops file: {exc}", file=f)
        unknown = sorted(set(untrusted) - set(trusted))
        if unknown:
            raise BundleError(f"refused: the model file names types that are not ours: {unknown}",
                              file=f, hint="only bundles made by her2core can be opened")
        try:
            models[task] = sio.load(f, trusted=trusted)
        except Exception as exc:
            raise BundleError(f"model could not be loaded: {type(exc).__name__}: {exc}", file=f)
    if not models:
        raise BundleError("bundle holds no model", file=path)

    def opt_json(name, default=None):
        f = path / name
        return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else default

    from her2core.features.config import FeatureConfig
    from her2core.nomogram import Nomogram

    nomos = {}
    for task in models:
        nomo = opt_json(f"nomogram_{task}.json")
        if nomo is not None:
            try:
                nomos[task] = Nomogram.from_dict(nomo)
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(f"nomogram of task {task} unreadable: {exc}",
                                  file=path / f"nomogram_{task}.json")
    fc = opt_json("feature_config.json")
    try:
        config = FeatureConfig.from_dict(fc) if fc else None
    except Exception as exc:  # noqa: BLE001 - any malformed setting is the bundle's fault
        raise BundleError(f"feature_config.json unreadable: {exc}", file=path / "feature_config.json")
    last = (path / MANIFEST).read_text(encoding="utf-8").strip().splitlines()[-1]
    return Bundle(path=path, models=models, model_card=card, training=opt_json("training.json", {}),
                  feature_config=config, backbones=opt_json("backbones.json", {}),
                  coefficients=opt_json("coefficients.json", {}), nomograms=nomos,
                  checksum="sha256:" + last.split(" ", 1)[1].strip(),
                  networks=opt_json("networks.json", {}))


def load_bundle_archive(archive, dest) -> Bundle:
    """A bundle uploaded as a zip: extracted with the safe zip extractor (no traversal,
    links or bombs), its folder found (the one holding MANIFEST), verified and loaded with
    the trusted-type list. Nothing is unpickled."""
    from her2core.imaging.io import extract_zip

    dest = Path(dest)
    if not zipfile.is_zipfile(archive):
        raise BundleError("not a zip archive", file=archive, hint="upload the bundle folder as a .zip")
    extract_zip(archive, dest, max_bytes=2 * 1024 ** 3, max_members=10_000)
    hits = sorted((m.parent for m in dest.rglob(MANIFEST)), key=lambda p: len(p.parts))
    if not hits:
        raise BundleError("the zip holds no bundle (no MANIFEST)", file=archive,
                          hint="zip the folder written by `python -m her2core train`")
    try:
        return load_bundle(hits[0])
    except BundleError as err:
        raise BundleError(err.message, file=archive, hint=err.hint) from None
