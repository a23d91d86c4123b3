"""Model output for a reader study's aided arm, from a bundle (the CLI and the app).

Each case is read from the cohort (its images and mask.nii.gz / US_mask, its
cohort.csv clinical values) and run through :class:`her2core.predictor.CasePredictor`,
so what readers see in the aided arm is what the Prediction page shows for that case.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from her2core.errors import Her2Error

log = logging.getLogger(__name__)

__all__ = ["model_outputs"]


def model_outputs(bundle, cohort, case_ids, *, progress: Callable[[int, int, str], None] | None = None
                  ) -> tuple[dict[str, dict], dict[str, Any]]:
    """({case_id: model output}, model_info) for the study.

    model output: ``p_her2``, ``p_her2_lo`` / ``p_her2_hi``, ``p_low`` (HER2-low vs zero,
    when the bundle has that task), ``points`` {predictor: points}, ``total_points``,
    ``shap`` {predictor: log-odds}, ``imputed``. model_info: bundle name and checksum
    (the app shows live Grad-CAM only for this bundle), random_init, the nomogram.
    """
    from her2core.features.extract import load_case
    from her2core.predictor import CasePredictor
    from her2core.workflows.explain import case_clinical_values

    pred = CasePredictor(bundle)
    out: dict[str, dict] = {}
    ids = [str(c) for c in case_ids]
    for i, cid in enumerate(ids):
        images = masks = {}
        if pred.config is not None:
            try:
                images, masks = load_case(cohort.files(cid), pred.config)
            except Her2Error as err:
                raise err.with_context(case_id=cid)
        part = pred.image_part(images, masks, case_id=cid, gradcam=False)
        clinical = case_clinical_values(cohort, cid)
        cp = pred.clinical_part(part, clinical, "her2")
        rec: dict[str, Any] = {"p_her2": float(cp.probability)}
        if cp.interval:
            rec["p_her2_lo"], rec["p_her2_hi"] = map(float, cp.interval)
        if cp.points:
            rec["points"] = {k: float(v) for k, v in cp.points["points"].items()}
            rec["total_points"] = float(cp.points["total_points"])
        if cp.contributions is not None:
            c = cp.contributions
            rec["shap"] = {str(k): float(v) for k, v in zip(c.predictors, c.contributions)}
        if cp.imputed:
            rec["imputed"] = list(cp.imputed)
        if "her2_low" in bundle.models:
            low = pred.clinical_part(part, clinical, "her2_low", shap=False)
            rec["p_low"] = float(low.probability)
        out[cid] = rec
        if progress is not None:
            progress(i + 1, len(ids), f"{i + 1}/{len(ids)} cases")
    info: dict[str, Any] = {"source": f"bundle {bundle.name}", "bundle": bundle.name,
                            "bundle_checksum": bundle.checksum, "random_init": bundle.random_init}
    nomo = bundle.nomogram("her2")
    if nomo is not None:
        info["nomogram"] = nomo.to_dict()
    return out, info
