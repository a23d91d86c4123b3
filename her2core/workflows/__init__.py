"""Workflows: the library functions behind the commands and the app.

Each takes plain inputs, reports progress through ``progress(done, total, message)``
and returns a typed result; `python -m her2core <command>` parses arguments and prints,
the app calls the same functions.

- :func:`train_bundle` (:class:`TrainSettings` -> :class:`TrainResult`)
- :func:`predict_cohort` (bundle, cohort -> :class:`CohortPredictions`)
- :func:`evaluate_predictions` (predictions, truth -> :class:`EvaluationResult`)
- :func:`explain_case` (bundle, cohort, case -> :class:`ExplainResult`)
One case in memory (the app): :class:`her2core.predictor.CasePredictor`.
"""
from her2core.workflows.evaluate import EvaluationResult, evaluate_predictions
from her2core.workflows.predict import CohortPredictions, predict_cohort
from her2core.workflows.train import TrainResult, TrainSettings, train_bundle

__all__ = ["TrainSettings", "TrainResult", "train_bundle", "CohortPredictions", "predict_cohort",
           "EvaluationResult", "evaluate_predictions", "explain_case", "ExplainResult"]


def __getattr__(name):       # explain pulls in torch / shap: imported on first use
    if name in ("explain_case", "ExplainResult"):
        from her2core.workflows import explain
        return getattr(explain, name)
    raise AttributeError(name)
