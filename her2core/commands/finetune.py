"""`python -m her2core finetune`: K-fold fine-tuning of a 2-D or 3-D network on a cohort.

Writes the fold models (safetensors), finetune.json, oof.csv (the out-of-fold
logit of every training case: the D-score a nomogram is fitted on) and, with
``--where``, heldout.csv (the matching cases scored by the fold ensemble).
The work is :func:`her2core.finetune.finetune`; this module parses and prints.

Several GPUs / processes: ``torchrun --nproc_per_node N -m her2core finetune ...``
(see the README, "Fine-tuning on several GPUs").
"""
from __future__ import annotations

import argparse
import os
import sys

NAME = "finetune"
HELP = "fine-tune a 2-D (timm) or 3-D network with stratified K-fold CV (out-of-fold D-score)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from her2core.finetune.settings import PRESETS
    parser.add_argument("--cohort", required=True, help="cohort folder (cohort.csv + cases/)")
    parser.add_argument("--sequence", choices=["US", "DCE", "T1", "T2"], default=None,
                        help="image the network reads (default US, or the preset's)")
    parser.add_argument("--arch", default=None,
                        help="timm model name (resnet18, convnextv2_tiny, resnet101, ...) or "
                             "resnet3d18 (default resnet18, or the preset's)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="a paper's settings; other options override it")
    parser.add_argument("--where", default=None,
                        help="hold out the cases matching COL=VALUE (e.g. center=B): train on "
                             "the rest, score these with the fold ensemble")
    parser.add_argument("--task", choices=["her2", "her2_low"], default=None)
    parser.add_argument("--folds", type=int, default=None, help="stratified folds (default 4)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fold (default 50)")
    parser.add_argument("--size", type=int, default=None,
                        help="input edge in pixels (2-D S x S, 3-D S^3; default 224)")
    parser.add_argument("--batch", type=int, default=None, help="global batch size (default 16)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-4)")
    parser.add_argument("--wd", type=float, default=None, help="AdamW weight decay (default 0.05)")
    parser.add_argument("--warmup-epochs", type=int, default=None)
    parser.add_argument("--mixup", type=float, default=None, metavar="ALPHA",
                        help="Mixup Beta(alpha, alpha); 0 = off (default)")
    parser.add_argument("--no-augment", action="store_true", help="no random augmentation")
    parser.add_argument("--augment-on", choices=["auto", "workers", "device"], default=None,
                        help="where augmentation runs (auto: on the GPU for 3-D volumes on CUDA)")
    parser.add_argument("--margin", type=int, default=None, metavar="PX",
                        help="ROI dilation in pixels (default 50, paper 001)")
    parser.add_argument("--slice-mode", choices=["largest", "25d"], default=None,
                        help="2-D networks on MRI: largest-ROI slice or 2.5-D stack")
    parser.add_argument("--select", choices=["auc", "loss", "last"], default=None,
                        help="epoch kept per fold (default: best validation AUC)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default=None)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
    parser.add_argument("--random-init", action="store_true",
                        help="start from random weights (explicit; recorded)")
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="starting weights file or folder (default: found locally)")
    parser.add_argument("--weights-dir", default=None, help="folder with local weights")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-checkpoints", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in --out (or read a finished one)")
    parser.add_argument("--out", required=True, help="output folder")


_MAP = {"sequence": "sequence", "arch": "arch", "task": "task", "folds": "folds",
        "epochs": "epochs", "size": "size", "batch": "batch", "lr": "lr", "wd": "wd",
        "warmup_epochs": "warmup_epochs", "mixup": "mixup", "augment_on": "augment_on",
        "margin": "margin_px",
        "slice_mode": "slice_mode", "select": "select", "device": "device",
        "precision": "precision", "workers": "num_workers", "weights": "weights",
        "weights_dir": "weights_dir", "seed": "seed"}


def settings_from_args(args):
    from her2core.finetune import FinetuneSettings
    over = {dst: getattr(args, src) for src, dst in _MAP.items() if getattr(args, src) is not None}
    if args.no_augment:
        over["augment"] = False
    if args.random_init:
        over["random_init"] = True
    if args.keep_checkpoints:
        over["keep_checkpoints"] = True
    if args.preset:
        return FinetuneSettings.preset(args.preset, **over)
    return FinetuneSettings(**over)


def run(args) -> int:
    from her2core.finetune import finetune

    settings = settings_from_args(args)

    def show(event) -> None:
        if event.kind != "prepare" or event.done == event.total:
            print(event.message, flush=True)

    result = finetune(args.cohort, settings, args.out, where=args.where, progress=show,
                      resume=args.resume)
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return 0          # torchrun: rank 0 reports
    if result.warning:
        print("WARNING: " + result.warning, file=sys.stderr)
    for err in result.errors:
        print(f"skipped: {err}", file=sys.stderr)
    m = result.manifest
    print(f"{m['n_train']} training cases, out-of-fold AUC {_fmt(m.get('oof_auc'))}; "
          f"{m['n_heldout']} held-out cases, AUC {_fmt(m.get('heldout_auc'))}")
    print(f"wrote {result.out_dir}/finetune.json, oof.csv"
          + (", heldout.csv" if result.heldout is not None else "")
          + f" and {len(result.folds)} fold models")
    return 0


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
