"""One-case prediction: the single runtime behind the app, ``explain`` and the reader study.

:class:`CasePredictor` wraps a loaded :class:`~her2core.bundle.Bundle` and its
backbones (created once, read-only afterwards) and turns one case into typed
results, for every task the bundle holds:

* :meth:`CasePredictor.image_part` - everything that needs the networks: the
  feature row, each task's block scores (D-scores, log-odds) and the Grad-CAM
  maps of the scores the final model uses, each map placed back in its image's
  geometry. Seconds; the app caches it by file and ROI hash.
* :meth:`CasePredictor.clinical_part` - the second level for one set of
  clinical values: probability with its 95 % interval, nomogram points, exact
  SHAP contributions, the predictors that were missing (imputed with the
  training value) or outside the training range. Milliseconds: a "what if" edit
  recomputes only this.

The probability equals ``bundle.models[task].predict_proba`` on the same feature
row and clinical values (the cohort path, :func:`her2core.workflows.predict_cohort`),
because both go through the model's own ``second_level`` and final estimator.

Thread safety: a CasePredictor is shared by every session of the app. After
construction it is read-only, except for the backbones created once under a
lock; Grad-CAM (which hooks the backbone) runs under a lock too, so two
sessions never see each other's hooks.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from her2core.errors import BundleError, Her2Error, MaskError

log = logging.getLogger(__name__)

__all__ = ["CasePredictor", "ImagePart", "TaskScores", "ClinicalPart", "RequiredInputs",
           "INTERVAL_METHOD", "case_masks", "three_way"]

ProgressFn = Callable[[int, int, str], None]

#: What the probability interval is, in words (shown beside it and in the model card).
INTERVAL_METHOD = ("95 % delta-method interval of the final logistic level (standard error "
                   "of the linear predictor from the coefficient covariance), conditional on "
                   "the image scores")
MRI_SEQUENCES = ("T1", "T2", "DCE")


@dataclass
class RequiredInputs:
    """What a bundle needs from a case (shown before anything is run)."""
    sequences: list[str]                       # image sequences its features use
    roi: list[str]                             # "MRI" and/or "US": the ROIs to draw
    clinical: dict[str, list[str]]             # task -> clinical inputs the final model keeps
    offered: dict[str, list[str]]              # task -> clinical inputs the model was offered

    def missing_sequences(self, available) -> list[str]:
        have = set(available)
        return [s for s in self.sequences if s not in have]

    def all_clinical(self) -> list[str]:
        out: list[str] = []
        for cols in self.clinical.values():
            out += [c for c in cols if c not in out]
        return out


@dataclass
class TaskScores:
    """One task's image outputs: block scores and the Grad-CAM maps of those it uses."""
    task: str
    scores: dict[str, float] = field(default_factory=dict)     # dscore_* -> log-odds
    used: list[str] = field(default_factory=list)              # scores the final model keeps
    gradcam: list[Any] = field(default_factory=list)           # explain.case.CamResult
    gradcam_notes: list[str] = field(default_factory=list)

    def gradcam_summary(self) -> str:
        """One plain sentence when there is no map to show ("" when there are maps)."""
        if self.gradcam:
            return ""
        if not self.scores:
            return "No Grad-CAM map: this model uses no image score, only clinical values."
        if not self.used:
            return ("No Grad-CAM map: the final model uses none of its image scores ("
                    + ", ".join(self.scores) + " not kept by its second level), so there is "
                    "nothing on the images that explains this prediction.")
        return ("No Grad-CAM map could be drawn for " + ", ".join(self.used) + ": "
                + ("; ".join(self.gradcam_notes) or "the maps were not computed") + ".")


@dataclass
class ImagePart:
    """Network outputs for one case and ROI (read-only once computed)."""
    case_id: str
    features: pd.DataFrame | None                # one row (None: clinical-only bundle)
    tasks: dict[str, TaskScores] = field(default_factory=dict)
    random_init: bool = False
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    network_columns: dict[str, pd.DataFrame] = field(default_factory=dict)  # task -> ft__* row

    def maps(self, task: str) -> dict[tuple[str, str], Any]:
        """(sequence, backbone) -> Grad-CAM map Image on that sequence's grid."""
        t = self.tasks.get(task)
        return {} if t is None else {(r.sequence, r.backbone): r.map_image for r in t.gradcam}


@dataclass
class ClinicalPart:
    """The second level of one task for one set of clinical values."""
    task: str
    probability: float
    interval: tuple[float, float] | None
    interval_method: str
    second_level: dict[str, Any]                 # the final model's inputs (scores + clinical)
    used: list[str]                              # inputs the final model keeps
    imputed: list[str]                           # kept inputs that were missing: training value used
    out_of_range: list[str]                      # kept inputs outside the training range
    nomogram: Any = None                         # her2core.nomogram.Nomogram or None
    points: dict | None = None                   # Nomogram.patient_points(...) of this patient
    contributions: Any = None                    # explain.PatientContributions or None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def no_predictors(self) -> bool:
        """True when the model kept no predictor: it predicts the training prevalence."""
        return not self.used


def _report(progress: ProgressFn | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


def case_masks(images: Mapping[str, Any], rois: Mapping[str, Any], *, case_id: str = "case",
               sequences=None) -> dict[str, Any]:
    """Each needed sequence's mask on its own grid.

    ``rois``: sequence -> ROI Image drawn (or loaded) on that sequence's grid. An MRI
    sequence without its own ROI gets the ROI of another MRI sequence moved onto its
    grid by physical coordinates (nearest neighbour, checked: it must overlap), as the
    cohort path does with mask.nii.gz; ultrasound needs its own ROI. Each mask is tagged
    with the sequence its ROI was drawn on (:func:`her2core.imaging.preprocess.tag_roi`).
    """
    from her2core.imaging.mask import check_mask
    from her2core.imaging.preprocess import tag_roi
    seqs = list(sequences) if sequences is not None else list(images)
    mri_rois = [(s, r) for s, r in rois.items() if s in MRI_SEQUENCES and r is not None]
    out = {}
    for seq in seqs:
        img = images.get(seq)
        if img is None:
            raise Her2Error(f"the model needs a {seq} image, which this case does not have",
                            case_id=case_id, hint=f"add or assign a {seq} series to the case")
        own = rois.get(seq)
        if own is not None:
            out[seq] = tag_roi(check_mask(own, img, case_id=case_id), seq)
        elif seq in MRI_SEQUENCES and mri_rois:
            src_seq, src = mri_rois[0]
            try:     # the ROI says whose it is (for a recipe that registers the sequences)
                out[seq] = tag_roi(check_mask(src, img, resample=True, case_id=case_id), src_seq)
            except MaskError as err:
                raise MaskError(f"the ROI drawn on {src_seq} does not lie inside {seq}: {err.message}",
                                case_id=case_id, hint=f"draw the ROI on {seq} as well") from None
        else:
            where = "the ultrasound image" if seq == "US" else seq
            raise MaskError(f"no ROI on {where}", case_id=case_id,
                            hint=f"draw or load the tumour ROI on {where}")
    return out


class CasePredictor:
    """A bundle's models applied to one case (see the module docstring).

    backbones: already created backbones by name (e.g. shared by an app cache);
    missing ones are created on first use with the bundle's weights identity.
    """

    def __init__(self, bundle, backbones: Mapping[str, Any] | None = None, *,
                 weights_dir=None, device: str | None = None):
        self.bundle = bundle
        self.config = bundle.inference_config(weights_dir=weights_dir, device=device)
        self._backbones: dict[str, Any] = dict(backbones or {})
        self._lock = threading.Lock()          # backbone creation
        self._cam_lock = threading.Lock()      # Grad-CAM hooks the (shared) backbones
        self._background: dict[str, pd.DataFrame | None] = {}
        for task in bundle.tasks:
            self._background[task] = bundle.background(task)
        from her2core.features.networks import NetworkRunner
        dev = "cpu"
        if device not in (None, "cpu"):
            from her2core.features import resolve_device
            dev = resolve_device(device)
        self._networks = {t: NetworkRunner(bundle.networks_for(t), device=dev) for t in bundle.tasks}

    # ------------------------------------------------------------------ what it needs
    @property
    def tasks(self) -> list[str]:
        return list(self.bundle.tasks)

    @property
    def random_init(self) -> bool:
        return bool(self.bundle.random_init)

    def background(self, task: str) -> pd.DataFrame | None:
        """The SHAP reference population of a task (the bundle's training second level)."""
        return self._background.get(task)

    def required_inputs(self) -> RequiredInputs:
        seqs = list(self.config.sequences) if self.config is not None else []
        for runner in self._networks.values():
            seqs += [s for s in runner.sequences if s not in seqs]
        roi = (["MRI"] if any(s in MRI_SEQUENCES for s in seqs) else []) + \
            (["US"] if "US" in seqs else [])
        clinical, offered = {}, {}
        for task, model in self.bundle.models.items():
            cols = model.clinical_inputs() if hasattr(model, "clinical_inputs") else []
            used = set(model.used_variables()) if hasattr(model, "used_variables") else set(cols)
            clinical[task] = [c for c in cols if c in used]
            offered[task] = list(cols)
        return RequiredInputs(sequences=seqs, roi=roi, clinical=clinical, offered=offered)

    def backbones(self) -> dict[str, Any]:
        """The bundle's backbones, created once (thread-safe) with its weights identity."""
        if self.config is None:
            return {}
        with self._lock:
            missing = [n for n in self.config.all_backbones() if n not in self._backbones]
            if missing:
                from her2core.features import create_backbone, resolve_device
                dev = resolve_device(self.config.device)
                for name in missing:
                    self._backbones[name] = create_backbone(
                        name, self.config.weights_for(name), weights_dir=self.config.weights_dir,
                        seed=self.config.seed, device=dev, amp=self.config.amp,
                        volume_size=self.config.volume_size, input_px=self.config.input_size)
                self.bundle.check_weights({n: self._backbones[n].weights_identity for n in missing})
            return dict(self._backbones)

    # ------------------------------------------------------------------ image part
    def image_part(self, images: Mapping[str, Any], masks: Mapping[str, Any], *,
                   case_id: str = "case", gradcam: bool = True,
                   progress: ProgressFn | None = None) -> ImagePart:
        """Features, block scores and Grad-CAM maps of one case.

        ``images``: sequence -> Image; ``masks``: sequence -> mask Image on that sequence's
        grid (:func:`case_masks` makes them from the ROIs drawn).
        """
        t0 = time.perf_counter()
        part = ImagePart(case_id=str(case_id), features=None, random_init=self.random_init)
        has_nets = any(r.entries for r in self._networks.values())
        if self.config is None and not has_nets:   # clinical-only bundle
            for task in self.tasks:
                part.tasks[task] = TaskScores(task)
            part.timings["total_s"] = time.perf_counter() - t0
            return part
        total = 3 if gradcam else 2
        _report(progress, 0, total, "creating the networks")
        bbs = self.backbones()
        t1 = time.perf_counter()
        _report(progress, 1, total, "extracting image features")
        if self.config is not None:
            from her2core.features.extract import FeatureExtractor
            row = FeatureExtractor(self.config, bbs).extract_case(images, masks, case_id=str(case_id))
            X = row.to_frame().T
            X.index = [str(case_id)]
            X = X.astype(float)
            # the extraction's provenance (attrs) stays with the cohort tables: pandas
            # deep-copies attrs on every column selection, and the block scores and the
            # Grad-CAM heads select columns tens of thousands of times on one case
            # (recipe 000: 23 k columns; 0.7 s of the block scores, ~7 s a Grad-CAM map)
            X.attrs = {}
        else:
            X = pd.DataFrame(index=[str(case_id)])
        part.features = X
        t2 = time.perf_counter()
        for task, model in self.bundle.models.items():
            ts = TaskScores(task)
            runner = self._networks.get(task)
            Xt = X
            if runner is not None and runner.entries:
                Xt = X.join(runner.case_columns(images, masks, case_id=str(case_id)))
                part.network_columns[task] = Xt.drop(columns=list(X.columns))
            if hasattr(model, "block_scores"):
                Zs = model.block_scores(Xt)
                ts.scores = {c: float(Zs[c].iloc[0]) for c in Zs.columns}
                used = set(model.used_variables())
                ts.used = [c for c in ts.scores if c in used]
            part.tasks[task] = ts
        if gradcam:
            _report(progress, 2, total, "Grad-CAM maps")
            for task, model in self.bundle.models.items():
                if self.config is not None:
                    self._gradcam(part.tasks[task], model, images, masks, X, str(case_id))
                self._network_gradcam(part.tasks[task], task, images, masks, str(case_id))
        t3 = time.perf_counter()
        part.timings = {"networks_s": t1 - t0, "features_s": t2 - t1, "gradcam_s": t3 - t2,
                        "total_s": t3 - t0}
        _report(progress, total, total, "done")
        return part

    def _gradcam(self, ts: TaskScores, model, images, masks, X: pd.DataFrame, case_id: str) -> None:
        if not hasattr(model, "scorer_for_block"):
            ts.gradcam_notes.append("this model has no image scores to map")
            return
        from her2core.explain.case import case_gradcam
        skipped: list[str] = []
        try:
            with self._cam_lock:
                res = case_gradcam(model, self.config, self.backbones(), images, masks, X,
                                   case_id=case_id, skipped=skipped, only_used=True)
        except Her2Error as err:
            ts.gradcam_notes.append(f"Grad-CAM maps could not be computed: {err.message}")
            return
        ts.gradcam = list(res)
        ts.gradcam_notes += skipped
        unused = [c for c in ts.scores if c not in ts.used]
        if unused:
            ts.gradcam_notes.append(
                f"not mapped: {', '.join(unused)} (the final model does not use "
                f"{'this score' if len(unused) == 1 else 'these scores'})")

    def _network_gradcam(self, ts: TaskScores, task: str, images, masks, case_id: str) -> None:
        runner = self._networks.get(task)
        if runner is None or not runner.entries:
            return
        used = set(ts.used)
        keep = [e for e in runner.entries if f"dscore_ft_{e['name']}" in used]
        for e in runner.entries:
            if e not in keep:
                ts.gradcam_notes.append(f"network {e['name']}: no map: its score is not used by "
                                        "the model")
        if not keep:
            return
        try:
            with self._cam_lock:
                ts.gradcam += runner.gradcam(images, masks, case_id=case_id, entries=keep)
        except Her2Error as err:
            ts.gradcam_notes.append(f"Grad-CAM of the fine-tuned networks could not be computed: "
                                    f"{err.message}")

    # ------------------------------------------------------------------ clinical part
    def second_level_row(self, part: ImagePart, clinical: Mapping[str, Any], task: str) -> pd.DataFrame:
        """The final model's inputs for one case: its block scores and clinical values."""
        model = self._model(task)
        cols = model.second_level_columns() if hasattr(model, "second_level_columns") else \
            model.clinical_inputs()
        scores = part.tasks[task].scores if task in part.tasks else {}
        row = {}
        for c in cols:
            if c in scores:
                row[c] = float(scores[c])
            else:
                v = clinical.get(c)
                row[c] = np.nan if _missing(v) else v
        Z = pd.DataFrame([row], index=[part.case_id], columns=cols)
        for c in cols:                        # numbers as float, levels as text (the cohort's types)
            if c not in scores:
                num = pd.to_numeric(Z[c], errors="coerce")
                if Z[c].isna().all() or num.notna().all():
                    Z[c] = num.astype(float)
                else:
                    Z[c] = Z[c].astype(object)
        return Z

    def _model(self, task: str):
        if task not in self.bundle.models:
            raise BundleError(f"this bundle has no model for task {task!r} (tasks: "
                              f"{', '.join(self.tasks)})", file=self.bundle.path)
        return self.bundle.models[task]

    def clinical_part(self, part: ImagePart, clinical: Mapping[str, Any], task: str = "her2", *,
                      shap: bool = True) -> ClinicalPart:
        """Probability, interval, nomogram points and SHAP of one task (milliseconds)."""
        from her2core.bundle import out_of_range
        t0 = time.perf_counter()
        model = self._model(task)
        Z = self.second_level_row(part, clinical, task)
        final = model.final_estimator if hasattr(model, "final_estimator") else model
        p = float(np.asarray(final.predict_proba(Z))[0, 1])
        used = list(model.used_variables()) if hasattr(model, "used_variables") else list(Z.columns)
        imputed = [c for c in used if c in Z.columns and pd.isna(Z[c].iloc[0])]
        flags = out_of_range(Z[[c for c in used if c in Z.columns]], self.bundle.ranges(task))
        cp = ClinicalPart(task=task, probability=p, interval=None, interval_method="",
                          second_level={str(k): _plain(v) for k, v in Z.iloc[0].items()}, used=used,
                          imputed=imputed, out_of_range=sorted(flags.get(part.case_id, [])))
        if hasattr(final, "predict_interval"):
            iv = final.predict_interval(Z, 0.95)
            cp.interval = (float(iv[0, 0]), float(iv[0, 1]))
            cp.interval_method = INTERVAL_METHOD
        else:
            cp.notes.append("No interval: the final model is not a logistic nomogram.")
        if not used:
            cp.notes.append("The model kept no predictor: every case gets the training "
                            "prevalence. This is not a prediction for this patient.")
        nomo = self.bundle.nomogram(task)
        if nomo is not None and hasattr(final, "design"):
            design = final.design(Z).iloc[0].to_dict()
            cp.nomogram = nomo
            cp.points = nomo.patient_points(design)
            if abs(cp.points["probability"] - p) > 1e-6:
                cp.notes.append(f"nomogram probability {cp.points['probability']:.4f} differs "
                                f"from the model's {p:.4f}")
        elif used:
            cp.notes.append("This model has no nomogram (its final level is not a logistic model).")
        if shap:
            cp.contributions, note = self._shap(final, Z, task, part.case_id)
            if note:
                cp.notes.append(note)
        cp.seconds = time.perf_counter() - t0
        return cp

    def _shap(self, final, Z: pd.DataFrame, task: str, case_id: str):
        from her2core.explain.shap_explain import explain_model
        bg = self._background.get(task)
        if bg is None:
            return None, ("No SHAP contributions: this bundle carries no reference population "
                          "(retrain it with this version).")
        bg = bg.reindex(columns=list(Z.columns))
        try:
            cc = explain_model(final, bg, Z, case_ids=[str(case_id)], time_budget_s=5.0,
                               provenance={"background": f"{len(bg)} training cases "
                                                         "(out-of-fold scores)"})
        except ValueError as err:
            return None, f"No SHAP contributions: {err}"
        return cc.patient(0), ""

    def three_way_call(self, part: ImagePart, clinical: Mapping[str, Any]) -> dict | None:
        """Positive / low / zero as class probabilities (:func:`three_way`) from this
        bundle's two tasks, or None when it lacks one. When the HER2-low model kept no
        predictor its split is the training prevalence, not a prediction: then only
        "positive" is given, with ``note`` saying so."""
        if not {"her2", "her2_low"} <= set(self.tasks):
            return None
        hi = self.clinical_part(part, clinical, "her2", shap=False)
        lo = self.clinical_part(part, clinical, "her2_low", shap=False)
        if lo.no_predictors:
            return {"positive": hi.probability, "low": None, "zero": None,
                    "note": "the HER2-low model kept no predictor: low vs zero is not predicted "
                            "(it would be the training prevalence for every case)"}
        out: dict[str, Any] = dict(three_way(hi.probability, lo.probability))
        out["note"] = ("P(low) = (1 - P(positive)) x P(low | negative), from the two models "
                       "in sequence")
        return out

    # ------------------------------------------------------------------ both
    def predict(self, images, masks, clinical: Mapping[str, Any], *, case_id: str = "case",
                gradcam: bool = True, progress: ProgressFn | None = None):
        """(ImagePart, {task: ClinicalPart}) of one case."""
        part = self.image_part(images, masks, case_id=case_id, gradcam=gradcam, progress=progress)
        return part, {t: self.clinical_part(part, clinical, t) for t in self.tasks}


def three_way(p_her2: float, p_low: float) -> dict[str, float]:
    """The three-way call as class probabilities that sum to 1, from the sequential pair of
    models (paper 002's readers answered positive / low / zero): P(positive) = p_her2,
    P(low) = (1 - p_her2) * P(low | negative), P(zero) = (1 - p_her2) * (1 - P(low | negative))."""
    p_her2, p_low = float(p_her2), float(p_low)
    for name, v in (("p_her2", p_her2), ("p_low", p_low)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be a probability, got {v}")
    return {"positive": p_her2, "low": (1 - p_her2) * p_low, "zero": (1 - p_her2) * (1 - p_low)}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v == "")


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
