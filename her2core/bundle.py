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
    MANIFEST                "<sha256>  <file>" per file, then "overall <sha256>"

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

__all__ = ["BUNDLE_FORMAT", "Bundle", "save_bundle", "load_bundle", "verify_bundle",
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
                "her2core.models.nomogram_model"]


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
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    import sklearn
    vers = {"her2core": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "pandas": pd.__version__, "scikit-learn": sklearn.__version__}
    try:
        import skops
        vers["skops"] = skops.__version__
    except ImportError:  # pragma: no cover
        pass
    return vers


def coefficients_of(model) -> dict:
    """Plain-JSON description of a fitted StackedNomogram / ClinicalModel / DeepScore."""
    from her2core.models.clinical import ClinicalModel
    from her2core.models.deepscore import DeepScore
    from her2core.models.nomogram_model import StackedNomogram

    if isinstance(model, StackedNomogram):
        out = {"type": "StackedNomogram", "scores": {}}
        for name, sc in model.scorers_:
            out["scores"][name] = coefficients_of(sc)
        out["second_level"] = coefficients_of(model.final_)
        out["clinical_columns"] = list(model.clinical_columns_)
        return out
    if isinstance(model, ClinicalModel):
        d = model.coefficients()
        d.update({"type": "ClinicalModel", "variables": list(model.variables_),
                  "reference_levels": {c: lv[0] for c, lv in model.prep_.levels_.items()},
                  "imputation": dict(model.prep_.fill_), "kinds": dict(model.prep_.kinds_)})
        return d
    if isinstance(model, DeepScore):
        clf = model.pipeline_[-1]
        return {"type": "DeepScore", "block": model.block, "n_input_features": len(model.columns_),
                "selected_features": list(model.selected_features_),
                "intercept": float(clf.intercept_[0]),
                "coefficients": dict(zip(model.selected_features_, map(float, clf.coef_[0])))}
    return {"type": type(model).__name__}


# ---------------------------------------------------------------------------- bundle

@dataclass
class Bundle:
    path: Path
    models: dict
    model_card: dict
    training: dict = field(default_factory=dict)
    feature_config: dict | None = None
    backbones: dict = field(default_factory=dict)
    coefficients: dict = field(default_factory=dict)
    nomograms: dict = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.models)

    @property
    def random_init(self) -> bool:
        return any(str(v.get("weights", "")).startswith("random-init")
                   for v in self.backbones.values() if isinstance(v, dict))

    def ranges(self, task: str = "her2") -> dict:
        return self.training.get(task, {}).get("predictor_ranges", {})


def save_bundle(path, models: dict, *, model_card: dict, training: dict | None = None,
                feature_config: dict | None = None, backbones: dict | None = None,
                nomograms: dict | None = None, overwrite: bool = False) -> Path:
    """Write a bundle directory (see module doc). ``models``: {task: fitted estimator}."""
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
            for f in path.iterdir():
                if f.is_file():
                    f.unlink()
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
    _write_json(path / "feature_config.json", feature_config)
    _write_json(path / "backbones.json", backbones or {})
    _write_json(path / "training.json", training or {})
    for task, nomo in (nomograms or {}).items():
        if nomo is not None:
            _write_json(path / f"nomogram_{task}.json", nomo)
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

    nomos = {}
    for task in models:
        nomo = opt_json(f"nomogram_{task}.json")
        if nomo is not None:
            nomos[task] = nomo
    return Bundle(path=path, models=models, model_card=card, training=opt_json("training.json", {}),
                  feature_config=opt_json("feature_config.json"),
                  backbones=opt_json("backbones.json", {}),
                  coefficients=opt_json("coefficients.json", {}), nomograms=nomos)
