"""Fine-tuning of 2-D and 3-D networks on a cohort (papers 001, 003, 004).

Public interface::

    from her2core.finetune import finetune, FinetuneSettings, FineTunedEnsemble

    result = finetune(cohort, FinetuneSettings(sequence="US", arch="convnextv2_tiny"),
                      out_dir, where="center=B", progress=on_event, cancel=event)
    result.oof          # case_id, fold, y, logit: out-of-fold D-score of every training case
    result.heldout      # case_id, y, logit: the where-cases scored by the fold ensemble
    ens = FineTunedEnsemble.load(out_dir)
    ens.predict_images({"US": image}, {"US": mask})   # mean fold logit
    ens.gradcam({"US": image}, {"US": mask})          # map on the source grid

Modules: :mod:`.settings` (settings, events, results), :mod:`.nets` (networks),
:mod:`.data` (inputs, augmentation, samplers), :mod:`.train` (the K-fold loop,
checkpoints, resume), :mod:`.ensemble` (the deployed fold ensemble),
:mod:`.ddp` (torchrun data parallelism).
"""
from .ensemble import CamInput, FineTunedCam, FineTunedEnsemble, verify_models
from .nets import arch_info
from .settings import (PRESETS, EpochRecord, FinetuneEvent, FinetuneResult, FinetuneSettings,
                       FoldRecord, simple_progress)
from .train import FinetuneCancelled, finetune, load_result

__all__ = [
    "finetune", "load_result", "FinetuneSettings", "FinetuneEvent", "FinetuneResult",
    "FoldRecord", "EpochRecord", "FinetuneCancelled", "FineTunedEnsemble", "CamInput",
    "FineTunedCam", "PRESETS", "simple_progress", "arch_info", "verify_models",
]
