"""Discrimination, calibration and decision-curve metrics with R-checked conventions.

Every function returns plain data (dataclasses with ``to_dict()``) that
her2core.plots turns into figures. Conventions (see each module):
* direction "<": controls < cases, a higher score means HER2-positive;
* DeLong variance / CI / tests as R pROC (Sun & Xu fast algorithm);
* bootstrap: seeded, stratified, percentile (type-7 quantiles), 2000 resamples;
* proportions at a threshold: Wilson intervals (Clopper-Pearson on request),
  F1: stratified bootstrap;
* calibration intercept / slope as R glm; Hosmer-Lemeshow as hoslem.test;
* decision curves as R dcurves (positive when p >= threshold).
"""
from her2core.metrics.bootstrap import (DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_aucs,
                                        bootstrap_statistic_ci, ci_auc_bootstrap, roc_band)
from her2core.metrics.calibration import (BinnedCalibration, CalibrationFit, HosmerLemeshow,
                                          SmoothCalibration, binned_calibration, brier_score,
                                          calibration_intercept_slope, hosmer_lemeshow,
                                          is_probability, logistic_fit, loess_calibration)
from her2core.metrics.dca import DCAResult, DecisionCurve, decision_curves, default_thresholds
from her2core.metrics.delong import (AucCI, DelongTest, ci_auc_delong, delong_cov,
                                     delong_covariance_matrix, delong_test_paired,
                                     delong_test_unpaired, delong_var, placements)
from her2core.metrics.roc import RocBand, RocCurve, YoudenPoint, auc, roc_curve, youden
from her2core.metrics.thresholds import (Estimate, ThresholdMetrics, clopper_pearson_ci,
                                         threshold_metrics, wilson_ci, youden_metrics)
from her2core.metrics.validation import ValidationResult, bootstrap_validate

__all__ = [
    "AucCI", "BinnedCalibration", "CalibrationFit", "DCAResult", "DEFAULT_N_BOOT",
    "DEFAULT_SEED", "DecisionCurve", "DelongTest", "Estimate", "HosmerLemeshow", "RocBand",
    "RocCurve", "SmoothCalibration", "ThresholdMetrics", "ValidationResult", "YoudenPoint",
    "auc", "binned_calibration", "bootstrap_aucs", "bootstrap_statistic_ci",
    "bootstrap_validate", "brier_score", "calibration_intercept_slope", "ci_auc_bootstrap",
    "ci_auc_delong", "clopper_pearson_ci", "decision_curves", "default_thresholds",
    "delong_cov", "delong_covariance_matrix", "delong_test_paired", "delong_test_unpaired",
    "delong_var", "hosmer_lemeshow", "is_probability", "logistic_fit", "loess_calibration",
    "placements", "roc_band", "roc_curve", "threshold_metrics", "wilson_ci", "youden",
    "youden_metrics",
]
