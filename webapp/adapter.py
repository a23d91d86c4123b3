"""The loaded bundle (her2core.bundle) seen from the app.

``get_adapter()`` returns one shared, read-only :class:`BundleAdapter` per loaded
bundle (st.cache_resource). It turns one case into:

* an :class:`~webapp.predict.ImagePart` (features through the bundle's
  FeatureConfig, block D-scores, Grad-CAM maps of every 2-D backbone placed
  back into the image geometry), and
* a :class:`~webapp.predict.ClinicalPart` (second level: probability, nomogram
  points, SHAP) for any clinical values, in milliseconds.

Backbones are created once (cache_resource) and used read-only: Grad-CAM hooks
live inside her2core.explain.gradcam's ``with`` blocks.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from her2core.errors import Her2Error

from . import clinical as clin
from . import services as S

log = logging.getLogger(__name__)

TASK = "her2"
_VAL_LOCK = threading.Lock()
LOW_TASK = "her2_low"


def _score(model, X) -> np.ndarray:
    """A block model's D-score (log-odds), as StackedNomogram computes it."""
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X), dtype=float).ravel()
    p = np.clip(np.asarray(model.predict_proba(X))[:, 1], 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


class _BlockScore:
    """A block's D-score as a function of that block's columns only (others fixed at the patient's).

    Lets Grad-CAM linearise the score over the 512-odd block columns without
    rebuilding the full feature frame column by column.
    """

    def __init__(self, scorer, full_row: pd.DataFrame, block_cols: list[str]):
        self.scorer = scorer
        self.full_row = full_row
        self.block = getattr(scorer, "block", None)
        self.columns_ = list(block_cols)
        self.feature_names_in_ = np.asarray(block_cols, dtype=object)
        self._need = [str(c) for c in getattr(scorer, "feature_names_in_", full_row.columns)]

    def decision_function(self, Xb: pd.DataFrame):
        Xb = Xb[self.columns_]
        n = len(Xb)
        block = Xb.to_numpy(float)
        pos = {c: i for i, c in enumerate(Xb.columns)}
        row = self.full_row.iloc[0]
        data = {c: (block[:, pos[c]] if c in pos else np.repeat(row[c], n)) for c in self._need}
        return _score(self.scorer, pd.DataFrame(data, index=Xb.index))


class _CamModelView:
    """The model as case_gradcam sees it: same final level, block scorers as fast _BlockScore views.

    Each view computes its block's D-score from that block's columns with the
    patient's other values fixed, so the linearisation needs no column-by-column
    frame building; the D-scores are identical (checked by case_gradcam's head test).
    """

    def __init__(self, model, full_row: pd.DataFrame):
        self.final_ = getattr(model, "final_", None)
        self.scorers_ = []
        for col, sc in getattr(model, "scorers_", []):
            cols = [str(c) for c in getattr(sc, "columns_", [])]
            if cols:
                self.scorers_.append((col, _BlockScore(sc, full_row, cols)))


def _progress(cb, frac, text):
    if cb is not None:
        try:
            cb(frac, text)
        except Exception:  # noqa: BLE001 - a progress widget must never break the run
            pass


@st.cache_resource(show_spinner=False, max_entries=8)
def _backbone(name: str, weights: str, weights_dir: str | None, seed: int, input_px: int | None,
              volume_size: int, device: str):
    """One backbone for all sessions (read-only; Grad-CAM hooks only inside ``with`` blocks)."""
    from her2core.features import create_backbone
    return create_backbone(name, weights, weights_dir=weights_dir, seed=seed, device=device,
                           amp=False, volume_size=volume_size, input_px=input_px)


class BundleAdapter:
    def __init__(self, info: "S.BundleInfo"):
        self.info = info
        self.bundle = info.bundle
        self.model = self.bundle.models[TASK] if TASK in self.bundle.models else \
            next(iter(self.bundle.models.values()))
        self.low_model = self.bundle.models.get(LOW_TASK)
        from her2core.features import FeatureConfig
        fc = dict(self.bundle.feature_config or {})
        self.config = FeatureConfig.from_dict(fc) if fc else None
        self._nomograms = {}
        self._fast_ok = None
        self._val_job: dict[str, Any] = {"state": "idle"}
        from her2core.nomogram import Nomogram
        for task, d in (self.bundle.nomograms or {}).items():
            try:
                self._nomograms[task] = Nomogram.from_dict(d)
            except Exception as err:  # noqa: BLE001
                log.warning("nomogram of task %s unreadable: %s", task, err)

    # ------------------------------------------------------------ what the model reads
    def feature_columns(self, model=None) -> list[str]:
        m = model or self.model
        return [str(c) for c in getattr(m, "feature_names_in_", [])]

    def clinical_columns(self, model=None) -> list[str]:
        m = model or self.model
        cols = getattr(m, "clinical_columns_", None)
        if cols is None:
            cols = [c for c in self.feature_columns(m) if "__" not in c]
        return [str(c) for c in cols]

    def clinical_fields(self) -> tuple[str, ...]:
        """Clinical inputs that change a prediction (the final models' variables)."""
        cols: set[str] = set()
        for m in (self.model, self.low_model):
            if m is None:
                continue
            used = [str(v) for v in (getattr(getattr(m, "final_", None), "variables_", None) or [])]
            cols |= {c for c in self.clinical_columns(m) if c in used}
        if not cols:
            cols = set(self.clinical_columns())
        return tuple(f.name for f in clin.FIELDS if f.name in cols)

    # ------------------------------------------------------------ networks
    def _backbones(self) -> dict[str, Any]:
        from her2core.features import resolve_device
        cfg = self.config
        dev = resolve_device(cfg.device)
        return {name: _backbone(name, cfg.weights_for(name), cfg.weights_dir, int(cfg.seed),
                                cfg.input_size, int(cfg.volume_size), dev)
                for name in cfg.all_backbones()}

    def _case_images(self, case, seq: str, mask_arr: np.ndarray):
        """(images, masks) for the sequences the bundle uses, masks moved onto each grid."""
        ref_img, _ = S.canonical_for(case, seq)
        ref_mask = ref_img.spatial_template().with_array((mask_arr > 0).astype(np.uint8),
                                                         sequence="mask", modality="SEG")
        images, masks = {}, {}
        need = list(self.config.sequences) if self.config else []
        absent = [s for s in need if s not in case.files]
        if absent:
            raise Her2Error(f"the bundle needs the sequence(s) {', '.join(absent)}, which this case "
                            "does not have", case_id=case.case_id,
                            hint="assign them on the Case page or use a bundle for these sequences")
        for s in need:
            img, _ = S.canonical_for(case, s)
            if s == "DCE" and img.is_phases:
                img = img.phase(1)
            images[s] = img
            if img.ndim != ref_img.ndim:
                raise Her2Error(f"the ROI is on {seq} ({ref_img.ndim}-D) but {s} is {img.ndim}-D",
                                case_id=case.case_id, hint="draw the ROI on each modality's image")
            if img.same_grid(ref_img):
                masks[s] = ref_mask.replace(array=ref_mask.array)
            else:
                from her2core.imaging.ops import resample_to_reference
                m = resample_to_reference(ref_mask, img, is_mask=True)
                if not np.any(m.array):
                    raise Her2Error(f"the ROI drawn on {seq} does not overlap {s}",
                                    case_id=case.case_id)
                masks[s] = m
        return images, masks

    def _features(self, case, images, masks, progress) -> pd.DataFrame:
        from her2core import features as F
        if hasattr(F, "extract_case_features"):
            row = F.extract_case_features(images, masks, self.config, backbones=self._backbones(),
                                          case_id=case.case_id)
            if isinstance(row, pd.Series):
                row = row.to_frame().T
            row.index = [case.case_id]
            return row
        # fallback on the documented building blocks (deep features only)
        from her2core.features import deep as D
        bbs = self._backbones()
        plan = D.input_plan(self.config, bbs)
        ci = D.build_inputs(case.case_id, images, masks, self.config, plan)
        batch = D.collate([ci])
        feats = D.run_batch(batch, self.config, bbs)
        cols = {}
        for key, arr in feats.items():
            seq, name = key.split("__", 1)
            for i, c in enumerate(D.deep_columns(seq, name, arr.shape[1])):
                cols[c] = float(arr[0, i])
        if self.config.radiomics:
            raise Her2Error("radiomics for a single case needs her2core.features.extract_case_features, "
                            "which is not in this build")
        return pd.DataFrame([cols], index=[case.case_id])

    def image_part(self, case, seq: str, mask_arr: np.ndarray, progress=None):
        from .predict import ImagePart
        if self.config is None:
            raise Her2Error("the bundle has no feature_config.json: it cannot read images",
                            file=self.info.path)
        t0 = time.perf_counter()
        _progress(progress, 0.05, "loading the images and moving the ROI onto each grid")
        images, masks = self._case_images(case, seq, mask_arr)
        _progress(progress, 0.15, "creating the backbones")
        self._backbones()
        t1 = time.perf_counter()
        _progress(progress, 0.25, "extracting features")
        X = self._features(case, images, masks, progress)
        t2 = time.perf_counter()
        part = ImagePart(case_key=case.key, roi_hash="")
        part.features = X
        for col, scorer in getattr(self.model, "scorers_", []):
            try:
                part.scores[col] = float(_score(scorer, self._frame(X, {}, self.model))[0])
            except Exception as err:  # noqa: BLE001
                part.notes.append(f"{col}: {err}")
        for task, m in self.bundle.models.items():
            if m is self.model:
                continue
            sc = {}
            for col, scorer in getattr(m, "scorers_", []):
                try:
                    sc[col] = float(_score(scorer, self._frame(X, {}, m))[0])
                except Exception as err:  # noqa: BLE001
                    part.notes.append(f"{task} {col}: {err}")
            part.scores_by_task[task] = sc
        _progress(progress, 0.6, "Grad-CAM maps")
        try:
            part.gradcam, part.gradcam_note = self._gradcam(case, images, masks, X)
        except Exception as err:  # noqa: BLE001 - maps are an explanation, not the prediction
            log.exception("Grad-CAM failed")
            part.gradcam, part.gradcam_note = {}, f"Grad-CAM maps could not be computed: {err}"
        t3 = time.perf_counter()
        part.timings = {"load_s": t1 - t0, "features_s": t2 - t1, "gradcam_s": t3 - t2,
                        "total_s": t3 - t0}
        _progress(progress, 1.0, "done")
        return part

    def _gradcam(self, case, images, masks, X):
        """Maps of every (sequence, backbone) block with a D-score, placed in the image geometry.

        Uses her2core.explain.case.case_gradcam when this build has it (it checks the
        head's D-score against the model's), else the same steps written here for 2-D.
        """
        try:
            from her2core.explain.case import case_gradcam
        except ImportError:
            case_gradcam = None
        if case_gradcam is not None:
            feats = self._frame(X, {}, self.model)
            view = _CamModelView(self.model, feats)
            res = case_gradcam(view, self.config, self._backbones(), images, masks, feats,
                               case_id=case.case_id)
            maps = {(r.sequence, r.backbone): r.map_image for r in res}
            notes = sorted({n for r in res for n in r.notes})
            note = ("Target: each block's D-score (log-odds) through its fitted linear head; "
                    + ", ".join(f"{r.sequence}/{r.backbone}: what {'raises' if r.direction == 'positive' else 'lowers'}"
                                f" it" for r in res) + ".")
            if self.info.random_init:
                note += " Random-init weights: the maps show mechanics, not meaning."
            if notes:
                note += " " + " ".join(notes)
            return maps, note
        from her2core.explain import gradcam as G
        from her2core.explain.placement import crop_box_image, place_map
        from her2core.features import deep as D
        from her2core.imaging import ops
        maps: dict[tuple[str, str], Any] = {}
        notes = []
        bbs = self._backbones()
        cfg = self.config
        scorers = list(getattr(self.model, "scorers_", []))
        for seq in cfg.sequences:
            for name in cfg.backbones.get(seq, []):
                bb = bbs[name]
                block = f"{seq}__{name}__"
                cols = [c for c in X.columns if str(c).startswith(block)]
                users = [(c, m) for c, m in scorers if any(str(f).startswith(block)
                                                           for f in getattr(m, "columns_", []))]
                if not cols or not users:
                    continue
                if bb.kind == "3d":
                    notes.append(f"{seq}/{name}: 3-D backbone maps are not placed in the viewer")
                    continue
                col, scorer = users[0]
                img, msk = images[seq], masks[seq]
                mc = int(cfg.margin_px)
                m = mc if img.ndim == 2 else (mc, mc, 1)
                img_c = ops.crop_to_roi(img, msk, margin_px=m)
                msk_c = ops.crop_to_roi(msk, msk, margin_px=m)
                x = D.prepare_slices(img, msk, mode="largest", margin_px=cfg.margin_px,
                                     square=cfg.square, percentiles=cfg.intensity_percentiles)
                import torch
                t = torch.from_numpy(x[:1])
                inp = bb.prepare(t)
                proxy = _BlockScore(scorer, self._frame(X, {}, scorer), cols)
                head = G.score_head_from_model(bb.model, proxy, cols, X[cols].astype(float),
                                               sequence_columns=cols)
                cam = G.compute_cam(head, inp)
                h, w = (img_c.shape if img_c.ndim == 2 else img_c.shape[1:])
                n = max(h, w) if cfg.square else None
                if img_c.ndim == 2:
                    start = (-(n - w) // 2 if n else 0, -(n - h) // 2 if n else 0)
                    size = (n or w, n or h)
                else:
                    z = int(ops.largest_roi_slice(msk_c))
                    start = (-((n - w) // 2) if n else 0, -((n - h) // 2) if n else 0, z)
                    size = (n or w, n or h, 1)
                crop = crop_box_image(img_c, start, size)
                maps[(seq, name)] = place_map(cam, crop, img)
        note = "Target: the block's D-score (log-odds) through its fitted linear head."
        if self.info.random_init:
            note += " Random-init weights: the maps show mechanics, not meaning."
        if notes:
            note += " " + "; ".join(notes)
        return maps, note

    # ------------------------------------------------------------ second level
    @staticmethod
    def _frame(X: pd.DataFrame, clinical: dict[str, Any], model) -> pd.DataFrame:
        """One-row frame with every column the model was fitted on (missing -> NaN)."""
        cols = [str(c) for c in getattr(model, "feature_names_in_", list(X.columns))]
        row = X.iloc[0]
        have = set(row.index)
        data = {}
        for c in cols:
            if c in clinical:
                v = clinical[c]
                data[c] = [np.nan if clin.is_missing(v) else v]
            else:
                data[c] = [row[c] if c in have else np.nan]
        return pd.DataFrame(data, index=X.index[:1])

    def _second_level_row(self, part, clinical: dict[str, Any], model) -> pd.DataFrame:
        """Second-level inputs (cached D-scores + clinical values), no network and no scorer run."""
        if not hasattr(model, "final_") or not hasattr(model, "scorers_"):
            return self._frame(part.features, clinical, model)
        row: dict[str, Any] = {}
        cached = part.scores if model is self.model else next(
            (part.scores_by_task.get(t, {}) for t, m in self.bundle.models.items() if m is model), {})
        for col, scorer in model.scorers_:
            if col in cached:
                row[col] = cached[col]
            else:
                row[col] = float(_score(scorer, self._frame(part.features, {}, model))[0])
        for c in model.clinical_columns_:
            v = clinical.get(c, part.features[c].iloc[0] if c in part.features.columns else None)
            row[c] = np.nan if clin.is_missing(v) else v
        Z = pd.DataFrame([row], index=part.features.index[:1])
        return Z

    def clinical_part(self, part, clinical: dict[str, Any]):
        from .predict import ClinicalPart
        model = self.model
        Z = self._second_level_row(part, clinical, model)
        final = getattr(model, "final_", model)
        p = float(np.asarray(final.predict_proba(Z))[0, 1])
        cp = ClinicalPart(p_her2=p)
        iv = self._interval(Z)
        if iv is not None:
            cp.p_interval, cp.interval_method = iv
        if self.low_model is not None:
            try:
                Zl = self._second_level_row(part, clinical, self.low_model)
                cp.p_low = float(np.asarray(getattr(self.low_model, "final_", self.low_model)
                                            .predict_proba(Zl))[0, 1])
            except Exception as err:  # noqa: BLE001
                cp.low_note = f"HER2-low vs zero could not be computed: {err}"
        else:
            cp.low_note = "HER2-low vs HER2-zero: this bundle has no model for that task."
        zrow = {str(k): v for k, v in Z.iloc[0].items()}
        nom = self._nomograms.get(TASK)
        if nom is not None:
            try:
                cp.patient_points = nom.patient_points(zrow)
                cp.nomogram = nom
                cp.point_values = {v.name: zrow.get(v.column or v.name, zrow.get(v.name))
                                   for v in nom.variables}
                if abs(cp.patient_points["probability"] - p) > 1e-6:
                    cp.nomogram_note = (f"nomogram probability {cp.patient_points['probability']:.3f} "
                                        f"differs from the model's {p:.3f}")
            except ValueError as err:
                cp.nomogram_note = f"No points for this patient ({err}); fill in the missing value."
        else:
            cp.nomogram_note = "This bundle has no nomogram (its second level is not a logistic model)."
        cp.contributions, cp.shap_note = self._shap(Z, part.features.index[0])
        return cp

    def _interval(self, Xf) -> tuple[tuple[float, float], str] | None:
        fn = getattr(self.bundle, "predict_interval", None)
        if callable(fn):
            try:
                lo, hi = fn(Xf, task=TASK)
                return (float(lo), float(hi)), "bootstrap interval"
            except Exception:  # noqa: BLE001
                return None
        return None

    def _background(self, Z: pd.DataFrame) -> pd.DataFrame:
        """Second-level reference rows: the training OOF scores with the imputation values (cached)."""
        key = tuple(Z.columns)
        if getattr(self, "_bg_key", None) == key:
            return self._bg
        self._bg = self._make_background(Z)
        self._bg_key = key
        return self._bg

    def _make_background(self, Z: pd.DataFrame) -> pd.DataFrame:
        final = getattr(self.model, "final_", self.model)
        fill = dict(getattr(getattr(final, "prep_", None), "fill_", {}) or {})
        oof = getattr(self.model, "oof_scores_", None)
        n = len(oof) if oof is not None else 1
        bg = pd.DataFrame(index=range(n), columns=Z.columns, dtype=object)
        for c in Z.columns:
            if oof is not None and c in oof.columns:
                bg[c] = np.asarray(oof[c], float)
            elif c in fill:
                bg[c] = fill[c]
            else:
                bg[c] = Z[c].iloc[0]
        return bg.astype(Z.dtypes.to_dict(), errors="ignore")

    def _shap(self, Z, case_id):
        """Patient's SHAP waterfall of the second level.

        For the project's linear ClinicalModel the exact linear SHAP values are
        computed here in one encoding pass (coef x (design - background mean),
        summed per predictor); the first call is checked against
        her2core.explain.explain_model and any disagreement switches to it.
        """
        try:
            from her2core.explain.shap_explain import explain_model
        except ImportError as err:
            return None, f"SHAP is not available in this build ({err})"
        final = getattr(self.model, "final_", self.model)
        note = ("Reference: the training cohort's out-of-fold D-scores with clinical values at their "
                "imputation values. " if getattr(self.model, "oof_scores_", None) is not None else
                "Reference: one case at the model's imputation values (training medians / most "
                "frequent levels). ")
        try:
            bg = self._background(Z)
            fast = self._fast_linear_shap(final, bg, Z, case_id) if self._fast_ok is not False else None
            if fast is not None and self._fast_ok:
                return fast, note + fast.note
            cc = explain_model(final, bg, Z.reset_index(drop=True), case_ids=[str(case_id)],
                               time_budget_s=5.0)
            pc = cc.patient(0)
            if fast is not None and self._fast_ok is None:
                ok = (list(fast.predictors) == list(pc.predictors)
                      and np.allclose(fast.contributions, pc.contributions, atol=1e-8)
                      and abs(fast.base_value - pc.base_value) < 1e-8)
                self._fast_ok = bool(ok)
                if not ok:
                    log.warning("fast linear SHAP disagrees with explain_model: using explain_model")
            return pc, note + cc.note
        except Exception as err:  # noqa: BLE001
            return None, f"SHAP contributions could not be computed: {err}"

    def _fast_linear_shap(self, final, bg, Z, case_id):
        if not all(hasattr(final, a) for a in ("prep_", "columns_", "coef_", "intercept_")):
            self._fast_ok = False
            return None
        from her2core.explain.shap_explain import PatientContributions, predictor_group
        cols = list(final.columns_)
        if getattr(self, "_bg_mean_key", None) != tuple(bg.columns):
            self._bg_mean = final.prep_.transform(bg)[cols].to_numpy(float).mean(axis=0)
            self._bg_mean_key = tuple(bg.columns)
        d = final.prep_.transform(Z)[cols].to_numpy(float)[0]
        w = np.asarray(final.coef_, float)[0]
        b = float(np.asarray(final.intercept_, float)[0])
        per_col = w * (d - self._bg_mean)
        var_of = final.prep_.variable_of_
        predictors = [str(c) for c in Z.columns]
        contrib = np.zeros(len(predictors))
        pos = {p: i for i, p in enumerate(predictors)}
        for c, v in zip(cols, per_col):
            contrib[pos[var_of.get(c, c)]] += v
        return PatientContributions(
            case_id=str(case_id), predictors=predictors, values=list(Z.iloc[0].tolist()),
            contributions=contrib, groups=[predictor_group(c) for c in predictors],
            base_value=b + float(w @ self._bg_mean), prediction=b + float(w @ d), method="linear",
            note="Exact: coefficient x (input - background mean) on the model's log-odds scale, "
                 "summed back to each predictor (= shap.LinearExplainer, interventional).")

    # ------------------------------------------------------------ validation / cohort
    def validation_dca(self):
        """(DCAResult or None, status text) of the model on its validation predictions."""
        from her2core.metrics.dca import decision_curves
        y, p, label = self.validation_predictions()
        if y is None:
            return None, label
        key = (len(y), float(np.sum(p)))
        if getattr(self, "_dca_key", None) != key:
            self._dca = decision_curves(y, {"model": p})
            self._dca_key = key
        return self._dca, label

    def validation_predictions(self):
        """(y, p, label) of the model's validation predictions, or (None, None, status text).

        Stored in the bundle when it has them; otherwise computed once on the demo
        cohort in a background thread (own backbones, feature cache under
        ~/.cache/her2) and kept on disk by bundle checksum, so only the very first
        start of the app pays for it.
        """
        y, p = self._validation_predictions()
        if y is not None:
            return y, p, "model (validation predictions stored in the bundle)"
        with _VAL_LOCK:
            st_ = self._val_job
            if st_["state"] == "done":
                return st_["y"], st_["p"], st_["label"]
            if st_["state"] == "idle":
                cached = self._val_cache_file()
                if cached.is_file():
                    import json
                    d = json.loads(cached.read_text(encoding="utf-8"))
                    st_.update(state="done", y=np.asarray(d["y"], int), p=np.asarray(d["p"], float),
                               label=d["label"])
                    return st_["y"], st_["p"], st_["label"]
                st_["state"] = "running"
                import threading
                threading.Thread(target=self._val_worker, name="her2-validation", daemon=True).start()
            if st_["state"] == "failed":
                return None, None, f"the decision curve could not be computed: {st_.get('error')}"
            return None, None, (f"computing the model's predictions on the demo cohort for the decision "
                                f"curve: {st_.get('done', 0)}/{st_.get('total', '?')} cases (first start only)")

    def _val_cache_file(self):
        from pathlib import Path
        d = Path(os.environ.get("HER2_CACHE", Path.home() / ".cache" / "her2"))
        tag = (self.info.checksum or "none").replace("sha256:", "")[:24]
        return d / f"validation_{tag}.json"

    def _val_worker(self) -> None:
        import json
        st_ = self._val_job
        try:
            from her2core.cohort import read_cohort
            from her2core.features import extract_cohort_features
            root = S.ASSETS / "demo_cohort"
            if not (root / "cohort.csv").is_file():
                raise Her2Error("assets/demo_cohort is missing")
            coh = read_cohort(root)
            cache_dir = self._val_cache_file().parent / "features"

            def prog(done, total, *a):
                st_.update(done=int(done), total=int(total))

            import dataclasses
            cfg = dataclasses.replace(self.config, num_workers=0)  # no worker processes from a thread
            feats, errors = extract_cohort_features(coh, cfg, cache_dir=cache_dir, progress=prog)
            cols = [str(c) for c in getattr(self.model, "feature_names_in_", [])]
            X = feats.join(coh.table, how="left")
            for c in cols:
                if c not in X.columns:
                    X[c] = np.nan
            lab = coh.labels(TASK)
            ids = [i for i in X.index if i in set(lab.index)]
            p = np.asarray(self.model.predict_proba(X.loc[ids, cols]))[:, 1]
            y = lab.loc[ids].to_numpy().astype(int)
            trained_on = str((self.bundle.model_card or {}).get("data", {}).get("cohort", ""))
            label = "model on the demo cohort" + (" (its training cohort: apparent)"
                                                  if "demo_cohort" in trained_on else "")
            f = self._val_cache_file()
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps({"y": y.tolist(), "p": p.tolist(), "label": label}))
            with _VAL_LOCK:
                st_.update(state="done", y=y, p=p, label=label)
        except Exception as err:  # noqa: BLE001 - shown in the panel
            log.exception("validation predictions failed")
            with _VAL_LOCK:
                st_.update(state="failed", error=str(err))

    def _validation_predictions(self):
        for src in (self.bundle.training.get(TASK, {}) if isinstance(self.bundle.training, dict) else {},
                    self.bundle.model_card.get("validation", {}) if isinstance(self.bundle.model_card, dict) else {},
                    self.bundle.model_card):
            if not isinstance(src, dict):
                continue
            for key in ("validation_predictions", "oof_predictions", "predictions"):
                v = src.get(key)
                if isinstance(v, dict) and "y" in v and ("p" in v or "p_her2" in v):
                    y = np.asarray(v["y"], int)
                    p = np.asarray(v.get("p", v.get("p_her2")), float)
                    if y.size == p.size and y.size and 0 < y.sum() < y.size:
                        return y, p
        return None, None

    def predict_cohort(self, root: str, task: str = TASK, progress=None):
        """(scores DataFrame indexed by case_id, CohortContributions or None)."""
        from her2core.cohort import read_cohort
        model = self.bundle.models.get(task)
        if model is None:
            raise Her2Error(f"this bundle has no model for task {task}", file=self.info.path)
        from her2core import features as F
        if not hasattr(F, "extract_cohort_features"):
            raise Her2Error("cohort feature extraction (her2core.features.extract_cohort_features) "
                            "is not in this build")
        coh = read_cohort(root)
        feats, errors = F.extract_cohort_features(
            coh, self.config, progress=(lambda d, n, *a: _progress(progress, d / max(n, 1), f"{d}/{n} cases"))
            if progress else None)
        X = feats.join(coh.table, how="left")
        cols = [str(c) for c in getattr(model, "feature_names_in_", X.columns)]
        for c in cols:
            if c not in X.columns:
                X[c] = np.nan
        p = np.asarray(model.predict_proba(X[cols]))[:, 1]
        scores = pd.DataFrame({"p_" + task: p}, index=X.index)
        for col, scorer in getattr(model, "scorers_", []):
            scores[col] = np.asarray(scorer.decision_function(X[cols]), float)
        cc = None
        try:
            from her2core.explain.shap_explain import explain_model
            cc = explain_model(model, X[cols], X[cols], time_budget_s=10.0)
        except Exception as err:  # noqa: BLE001
            log.info("cohort SHAP skipped: %s", err)
        return scores, cc


@st.cache_resource(show_spinner=False, max_entries=2)
def _adapter_for(checksum: str, path: str) -> BundleAdapter:
    return BundleAdapter(S.bundle_info())


def get_adapter() -> BundleAdapter:
    info = S.bundle_info()
    if not info.available:
        raise ImportError(info.message)
    ad = _adapter_for(info.checksum, info.path)
    ad.validation_predictions()   # starts the one-time background job when needed
    return ad
