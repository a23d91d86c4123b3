"""Settings, progress events and results of a fine-tuning run (plain, JSON-serialisable).

:class:`FinetuneSettings` holds every choice that changes the fine-tuned models;
it is stored in ``finetune.json`` and compared on ``resume``. Paper presets
(:data:`PRESETS`, :meth:`FinetuneSettings.preset`) give the published values;
values a paper does not state are marked in the preset's ``note``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from ..errors import Her2Error

SEQUENCES = ("US", "DCE", "T1", "T2")
TASKS = ("her2", "her2_low")
SLICE_MODES = ("largest", "25d")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SELECT = ("auc", "loss", "last")
AUGMENT_ON = ("auto", "workers", "device")
#: augmentation sets: "default" (paper 001's list, :class:`~her2core.finetune.data.Augment2D`
#: / ``Augment3D``) or "crop_flip" (paper 003: random crop, horizontal and vertical flips)
AUGMENTATIONS = ("default", "crop_flip")
DEVICES = ("auto", "cpu", "cuda")

#: fields that change speed, not the models: allowed to differ on resume
RUNTIME_FIELDS = ("device", "num_workers", "keep_checkpoints", "augment_on")


@dataclass
class FinetuneSettings:
    """What to fine-tune, on which input, and how.

    Attributes:
        sequence: image of the cohort the network reads ("US", "DCE", "T1", "T2").
        arch: a timm 2-D model name (``resnet18``, ``convnextv2_tiny``,
            ``resnet101``, ``efficientnet_b0``, ``vit_small_patch16_224``, any
            ``timm.list_models()`` name, optionally ``timm:`` prefixed or with a
            pretrained tag ``resnet50.a1_in1k``) or the 3-D ``resnet3d18``.
        task: "her2" (positive vs negative) or "her2_low" (low vs zero).
        folds: stratified K of the cross-validation (>= 2).
        epochs: epochs per fold.
        size: network input edge in pixels (2-D: size x size; 3-D: size^3).
        batch: global batch size (split over processes with torchrun).
        lr, wd: AdamW learning rate and weight decay (no decay on norms / biases).
        warmup_epochs: linear warm-up before the per-step cosine decay.
        mixup: Mixup Beta(alpha, alpha); 0 switches it off.
        augment: random flips, scaling, shifts, Gaussian noise and blur,
            brightness and contrast (:mod:`her2core.finetune.data`).
        augmentation: which augmentation ``augment`` switches on: "default" (the list
            above) or "crop_flip" (2-D only: a random crop of 80-100 % of the side resized
            back, horizontal and vertical flips, as paper 003).
        augment_on: "workers" (DataLoader worker processes), "device" (per
            sample on the training device, after the copy), or "auto" (device
            for 3-D volumes on CUDA, workers otherwise). Same seeds either way.
        margin_px: ROI dilation in pixels (in-plane; paper 001: 50, paper 003: 10).
        slice_mode: 2-D networks on MRI: "largest" (largest-ROI axial slice) or
            "25d" (that slice and its two neighbours as three channels).
        min_roi_px: an ROI narrower than this (in-plane bounding box) is refused.
        select: the epoch kept per fold: best validation "auc" (ties: lower
            loss), lowest validation "loss", or the "last" epoch.
        random_init: start from random weights (explicit; recorded).
        weights: initial weights: None = found locally (``weights list``), or a
            file / folder path.
        weights_dir: extra folder searched for ``<arch>.safetensors``.
        seed: every random choice (init, folds, order, augmentation, Mixup).
        device: "auto" (CUDA when present), "cpu", "cuda".
        precision: "auto" (CUDA: bf16 where supported, else fp16 with dynamic
            loss scaling; CPU: fp32), or "bf16" / "fp16" / "fp32".
        channels_last: channels-last memory format for 2-D networks on CUDA.
        num_workers: DataLoader worker processes (None: 2 on the CPU, up to 8 on CUDA).
        keep_checkpoints: keep the per-epoch checkpoints after a fold ends.
    """

    sequence: str = "US"
    arch: str = "resnet18"
    task: str = "her2"
    folds: int = 4
    epochs: int = 50
    size: int = 224
    batch: int = 16
    lr: float = 1e-4
    wd: float = 0.05
    warmup_epochs: int = 0
    mixup: float = 0.0
    augment: bool = True
    augmentation: str = "default"
    augment_on: str = "auto"
    margin_px: int = 50
    slice_mode: str = "largest"
    min_roi_px: int = 4
    select: str = "auc"
    random_init: bool = False
    weights: str | None = None
    weights_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    num_workers: int | None = None
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise Her2Error naming the first bad setting."""
        def bad(what: str, hint: str | None = None):
            raise Her2Error(f"fine-tune settings: {what}", hint=hint)

        if self.sequence not in SEQUENCES:
            bad(f"unknown sequence {self.sequence!r}", "choose one of " + ", ".join(SEQUENCES))
        if self.task not in TASKS:
            bad(f"unknown task {self.task!r}", "choose her2 or her2_low")
        if int(self.folds) < 2:
            bad(f"folds {self.folds}: cross-validation needs at least 2 folds")
        if int(self.epochs) < 1:
            bad(f"epochs {self.epochs} must be >= 1")
        if not 8 <= int(self.size) <= 1024:
            bad(f"size {self.size} outside 8..1024")
        if int(self.batch) < 2:
            bad(f"batch {self.batch} must be >= 2 (batch statistics and Mixup need pairs)")
        if not float(self.lr) > 0 or float(self.wd) < 0:
            bad("lr must be > 0 and wd >= 0")
        if int(self.warmup_epochs) < 0 or 0 < int(self.epochs) <= int(self.warmup_epochs):
            bad(f"warmup_epochs {self.warmup_epochs} must be 0 .. epochs - 1")
        if float(self.mixup) < 0:
            bad(f"mixup {self.mixup} must be >= 0 (0 = off)")
        if int(self.margin_px) < 0 or int(self.min_roi_px) < 1:
            bad("margin_px must be >= 0 and min_roi_px >= 1")
        if self.slice_mode not in SLICE_MODES:
            bad(f"slice_mode {self.slice_mode!r}", "choose largest or 25d")
        if self.augmentation not in AUGMENTATIONS:
            bad(f"augmentation {self.augmentation!r}", "choose " + " or ".join(AUGMENTATIONS))
        if self.augmentation == "crop_flip" and self.arch == "resnet3d18":
            bad("augmentation crop_flip is 2-D only", "use default for the 3-D ResNet18")
        if self.augment_on not in AUGMENT_ON:
            bad(f"augment_on {self.augment_on!r}", "choose auto, workers or device")
        if self.select not in SELECT:
            bad(f"select {self.select!r}", "choose auc, loss or last")
        if self.device not in DEVICES:
            bad(f"device {self.device!r}", "choose auto, cpu or cuda")
        if self.precision not in PRECISIONS:
            bad(f"precision {self.precision!r}", "choose " + ", ".join(PRECISIONS))
        if self.num_workers is not None and int(self.num_workers) < 0:
            bad(f"num_workers {self.num_workers} must be >= 0")
        if self.random_init and self.weights:
            bad("random_init and a weights file both given", "choose one")

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FinetuneSettings":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise Her2Error(f"fine-tune settings: unknown fields {unknown}")
        return cls(**d)

    def model_fields(self) -> dict[str, Any]:
        """The fields that change the trained models (compared on resume)."""
        d = self.to_dict()
        for k in RUNTIME_FIELDS:
            d.pop(k)
        return d

    def updated(self, **changes: Any) -> "FinetuneSettings":
        return replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "FinetuneSettings":
        """Settings of a paper (:data:`PRESETS`), with ``overrides`` applied."""
        if name not in PRESETS:
            raise Her2Error(f"unknown fine-tune preset {name!r}",
                            hint="known: " + ", ".join(PRESETS))
        d = {k: v for k, v in PRESETS[name].items() if k != "note"}
        d.update(overrides)
        return cls(**d)


#: published settings; "note" says what the paper leaves open
PRESETS: dict[str, dict[str, Any]] = {
    "paper001-us": dict(
        sequence="US", arch="convnextv2_tiny", size=256, batch=16, lr=2e-5, wd=5e-2, epochs=300,
        folds=4, mixup=0.2, augment=True, margin_px=50,
        note="paper 001 ultrasound: ConvNeXt V2, ROI dilated 50 px, z-score, 256 x 256, AdamW "
             "2e-5 / 5e-2, batch 16, dynamic loss scaling, Mixup, 300 epochs, 4-fold CV; the "
             "Mixup alpha (0.2) is not stated in the paper"),
    "paper001-dce": dict(
        sequence="DCE", arch="resnet3d18", size=96, batch=16, lr=4e-6, wd=1e-2, epochs=300,
        folds=4, mixup=0.0, augment=True, margin_px=50,
        note="paper 001 DCE: 3-D ResNet18 on the last DCE phase, masks dilated 50 px, z-score, "
             "96^3, AdamW 4e-6 / 1e-2, batch 16; epochs (300) and augmentation are not stated"),
    "paper003": dict(
        sequence="US", arch="resnet101", size=224, batch=16, lr=1e-4, wd=1e-4, epochs=100,
        folds=5, margin_px=10, slice_mode="largest", augment=True, augmentation="crop_flip",
        mixup=0.0,
        note="paper 003 ultrasound: ResNet101 (2048 penultimate features) fine-tuned on the "
             "largest-ROI slice, the ROI's bounding rectangle + 10 px, z-score normalisation, "
             "training augmentation random cropping + horizontal and vertical flips (test "
             "images normalised only); its probability is the DL signature and its penultimate "
             "features go through PCA 64 into early fusion. Not stated in the paper: input size "
             "(224, ResNet's ImageNet size), crop scale (80-100 %), optimiser values, epochs, "
             "batch, the folds of the out-of-fold scores (5 here)"),
    "paper004": dict(
        sequence="DCE", arch="resnet50", size=224, batch=16, lr=1e-4, wd=1e-4, epochs=100,
        folds=5, margin_px=10,
        note="paper 004: a trained ResNet D-score; architecture depth and optimiser values are "
             "not stated (ResNet50 here)"),
}


# ---------------------------------------------------------------- events
@dataclass
class FinetuneEvent:
    """One progress report. ``kind``:

    "prepare" (cases decoded: ``done`` of ``total``), "fold_start", "epoch" (after
    each epoch, with its losses and validation AUC), "fold_end" (best epoch
    chosen), "heldout" (held-out cases scored), "done". ``done`` / ``total``
    count epochs over all folds for every kind but "prepare".
    """

    kind: str
    done: int = 0
    total: int = 0
    message: str = ""
    fold: int | None = None            # 0-based
    n_folds: int | None = None
    epoch: int | None = None           # 1-based
    n_epochs: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    val_auc: float | None = None
    best_epoch: int | None = None
    best_auc: float | None = None
    lr: float | None = None
    images_per_s: float | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressFn = Callable[[FinetuneEvent], Any]


def simple_progress(fn: Callable[[int, int, str], Any]) -> ProgressFn:
    """Adapt a ``progress(done, total, message)`` callback to :class:`FinetuneEvent`s."""
    def call(event: FinetuneEvent) -> Any:
        return fn(event.done, event.total, event.message)
    return call


# ---------------------------------------------------------------- results
@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_auc: float | None
    lr: float
    seconds: float
    train_images: int
    train_seconds: float
    data_wait_seconds: float = 0.0     # of train_seconds: blocked waiting for the next batch

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds > 0 else float("nan")


@dataclass
class FoldRecord:
    fold: int
    train_ids: list[str]
    val_ids: list[str]
    best_epoch: int
    val_auc: float | None
    val_loss: float
    model_file: str
    sha256: str
    history: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FoldRecord":
        d = dict(d)
        d["history"] = [EpochRecord(**h) for h in d.get("history", [])]
        return cls(**d)


@dataclass
class FinetuneResult:
    """What :func:`her2core.finetune.finetune` wrote and measured.

    ``oof``: DataFrame (case_id, fold, y, logit), every training case once, each
    logit from the fold model that never saw the case. ``heldout``: (case_id, y,
    logit) of the ``where`` cases, scored by the mean of the fold models (None
    without ``where``). ``errors``: cases left out (one Her2Error each).
    """

    out_dir: Path
    settings: FinetuneSettings
    oof: Any
    heldout: Any | None
    folds: list[FoldRecord]
    errors: list[Her2Error]
    weights: dict[str, Any]
    warning: str | None
    manifest: dict[str, Any]

    @property
    def oof_auc(self) -> float | None:
        return self.manifest.get("oof_auc")

    @property
    def heldout_auc(self) -> float | None:
        return self.manifest.get("heldout_auc")

    def ensemble(self, device: str = "cpu"):
        from .ensemble import FineTunedEnsemble
        return FineTunedEnsemble.load(self.out_dir, device=device)


def dumps(obj: Any) -> str:
    from ..jsonutil import jsonable
    return json.dumps(jsonable(obj), indent=1, sort_keys=True) + "\n"


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (a kill never leaves half a file)."""
    import os
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(obj), encoding="utf-8")
    os.replace(tmp, path)
