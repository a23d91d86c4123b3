"""Data-parallel training across processes (torch DistributedDataParallel, launched by torchrun).

``torchrun --nproc_per_node N -m her2core finetune ...`` starts N copies of the
same command; each reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from the
environment (:func:`context`), joins the process group (NCCL on CUDA, gloo on
the CPU) and trains the same folds in lock-step:

* every global batch (the same seeded permutation in every process) is split
  ``rank::world``; the loss is the sum over the local cases divided by the global
  batch size times ``world``, so that DDP's gradient average is exactly the
  gradient of the mean loss over the global batch;
* augmentation is seeded per case (not per process), so the global batch is the
  one a single process would draw;
* on CUDA, BatchNorm layers become SyncBatchNorm (statistics over the global
  batch); on the CPU (gloo) each process keeps its own batch statistics, and
  the BatchNorm buffers of rank 0 are broadcast before every validation;
* every process validates the whole validation fold with identical weights (so
  the best-epoch choice agrees); only rank 0 writes files.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context(device: str) -> DistContext:
    """The process group of this run (initialised here when torchrun started us)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistContext()
    import torch.distributed as dist
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device == "cuda" else "gloo"
    if not dist.is_initialized():
        if device == "cuda":
            import torch
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        log.info("fine-tune: process %d of %d (%s)", rank, world, backend)
    return DistContext(rank, world, local, backend)


def device_for(ctx: DistContext, device: str) -> str:
    return f"cuda:{ctx.local_rank}" if device == "cuda" and ctx.enabled else device


def wrap(model, ctx: DistContext, device: str):
    """DDP around ``model`` (SyncBatchNorm on CUDA); the model itself when not distributed."""
    if not ctx.enabled:
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP
    if device.startswith("cuda"):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DDP(model, device_ids=[ctx.local_rank], broadcast_buffers=True)
    return DDP(model, broadcast_buffers=True)


def unwrap(model):
    return getattr(model, "module", model)


def sync_buffers(model, ctx: DistContext) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every process."""
    if not ctx.enabled:
        return
    import torch.distributed as dist
    for b in unwrap(model).buffers():
        dist.broadcast(b.data, src=0)


def all_sum(values: list[float], ctx: DistContext, device: str) -> list[float]:
    if not ctx.enabled:
        return list(values)
    import torch
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64,
                     device=device if device.startswith("cuda") else "cpu")
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def any_flag(flag: bool, ctx: DistContext, device: str) -> bool:
    return all_sum([1.0 if flag else 0.0], ctx, device)[0] > 0


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
