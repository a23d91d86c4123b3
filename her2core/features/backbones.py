"""Backbone registry: frozen feature extractors from timm, plus a 3-D ResNet18.

Every 2-D backbone is ``timm.create_model(name, pretrained=False, num_classes=0)``
(the classifier removed, global pooling kept) whose weights are then read from
a local file by :mod:`her2core.features.weights`; its input normalisation is
timm's own ``resolve_model_data_config``. Feature dimensions (output of
``model(x)`` with ``num_classes=0``):

=======================  =====  ==============================================
name                     dim    note
=======================  =====  ==============================================
resnet50                 2048   paper 000, 003
vgg16                    4096   paper 000; timm keeps VGG's fc6/fc7 as a conv
                                "pre-logits" block, so num_classes=0 gives the
                                4096-d fc7 (after ReLU), as in the paper --
                                not the 512-d conv features (model.num_features)
efficientnet_b0          1280   paper 000
vit_small_patch16_224     384   paper 000 (class token)
convnextv2_tiny           768   paper 001 (ultrasound)
resnet101                2048   paper 003
vgg19                    4096   paper 003 (fc7, as vgg16)
densenet121              1024   paper 003
resnet18                  512   light backbone for tests / quick runs
resnet3d18                512   paper 001: 3-D ResNet18 on the DCE ROI (96^3)
=======================  =====  ==============================================

A name may carry a timm pretrained tag (``resnet50.a1_in1k``): the tag picks
which cached file is looked for. Any other timm model can be used as
``timm:<name>`` (its dimension is then whatever timm gives). Unknown names raise
:class:`Her2Error` listing the known ones.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import Her2Error
from . import weights as W

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    kind: str = "2d"          # "2d" (timm) or "3d"
    papers: tuple[str, ...] = ()
    note: str = ""


REGISTRY: dict[str, BackboneSpec] = {s.name: s for s in [
    BackboneSpec("resnet50", 2048, papers=("000", "003")),
    BackboneSpec("vgg16", 4096, papers=("000",), note="fc7 pre-logits"),
    BackboneSpec("efficientnet_b0", 1280, papers=("000",)),
    BackboneSpec("vit_small_patch16_224", 384, papers=("000",), note="class token"),
    BackboneSpec("convnextv2_tiny", 768, papers=("001",)),
    BackboneSpec("resnet101", 2048, papers=("003",)),
    BackboneSpec("vgg19", 4096, papers=("003",), note="fc7 pre-logits"),
    BackboneSpec("densenet121", 1024, papers=("003",)),
    BackboneSpec("resnet18", 512, note="light backbone for tests and quick runs"),
    BackboneSpec("resnet3d18", 512, kind="3d", papers=("001",),
                 note="3-D ResNet18 on the DCE ROI volume"),
]}


def known_backbones() -> list[str]:
    return list(REGISTRY)


def split_name(name: str) -> tuple[str, str | None, bool]:
    """(architecture, pretrained tag or None, is a free ``timm:`` name)."""
    free = name.startswith("timm:")
    base = name[5:] if free else name
    arch, _, tag = base.partition(".")
    return arch, (tag or None), free


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name`` (tags allowed); Her2Error when unknown."""
    arch, tag, free = split_name(str(name))
    if free:
        import timm
        if not timm.is_model(arch):
            raise Her2Error(f"timm has no model {arch!r}",
                            hint="see timm.list_models(); e.g. timm:resnet34")
        return BackboneSpec(name, -1, papers=(), note="free timm model")
    if arch not in REGISTRY or (tag and REGISTRY[arch].kind != "2d"):
        raise Her2Error(f"unknown backbone {name!r}",
                        hint="known: " + ", ".join(known_backbones())
                        + "; or any timm model as 'timm:<name>'")
    return REGISTRY[arch]


def resolve_device(device: str = "auto") -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise Her2Error("device 'cuda' asked for but no CUDA GPU is available",
                        hint="use device 'auto' or 'cpu'")
    if device not in ("cpu", "cuda"):
        raise Her2Error(f"unknown device {device!r}", hint="use 'auto', 'cpu' or 'cuda'")
    return device


def amp_dtype(device: str):
    """Mixed-precision dtype on CUDA (bf16 where supported, else fp16); None on CPU."""
    import torch
    if device != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class Backbone:
    """A frozen feature extractor with its preprocessing and weights identity."""

    name: str
    spec: BackboneSpec
    model: Any
    input_size: tuple[int, ...]          # (C, H, W) or (C, D, H, W)
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    interpolation: str
    weights: W.WeightsSource
    dim: int
    device: str = "cpu"
    amp: bool = True
    _norm: Any = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def spatial_size(self) -> tuple[int, ...]:
        return tuple(self.input_size[1:])

    @property
    def weights_identity(self) -> str:
        return self.weights.identity

    def to(self, device: str) -> "Backbone":
        import torch
        device = resolve_device(device)
        self.model.to(device)
        if device == "cuda" and self.kind == "2d":
            self.model.to(memory_format=torch.channels_last)
        self.device = device
        self._norm = None
        return self

    def _mean_std(self):
        import torch
        if self._norm is None and self.mean is not None:
            m = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
            s = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
            self._norm = (m, s)
        return self._norm

    def prepare(self, x):
        """(N, 1|3, H, W) in [0, 1] -> normalised (N, 3, h, w) at the input size.

        3-D: (N, 1, D, H, W) z-scored -> resized to the input cube.
        """
        import torch
        import torch.nn.functional as F
        x = x.to(self.device, non_blocking=True).float()
        if self.kind == "3d":
            if tuple(x.shape[2:]) != self.spatial_size:
                x = F.interpolate(x, size=self.spatial_size, mode="trilinear", align_corners=False)
            return x
        if tuple(x.shape[2:]) != self.spatial_size:
            mode = "bicubic" if self.interpolation == "bicubic" else "bilinear"
            x = F.interpolate(x, size=self.spatial_size, mode=mode, align_corners=False,
                              antialias=True).clamp_(0, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        m, s = self._mean_std()
        x = (x - m) / s
        if self.device == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def embed(self, x):
        """Features (N, dim) float32 on the backbone's device, inference mode."""
        import torch
        dt = amp_dtype(self.device) if self.amp else None
        ctx = torch.autocast("cuda", dtype=dt) if dt is not None else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            out = self.model(self.prepare(x))
        return out.float()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "dim": self.dim,
                "input_size": list(self.input_size),
                "mean": list(self.mean) if self.mean else None,
                "std": list(self.std) if self.std else None,
                "interpolation": self.interpolation,
                "weights": self.weights.to_dict()}


@contextlib.contextmanager
def _seeded(seed: int):
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def create_backbone(name: str, weights: str | None = "auto", *, weights_dir=None, seed: int = 0,
                    device: str = "cpu", amp: bool = True, volume_size: int = 96,
                    input_px: int | None = None) -> Backbone:
    """Build backbone ``name`` in eval mode with its weights.

    ``weights``: "auto" (local file or cache, Her2Error when none), a file or
    folder path, or "random-init" (seeded with ``seed``). ``input_px`` overrides
    a 2-D backbone's input resolution (quick runs and tests).
    """
    import torch
    W._offline()
    spec = get_spec(name)
    arch, tag, free = split_name(name)
    if spec.kind == "3d":
        from .resnet3d import resnet3d18
        with _seeded(seed):
            model = resnet3d18(in_chans=1, num_classes=0)
        path, origin = W.resolve_weights(name, weights, arch=arch, weights_dir=weights_dir)
        if path is not None:
            W.apply_state_dict(model, W.read_state_dict(path), name=name, path=path,
                               classifier="fc")
        input_size = (1, volume_size, volume_size, volume_size)
        mean = std = None
        interpolation = "trilinear"
        dim = model.num_features
    else:
        import timm
        timm_name = f"{arch}.{tag}" if tag else arch
        with _seeded(seed):
            model = timm.create_model(timm_name, pretrained=False, num_classes=0)
        pcfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        path, origin = W.resolve_weights(
            name, weights, arch=arch, tag=pcfg.get("tag") or tag, hf_hub_id=pcfg.get("hf_hub_id"),
            url=pcfg.get("url") or None, weights_dir=weights_dir)
        if path is not None:
            W.apply_state_dict(model, W.read_state_dict(path), name=name, path=path,
                               classifier=pcfg.get("classifier"))
        dcfg = timm.data.resolve_model_data_config(model)
        input_size = tuple(int(v) for v in dcfg["input_size"])
        if input_px and hasattr(model, "patch_embed"):
            log.info("backbone %s: fixed input size %s kept (input_size override ignored)",
                     name, input_size[1:])
        elif input_px:  # resolution override (quick runs, tests)
            input_size = (input_size[0], int(input_px), int(input_px))
        mean, std = tuple(dcfg["mean"]), tuple(dcfg["std"])
        interpolation = str(dcfg.get("interpolation", "bilinear"))
        dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    if spec.dim > 0 and dim != spec.dim:  # pragma: no cover - a timm change
        raise RuntimeError(f"{name}: timm gives {dim} features, registry says {spec.dim}")
    if path is None:
        source = W.WeightsSource(W.RANDOM_INIT, None, W.RANDOM_INIT, seed=int(seed))
        log.warning("backbone %s: RANDOM INITIALISATION (seed %d) -- features are not from a "
                    "pretrained network", name, seed)
    else:
        source = W.WeightsSource("sha256:" + W.file_sha256(path), str(path), origin)
        log.info("backbone %s: weights %s from %s", name, source.identity[:19], path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    bb = Backbone(name=name, spec=spec, model=model, input_size=input_size, mean=mean, std=std,
                  interpolation=interpolation, weights=source, dim=dim, amp=amp)
    return bb.to(device)


def random_init_warning(identities: dict[str, str]) -> str | None:
    """A sentence to show on every output made with untrained backbones, else None."""
    rnd = sorted(n for n, ident in identities.items() if ident == W.RANDOM_INIT)
    if not rnd:
        return None
    return ("Features from randomly initialised backbones (" + ", ".join(rnd) + "): no "
            "pretrained weights were used, so these features carry no learned image "
            "knowledge. For demonstration and testing only.")
