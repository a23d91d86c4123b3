"""`finetune(cohort, settings, out_dir)`: stratified K-fold fine-tuning, honest out-of-fold logits.

For each of K stratified folds (scikit-learn ``StratifiedKFold``, shuffled with
the seed) a network is trained on the other folds and its best epoch is picked
on its own validation fold (AUC, ties to the lower loss; or the settings'
criterion). That fold's cases are predicted by that model: every training case
gets exactly one out-of-fold logit, from a model that never saw it. The K fold
models (safetensors, sha256 recorded) are the deployed ensemble: cases held
out with ``where`` are scored by the mean of their logits.

A checkpoint is written atomically after every epoch (model, optimiser,
scheduler, loss scaler, RNG states, history, best state so far); ``resume=True``
continues a killed run from it and ends, on the CPU, with the same numbers as an
uninterrupted run (deterministic algorithms, per-sample seeded augmentation,
seeded order and Mixup).

Files in ``out_dir``::

    fold0.safetensors ... fold{K-1}.safetensors   the fold models
    finetune.json     settings, input recipe, weights identity of the start,
                      per-fold best epoch / metric / history, sha256 of every model
    oof.csv           case_id, fold, y, logit  (every training case once)
    heldout.csv       case_id, y, logit        (the ``where`` cases; y empty if unknown)
    state/            checkpoints of an unfinished run (removed at the end)
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CohortError, Her2Error
from . import data as D
from . import ddp
from .nets import ArchInfo, arch_info, build_network, logits, net_input
from .settings import (EpochRecord, FinetuneEvent, FinetuneResult, FinetuneSettings, FoldRecord,
                       ProgressFn, write_json)

log = logging.getLogger(__name__)

FORMAT = "her2core-finetune/1"
MANIFEST = "finetune.json"


class FinetuneCancelled(Her2Error):
    """The run was cancelled; its last epoch checkpoint is kept (resume continues it)."""


# ---------------------------------------------------------------- helpers
def resolve_workers(settings: FinetuneSettings, device: str) -> int:
    if settings.num_workers is not None:
        return int(settings.num_workers)
    cores = os.cpu_count() or 1
    return min(8, max(2, cores - 2)) if device.startswith("cuda") else min(2, cores)


def precision_dtype(settings: FinetuneSettings, device: str):
    """(autocast dtype or None, use a GradScaler)."""
    import torch
    p = settings.precision
    cuda = device.startswith("cuda")
    if p == "fp32" or (p == "auto" and not cuda):
        return None, False
    if p == "auto":
        dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dt = torch.bfloat16 if p == "bf16" else torch.float16
    if dt == torch.float16 and not cuda:
        raise Her2Error("fp16 training needs CUDA", hint="use precision bf16 or fp32 on the CPU")
    return dt, dt == torch.float16


def autocast(device: str, dtype):
    import torch
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


@contextlib.contextmanager
def determinism(device: str):
    """Deterministic algorithms on the CPU; cuDNN autotuning on CUDA. Restored on exit."""
    import torch
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    try:
        if device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True
        else:
            torch.use_deterministic_algorithms(True)
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench


def check_stratifiable(y, folds: int, task: str) -> None:
    """Her2Error before training when some fold could not hold both classes."""
    y = np.asarray(y, dtype=int)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if min(n_pos, n_neg) < int(folds):
        lo = min(n_pos, n_neg)
        hint = (f"use --folds {lo} or fewer" if lo >= 2 else "add cases of the rarer class") + \
            ", or add cases"
        what = "positive" if n_pos <= n_neg else "negative"
        raise CohortError(f"cannot stratify {folds} folds for {task}: {n_pos} positive and "
                          f"{n_neg} negative training cases (only {lo} {what}); every fold "
                          f"needs at least one of each", hint=hint)


def stratified_folds(y, folds: int, seed: int) -> np.ndarray:
    """Fold number of every case (StratifiedKFold, shuffled with the seed)."""
    from sklearn.model_selection import StratifiedKFold
    y = np.asarray(y, dtype=int)
    out = np.full(len(y), -1, dtype=int)
    skf = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed) % (2**32))
    for k, (_, val) in enumerate(skf.split(np.zeros(len(y)), y)):
        out[val] = k
    return out


def _auc(y, s) -> float | None:
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        return None
    from ..metrics import auc
    return float(auc(y, np.asarray(s, dtype=float)))


def _bce(y, s) -> float:
    s = np.asarray(s, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def predict_tensors(model, xs: list, info: ArchInfo, device: str, *, batch: int, dtype=None,
                    channels_last: bool = False) -> np.ndarray:
    """Logits of a list of input tensors (eval mode, no augmentation), float64."""
    import torch
    was = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode(), autocast(device, dtype):
            for i in range(0, len(xs), batch):
                x = net_input(torch.stack(xs[i:i + batch]), info, device, channels_last)
                out.append(logits(model, x).float().cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def _save_torch(obj, path: Path) -> None:
    import torch
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_model(state: dict, path: Path, metadata: dict[str, str]) -> str:
    """Write a state dict as safetensors atomically; return its sha256."""
    from safetensors.torch import save_file

    from ..features.weights import file_sha256
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp),
              metadata=metadata)
    os.replace(tmp, path)
    return file_sha256(path)


def _versions() -> dict[str, str]:
    import timm
    import torch
    out = {"torch": torch.__version__, "timm": timm.__version__}
    try:
        from importlib.metadata import version
        out["monai"] = version("monai")
        out["torchvision"] = version("torchvision")
    except Exception:  # noqa: BLE001 - informative only
        pass
    from .. import __version__
    out["her2core"] = __version__
    return out


# ---------------------------------------------------------------- one fold
class _FoldTrainer:
    def __init__(self, run: "_Run", k: int, train_ids: list[str], val_ids: list[str]):
        self.run, self.k = run, k
        self.train_ids, self.val_ids = train_ids, val_ids

    def run_seeded(self) -> tuple[FoldRecord, dict[str, float]]:
        """Train with the global torch RNG (dropout, drop-path) seeded per fold and restored
        afterwards, so a fold's result does not depend on what ran before it."""
        import torch
        dev = self.run.device
        with torch.random.fork_rng(devices=[dev] if dev.startswith("cuda") else []):
            torch.manual_seed(D.derive_seed(self.run.settings.seed, 23, self.k))
            return self.train()

    def _ckpt_path(self) -> Path:
        return self.run.state_dir / f"fold{self.k}.ckpt.pt"

    def train(self) -> tuple[FoldRecord, dict[str, float]]:
        import torch
        import torch.nn.functional as F
        from timm.optim import param_groups_weight_decay
        from torch.utils.data import DataLoader
        r, s, k = self.run, self.run.settings, self.k
        dev, info, ctx = r.device, r.info, r.ctx
        model, _, _ = build_network(s.arch, weights=r.weights_spec, weights_dir=s.weights_dir,
                                    seed=D.derive_seed(s.seed, 17, k), size=s.size)
        model.to(dev)
        if r.channels_last:
            model.to(memory_format=torch.channels_last)
        net = ddp.wrap(model, ctx, dev)
        base = ddp.unwrap(net)
        opt = torch.optim.AdamW(param_groups_weight_decay(base, float(s.wd)), lr=float(s.lr),
                                **({"fused": True} if dev.startswith("cuda") else {}))
        ytr = np.asarray([r.labels[c] for c in self.train_ids], dtype=np.float32)
        yval = np.asarray([r.labels[c] for c in self.val_ids], dtype=np.float32)
        on_device = r.augment if r.augment_on_device else None
        ds = D.TrainDataset([r.inputs[c] for c in self.train_ids], ytr,
                            None if r.augment_on_device else r.augment, s.seed, k)
        sampler = D.EpochBatchSampler(len(ds), s.batch, s.seed, k, ctx.rank, ctx.world,
                                      epochs=int(s.epochs))
        steps = sampler.steps_per_epoch
        total, warm = int(s.epochs) * steps, int(s.warmup_epochs) * steps

        def lr_at(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        scaler = torch.amp.GradScaler("cuda", enabled=r.use_scaler)
        history: list[EpochRecord] = []
        best: dict[str, Any] | None = None
        start = 0
        ck = self._ckpt_path()
        if ck.is_file():
            st = torch.load(ck, map_location="cpu", weights_only=True)
            base.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            scaler.load_state_dict(st["scaler"])
            torch.set_rng_state(st["rng"]["torch"])
            if dev.startswith("cuda") and st["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(st["rng"]["cuda"], device=dev)
            start = int(st["epoch"])
            history = [EpochRecord(**h) for h in st["history"]]
            best = st["best"]
            log.info("fine-tune fold %d: resumed after epoch %d", k, start)
        workers = r.workers
        sampler.start = start
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers,
                            collate_fn=D.collate_train, pin_memory=dev.startswith("cuda"),
                            worker_init_fn=D.worker_init if workers else None,
                            prefetch_factor=4 if workers else None)
        batches = iter(loader)
        alpha = float(s.mixup)
        for epoch in range(start, int(s.epochs)):
            t_epoch = time.perf_counter()
            gsizes = [len(b) for b in sampler.global_batches(epoch)]
            net.train()
            lr_epoch = float(opt.param_groups[0]["lr"])
            loss_acc = torch.zeros((), dtype=torch.float64, device=dev)
            n_seen = 0
            wait = 0.0
            t0 = time.perf_counter()
            for step in range(steps):
                r.check_cancel(k, epoch)
                tw = time.perf_counter()
                x, y, idx = next(batches)
                wait += time.perf_counter() - tw
                if on_device is not None:
                    x = x.to(dev, non_blocking=True)
                    x = torch.stack([on_device(x[j], ds.seed_of(int(i), epoch))
                                     for j, i in enumerate(idx.tolist())])
                x = net_input(x, info, dev, r.channels_last)
                y = y.to(dev, non_blocking=True)
                if alpha > 0:
                    g = np.random.default_rng(D.derive_seed(s.seed, 19, k, epoch, step, ctx.rank))
                    lam = float(g.beta(alpha, alpha))
                    perm = torch.from_numpy(g.permutation(len(y))).to(dev)
                    x = lam * x + (1.0 - lam) * x[perm]
                    y = lam * y + (1.0 - lam) * y[perm]
                with autocast(dev, r.dtype):
                    out = logits(net, x)
                local = F.binary_cross_entropy_with_logits(out.float(), y, reduction="sum")
                loss = local * (ctx.world / gsizes[step])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                loss_acc += local.detach().double()
                n_seen += int(y.shape[0])
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            train_s = time.perf_counter() - t0
            tot_loss, tot_n = ddp.all_sum([float(loss_acc), float(n_seen)], ctx, dev)
            ddp.sync_buffers(net, ctx)
            val = predict_tensors(base, [r.inputs[c] for c in self.val_ids], info, dev,
                                  batch=2 * int(s.batch), dtype=r.dtype,
                                  channels_last=r.channels_last)
            vloss, vauc = _bce(yval, val), _auc(yval, val)
            key = self._key(epoch + 1, vauc, vloss)
            if best is None or key > tuple(best["key"]):
                best = {"epoch": epoch + 1, "key": list(key), "val_auc": vauc, "val_loss": vloss,
                        "val_logits": [float(v) for v in val],
                        "state": {n: t.detach().cpu().clone()
                                  for n, t in base.state_dict().items()}}
            rec = EpochRecord(epoch=epoch + 1, train_loss=tot_loss / max(tot_n, 1.0),
                              val_loss=vloss, val_auc=vauc, lr=lr_epoch,
                              seconds=time.perf_counter() - t_epoch,
                              train_images=int(tot_n), train_seconds=train_s,
                              data_wait_seconds=wait)
            history.append(rec)
            if ctx.is_main:
                rng = {"torch": torch.get_rng_state(),
                       "cuda": torch.cuda.get_rng_state(dev) if dev.startswith("cuda") else None}
                _save_torch({"epoch": epoch + 1, "model": base.state_dict(),
                             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                             "scaler": scaler.state_dict(), "rng": rng,
                             "history": [h.__dict__ for h in history], "best": best}, ck)
            ddp.barrier(ctx)
            r.emit(FinetuneEvent(
                "epoch", done=r.epochs_done(k, epoch + 1), total=r.epochs_total,
                message=f"fold {k + 1}/{s.folds} epoch {epoch + 1}/{s.epochs}: train loss "
                        f"{rec.train_loss:.4f}, val loss {vloss:.4f}, val AUC "
                        f"{'n/a' if vauc is None else f'{vauc:.3f}'}",
                fold=k, n_folds=int(s.folds), epoch=epoch + 1, n_epochs=int(s.epochs),
                train_loss=rec.train_loss, val_loss=vloss, val_auc=vauc,
                best_epoch=int(best["epoch"]), best_auc=best["val_auc"], lr=rec.lr,
                images_per_s=rec.images_per_s, seconds=rec.seconds))
        del batches, loader
        path = r.out / f"fold{k}.safetensors"
        if ctx.is_main:
            # one metadata key: safetensors writes several in a random order, and the
            # file's sha256 must depend on the weights alone
            save_model(best["state"], path, {"format": FORMAT})
        ddp.barrier(ctx)
        from ..features.weights import file_sha256
        record = FoldRecord(fold=k, train_ids=list(self.train_ids), val_ids=list(self.val_ids),
                            best_epoch=int(best["epoch"]), val_auc=best["val_auc"],
                            val_loss=float(best["val_loss"]), model_file=path.name,
                            sha256=file_sha256(path), history=history)
        oof = dict(zip(self.val_ids, best["val_logits"]))
        if ctx.is_main:
            write_json(r.state_dir / f"fold{k}.done.json",
                       {"record": record.to_dict(), "oof": oof})
            if not s.keep_checkpoints:
                ck.unlink(missing_ok=True)
        ddp.barrier(ctx)
        return record, oof

    def _key(self, epoch: int, vauc: float | None, vloss: float) -> tuple:
        sel = self.run.settings.select
        if sel == "last":
            return (float(epoch),)
        if sel == "loss":
            return (-vloss,)
        return (-math.inf if vauc is None else vauc, -vloss)


# ---------------------------------------------------------------- the run
class _Run:
    def __init__(self, settings: FinetuneSettings, out: Path, progress: ProgressFn | None, cancel):
        from ..features.backbones import resolve_device
        self.settings = settings
        self.out = out
        self.state_dir = out / "state"
        self.progress = progress
        self.cancel = cancel
        base_device = resolve_device(settings.device)
        self.ctx = ddp.context(base_device)
        self.device = ddp.device_for(self.ctx, base_device)
        self.info = arch_info(settings.arch)
        if self.info.kind == "3d" and settings.sequence == "US":
            raise Her2Error(f"the 3-D network {settings.arch} needs a 3-D image; the ultrasound "
                            "image is 2-D", hint="use a 2-D network (e.g. convnextv2_tiny) for US")
        self.dtype, self.use_scaler = precision_dtype(settings, self.device)
        self.channels_last = bool(settings.channels_last and self.device.startswith("cuda")
                                  and self.info.kind == "2d")
        self.workers = resolve_workers(settings, self.device)
        self.weights_spec = "random-init" if settings.random_init else (settings.weights or "auto")
        self.augment = None
        self.augment_on_device = False
        self.inputs: dict[str, Any] = {}
        self.labels: dict[str, int] = {}
        self.epochs_total = int(settings.folds) * int(settings.epochs)

    def epochs_done(self, k: int, epoch: int) -> int:
        return k * int(self.settings.epochs) + epoch

    def emit(self, event: FinetuneEvent) -> None:
        if self.ctx.is_main:
            log.info("fine-tune: %s", event.message)
            if self.progress is not None:
                self.progress(event)

    def check_cancel(self, k: int, epoch: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise FinetuneCancelled(
                f"fine-tuning cancelled in fold {k + 1}, epoch {epoch + 1}", file=self.out,
                hint="the last finished epoch is kept: run again with resume to continue")


def _read_cohort(cohort):
    from ..cohort import Cohort, read_cohort
    return cohort if isinstance(cohort, Cohort) else read_cohort(cohort)


def finetune(cohort, settings: FinetuneSettings, out_dir, *, where: str | None = None,
             progress: ProgressFn | None = None, cancel=None,
             resume: bool = False) -> FinetuneResult:
    """Fine-tune ``settings.arch`` on ``settings.sequence`` of a cohort (module docstring).

    Args:
        cohort: a :class:`her2core.cohort.Cohort` or its folder.
        settings: :class:`FinetuneSettings`.
        out_dir: folder for the fold models, finetune.json, oof.csv, heldout.csv.
        where: hold out the cases matching ``COL=VALUE`` (``Cohort.subset``):
            train on the others, score these with the fold ensemble.
        progress: called with a :class:`FinetuneEvent` after every epoch (and
            while cases are decoded, at fold starts / ends, at the end).
        cancel: a ``threading.Event``; when set, the run stops at the next batch
            with :class:`FinetuneCancelled` (the last epoch checkpoint is kept).
        resume: continue the unfinished run in ``out_dir`` (same model settings),
            or read a finished one.

    Raises Her2Error (one line) for unknown architectures, missing weights, a
    weights file of another architecture, a sequence the network cannot read,
    folds that cannot be stratified, an ``out_dir`` holding another run.
    """
    import pandas as pd
    out = Path(out_dir)
    if not isinstance(settings, FinetuneSettings):
        raise TypeError("settings must be a FinetuneSettings")
    run = _Run(settings, out, progress, cancel)
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        if resume:
            return load_result(out)
        raise Her2Error("this folder already holds a fine-tuned ensemble", file=out,
                        hint="choose another output folder, or resume to read it")
    if run.state_dir.is_dir() and not resume:
        raise Her2Error("this folder holds an unfinished fine-tuning run", file=out,
                        hint="resume it (--resume) or choose another output folder")
    coh = _read_cohort(cohort)
    s = settings
    if where:
        held_c = coh.subset(where)
        if len(held_c) == 0:
            raise CohortError(f"no case matches {where!r}", hint="check the column and value")
        train_c = coh.exclude(where)
    else:
        held_c, train_c = None, coh
    labels = train_c.labels(s.task)
    train_all = [c for c in train_c.case_ids if c in labels.index]
    if len(train_all) < len(train_c):
        log.info("fine-tune: %d training cases without a %s label are left out",
                 len(train_c) - len(train_all), s.task)
    check_stratifiable(labels.loc[train_all].to_numpy(), s.folds, s.task)
    held_ids = held_c.case_ids if held_c is not None else []

    # the starting weights: fail on a missing / foreign file before any decoding
    _, source, _ = build_network(s.arch, weights=run.weights_spec, weights_dir=s.weights_dir,
                                 seed=s.seed, size=s.size)
    items = [(c, coh.files(c)) for c in train_all + list(held_ids)]

    def on_decode(done: int, total: int) -> None:
        run.emit(FinetuneEvent("prepare", done=done, total=total,
                               message=f"decoded {done}/{total} cases"))

    with determinism(run.device):
        inputs, errors = D.decode_cases(items, s, run.info, workers=run.workers,
                                        progress=on_decode, cancel=cancel)
        if cancel is not None and cancel.is_set():
            raise FinetuneCancelled("fine-tuning cancelled while decoding cases", file=out)
        run.inputs = inputs
        train_ids = [c for c in train_all if c in inputs]
        run.labels = {c: int(labels[c]) for c in train_ids}
        if len(train_ids) < len(train_all):
            log.warning("fine-tune: %d training cases left out (see the errors)",
                        len(train_all) - len(train_ids))
        y = np.asarray([run.labels[c] for c in train_ids], dtype=int)
        check_stratifiable(y, s.folds, s.task)
        fold_of = stratified_folds(y, s.folds, s.seed)
        plan = {"format": FORMAT, "model_settings": s.model_fields(),
                "weights": source.identity, "train_ids": train_ids,
                "folds": [int(v) for v in fold_of], "where": where}
        _check_or_write_plan(run, plan, resume)
        run.augment_on_device = D.augment_on_device(s, run.info, run.device)
        run.augment = D.make_augment(s, run.info,
                                     run.device if run.augment_on_device else None)
        records: list[FoldRecord] = []
        oof: dict[str, float] = {}
        for k in range(int(s.folds)):
            tr = [c for c, f in zip(train_ids, fold_of) if f != k]
            va = [c for c, f in zip(train_ids, fold_of) if f == k]
            done = _load_done(run, k)
            if done is None:
                run.emit(FinetuneEvent("fold_start", done=run.epochs_done(k, 0),
                                       total=run.epochs_total, fold=k, n_folds=int(s.folds),
                                       n_epochs=int(s.epochs),
                                       message=f"fold {k + 1}/{s.folds}: {len(tr)} training, "
                                               f"{len(va)} validation cases"))
                rec, fold_oof = _FoldTrainer(run, k, tr, va).run_seeded()
            else:
                rec, fold_oof = done
            records.append(rec)
            oof.update(fold_oof)
            run.emit(FinetuneEvent(
                "fold_end", done=run.epochs_done(k, int(s.epochs)), total=run.epochs_total,
                fold=k, n_folds=int(s.folds), best_epoch=rec.best_epoch, best_auc=rec.val_auc,
                message=f"fold {k + 1}/{s.folds}: best epoch {rec.best_epoch}, val AUC "
                        f"{'n/a' if rec.val_auc is None else f'{rec.val_auc:.3f}'}"))
        from .ensemble import FineTunedEnsemble
        ens = FineTunedEnsemble(s, run.info, [(out / r.model_file, r.sha256) for r in records],
                                device=run.device)
        held_good = [c for c in held_ids if c in inputs]
        held_logit = ens.predict_tensors([inputs[c] for c in held_good]) if held_good else []
    run.emit(FinetuneEvent("heldout", done=run.epochs_total, total=run.epochs_total,
                           message=f"scored {len(held_good)} held-out cases"))

    oof_df = pd.DataFrame({"case_id": train_ids, "fold": [int(v) for v in fold_of],
                           "y": [run.labels[c] for c in train_ids],
                           "logit": [float(oof[c]) for c in train_ids]})
    heldout_df = None
    if held_c is not None:
        hy = held_c.labels(s.task)
        heldout_df = pd.DataFrame({
            "case_id": held_good,
            "y": pd.array([int(hy[c]) if c in hy.index else pd.NA for c in held_good],
                          dtype="Int64"),
            "logit": [float(v) for v in held_logit]})
    from ..features.backbones import random_init_warning
    warning = random_init_warning({s.arch: source.identity})
    if warning:
        warning = warning.replace("Features from randomly initialised backbones",
                                  "Fine-tuned from randomly initialised weights")
    h_known = heldout_df.dropna(subset=["y"]) if heldout_df is not None else None
    manifest = {
        "format": FORMAT, "status": "complete",
        "settings": s.to_dict(), "arch": s.arch, "network": run.info.name, "kind": run.info.kind,
        "task": s.task, "sequence": s.sequence,
        "input": input_recipe(s, run.info),
        "weights": source.to_dict(), "random_init": source.is_random, "warning": warning,
        "folds": [r.to_dict() for r in records],
        "models": {r.model_file: "sha256:" + r.sha256 for r in records},
        "where": where, "n_train": len(train_ids), "n_heldout": len(held_good),
        "errors": [str(e) for e in errors],
        "error_cases": [e.case_id for e in errors],
        "oof_auc": _auc(oof_df["y"], oof_df["logit"]),
        "heldout_auc": (_auc(h_known["y"].astype(int), h_known["logit"])
                        if h_known is not None and len(h_known) else None),
        "device": run.device, "precision": str(run.dtype).replace("torch.", "")
        if run.dtype is not None else "float32", "world_size": run.ctx.world,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if run.ctx.is_main:
        oof_df.to_csv(out / "oof.csv", index=False, float_format="%.10g")
        if heldout_df is not None:
            heldout_df.to_csv(out / "heldout.csv", index=False, float_format="%.10g")
        write_json(manifest_path, manifest)
        if not s.keep_checkpoints:
            import shutil
            shutil.rmtree(run.state_dir, ignore_errors=True)
    ddp.barrier(run.ctx)
    run.emit(FinetuneEvent("done", done=run.epochs_total, total=run.epochs_total,
                           message=f"out-of-fold AUC {_fmt(manifest['oof_auc'])}"
                                   + (f", held-out AUC {_fmt(manifest['heldout_auc'])}"
                                      if held_c is not None else "")))
    return FinetuneResult(out_dir=out, settings=s, oof=oof_df, heldout=heldout_df, folds=records,
                          errors=list(errors), weights=source.to_dict(), warning=warning,
                          manifest=manifest)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def input_recipe(s: FinetuneSettings, info: ArchInfo) -> dict[str, Any]:
    """How a case becomes the network input (stored in finetune.json)."""
    if info.kind == "3d":
        shape = [1, s.size, s.size, s.size]
        how = "ROI box + margin_px in-plane (none along z), z-score over the crop, trilinear resize"
    else:
        c = 3 if s.slice_mode == "25d" and s.sequence != "US" else 1
        shape = [c, s.size, s.size]
        how = ("ROI box + margin_px (the mask dilated by margin_px), z-score over the crop, "
               + ("2.5-D stack of the largest-ROI slice and its neighbours, " if c == 3 else
                  ("largest-ROI axial slice, " if s.sequence != "US" else ""))
               + "zero-padded to a square, bilinear antialiased resize; grey replicated to 3 "
                 "channels")
    return {"sequence": s.sequence, "size": s.size, "shape": shape, "margin_px": s.margin_px,
            "dilation_px": s.margin_px, "slice_mode": s.slice_mode if info.kind == "2d" else None,
            "normalisation": "z-score over the crop", "min_roi_px": s.min_roi_px,
            "description": how}


def _check_or_write_plan(run: _Run, plan: dict, resume: bool) -> None:
    import json
    path = run.state_dir / "run.json"
    if resume and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        for key in ("format", "model_settings", "weights", "train_ids", "folds", "where"):
            if old.get(key) != plan.get(key):
                what = {"model_settings": "settings", "weights": "starting weights",
                        "train_ids": "training cases", "folds": "fold assignment"}.get(key, key)
                diff = ""
                if key == "model_settings":
                    d = [k for k in plan[key] if old[key].get(k) != plan[key][k]]
                    diff = f" ({', '.join(d)})"
                raise Her2Error(f"cannot resume: the {what} differ from the unfinished run{diff}",
                                file=path, hint="use the same settings and cohort, or another "
                                                "output folder")
        return
    if run.ctx.is_main:
        run.state_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, plan)
    ddp.barrier(run.ctx)


def _load_done(run: _Run, k: int):
    import json

    from ..features.weights import file_sha256
    p = run.state_dir / f"fold{k}.done.json"
    if not p.is_file():
        return None
    d = json.loads(p.read_text(encoding="utf-8"))
    rec = FoldRecord.from_dict(d["record"])
    model = run.out / rec.model_file
    if not model.is_file() or file_sha256(model) != rec.sha256:
        log.warning("fine-tune fold %d: model file missing or changed; training it again", k)
        return None
    return rec, {str(c): float(v) for c, v in d["oof"].items()}


def load_result(out_dir) -> FinetuneResult:
    """The FinetuneResult of a finished run folder (models verified by sha256)."""
    import json

    import pandas as pd
    from .ensemble import verify_models
    out = Path(out_dir)
    path = out / MANIFEST
    if not path.is_file():
        raise Her2Error("no finetune.json: not a fine-tuned ensemble folder", file=out)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise Her2Error(f"unknown fine-tune format {manifest.get('format')!r}", file=path)
    verify_models(out, manifest)
    oof = pd.read_csv(out / "oof.csv", dtype={"case_id": str})
    held = None
    if (out / "heldout.csv").is_file():
        held = pd.read_csv(out / "heldout.csv", dtype={"case_id": str, "y": "Int64"})
    return FinetuneResult(out_dir=out, settings=FinetuneSettings.from_dict(manifest["settings"]),
                          oof=oof, heldout=held,
                          folds=[FoldRecord.from_dict(f) for f in manifest["folds"]],
                          errors=[Her2Error(e) for e in manifest.get("errors", [])],
                          weights=manifest["weights"], warning=manifest.get("warning"),
                          manifest=manifest)
