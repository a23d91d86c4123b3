"""Fine-tuning throughput: the whole training loop against a bare training step, in one run.

For each network (a 2-D one on ultrasound, the 3-D ResNet18 on DCE) this script

1. writes a synthetic cohort (``--n`` cases) and runs :func:`her2core.finetune.finetune`
   on it (2 folds, ``--epochs`` epochs, augmentation on, Mixup for 2-D): the
   *loop* rate is training images (volumes) per second of the training phase
   of every epoch after the first of each fold (decoding in workers, seeded
   augmentation, host -> device copies, mixed precision, optimiser and
   scheduler steps included; validation and checkpoints excluded -- they are
   reported in the seconds per epoch);
2. measures, in the same process before and after the loop (averaged), the
   *bare* rate of the same network, batch size, precision and memory format
   on random tensors already on the device: forward + backward + AdamW step
   ("step"), and forward + backward alone ("fwd_bwd");
3. reports loop / bare (target >= 0.8: loading and augmentation hidden behind
   compute), peak host memory (this process and the DataLoader workers) and
   peak GPU memory, and the seconds per epoch extrapolated to a paper-001-sized
   run (197 cases, 4 folds: 148 training and 49 validation cases per fold).

CPU (this machine)::

    python benchmarks/bench_finetune.py

GPU (as it is, on a CUDA machine)::

    python benchmarks/bench_finetune.py --device cuda --n 96 --epochs 3 \\
        --arch2d convnextv2_tiny --size2d 256 --size3d 96 --batch 16 --workers 12 \\
        --out benchmarks/results/finetune_cuda.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER_N, PAPER_FOLDS = 197, 4


def _peak_host_mb() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"main_mb": round(me, 1), "largest_worker_mb": round(kids, 1)}


def bare_rate(settings, device: str, iters: int, warmup: int) -> dict[str, float]:
    """Images/s of the bare step on random tensors (same network, batch, precision, layout)."""
    import torch
    import torch.nn.functional as F
    from timm.optim import param_groups_weight_decay

    from her2core.finetune.nets import build_network, logits, net_input
    from her2core.finetune.train import autocast, precision_dtype
    model, _, info = build_network(settings.arch, weights="random-init", seed=0, size=settings.size)
    model.to(device).train()
    cl = bool(settings.channels_last and device.startswith("cuda") and info.kind == "2d")
    if cl:
        model.to(memory_format=torch.channels_last)
    dtype, use_scaler = precision_dtype(settings, device)
    opt = torch.optim.AdamW(param_groups_weight_decay(model, settings.wd), lr=settings.lr,
                            **({"fused": True} if device.startswith("cuda") else {}))
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    b, s = int(settings.batch), int(settings.size)
    shape = (b, 1, s, s, s) if info.kind == "3d" else (b, 1, s, s)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = net_input(torch.randn(shape, generator=g), info, device, cl)
    y = (torch.rand(b, generator=g) > 0.5).float().to(device)

    def run(n: int, with_step: bool) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            with autocast(device, dtype):
                out = logits(model, x)
            loss = F.binary_cross_entropy_with_logits(out.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if with_step:
                scaler.step(opt)
                scaler.update()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return n * b / (time.perf_counter() - t0)

    run(warmup, True)
    return {"step": run(iters, True), "fwd_bwd": run(iters, False)}


def bench_one(kind: str, args, tmp: Path) -> dict:
    import torch

    from her2core.finetune import FinetuneSettings, finetune
    from her2core.synthetic import make_cohort
    if kind == "2d":
        cohort = make_cohort(tmp / "us", n=args.n, seed=0, modalities="us",
                             us_size=max(128, int(args.size2d * 1.25)))
        s = FinetuneSettings(sequence="US", arch=args.arch2d, size=args.size2d, batch=args.batch,
                             folds=2, epochs=args.epochs, mixup=0.2, random_init=True,
                             device=args.device, num_workers=args.workers, lr=2e-5, wd=5e-2)
    else:
        z = max(12, args.size3d // 4)
        cohort = make_cohort(tmp / "mri", n=args.n, seed=0, modalities="mri",
                             shape=(args.mri_xy, args.mri_xy, z))
        s = FinetuneSettings(sequence="DCE", arch="resnet3d18", size=args.size3d,
                             batch=args.batch3d or args.batch, folds=2, epochs=args.epochs,
                             random_init=True, device=args.device, num_workers=args.workers,
                             lr=4e-6, wd=1e-2)
    from her2core.finetune.train import determinism
    dev = "cuda" if args.device.startswith("cuda") else "cpu"
    with determinism(dev):                 # the loop's own setting
        bare_before = bare_rate(s, dev, args.iters, args.warmup)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = finetune(cohort, s, tmp / f"out_{kind}")
    wall = time.perf_counter() - t0
    steady = [h for f in res.folds for h in f.history if h.epoch > 1]
    imgs = sum(h.train_images for h in steady)
    secs = sum(h.train_seconds for h in steady)
    loop = imgs / secs
    wait = sum(h.data_wait_seconds for h in steady)
    other = sum(h.seconds - h.train_seconds for h in steady)
    n_val = sum(len(f.val_ids) for f in res.folds) / len(res.folds)
    other_per_val_case = other / len(steady) / n_val
    gpu = None
    if args.device.startswith("cuda"):
        gpu = {"max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
               "max_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1),
               "name": torch.cuda.get_device_name()}
    with determinism(dev):
        bare_after = bare_rate(s, dev, args.iters, args.warmup)
    # the bare rate before and after the loop, averaged: a shared machine drifts
    bare = {k: (bare_before[k] + bare_after[k]) / 2 for k in bare_before}
    n_tr = PAPER_N * (PAPER_FOLDS - 1) / PAPER_FOLDS
    n_va = PAPER_N / PAPER_FOLDS
    epoch_197 = n_tr / loop + n_va * other_per_val_case
    out = {
        "kind": kind, "arch": s.arch, "size": s.size, "batch": s.batch, "sequence": s.sequence,
        "device": res.manifest["device"], "precision": res.manifest["precision"],
        "workers": s.num_workers, "cases": args.n, "epochs": s.epochs, "folds": 2,
        "loop_images_per_s": round(loop, 3),
        "bare_step_images_per_s": round(bare["step"], 3),
        "bare_fwd_bwd_images_per_s": round(bare["fwd_bwd"], 3),
        "bare_step_before_after": [round(bare_before["step"], 3), round(bare_after["step"], 3)],
        "loop_over_bare_step": round(loop / bare["step"], 3),
        "loop_over_bare_fwd_bwd": round(loop / bare["fwd_bwd"], 3),
        "target": 0.8,
        "meets_target": bool(loop / bare["step"] >= 0.8),
        "steady_epochs_measured": len(steady),
        "data_wait_fraction_of_train_time": round(wait / secs, 3),
        "validation_and_checkpoint_s_per_val_case": round(other_per_val_case, 4),
        "seconds_per_epoch_197_cases": round(epoch_197, 2),
        "seconds_per_run_197_cases": round(epoch_197 * 300 * PAPER_FOLDS, 1),
        "extrapolation_note": "paper-001-sized cohort (197 cases, 4 folds: 148 training + 49 "
                              "validation cases per epoch) with this network, size and batch; "
                              "per run = 300 epochs x 4 folds; from the measured loop rate and "
                              "validation + checkpoint seconds per validation case",
        "peak_host": _peak_host_mb(), "peak_gpu": gpu, "wall_s": round(wall, 1),
    }
    print(json.dumps(out, indent=1), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--kinds", default="2d,3d")
    p.add_argument("--n", type=int, default=48, help="synthetic cases")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--arch2d", default="resnet18")
    p.add_argument("--size2d", type=int, default=64)
    p.add_argument("--size3d", type=int, default=32)
    p.add_argument("--mri-xy", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batch3d", type=int, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--iters", type=int, default=10, help="bare steps timed")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune_cpu.json"))
    args = p.parse_args(argv)
    import torch
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_ft_") as tmp:
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            results.append(bench_one(kind, args, Path(tmp)))
    doc = {"benchmark": "bench_finetune", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "load_average": os.getloadavg()},
           "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
