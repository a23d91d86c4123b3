"""Deep features: ROI inputs from images + masks, and the batched frozen forward pass.

Inputs (all cropping / slice choice / z-scoring via :mod:`her2core.imaging.ops`):

* 2-D backbones: the image and mask are cropped to the ROI bounding box grown
  by ``margin_px`` (``ops.crop_to_roi``), the crop is padded to a square (so a
  resize keeps the aspect ratio), its intensities are mapped from the crop's
  ``intensity_percentiles`` to [0, 1]. Then, by ``slice_mode``:
  "largest" = the axial slice (array index z) with the largest ROI area
  (``ops.largest_roi_slice``); "aggregate" = every slice holding ROI, features
  averaged over them; "25d" = the largest slice and its neighbours as the 3
  channels (``ops.stack_25d``, k=3). A one-channel input is replicated to 3
  channels, resized (antialiased) to the backbone's input size and normalised
  with the backbone's mean / std from ``timm.data.resolve_model_data_config``.
* 3-D backbone (resnet3d18): the DCE crop with ``volume_margin_px`` (the
  bounding box of the mask dilated in-plane by that many pixels, paper 001:
  50; no margin along z),
  z-scored over the crop (``ops.zscore``), trilinearly resized to
  ``volume_size``^3.

The forward pass runs in ``model.eval()`` under ``torch.inference_mode()``,
batched, on CUDA with autocast (bf16, else fp16) when present, else on the CPU.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import Her2Error, MaskError
from .config import FeatureConfig

log = logging.getLogger(__name__)


# ----------------------------------------------------------------- imaging glue
def _ops():
    from ..imaging import ops
    return ops


def _as_array(x: Any) -> np.ndarray:
    return np.asarray(x.array if hasattr(x, "array") else x)


def _crop(image, mask, margin_px: int, z_margin: int = 0):
    """(image crop, mask crop) as Images via ops.crop_to_roi.

    In-plane margin ``margin_px``; along z (3-D) ``z_margin`` slices.
    """
    ops = _ops()
    m = int(margin_px) if image.ndim == 2 else (int(margin_px), int(margin_px), int(z_margin))
    return ops.crop_to_roi(image, mask, margin_px=m), ops.crop_to_roi(mask, mask, margin_px=m)


def _scale01(arr: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    arr = arr.astype(np.float32, copy=False)
    lo, hi = np.percentile(arr, [percentiles[0], percentiles[1]])
    if not np.isfinite(hi - lo) or hi - lo <= 1e-6 * max(1.0, abs(hi)):
        return np.zeros_like(arr, dtype=np.float32)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _pad_square(arr: np.ndarray, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes symmetrically to a square with ``value``."""
    h, w = arr.shape[-2:]
    if h == w:
        return arr
    n = max(h, w)
    ph, pw = n - h, n - w
    pad = [(0, 0)] * (arr.ndim - 2) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)]
    return np.pad(arr, pad, mode="constant", constant_values=value)


def _roi_slices(mask_arr: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask_arr.reshape(mask_arr.shape[0], -1).any(axis=1))


def prepare_slices(image, mask, *, mode: str = "largest", margin_px: int = 10, square: bool = True,
                   percentiles: Sequence[float] = (0.5, 99.5)) -> np.ndarray:
    """2-D backbone input(s) of one image: (n, C, H, W) float32 in [0, 1].

    ``C`` is 1 (replicated to 3 at the backbone) or 3 for "25d"; ``n`` is 1
    except for "aggregate" (every ROI slice). ``image`` and ``mask`` are
    :class:`~her2core.imaging.Image` on one grid (mask binary).
    """
    if image.is_phases:
        raise Her2Error("a 4-D phases image cannot go to a 2-D backbone",
                        file=image.source, hint="use the DCE (3-D) image")
    if not _as_array(mask).any():
        raise MaskError("the ROI is empty", file=getattr(mask, "source", None))
    img_c, mask_c = _crop(image, mask, margin_px, z_margin=1)
    arr = _scale01(_as_array(img_c), percentiles)
    m = _as_array(mask_c)
    if arr.ndim == 2:
        out = arr[None, None]
    elif mode == "largest":
        z = int(_ops().largest_roi_slice(mask_c))
        out = arr[z][None, None]
    elif mode == "aggregate":
        zs = _roi_slices(m)
        out = arr[zs][:, None]
    elif mode == "25d":
        stack = _as_array(_ops().stack_25d(img_c, mask_c, 3)).astype(np.float32)
        if stack.ndim != 3 or stack.shape[0] != 3:
            raise RuntimeError(f"ops.stack_25d(k=3) gave shape {stack.shape}, expected (3, H, W)")
        out = _scale01(stack, percentiles)[None]
    else:
        raise Her2Error(f"unknown slice_mode {mode!r}")
    if square:
        out = _pad_square(out, 0.0)
    return np.ascontiguousarray(out, dtype=np.float32)


def prepare_volume(image, mask, *, margin_px: int = 50) -> np.ndarray:
    """3-D backbone input: (1, D, H, W) float32, z-scored over the ROI crop."""
    if image.ndim != 3 or image.is_phases:
        raise Her2Error(f"the 3-D backbone needs a 3-D image, got shape {image.array.shape}",
                        file=image.source)
    if not _as_array(mask).any():
        raise MaskError("the ROI is empty", file=getattr(mask, "source", None))
    img_c, _ = _crop(image, mask, margin_px)
    z = _ops().zscore(img_c)
    arr = _as_array(z).astype(np.float32)
    return np.ascontiguousarray(arr[None])


def resize_slices(x: np.ndarray, size: tuple[int, int]):
    """(n, C, h, w) -> torch (n, C, H, W), antialiased bilinear, clamped to [0, 1]."""
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(x))
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=True).clamp_(0, 1)


def resize_volume(x: np.ndarray, size: int):
    """(1, D, H, W) -> torch (1, S, S, S), trilinear."""
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(x))[None]
    if tuple(t.shape[-3:]) != (size,) * 3:
        t = F.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)
    return t[0]


# ----------------------------------------------------------------- per-case inputs
@dataclass
class CaseInputs:
    """Network-ready inputs of one case (tensors on the CPU) and its radiomics.

    ``slices[seq][(H, W)]``: (n, C, H, W) in [0, 1]; ``volume[seq]``: (1, S, S, S).
    """

    case_id: str
    slices: dict[str, dict[tuple[int, int], Any]] = field(default_factory=dict)
    volume: dict[str, Any] = field(default_factory=dict)
    radiomics: dict[str, dict[str, float]] = field(default_factory=dict)
    error: Her2Error | None = None


def input_plan(config: FeatureConfig, backbones: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per sequence: the 2-D input sizes and the 3-D volume size needed."""
    plan: dict[str, dict[str, Any]] = {}
    for seq in config.sequences:
        sizes, vol = [], None
        for name in config.backbones.get(seq, []):
            bb = backbones[name]
            if bb.kind == "3d":
                if seq == "US":
                    raise Her2Error(f"backbone {name} is 3-D; the ultrasound image is 2-D",
                                    hint="use a 2-D backbone for US")
                vol = bb.spatial_size[0]
            elif bb.spatial_size not in sizes:
                sizes.append(tuple(bb.spatial_size))
        plan[seq] = {"sizes": sizes, "volume": vol}
    return plan


def build_inputs(case_id: str, images: dict[str, Any], masks: dict[str, Any],
                 config: FeatureConfig, plan: dict[str, dict[str, Any]]) -> CaseInputs:
    """CaseInputs from loaded images and masks (masks on their image's grid)."""
    ci = CaseInputs(case_id)
    for seq in config.sequences:
        p = plan.get(seq, {})
        if not p.get("sizes") and not p.get("volume"):
            continue
        img, msk = images[seq], masks[seq]
        try:
            if p.get("sizes"):
                x = prepare_slices(img, msk, mode=config.slice_mode, margin_px=config.margin_px,
                                   square=config.square, percentiles=config.intensity_percentiles)
                ci.slices[seq] = {tuple(s): resize_slices(x, s) for s in p["sizes"]}
            if p.get("volume"):
                v = prepare_volume(img, msk, margin_px=config.volume_margin_px)
                ci.volume[seq] = resize_volume(v, int(p["volume"]))
        except Her2Error as err:
            raise err.with_context(case_id=case_id, file=img.source)
    return ci


# ----------------------------------------------------------------- batches
@dataclass
class Batch:
    """Collated CaseInputs: per (seq, size) one tensor + slice counts per case."""

    case_ids: list[str]
    slices: dict[str, dict[tuple[int, int], Any]]
    counts: dict[str, list[int]]
    volume: dict[str, Any]
    radiomics: list[dict[str, dict[str, float]]]
    errors: list[Her2Error]

    def pin_memory(self) -> "Batch":
        """Called by DataLoader(pin_memory=True) in its pinning thread."""
        return pin_batch(self)


def collate(items: Iterable[CaseInputs]) -> Batch:
    """Concatenate the good cases' inputs; keep the bad cases' errors."""
    import torch
    good = [it for it in items if it.error is None]
    errors = [it.error for it in items if it.error is not None]
    slices: dict[str, dict[tuple[int, int], Any]] = {}
    counts: dict[str, list[int]] = {}
    volume: dict[str, Any] = {}
    if good:
        for seq in good[0].slices:
            slices[seq] = {}
            for size in good[0].slices[seq]:
                slices[seq][size] = torch.cat([it.slices[seq][size] for it in good])
            first = next(iter(good[0].slices[seq]))
            counts[seq] = [int(it.slices[seq][first].shape[0]) for it in good]
        for seq in good[0].volume:
            volume[seq] = torch.stack([it.volume[seq] for it in good])
    return Batch([it.case_id for it in good], slices, counts, volume,
                 [it.radiomics for it in good], errors)


def pin_batch(batch: Batch) -> Batch:
    """Page-locked copies of a batch's tensors (fast, asynchronous host -> GPU copies)."""
    for seq in batch.slices:
        for size in batch.slices[seq]:
            batch.slices[seq][size] = batch.slices[seq][size].pin_memory()
    for seq in batch.volume:
        batch.volume[seq] = batch.volume[seq].pin_memory()
    return batch


def deep_columns(seq: str, name: str, dim: int) -> list[str]:
    return [f"{seq}__{name}__f{i:04d}" for i in range(dim)]


def run_batch(batch: Batch, config: FeatureConfig, backbones: dict[str, Any],
              max_slices: int | None = None) -> dict[str, np.ndarray]:
    """Deep features of a collated batch: {column block key: (n_cases, dim) array}.

    Keys are ``"{seq}__{backbone}"``; slices of "aggregate" mode are averaged per
    case. ``max_slices`` bounds one forward pass (default 4 x batch_size).
    """
    import torch
    out: dict[str, np.ndarray] = {}
    n = len(batch.case_ids)
    if n == 0:
        return out
    chunk = int(max_slices or 4 * max(1, config.batch_size))
    on_device: dict[tuple, Any] = {}

    def moved(key, x, device):  # one host -> device copy per input, shared by backbones
        if (key, device) not in on_device:
            on_device[(key, device)] = x.to(device, non_blocking=True)
        return on_device[(key, device)]

    def embed(bb, x, counts):
        """Forward passes; on the CPU one case at a time (its own slices together), so a
        case's features do not depend on which cases share its batch (the app's one-case
        path and the cohort path give identical numbers)."""
        if str(bb.device).startswith("cuda"):
            return torch.cat([bb.embed(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])
        parts, start = [], 0
        for c in counts:
            for i in range(start, start + c, chunk):
                parts.append(bb.embed(x[i:min(i + chunk, start + c)]))
            start += c
        return torch.cat(parts)

    for seq in config.sequences:
        for name in config.backbones.get(seq, []):
            bb = backbones[name]
            if bb.kind == "3d":
                x = moved((seq, "volume"), batch.volume[seq], bb.device)
                feats = embed(bb, x, [1] * x.shape[0])
            else:
                size = tuple(bb.spatial_size)
                x = moved((seq, size), batch.slices[seq][size], bb.device)
                feats = embed(bb, x, batch.counts[seq])
                counts = batch.counts[seq]
                if any(c != 1 for c in counts):
                    idx = torch.repeat_interleave(torch.arange(n, device=feats.device),
                                                  torch.tensor(counts, device=feats.device))
                    summed = torch.zeros((n, feats.shape[1]), device=feats.device,
                                         dtype=feats.dtype).index_add_(0, idx, feats)
                    feats = summed / torch.tensor(counts, device=feats.device,
                                                  dtype=feats.dtype)[:, None]
            out[f"{seq}__{name}"] = feats.cpu().numpy().astype(np.float32)
    return out
