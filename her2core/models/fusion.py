"""Late fusion of modality models (paper 001: DL-US and DL-MRI -> DL-MRI&US).

The fused model is a logistic regression over the modality models' out-of-fold
scores: a :class:`StackedNomogram` with the modality models as scorers and no
clinical predictors. One estimator, so validation refits the modality models.
"""
from __future__ import annotations

import numpy as np

from her2core.models.nomogram_model import StackedNomogram

__all__ = ["late_fusion"]


def late_fusion(models, cv: int = 5, C: float = np.inf, random_state=0) -> StackedNomogram:
    """``models``: dict or list of (name, estimator), e.g. {"us": DeepScore(block=...), "mri": ...}."""
    items = list(models.items()) if isinstance(models, dict) else list(models)
    if not items:
        raise ValueError("late fusion needs at least one modality model")
    return StackedNomogram(scorers=items, clinical_predictors=[], clinical_selection="none",
                           cv=cv, C=C, random_state=random_state)
