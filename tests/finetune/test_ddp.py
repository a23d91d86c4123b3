"""Data-parallel fine-tuning: torchrun with 2 CPU processes (gloo) matches one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.finetune import finetune

from .conftest import WHERE, us_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_gloo_processes_match_one(ft_cohort, tmp_path):
    # ConvNeXt V2 (LayerNorm, GRN: no batch statistics) so that the split of every
    # global batch over the processes changes nothing but the order of float sums;
    # the 3 training cases of a fold make one global batch of 3, split 2 + 1.
    s = us_settings(arch="convnextv2_atto", epochs=1, mixup=0.0)
    one = finetune(ft_cohort, s, tmp_path / "one", where=WHERE)
    out = tmp_path / "two"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "her2core", "finetune", "--cohort", str(ft_cohort), "--sequence", "US",
           "--arch", "convnextv2_atto", "--folds", "2", "--epochs", "1", "--size", "32",
           "--batch", "4", "--lr", "1e-3", "--margin", "8", "--workers", "0", "--device", "cpu",
           "--random-init", "--where", WHERE, "--out", str(out)]
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone reports and writes
    assert proc.stdout.count("out-of-fold AUC") == 2   # the done event and the summary line
    m = json.loads((out / "finetune.json").read_text())
    assert m["world_size"] == 2 and one.manifest["world_size"] == 1
    assert m["settings"] == one.manifest["settings"]
    two_oof = pd.read_csv(out / "oof.csv", dtype={"case_id": str})
    two_held = pd.read_csv(out / "heldout.csv", dtype={"case_id": str})
    assert list(two_oof.case_id) == list(one.oof.case_id)
    assert list(two_oof.fold) == list(one.oof.fold)
    assert_allclose(two_oof.logit, one.oof.logit, rtol=0, atol=1e-4)
    assert_allclose(two_held.logit, one.heldout.logit, rtol=0, atol=1e-4)
    assert [f["best_epoch"] for f in m["folds"]] == [f.best_epoch for f in one.folds]
    for a, b in zip(m["folds"], one.folds):
        assert_allclose(a["history"][0]["train_loss"], b.history[0].train_loss, atol=1e-5)
