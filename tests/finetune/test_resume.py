"""A run killed with SIGKILL and resumed ends with exactly the uninterrupted run's result (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch

from her2core.errors import Her2Error
from her2core.finetune import FinetuneCancelled, finetune

from .conftest import WHERE, us_settings

ROOT = Path(__file__).resolve().parents[2]

# the child dies by SIGKILL right after the checkpoint of fold 2, epoch 1 (of 3)
_CHILD = """
import json, os, signal, sys
from her2core.finetune import FinetuneSettings, finetune
settings = FinetuneSettings(**json.loads(sys.argv[3]))
def progress(event):
    if event.kind == "epoch" and event.fold == 1 and event.epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)
finetune(sys.argv[1], settings, sys.argv[2], where=sys.argv[4], progress=progress)
"""


def _settings():
    return us_settings(epochs=3, mixup=0.4)


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted(ft_cohort, tmp_path):
    s = _settings()
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(ft_cohort), str(killed),
                           json.dumps(s.to_dict()), WHERE], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # what the kill left: fold 0 finished, fold 1 checkpointed after its first epoch
    assert (killed / "fold0.safetensors").is_file()
    assert (killed / "state" / "fold0.done.json").is_file()
    ck = torch.load(killed / "state" / "fold1.ckpt.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 1 and len(ck["history"]) == 1
    assert set(ck) >= {"model", "optimizer", "scheduler", "scaler", "rng", "best"}
    assert not (killed / "finetune.json").exists()
    # without --resume the unfinished folder is refused, nothing is lost
    with pytest.raises(Her2Error, match="unfinished fine-tuning run"):
        finetune(ft_cohort, s, killed, where=WHERE)
    # other settings cannot resume it
    with pytest.raises(Her2Error, match=r"cannot resume: the settings differ.*\(lr\)"):
        finetune(ft_cohort, s.updated(lr=5e-4), killed, where=WHERE, resume=True)
    # the child ran with one intra-op thread; so do these, since a CPU reduction's order (and so its
    # last bits) depends on the thread count, whatever the machine has
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = finetune(ft_cohort, s, killed, where=WHERE, resume=True)
        whole = finetune(ft_cohort, s, tmp_path / "whole", where=WHERE)
    finally:
        torch.set_num_threads(threads)
    # identical: out-of-fold and held-out logits, per-epoch history, and the model bytes
    pd.testing.assert_frame_equal(resumed.oof, whole.oof, check_exact=True)
    pd.testing.assert_frame_equal(resumed.heldout, whole.heldout, check_exact=True)
    for a, b in zip(resumed.folds, whole.folds):
        assert a.sha256 == b.sha256 and a.best_epoch == b.best_epoch
        assert [(h.train_loss, h.val_loss, h.val_auc) for h in a.history] == \
               [(h.train_loss, h.val_loss, h.val_auc) for h in b.history]
    assert pd.read_csv(killed / "oof.csv").equals(pd.read_csv(tmp_path / "whole" / "oof.csv"))


def test_cancel_stops_and_keeps_the_checkpoint(ft_cohort, tmp_path):
    cancel = threading.Event()
    out = tmp_path / "cancelled"

    def progress(event):
        if event.kind == "epoch" and event.epoch == 1:
            cancel.set()

    s = us_settings(epochs=2, folds=2)
    with pytest.raises(FinetuneCancelled, match="cancelled in fold 1, epoch 2"):
        finetune(ft_cohort, s, out, where=WHERE, progress=progress, cancel=cancel)
    ck = torch.load(out / "state" / "fold0.ckpt.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 1
