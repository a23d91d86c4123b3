"""Grad-CAM family maps for the deep score a user sees, without leaving hooks behind.

* 2-D maps come from pytorch-grad-cam (package ``grad-cam``): GradCAM, GradCAM++,
  ScoreCAM, EigenCAM and LayerCAM (:data:`METHODS`), on the target layer that
  :func:`target_layers_for` picks per backbone family (ResNet ``layer4[-1]``,
  VGG the last ReLU of ``features``, EfficientNet ``bn2`` (= conv_head + BN +
  act), ConvNeXt(V2) ``stages[-1]``, DenseNet ``features.norm5``, ViT
  ``blocks[-1].norm1`` with a reshape transform that drops the class and any
  register / prefix tokens and restores the patch grid).
* pytorch-grad-cam is 2-D only, so the 3-D ResNet gets :class:`GradCAM3D`, written
  here: activations and gradients of the last conv stage by torch hooks inside a
  context manager, channel weights = mean gradient over D, H, W, ReLU, trilinear
  upsampling to the input volume.
* The target is the deep score itself. :class:`ScoreHead` wraps a frozen
  backbone as ``backbone -> features -> selected columns -> standardise ->
  linear layer with the fitted logistic coefficients``; its single output is the
  D-score (log-odds) that enters the nomogram, so a map explains that number and
  not an ImageNet class. :func:`score_head_from_model` builds it from any fitted
  score model whose decision function is affine in the features (the project's
  DeepScore pipelines: imputation, scaling, PCA, selectors, logistic regression),
  by reading off the exact affine map and verifying it.
* The app caches one model for all users: every call registers its hooks inside
  a ``with`` block, releases them even on error, serialises CAM calls per model
  with a lock, clears parameter gradients afterwards, and asserts that no
  forward / backward hook is left on any submodule (:func:`leftover_hooks`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import weakref
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "METHODS", "target_layers_for", "vit_reshape_transform", "ScoreHead",
    "score_head_from_model", "linearize_score", "leftover_hooks", "assert_no_hooks",
    "compute_cam", "GradCAM3D", "gradcam_3d",
]


def _methods() -> dict[str, type]:
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM,
            "eigencam": EigenCAM, "layercam": LayerCAM}


#: Method names accepted by :func:`compute_cam` and the ``explain`` command.
METHODS = ("gradcam", "gradcam++", "scorecam", "eigencam", "layercam")


# ----------------------------------------------------------------- target layers
def _unwrap_backbone(model: nn.Module) -> nn.Module:
    seen = 0
    while isinstance(model, ScoreHead) and seen < 5:
        model = model.backbone
        seen += 1
    return model


def vit_reshape_transform(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Token sequence (B, N, C) -> (B, C, h, w): drop class / register tokens, restore grid.

    The number of prefix tokens is ``model.num_prefix_tokens`` (class token + any
    registers); the grid is the patch grid (``patch_embed.grid_size`` when it
    fits, else derived from the token count, square).
    """
    backbone = _unwrap_backbone(model)
    n_prefix = int(getattr(backbone, "num_prefix_tokens", 1))
    grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)

    def transform(tensor: torch.Tensor) -> torch.Tensor:
        tokens = tensor[:, n_prefix:, :]
        n = tokens.shape[1]
        if grid is not None and int(grid[0]) * int(grid[1]) == n:
            h, w = int(grid[0]), int(grid[1])
        else:
            h = w = int(round(math.sqrt(n)))
            if h * w != n:
                raise ValueError(f"cannot restore a square patch grid from {n} tokens")
        return tokens.reshape(tensor.shape[0], h, w, tensor.shape[2]).permute(0, 3, 1, 2)

    return transform


def target_layers_for(model: nn.Module) -> tuple[list[nn.Module], Callable | None, str]:
    """(target layers, reshape transform or None, description) for a backbone.

    Works on timm and torchvision models (and on a :class:`ScoreHead` around
    one). Unknown architectures fall back to the last Conv2d/Conv3d with a
    logged warning.
    """
    bb = _unwrap_backbone(model)
    name = type(bb).__name__.lower()
    if hasattr(bb, "blocks") and hasattr(bb, "patch_embed"):  # ViT family (timm)
        return [bb.blocks[-1].norm1], vit_reshape_transform(bb), "blocks[-1].norm1 (ViT)"
    if hasattr(bb, "layer4"):  # ResNet / ResNeXt / SE-ResNet / 3-D ResNet
        layer = bb.layer4[-1] if isinstance(bb.layer4, nn.Sequential) else bb.layer4
        return [layer], None, "layer4[-1] (ResNet)"
    if "vgg" in name and hasattr(bb, "features"):
        feats = list(bb.features)
        idx = max(i for i, m in enumerate(feats) if isinstance(m, (nn.ReLU, nn.Conv2d)))
        return [feats[idx]], None, f"features[{idx}] (VGG, last ReLU)"
    if hasattr(bb, "conv_head") and hasattr(bb, "bn2"):  # EfficientNet / MobileNet (timm)
        return [bb.bn2], None, "bn2 = conv_head + BN + act (EfficientNet)"
    if hasattr(bb, "stages") and "convnext" in name:
        return [bb.stages[-1]], None, "stages[-1] (ConvNeXt)"
    if "densenet" in name and hasattr(bb, "features"):
        feats = bb.features
        if hasattr(feats, "norm5"):
            return [feats.norm5], None, "features.norm5 (DenseNet)"
        return [list(feats.children())[-1]], None, "last dense block (DenseNet)"
    if hasattr(bb, "stages"):
        return [bb.stages[-1]], None, "stages[-1]"
    convs = [m for m in bb.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise ValueError(f"no target layer known for {type(bb).__name__}: pass target_layers")
    log.warning("Grad-CAM: unknown architecture %s, using its last convolution", type(bb).__name__)
    return [convs[-1]], None, "last convolution (fallback)"


# ------------------------------------------------------------------- score head
class ScoreHead(nn.Module):
    """backbone -> features -> columns -> standardise -> fitted linear layer (1 output).

    ``out = ((f[:, idx] - mean) / scale) @ coef + intercept``: the deep score on the
    log-odds scale. ``mean`` / ``scale`` default to 0 / 1 (coefficients already on
    raw features). The backbone is shared, not copied.
    """

    def __init__(self, backbone: nn.Module, selected_feature_indices: Sequence[int],
                 coef: Sequence[float], intercept: float, mean: Sequence[float] | None = None,
                 scale: Sequence[float] | None = None):
        super().__init__()
        idx = np.asarray(selected_feature_indices, dtype=np.int64).reshape(-1)
        coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        if idx.size != coef.size:
            raise ValueError(f"{idx.size} selected features but {coef.size} coefficients")
        mean = np.zeros(idx.size) if mean is None else np.asarray(mean, float).reshape(-1)
        scale = np.ones(idx.size) if scale is None else np.asarray(scale, float).reshape(-1)
        if mean.size != idx.size or scale.size != idx.size or np.any(scale == 0):
            raise ValueError("mean / scale must match the selected features and scale be non-zero")
        self.backbone = backbone
        self.register_buffer("idx", torch.as_tensor(idx))
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.linear = nn.Linear(idx.size, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32)[None, :])
            self.linear.bias.fill_(float(intercept))
        self.linear.requires_grad_(False)
        # a new Module starts in training mode; mirror the (shared) backbone's mode so
        # that nothing which saves and restores the head's mode flips the backbone
        self.training = bool(backbone.training)
        self.linear.training = self.training

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        if f.ndim > 2:  # a backbone that still has spatial dims: global average pool
            f = f.flatten(2).mean(-1)
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        z = (f.index_select(1, self.idx) - self.mean) / self.scale
        return self.linear(z)


def linearize_score(score_model, columns: Sequence[str], x_row, *, check: bool = True,
                    rtol: float = 1e-6, probe: Sequence[str] | None = None,
                    chunk: int = 256) -> tuple[np.ndarray, float]:
    """Exact affine form ``f(x) = w . x + b`` of a fitted score model around ``x_row``.

    ``score_model.decision_function`` must be affine in ``columns`` (true for
    imputation, scaling, PCA, column selection and a logistic regression).
    ``w`` is read off by unit steps in every column of ``probe`` (default: all
    ``columns``; batched ``chunk`` columns per call) and is 0 for the others;
    with ``check`` the form is verified at random points that move *every*
    column, so a column wrongly left out of ``probe`` or a non-affine model
    raises ValueError (then no ScoreHead can represent the model exactly).

    Returns (w over ``columns``, b).
    """
    import pandas as pd
    cols = list(columns)
    if not isinstance(x_row, pd.DataFrame):
        x_row = pd.DataFrame([np.asarray(x_row, float)], columns=cols)
    x0 = x_row[cols].astype(float).fillna(0.0).to_numpy()[0]
    pos = {c: i for i, c in enumerate(cols)}
    probe_idx = np.arange(len(cols)) if probe is None else np.asarray([pos[c] for c in probe], int)

    def f(rows: np.ndarray) -> np.ndarray:
        frame = _full_frame(score_model, pd.DataFrame(rows, columns=cols), x_row)
        return np.asarray(score_model.decision_function(frame), dtype=float)

    f0 = float(f(x0[None, :])[0])
    w = np.zeros(len(cols))
    for k in range(0, len(probe_idx), chunk):
        part = probe_idx[k:k + chunk]
        rows = np.repeat(x0[None, :], len(part), axis=0)
        rows[np.arange(len(part)), part] += 1.0
        w[part] = f(rows) - f0
    b = f0 - float(x0 @ w)
    if check:
        rng = np.random.default_rng(0)
        pts = x0[None, :] + rng.normal(0, 3, size=(4, len(cols)))
        fp = f(pts)
        err = np.abs(fp - (pts @ w + b))
        if np.any(err > rtol * max(1.0, float(np.max(np.abs(fp))))):
            raise ValueError(f"the score model is not affine in the probed features "
                             f"(error {err.max():.3g})")
    return w, b


def _full_frame(score_model, block, x_row):
    """Rows of ``block`` completed with ``x_row``'s other columns the model needs."""
    import pandas as pd
    need = [str(c) for c in getattr(score_model, "feature_names_in_", block.columns)]
    extra = [c for c in need if c not in block.columns]
    if not extra:
        return block[need] if list(block.columns) != need else block
    fill = {c: np.repeat(x_row[c].iloc[0] if c in x_row.columns else np.nan, len(block))
            for c in extra}
    out = pd.concat([block, pd.DataFrame(fill, index=block.index)], axis=1)
    return out[need]


def score_head_from_model(backbone: nn.Module, score_model, feature_columns: Sequence[str],
                          x_row, *, sequence_columns: Sequence[str] | None = None,
                          tol: float = 0.0, sign: float = 1.0) -> ScoreHead:
    """A :class:`ScoreHead` whose output is ``score_model``'s D-score for one image.

    Args:
        backbone: the frozen feature extractor producing the features in
            ``sequence_columns`` order (e.g. all ``"DCE__resnet50__f####"``).
        score_model: fitted model with ``decision_function`` (the D-score).
        feature_columns: every column the score model reads (all sequences).
        x_row: this patient's feature row (DataFrame, one row): the other
            sequences' features stay fixed at the patient's values and enter
            the intercept.
        sequence_columns: the columns this backbone/sequence produces, in the
            backbone's output order (default: all ``feature_columns``).
        sign: +1 explains what raises the D-score (evidence for HER2-positive),
            -1 what lowers it (the head then outputs minus the D-score).
    """
    if sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"sign must be +1 or -1, got {sign}")
    cols = list(feature_columns)
    # a LASSO-selected model reads only its selected input columns: probe those
    # (verified against moves of every column); else probe all
    fn = getattr(score_model, "selected_features", None)
    sel = [str(c) for c in (fn() if callable(fn) else [])]
    probe = sel if sel and set(sel) <= set(cols) else None
    try:
        w, b = linearize_score(score_model, cols, x_row, probe=probe)
    except ValueError:
        if probe is None:
            raise
        w, b = linearize_score(score_model, cols, x_row)
    seq_cols = list(sequence_columns) if sequence_columns is not None else cols
    pos = {c: i for i, c in enumerate(cols)}
    x0 = x_row[cols].astype(float).fillna(0.0).to_numpy()[0]
    in_seq = np.zeros(len(cols), bool)
    sel, coef = [], []
    for k, c in enumerate(seq_cols):
        j = pos[c]
        in_seq[j] = True
        if abs(w[j]) > tol:
            sel.append(k)
            coef.append(w[j])
    intercept = b + float(x0[~in_seq] @ w[~in_seq])
    if not sel:
        log.info("score model uses none of this sequence's features: the map will be empty")
        sel, coef = [0], [0.0]
    return ScoreHead(backbone, sel, sign * np.asarray(coef), sign * intercept)


# ----------------------------------------------------------------- hook hygiene
def leftover_hooks(model: nn.Module) -> list[str]:
    """Names of submodules that still carry forward / backward hooks."""
    out = []
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks"):
            if len(getattr(m, attr, {}) or {}):
                out.append(f"{name or '<root>'}.{attr}")
    return out


def assert_no_hooks(model: nn.Module) -> None:
    left = leftover_hooks(model)
    if left:
        raise AssertionError(f"hooks left on the model: {left}")


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_for(model: nn.Module) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


@contextlib.contextmanager
def _cam_session(method: str, model: nn.Module, layers, reshape) -> Iterator[Any]:
    """A pytorch-grad-cam object whose hooks are released on exit, error or not.

    (pytorch-grad-cam's own ``__exit__`` swallows IndexError and prints; this
    releases the hooks the same way and lets every error through.)
    """
    methods = _methods()
    if method not in methods:
        raise ValueError(f"unknown CAM method {method!r}: choose one of {', '.join(METHODS)}")
    had_hooks = set(leftover_hooks(model))
    with _lock_for(_unwrap_backbone(model)):
        cam = methods[method](model=model, target_layers=layers, reshape_transform=reshape)
        try:
            yield cam
        finally:
            cam.activations_and_grads.release()
            model.zero_grad(set_to_none=True)
            left = set(leftover_hooks(model)) - had_hooks
            if left:
                raise AssertionError(f"CAM left hooks on the model: {sorted(left)}")


def compute_cam(model: nn.Module, input_tensor: torch.Tensor, method: str = "gradcam", *,
                target_layers: Sequence[nn.Module] | None = None,
                reshape_transform: Callable | None = None, output_index: int = 0,
                batch_size: int = 32, isolate: bool = False) -> np.ndarray:
    """One CAM (H, W) in [0, 1] for ``input_tensor`` (1, C, H, W), target output ``output_index``.

    With a :class:`ScoreHead` the target is the D-score (its single output).
    ``isolate=True`` runs on a deep copy of the model, so that forward passes of
    other threads on the shared model never meet this call's hooks (costs one
    copy of the weights); by default hooks live on the shared model only inside
    this call, under a per-model lock that serialises CAM calls.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    if input_tensor.ndim != 4 or input_tensor.shape[0] != 1:
        raise ValueError(f"compute_cam needs one (1, C, H, W) tensor, got {tuple(input_tensor.shape)}")
    if target_layers is None:
        target_layers, auto_reshape, _ = target_layers_for(model)
        reshape_transform = reshape_transform or auto_reshape
    if isolate:
        import copy
        names = {id(m): n for n, m in model.named_modules()}
        missing = [layer for layer in target_layers if id(layer) not in names]
        if missing:
            raise ValueError("isolate=True needs target layers that are submodules of the model")
        model = copy.deepcopy(model)
        target_layers = [model.get_submodule(names[id(layer)]) for layer in target_layers]
    x = input_tensor.detach().clone().float()
    # gradients must flow even if the shared model's parameters are frozen
    x.requires_grad_(method not in ("scorecam", "eigencam"))
    with torch.enable_grad(), _cam_session(method, model, list(target_layers),
                                           reshape_transform) as cam:
        if method == "scorecam":
            cam.batch_size = batch_size
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(output_index)])
    return np.asarray(out[0], dtype=np.float32)


# -------------------------------------------------------------------- 3-D Grad-CAM
class GradCAM3D:
    """Grad-CAM for 3-D CNNs (pytorch-grad-cam handles 2-D images only).

    Use as a context manager; hooks exist only inside the ``with`` block::

        with GradCAM3D(model, model.layer4) as cam:
            vol = cam(x)          # (D, H, W) in [0, 1]

    weights_c = mean over (D, H, W) of d score / d A_c; map = ReLU(sum_c w_c A_c),
    upsampled trilinearly to the input volume and scaled to [0, 1].
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module | None = None):
        self.model = model
        if target_layer is None:
            layers, _, _ = target_layers_for(model)
            target_layer = layers[0]
        self.target_layer = target_layer
        self._handle = None
        self._act: torch.Tensor | None = None
        self._grad: torch.Tensor | None = None
        self._lock = _lock_for(_unwrap_backbone(model))

    def _forward_hook(self, module, inputs, output):
        self._act = output
        if output.requires_grad:
            def keep(g):
                self._grad = g
            output.register_hook(keep)

    def __enter__(self) -> "GradCAM3D":
        self._lock.acquire()
        try:
            self._handle = self.target_layer.register_forward_hook(self._forward_hook)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._handle is not None:
                self._handle.remove()
                self._handle = None
            self._act = self._grad = None
            self.model.zero_grad(set_to_none=True)
        finally:
            self._lock.release()

    def __call__(self, x: torch.Tensor, output_index: int = 0) -> np.ndarray:
        if self._handle is None:
            raise RuntimeError("GradCAM3D must be used inside a `with` block")
        if x.ndim != 5 or x.shape[0] != 1:
            raise ValueError(f"GradCAM3D needs one (1, C, D, H, W) volume, got {tuple(x.shape)}")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                x = x.detach().clone().float().requires_grad_(True)
                out = self.model(x)
                score = out.reshape(out.shape[0], -1)[:, output_index].sum()
                self.model.zero_grad(set_to_none=True)
                score.backward()
            act, grad = self._act, self._grad
            if act is None or grad is None:
                raise RuntimeError("target layer saw no activation / gradient")
            weights = grad.mean(dim=(2, 3, 4), keepdim=True)
            cam = torch.relu((weights * act).sum(dim=1, keepdim=True))
            cam = torch.nn.functional.interpolate(cam, size=tuple(x.shape[-3:]), mode="trilinear",
                                                  align_corners=False)
            cam = cam[0, 0].detach().cpu().numpy().astype(np.float32)
        finally:
            self.model.train(was_training)
        if cam.max() > 0 and cam.max() - cam.min() <= 1e-12 * cam.max():
            return np.ones_like(cam)          # uniform positive evidence (tiny feature map)
        cam -= cam.min()
        mx = cam.max()
        return cam / mx if mx > 0 else cam


def gradcam_3d(model: nn.Module, volume: torch.Tensor, target_layer: nn.Module | None = None,
               output_index: int = 0) -> np.ndarray:
    """One 3-D Grad-CAM (D, H, W) for ``volume`` (1, C, D, H, W); no hooks remain."""
    with GradCAM3D(model, target_layer) as cam:
        out = cam(volume, output_index)
    assert_no_hooks(model)
    return out
