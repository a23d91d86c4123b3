"""Tiny fine-tuning runs shared by the tests of her2core.finetune (session scope, read-only).

Cohort: 12 synthetic cases (MRI 32 x 32 x 8, US 64 x 64), centre A = even indices
(2 HER2-negative, 4 positive), centre B = odd indices (held out with
``where="center=B"``). Networks: resnet18 at 32 px (US), the 3-D ResNet18 at 16^3
(DCE), random initialisation (no weights on a CI machine), 2 folds, 2 epochs.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from her2core.finetune import FinetuneSettings

WHERE = "center=B"


def us_settings(**kw) -> FinetuneSettings:
    d = dict(sequence="US", arch="resnet18", folds=2, epochs=2, size=32, batch=4, lr=1e-3,
             random_init=True, num_workers=0, margin_px=8, device="cpu", mixup=0.4)
    d.update(kw)
    return FinetuneSettings(**d)


def dce_settings(**kw) -> FinetuneSettings:
    d = dict(sequence="DCE", arch="resnet3d18", folds=2, epochs=2, size=16, batch=4, lr=1e-3,
             random_init=True, num_workers=0, margin_px=4, device="cpu")
    d.update(kw)
    return FinetuneSettings(**d)


@pytest.fixture(autouse=True)
def _no_user_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HER2_WEIGHTS_DIR", raising=False)


@pytest.fixture(scope="session")
def ft_cohort(tmp_path_factory) -> Path:
    from her2core.synthetic import make_cohort
    return make_cohort(tmp_path_factory.mktemp("ft") / "cohort", n=12, seed=0, centres=2,
                       modalities="both", shape=(32, 32, 8), us_size=64)


@pytest.fixture(scope="session")
def us_run(ft_cohort, tmp_path_factory):
    """The US run, through the command line (python -m her2core finetune)."""
    from her2core import cli
    out = tmp_path_factory.mktemp("us_run") / "out"
    rc = cli.main(["finetune", "--cohort", str(ft_cohort), "--sequence", "US", "--arch",
                   "resnet18", "--folds", "2", "--epochs", "2", "--size", "32", "--batch", "4",
                   "--lr", "1e-3", "--mixup", "0.4", "--margin", "8", "--workers", "0",
                   "--device", "cpu", "--random-init", "--where", WHERE, "--out", str(out)])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def dce_run(ft_cohort, tmp_path_factory):
    from her2core.finetune import finetune
    out = tmp_path_factory.mktemp("dce_run") / "out"
    events = []
    result = finetune(ft_cohort, dce_settings(), out, where=WHERE, progress=events.append)
    return out, result, events
