"""Explanations: SHAP contributions (clinical / deep score / radiomics) and Grad-CAM maps.

* :mod:`her2core.explain.shap_explain` - exact log-odds contributions per patient
  and per cohort (plain dataclasses);
* :mod:`her2core.explain.gradcam` - Grad-CAM family on the D-score head, 3-D Grad-CAM,
  hook hygiene;
* :mod:`her2core.explain.placement` - maps back into the source image grid;
* :mod:`her2core.explain.figures` - plotly / PNG figures from those results;
* :mod:`her2core.explain.case` - the one-case pipeline behind ``python -m her2core explain``.

Heavy dependencies (torch, shap, pytorch-grad-cam) are imported by the submodules.
"""
from her2core.explain.shap_explain import (  # noqa: F401
    GROUPS, CohortContributions, PatientContributions, explain_model, explain_patient,
    predictor_group)

__all__ = ["GROUPS", "CohortContributions", "PatientContributions", "explain_model",
           "explain_patient", "predictor_group"]
