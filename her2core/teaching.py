"""The teaching model: a small logistic nomogram in which the phenotypes the Teaching page
talks about carry the signal.

The teaching case (her2core.synthetic.synth_case with phenotype overrides) is scored from
three features *measured on its images and ROI* (never from the slider values):

* ``tumour_size_mm`` - the ROI's equivalent-sphere diameter (mm);
* ``rim_index`` - mean DCE intensity of the ROI's outer shell over that of its core
  (a rim pattern: bright border, darker centre -> above 1);
* ``oedema_index`` - mean T2 intensity just outside the ROI (0-2 voxels) over that of a
  ring further out (4-6 voxels): a bright peritumoral halo -> above 1.

The model is fitted on a synthetic cohort generated with *known, deliberately large*
effects (:data:`EFFECTS`): HER2-positive tumours are larger and show rim enhancement and
peritumoral oedema more strongly, as the seed papers report (far more weakly) for real
tumours; margin irregularity is drawn the same in both groups, so it carries no signal.
A held-out synthetic set gives the decision curve. No user data is involved.

The fitted model is plain JSON (coefficients, nomogram scales, training summary, held-out
predictions) in a folder with a MANIFEST as model bundles have (her2core.bundle), shipped
as ``assets/teaching_model`` and rebuilt by ``tools/make_teaching_model.py``;
:func:`load_teaching_model` verifies it, and fits one in memory (a few seconds) where the
folder is missing.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from her2core import DISCLAIMER, __version__
from her2core.errors import BundleError

log = logging.getLogger(__name__)

__all__ = ["FEATURES", "FEATURE_LABELS", "EFFECTS", "TEACHING_SHAPE", "TeachingModel",
           "TeachingPrediction", "teaching_features", "case_features", "fit_teaching_model",
           "save_teaching_model", "load_teaching_model", "default_model_dir", "FORMAT"]

FORMAT = "her2core-teaching-model/1"
MODEL_FILE = "teaching_model.json"
FEATURES = ("tumour_size_mm", "rim_index", "oedema_index")
FEATURE_LABELS = {"tumour_size_mm": "Tumour size (ROI diameter, mm)",
                  "rim_index": "Rim enhancement (DCE rim / core)",
                  "oedema_index": "Peritumoral oedema (T2 halo / surroundings)"}
#: the teaching case's grid (x, y, z), as the Teaching page generates it
TEACHING_SHAPE = (64, 64, 16)
#: phenotype distributions of the synthetic training cohort: (HER2-negative, HER2-positive)
EFFECTS = {
    "prevalence": 0.35,
    "size_mm": {"mean": (22.0, 28.0), "sd": 8.0},                 # normal, clipped 8..50 mm
    "rim": {"beta": ((2.0, 4.0), (3.0, 3.0))},                     # means 0.33 vs 0.50
    "edema": {"beta": ((2.0, 4.0), (3.0, 3.0))},
    "irregularity": {"uniform": (0.1, 0.8)},                       # the same in both: no signal
}


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + math.exp(-float(x))))


# ----------------------------------------------------------------------------- features
def teaching_features(dce: np.ndarray, t2: np.ndarray, mask: np.ndarray,
                      spacing_xyz) -> dict[str, float]:
    """The three features of one case from its DCE and T2 volumes and ROI (numpy z, y, x
    arrays on one grid; ``spacing_xyz`` in mm)."""
    from scipy import ndimage
    m = np.asarray(mask) > 0
    if m.sum() < 8:
        raise ValueError("the ROI has fewer than 8 voxels: no teaching features")
    dce = np.asarray(dce, float)
    t2 = np.asarray(t2, float)
    if dce.ndim == 4:                                   # phases: the early post-contrast one
        dce = dce[min(1, dce.shape[0] - 1)]
    if dce.shape != m.shape or t2.shape != m.shape:
        raise ValueError(f"DCE {dce.shape}, T2 {t2.shape} and the ROI {m.shape} must share a grid")
    vol = float(m.sum()) * float(np.prod([float(s) for s in spacing_xyz]))
    st = ndimage.generate_binary_structure(3, 1)
    core = ndimage.binary_erosion(m, st, iterations=1)
    shell = m & ~core
    rim = float(dce[shell].mean() / max(dce[core].mean(), 1e-6)) if core.any() else 1.0
    near = ndimage.binary_dilation(m, st, iterations=2) & ~m
    far = ndimage.binary_dilation(m, st, iterations=6) & ~ndimage.binary_dilation(m, st, iterations=4)
    oed = float(t2[near].mean() / max(t2[far].mean(), 1e-6)) if far.any() else 1.0
    return {"tumour_size_mm": 2.0 * (3.0 * vol / (4.0 * math.pi)) ** (1.0 / 3.0),
            "rim_index": rim, "oedema_index": oed}


def case_features(images: Mapping[str, Any], mask) -> dict[str, float]:
    """:func:`teaching_features` of her2core Images ("DCE", "T2") and the ROI (an Image, or
    an array on the DCE grid)."""
    missing = [s for s in ("DCE", "T2") if s not in images]
    if missing:
        raise BundleError(f"the teaching model reads DCE and T2; the case has no {', '.join(missing)}")
    dce, t2 = images["DCE"], images["T2"]
    m = np.asarray(getattr(mask, "array", mask))
    return teaching_features(dce.array, t2.array, m, dce.spacing)


def _synthetic_features(case) -> dict[str, float]:
    import SimpleITK as sitk
    im = case.sitk_images
    return teaching_features(sitk.GetArrayFromImage(im["DCE"]), sitk.GetArrayFromImage(im["T2"]),
                             sitk.GetArrayFromImage(im["mask"]), im["DCE"].GetSpacing())


# ----------------------------------------------------------------------------- model
@dataclass
class TeachingPrediction:
    """One teaching case: its measured features, points per predictor and probability."""
    features: dict[str, float]
    points: dict[str, float]
    total_points: float
    probability: float
    out_of_range: list[str] = field(default_factory=list)

    def patient(self) -> dict[str, Any]:
        """The ``patient`` argument of her2core.plots.nomogram_figure."""
        return {"points": dict(self.points), "total_points": self.total_points,
                "probability": self.probability, "out_of_range": list(self.out_of_range)}


@dataclass
class TeachingModel:
    intercept: float
    coefficients: dict[str, float]
    nomogram: Any                                  # her2core.nomogram.Nomogram
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, list] = field(default_factory=dict)   # held-out {"y": [...], "p": [...]}
    created: str = ""
    checksum: str = ""

    def predict(self, features: Mapping[str, float]) -> TeachingPrediction:
        x = {k: float(features[k]) for k in FEATURES}
        pp = self.nomogram.patient_points(x)
        lp = self.intercept + sum(self.coefficients[k] * x[k] for k in FEATURES)
        return TeachingPrediction(features=x, points={k: float(v) for k, v in pp["points"].items()},
                                  total_points=float(pp["total_points"]), probability=_sigmoid(lp),
                                  out_of_range=list(pp["out_of_range"]))

    def nomogram_figure(self, prediction: TeachingPrediction | None = None):
        from her2core.plots import nomogram_figure
        return nomogram_figure(self.nomogram, prediction.patient() if prediction else None)

    def decision_curve(self):
        """metrics.dca.DCAResult of the held-out synthetic set (None without one)."""
        from her2core import metrics as M
        if not self.validation.get("y"):
            return None
        return M.decision_curves(np.asarray(self.validation["y"], int),
                                 {"teaching model": np.asarray(self.validation["p"], float)})

    def decision_curve_figure(self):
        from her2core.plots import decision_curve_figure
        r = self.decision_curve()
        return None if r is None else decision_curve_figure(r)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "created": self.created, "her2core": __version__,
                "disclaimer": DISCLAIMER, "features": list(FEATURES),
                "intercept": self.intercept, "coefficients": dict(self.coefficients),
                "nomogram": self.nomogram.to_dict(), "training": self.training,
                "validation": self.validation}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], checksum: str = "") -> "TeachingModel":
        from her2core.nomogram import Nomogram
        if d.get("format") != FORMAT:
            raise BundleError(f"not a teaching model (format {d.get('format')!r}, expected {FORMAT})")
        if list(d.get("features") or []) != list(FEATURES):
            raise BundleError(f"teaching model features {d.get('features')} differ from {list(FEATURES)}",
                              hint="rebuild it with tools/make_teaching_model.py")
        return cls(intercept=float(d["intercept"]),
                   coefficients={k: float(v) for k, v in d["coefficients"].items()},
                   nomogram=Nomogram.from_dict(d["nomogram"]), training=dict(d.get("training") or {}),
                   validation=dict(d.get("validation") or {}), created=str(d.get("created") or ""),
                   checksum=checksum)


def _draw_phenotype(rng: np.random.Generator, positive: bool) -> dict[str, float]:
    i = int(positive)
    e = EFFECTS
    return {"size_mm": float(np.clip(rng.normal(e["size_mm"]["mean"][i], e["size_mm"]["sd"]), 8, 50)),
            "rim": float(rng.beta(*e["rim"]["beta"][i])),
            "edema": float(rng.beta(*e["edema"]["beta"][i])),
            "irregularity": float(rng.uniform(*e["irregularity"]["uniform"]))}


def _cohort(n: int, seed: int, progress=None) -> tuple[np.ndarray, np.ndarray]:
    from her2core import synthetic
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        pos = bool(rng.random() < EFFECTS["prevalence"])
        ph = _draw_phenotype(rng, pos)
        case = synthetic.synth_case(seed=seed, index=i, group="pos" if pos else "zero", centre="A",
                                    modalities="mri", shape=TEACHING_SHAPE, case_id="teach",
                                    size_mm=ph["size_mm"], rim=ph["rim"], edema=ph["edema"],
                                    irregularity=ph["irregularity"])
        f = _synthetic_features(case)
        X.append([f[k] for k in FEATURES])
        y.append(int(pos))
        if progress is not None:
            progress(i + 1, n, "teaching cohort")
    return np.asarray(X, float), np.asarray(y, int)


def fit_teaching_model(n: int = 240, n_validation: int = 120, seed: int = 17,
                       progress=None) -> TeachingModel:
    """Generate the synthetic cohort (``n`` training + ``n_validation`` held-out cases),
    measure the features on the images and fit the logistic model (scikit-learn, a weak
    L2 penalty). Deterministic for ``seed``."""
    from sklearn.linear_model import LogisticRegression

    from her2core.metrics.roc import auc
    from her2core.nomogram import Nomogram
    X, y = _cohort(n, seed, progress)
    Xv, yv = _cohort(n_validation, seed + 1000)
    lr = LogisticRegression(C=100.0, max_iter=2000).fit(X, y)
    coefs = {k: float(b) for k, b in zip(FEATURES, lr.coef_[0])}
    b0 = float(lr.intercept_[0])
    ranges = {k: (float(X[:, j].min()), float(X[:, j].max())) for j, k in enumerate(FEATURES)}
    nomo = Nomogram.from_coefficients(b0, coefs, ranges=ranges)
    pv = lr.predict_proba(Xv)[:, 1]
    training = {"n": int(len(y)), "positives": int(y.sum()), "seed": int(seed),
                "generator": "her2core.synthetic.synth_case (teaching grid "
                             + "x".join(map(str, TEACHING_SHAPE)) + ")",
                "effects": EFFECTS, "ranges": ranges,
                "apparent_auc": float(auc(y, lr.predict_proba(X)[:, 1])),
                "heldout_auc": float(auc(yv, pv)), "heldout_n": int(len(yv))}
    return TeachingModel(intercept=b0, coefficients=coefs, nomogram=nomo, training=training,
                         validation={"y": [int(v) for v in yv], "p": [float(v) for v in pv]},
                         created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat())


def save_teaching_model(model: TeachingModel, path) -> Path:
    """The model as JSON in a folder with a MANIFEST (her2core.bundle's checksum rule)."""
    from her2core.bundle import _write_manifest
    from her2core.jsonutil import jsonable
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for f in path.iterdir():
        if f.is_file() and f.name in (MODEL_FILE, "MANIFEST"):
            f.unlink()
    (path / MODEL_FILE).write_text(json.dumps(jsonable(model.to_dict()), indent=1) + "\n",
                                   encoding="utf-8")
    _write_manifest(path)
    return path


def default_model_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "teaching_model"


_FITTED: dict[int, TeachingModel] = {}


def load_teaching_model(path=None, *, fit_if_missing: bool = True) -> TeachingModel:
    """The shipped teaching model (verified against its MANIFEST); where the folder is
    missing, one fitted now (cached in this process)."""
    from her2core.bundle import bundle_checksum, verify_bundle
    path = Path(path) if path is not None else default_model_dir()
    if (path / "MANIFEST").is_file():
        verify_bundle(path)
        d = json.loads((path / MODEL_FILE).read_text(encoding="utf-8"))
        return TeachingModel.from_dict(d, checksum=bundle_checksum(path))
    if not fit_if_missing:
        raise BundleError("no teaching model here", file=path,
                          hint="build it with python3 tools/make_teaching_model.py")
    if 0 not in _FITTED:
        log.info("no shipped teaching model at %s: fitting one on a synthetic cohort", path)
        _FITTED[0] = fit_teaching_model()
    return _FITTED[0]
