"""A bundle's own validation, for display: decision curve, calibration and AUC per set.

Computed from the predictions written at training time (``validation_predictions.csv``):
"internal" = out-of-fold predictions of the whole pipeline (each training case once),
"external" = the held-out cases. A bundle without them has no curve (the pages say so);
no other cohort's curve is ever borrowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SetValidation", "bundle_validation", "SET_LABELS"]

SET_LABELS = {"internal": "internal validation (out-of-fold, every selection step refitted "
                          "without the case)",
              "external": "external validation (held-out cases)"}


@dataclass
class SetValidation:
    task: str
    set: str
    n: int
    positives: int
    label: str
    auc: float | None
    auc_ci: tuple[float, float] | None
    dca: Any                       # metrics.dca.DCAResult
    binned: Any                    # metrics.calibration.BinnedCalibration
    smooth: Any                    # metrics.calibration.SmoothCalibration or None
    calibration: Any               # metrics.calibration.CalibrationFit or None
    hosmer_lemeshow: Any           # metrics.calibration.HosmerLemeshow or None

    @property
    def title(self) -> str:
        return f"{self.set} (n = {self.n}, {self.positives} positive)"


def bundle_validation(bundle, task: str = "her2") -> list[SetValidation]:
    """One SetValidation per set with both classes (internal first); [] when none."""
    from her2core import metrics as M

    vp = bundle.validation_predictions(task)
    out = []
    for set_name in ("internal", "external"):
        d = vp[vp["set"] == set_name]
        if not len(d):
            continue
        y = d["y"].to_numpy().astype(int)
        p = d["p"].to_numpy(dtype=float)
        if y.min() == y.max():
            continue
        ci = M.ci_auc_delong(y, p)
        try:
            cal = M.calibration_intercept_slope(y, p)
        except (ValueError, np.linalg.LinAlgError):
            cal = None
        try:
            smooth = M.loess_calibration(y, p)
        except ValueError:
            smooth = None
        hl = M.hosmer_lemeshow(y, p, g=min(10, max(3, len(y) // 10)))
        out.append(SetValidation(
            task=task, set=set_name, n=int(len(y)), positives=int(y.sum()),
            label=SET_LABELS[set_name], auc=float(ci.auc), auc_ci=(float(ci.lower), float(ci.upper)),
            dca=M.decision_curves(y, {"model": p}),
            binned=M.binned_calibration(y, p, n_bins=min(10, max(2, len(y) // 10))),
            smooth=smooth, calibration=cal, hosmer_lemeshow=hl))
    return out
