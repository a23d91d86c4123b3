"""Trainable networks: a timm 2-D model or the 3-D ResNet18, with one logit output.

The architecture and its pretrained weights come from
:func:`her2core.features.backbones.create_backbone` (the same registry, local
weights search and explicit random-init rule as feature extraction); the
classifier is then replaced by a single-logit head (``reset_classifier(1)`` for
timm models, a ``Linear(512, 1)`` ``fc`` for the 3-D ResNet), initialised from
the run's seed, and every parameter is made trainable.

Names: a registered backbone (``resnet18``, ``convnextv2_tiny``, ``resnet101``,
``resnet3d18``, ...), any timm model (``convnextv2_atto``, ``efficientnet_b3``,
with or without ``timm:`` and a pretrained tag), else a one-line Her2Error.
"""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from ..errors import Her2Error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchInfo:
    arch: str           # as the user wrote it
    name: str           # backbone registry name ("resnet18", "timm:convnextv2_atto", ...)
    kind: str           # "2d" | "3d"
    timm_name: str | None

    @property
    def block(self) -> str:
        """Feature block name of the fine-tuned network's penultimate features."""
        return "ft_" + re.sub(r"[^A-Za-z0-9]+", "_", self.name.replace("timm:", "")).strip("_")

    @property
    def in_chans(self) -> int:
        return 1 if self.kind == "3d" else 3


def arch_info(arch: str) -> ArchInfo:
    """Resolve an architecture name; Her2Error (one line) when unknown."""
    from ..features.backbones import REGISTRY, get_spec, split_name
    a = str(arch or "").strip()
    base, tag, free = split_name(a)
    if not free and base not in REGISTRY:
        import timm
        if not base or not timm.is_model(base):
            raise Her2Error(f"unknown architecture {arch!r}",
                            hint="use a timm model name (timm.list_models(), e.g. resnet18, "
                                 "convnextv2_tiny, resnet101, efficientnet_b0, "
                                 "vit_small_patch16_224) or resnet3d18 for 3-D volumes")
        a = "timm:" + a
    spec = get_spec(a)
    base, tag, _ = split_name(a)
    timm_name = None if spec.kind == "3d" else (f"{base}.{tag}" if tag else base)
    return ArchInfo(arch=str(arch), name=a, kind=spec.kind, timm_name=timm_name)


@contextlib.contextmanager
def _seeded(seed: int):
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _set_head(model, info: ArchInfo, seed: int, size: int | None) -> None:
    import torch
    with _seeded(seed):
        if info.kind == "3d":
            model.fc = torch.nn.Linear(model.num_features, 1)
        else:
            model.reset_classifier(1)
    if info.kind == "2d" and size and hasattr(model, "set_input_size") \
            and hasattr(model, "patch_embed"):
        grid = tuple(getattr(model.patch_embed, "img_size", ()) or ())
        if grid and tuple(grid) != (int(size), int(size)):
            model.set_input_size(img_size=(int(size), int(size)))


def build_network(arch: str, *, weights: str | None = "auto", weights_dir=None, seed: int = 0,
                  size: int | None = None):
    """(model in train mode, WeightsSource of the initialisation, ArchInfo).

    ``weights``: "auto" (found locally; Her2Error naming the places searched
    when absent), a file / folder path, or "random-init".
    """
    from ..features.backbones import create_backbone
    info = arch_info(arch)
    bb = create_backbone(info.name, weights or "auto", weights_dir=weights_dir, seed=seed,
                         device="cpu", amp=False, volume_size=int(size or 96),
                         input_px=int(size) if size and info.kind == "2d" else None)
    model = bb.model
    if bb.weights.path is not None:
        from ..features.weights import head_names, require_architecture
        require_architecture(model, bb.weights.path, info.arch, head_names(model))
    _set_head(model, info, seed + 1, size)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    return model, bb.weights, info


def skeleton(info: ArchInfo, size: int | None = None):
    """The architecture with its one-logit head, untrained (for loading fold models)."""
    if info.kind == "3d":
        from ..features.resnet3d import resnet3d18
        model = resnet3d18(in_chans=1, num_classes=0)
    else:
        import timm
        model = timm.create_model(info.timm_name, pretrained=False, num_classes=0)
    _set_head(model, info, 0, size)
    return model


def logits(model, x):
    """(N,) float32 logits of a one-output network."""
    return model(x).float().reshape(x.shape[0], -1)[:, 0]


def penultimate(model, x, kind: str):
    """(N, dim) pooled features before the head (pre-logits)."""
    import torch
    if kind == "3d":
        return torch.flatten(model.avgpool(model.forward_features(x)), 1).float()
    return model.forward_head(model.forward_features(x), pre_logits=True).float()


def net_input(x, info: ArchInfo, device: str, channels_last: bool = False):
    """Batch on ``device`` in the network's layout (grey replicated to 3 channels for 2-D)."""
    import torch
    x = x.to(device, non_blocking=True).float()
    if info.kind == "2d":
        if x.shape[1] == 1 and info.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.contiguous()
    return x


def load_state(model, state: dict[str, Any], *, file=None) -> None:
    """Load a full fine-tuned state dict (every tensor, exact shapes) or raise Her2Error."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise Her2Error(f"fine-tuned model file does not fit its architecture: "
                        f"{str(exc).splitlines()[0][:200]}", file=file) from exc
