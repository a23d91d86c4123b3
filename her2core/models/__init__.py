"""Models: block scores (D-score), clinical model, combined nomogram, model zoo, fusion.

Every model is a scikit-learn estimator over a DataFrame (feature columns
``{sequence}__{block}__...`` + clinical columns of cohort.csv), so validation
refits all of it. See docs/architecture.md.
"""
from her2core.models.clinical import (CATEGORICAL_LEVELS, CLINICAL_PREDICTORS, ClinicalModel,
                                      ClinicalPreprocessor)
from her2core.models.deepscore import DeepScore, block_columns
from her2core.models.fusion import late_fusion
from her2core.models.nomogram_model import StackedNomogram
from her2core.models.zoo import ZOO_NAMES, make_zoo_model

__all__ = ["CATEGORICAL_LEVELS", "CLINICAL_PREDICTORS", "ClinicalModel", "ClinicalPreprocessor",
           "DeepScore", "block_columns", "late_fusion", "StackedNomogram", "ZOO_NAMES",
           "make_zoo_model"]
