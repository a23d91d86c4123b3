"""Glue between cohort, features and models, shared by `train`, `predict` and the app.

- :func:`feature_config_for` builds the FeatureConfig of a recipe (``random_init``
  makes random initialisation explicit for every backbone; the recipe's
  ``preprocessing`` resampling / rigid registration become the config's
  ``resample_mm`` / ``register_to``, applied to every case it extracts);
- :func:`compute_features` runs ``extract_cohort_features`` (bad cases are
  reported and skipped, the rest finish) and, when asked, the second-ROI
  features for the ICC filter: ``mask_reader2`` where the case has one, else
  the ROI dilated (even case positions) or eroded (odd) by one voxel;
- :func:`model_frame` joins features and clinical columns (computed ones, such as the
  DCE kinetics, from the images where cohort.csv leaves them empty);
- :func:`nomogram_for` / :func:`total_points` give the nomogram of a fitted
  StackedNomogram (her2core.nomogram) and the patients' total points.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from her2core.errors import Her2Error

log = logging.getLogger(__name__)

__all__ = ["feature_config_for", "compute_features", "computed_columns", "model_frame", "nomogram_for",
           "total_points", "ProgressLog"]


class ProgressLog:
    """``progress(done, total, message)`` callback that logs cases done / total and an ETA."""

    def __init__(self, what: str, every_s: float = 5.0):
        self.what, self.every_s, self.t0, self.last = what, every_s, time.time(), 0.0

    def __call__(self, done: int, total: int, message: str = "") -> None:
        now = time.time()
        if done < total and now - self.last < self.every_s:
            return
        self.last = now
        el = now - self.t0
        eta = el / done * (total - done) if done else float("nan")
        log.info("%s: %d / %d cases, %.0f s elapsed, ETA %.0f s %s", self.what, done, total, el,
                 eta, message)


def feature_config_for(recipe: dict, *, random_init: bool = False, weights_dir=None,
                       weights: dict | None = None, device: str | None = None):
    """The recipe's FeatureConfig, or None for a recipe without images."""
    feats = recipe.get("features")
    if not feats:
        return None
    from her2core.features.config import FeatureConfig

    d = dict(feats)
    pre = recipe.get("preprocessing") or {}
    if pre.get("resample_mm") is not None:          # paper 000: applied in extraction
        d["resample_mm"] = list(pre["resample_mm"])
    if pre.get("rigid_registration_to") is not None:
        d["register_to"] = pre["rigid_registration_to"]
    if random_init:
        d["default_weights"] = "random-init"
        d["weights"] = {}
    if weights:
        d["weights"] = {**d.get("weights", {}), **weights}
    if weights_dir:
        d["weights_dir"] = str(weights_dir)
    if device:
        d["device"] = device
    return FeatureConfig.from_dict(d)


def _perturbed_mask(mask, position: int):
    from her2core.imaging.ops import dilate_mask, erode_mask

    if position % 2 == 0:
        return dilate_mask(mask, 1)
    out = erode_mask(mask, 1)
    n0, n1 = int((mask.array > 0).sum()), int((out.array > 0).sum())
    if n1 < 40 or n1 < 0.5 * n0:  # erosion would nearly empty a small ROI: dilate instead
        return dilate_mask(mask, 1)
    return out


def second_roi_features(cohort, config, extractor, case_ids) -> tuple[pd.DataFrame, list]:
    """Features from the second ROI of each case (reader 2, else perturbed ROI)."""
    from her2core.features.extract import load_case
    from her2core.imaging import load_image

    rows, errors = {}, []
    prog = ProgressLog("second-ROI features (ICC)")
    n_reader2 = 0
    for i, cid in enumerate(case_ids):
        try:
            files = cohort.files(cid)
            images, masks = load_case(files, config)
            masks2 = {}
            if files.mask_reader2 is not None:
                masks2["mask"] = load_image(files.mask_reader2, sequence="mask", modality="SEG",
                                            expected_ndim=3, case_id=cid)
                n_reader2 += 1
            elif files.mask is not None:
                m = load_image(files.mask, sequence="mask", modality="SEG", expected_ndim=3,
                               case_id=cid)
                masks2["mask"] = _perturbed_mask(m, i)
            if "US" in masks:
                masks2["US"] = _perturbed_mask(masks["US"], i)
            s = extractor.extract_case(images, masks2, case_id=cid)
            rows[cid] = s
        except Her2Error as err:
            errors.append(err.with_context(case_id=cid))
            log.warning("second ROI skipped: %s", err)
        except Exception as exc:  # one bad case is reported, the rest finish
            err = Her2Error(f"second-ROI features failed: {type(exc).__name__}: {exc}",
                            case_id=cid)
            errors.append(err)
            log.warning("%s", err)
        prog(i + 1, len(case_ids))
    log.info("second ROI: %d case(s) with a reader-2 mask, %d perturbed (dilate/erode 1 voxel)",
             n_reader2, len(rows) - n_reader2)
    df = pd.DataFrame(rows).T if rows else pd.DataFrame()
    df.index.name = "case_id"
    return df.astype(float), errors


def compute_features(cohort, config, *, cache_dir=None, second_roi: bool = False,
                     case_ids=None, progress=None, executor=None) -> dict[str, Any]:
    """Features (and optional second-ROI features) of a cohort.

    Returns {"features": DataFrame, "second": DataFrame | None, "errors": [Her2Error] (cases
    skipped), "second_errors": [Her2Error] (cases without second-ROI features: the ICC is
    computed without them),
    "weights": {backbone: identity}, "provenance": dict, "warning": str | None}.
    """
    from her2core.features.extract import FeatureExtractor

    extractor = FeatureExtractor(config)
    sub = cohort if case_ids is None else cohort.subset(case_ids=case_ids)
    feats, errors = extractor.extract_cohort(sub, cache_dir=cache_dir,
                                             progress=progress or ProgressLog("features"),
                                             executor=executor)
    for err in errors:
        log.warning("case skipped: %s", err)
    second, err2 = None, []
    if second_roi and len(feats):
        second, err2 = second_roi_features(sub, config, extractor, list(feats.index))
    prov = dict(feats.attrs.get("provenance", {}))
    return {"features": feats, "second": second, "errors": errors, "second_errors": err2,
            "weights": dict(feats.attrs.get("weights", extractor.weights)),
            "provenance": prov, "warning": prov.get("warning")}


def computed_columns(cohort, columns, case_ids=None) -> pd.DataFrame:
    """The cohort's computed clinical columns among ``columns`` (cohort.COMPUTED_COLUMNS:
    ``dce_curve`` / ``dce_eer`` from DCE_phases inside the ROI, her2core.imaging.kinetics):
    the cohort.csv value where a cell is filled, else the value computed from the case's
    images, else missing (imputed and flagged by the models like any missing predictor)."""
    from her2core.cohort import CLINICAL_BY_NAME, COMPUTED_COLUMNS
    table = cohort.table
    ids = [str(c) for c in (table.index if case_ids is None else case_ids)]
    wanted = [c for c in columns if c in COMPUTED_COLUMNS]
    out = pd.DataFrame(index=pd.Index(ids, name="case_id"))
    by_id = table.copy()
    by_id.index = by_id.index.astype(str)
    for c in wanted:
        if c in by_id.columns:
            out[c] = by_id[c].astype(object).reindex(ids).to_numpy()
        else:
            out[c] = np.nan
    need = [i for i in ids if out.loc[i, wanted].isna().any()] if wanted else []
    if need and cohort.has_images:
        from her2core.imaging.kinetics import cohort_kinetics
        comp, errors = cohort_kinetics(cohort, need)
        for err in errors:
            log.info("%s (its computed predictors are missing)", err)
        for c in wanted:
            if c in comp.columns:
                out[c] = out[c].where(out[c].notna(), comp[c].reindex(ids).astype(object))
    for c in wanted:
        if CLINICAL_BY_NAME[c].kind == "number":
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
        else:
            out[c] = out[c].astype(object).where(out[c].notna(), np.nan)
    return out


def model_frame(cohort, features: pd.DataFrame | None, clinical_columns) -> pd.DataFrame:
    """Features (rows: cases that have them) joined with the clinical columns of cohort.csv
    (computed columns, such as ``dce_curve`` / ``dce_eer``, filled from the images where
    their cell is empty: :func:`computed_columns`)."""
    from her2core.cohort import COMPUTED_COLUMNS
    table = cohort.table
    cols = [c for c in clinical_columns if c in table.columns and c not in COMPUTED_COLUMNS]
    clin = table[cols].copy()
    for c in cols:  # categorical dtype -> plain object (missing stays NaN)
        if isinstance(clin[c].dtype, pd.CategoricalDtype):
            clin[c] = clin[c].astype(object).where(clin[c].notna(), np.nan)
    clin.index = clin.index.astype(str)
    computed = [c for c in clinical_columns if c in COMPUTED_COLUMNS]
    if computed:
        comp = computed_columns(cohort, computed, list(clin.index))
        clin = clin.join(comp)
        clin = clin[[c for c in clinical_columns if c in clin.columns]]
    if features is None:
        return clin
    f = features.copy()
    f.index = f.index.astype(str)
    return f.join(clin, how="left")


def nomogram_for(model, X: pd.DataFrame):
    """Nomogram (her2core.nomogram.Nomogram) of a fitted StackedNomogram's logistic second
    level, its axes spanning the training design; None when the level is not logistic or
    kept no predictor."""
    from her2core.nomogram import Nomogram

    if not (hasattr(model, "is_nomogram") and model.is_nomogram()):
        return None
    final = model.final_estimator
    D = final.design(model.second_level(X))
    if D.shape[1] == 0:
        return None
    coefs = final.coefficients()
    enc = final.encoding()
    categorical = {}
    for var in final.used_variables():
        if enc["kinds"].get(var) == "categorical":
            levels = enc["levels"][var]
            categorical[var] = {lv: (None if i == 0 else f"{var}={lv}") for i, lv in enumerate(levels)}
    cat_cols = {c for m in categorical.values() for c in m.values() if c}
    ranges = {c: (float(D[c].min()), float(D[c].max())) for c in D.columns if c not in cat_cols}
    try:
        binary = [c for c in ranges if D[c].dropna().isin([0, 1]).all() and D[c].nunique() == 2]
        nomo = Nomogram.from_coefficients(coefs["intercept"], coefs["coefficients"], ranges,
                                          categorical, binary=binary)
        _ = nomo.lp_per_point
    except ValueError as exc:
        log.warning("no nomogram: %s", exc)
        return None
    return nomo


def total_points(nomogram, model, X: pd.DataFrame) -> np.ndarray | None:
    """Nomogram total points of each row (from the model's linear predictor)."""
    if not nomogram:
        return None
    from her2core.nomogram import Nomogram

    nomo = nomogram if isinstance(nomogram, Nomogram) else Nomogram.from_dict(nomogram)
    lp = model.final_estimator.decision_function(model.second_level(X))
    return (np.asarray(lp) - nomo.lp_at_zero_points) / nomo.lp_per_point
