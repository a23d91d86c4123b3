"""One case explained end to end: SHAP contributions and Grad-CAM maps of the bundle's model.

Used by ``python -m her2core explain`` and the app. Inputs are plain objects
(a fitted model, a FeatureConfig, loaded backbones, a case's Images and masks,
the feature/clinical table); outputs are files plus a JSON-ready summary.

SHAP: the model's own log-odds. A :class:`~her2core.models.nomogram_model.StackedNomogram`
is explained on its second level (``dscore_*`` + clinical predictors), exactly;
the background is the reference cohort given (the cohort the case is read
from, up to ``background_max`` cases).

Grad-CAM: for every (sequence, backbone) of the feature config whose block has a
D-score in the model, the map explains that D-score (:class:`ScoreHead`), is placed
back into the source image's grid and written as NIfTI + PNG. The D-score the head
computes on the network input is compared with the model's own D-score of the case
(``dscore_head`` vs ``dscore_model`` in the summary): they agree when the image
input is rebuilt exactly as in feature extraction.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from her2core.errors import Her2Error
from her2core.explain import gradcam as G
from her2core.explain.placement import crop_box_image, place_map, save_map
from her2core.imaging.image import Image

log = logging.getLogger(__name__)

__all__ = ["CamResult", "cam_input_2d", "cam_input_3d", "find_scorer", "case_gradcam"]


@dataclass
class CamResult:
    """One Grad-CAM map of one (sequence, backbone), placed in the source image."""
    sequence: str
    backbone: str
    method: str
    target_layer: str
    map_image: Image                   # on the source image's grid
    image_slice: np.ndarray            # the source slice shown (2-D)
    map_slice: np.ndarray              # the map on that slice (2-D)
    slice_index: int | None            # z (array index) in the source image; None for 2-D
    dscore_head: float                 # D-score computed by the head on the network input
    dscore_model: float | None         # the model's D-score of the case (None if unknown)
    direction: str                     # "positive": what raises the D-score; "negative": lowers it
    weights: str                       # weights identity of the backbone
    empty: bool                        # the map is zero everywhere (no positive evidence)
    notes: list[str] = field(default_factory=list)

    @property
    def random_init(self) -> bool:
        return str(self.weights).startswith("random-init")


# ------------------------------------------------------------------ network inputs
def cam_input_2d(backbone, image: Image, mask: Image, config) -> tuple[Any, Image, int | None]:
    """(prepared input (1, 3, S, S), crop geometry on the source grid, z or None).

    Rebuilds exactly the "largest"-slice input of feature extraction
    (:mod:`her2core.features.deep`): ROI box + margin (and one slice along z),
    largest-ROI slice, symmetric zero padding to a square, resize, the backbone's
    normalisation. The crop geometry covers the padded square on the source grid.
    """
    from her2core.features import deep
    from her2core.imaging import ops
    if config.slice_mode != "largest" and image.ndim == 3:
        raise Her2Error(f"Grad-CAM supports slice_mode 'largest' only, the bundle uses "
                        f"{config.slice_mode!r}", hint="explain with SHAP only (--no-gradcam)")
    x = deep.prepare_slices(image, mask, mode="largest", margin_px=config.margin_px,
                            square=config.square, percentiles=config.intensity_percentiles)
    m = int(config.margin_px)
    if image.ndim == 3:
        start, stop = ops.roi_bbox(mask, margin_px=(m, m, 1))
        mask_c = ops.crop(mask, start, stop)
        z = int(start[2]) + int(ops.largest_roi_slice(mask_c))
    else:
        start, stop = ops.roi_bbox(mask, margin_px=m)
        z = None
    w, h = int(stop[0] - start[0]), int(stop[1] - start[1])
    x0, y0 = int(start[0]), int(start[1])
    if config.square and h != w:
        n = max(h, w)
        x0 -= (n - w) // 2
        y0 -= (n - h) // 2
        w = h = n
    if x.shape[-2:] != (h, w):  # pragma: no cover - the two recipes disagree
        raise RuntimeError(f"crop geometry {(h, w)} does not match the network crop {x.shape[-2:]}")
    if image.ndim == 3:
        crop = crop_box_image(image, (x0, y0, z), (w, h, 1))
    else:
        crop = crop_box_image(image, (x0, y0), (w, h))
    t = deep.resize_slices(x, tuple(backbone.spatial_size))
    return backbone.prepare(t), crop, z


def cam_input_3d(backbone, image: Image, mask: Image, config) -> tuple[Any, Image]:
    """(prepared volume (1, 1, S, S, S), crop geometry) as the 3-D feature extraction."""
    from her2core.features import deep
    from her2core.imaging import ops
    m = int(config.volume_margin_px)
    v = deep.prepare_volume(image, mask, margin_px=m)
    start, stop = ops.roi_bbox(mask, margin_px=(m, m, 0))
    crop = crop_box_image(image, start, tuple(int(b - a) for a, b in zip(start, stop)))
    t = deep.resize_volume(v, int(backbone.spatial_size[0]))[None]
    return backbone.prepare(t), crop


# ------------------------------------------------------------------ model glue
def find_scorer(model, backbone: str):
    """(score column, fitted DeepScore) of ``model`` for a backbone block, or None."""
    fn = getattr(model, "scorer_for_block", None)
    found = fn(backbone) if callable(fn) else None
    if found is None or not hasattr(found[1], "input_columns"):
        return None
    return found


def _slice_for_display(image: Image, placed: Image, z: int | None) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(image slice, map slice, source z) shown in the PNGs.

    The slice is displayed in the viewer's canonical radiological orientation
    (:func:`her2core.viewer.canonical`: rows anterior -> posterior, patient right on
    screen left), the same for image and map; ``z`` stays the source array index.
    """
    arr = np.asarray(image.array if not image.is_phases else image.array[-1], dtype=np.float32)
    if image.ndim == 2:
        return arr, placed.array, None
    if z is None:  # 3-D map: the source slice holding most of the map
        z = int(np.argmax(placed.array.reshape(placed.array.shape[0], -1).sum(axis=1)))
    try:
        from her2core.viewer import canonical
        can = canonical(image.replace(array=arr))
        m = can.to_canonical(placed.array)
        k = int(np.argmax(m.reshape(m.shape[0], -1).sum(axis=1)))
        return can.get_slice("axial", k), can.get_slice("axial", k, m), z
    except Exception:  # noqa: BLE001 - display only: fall back to the array slice
        log.debug("canonical display failed; showing the array slice", exc_info=True)
        return arr[z], placed.array[z], z


def case_gradcam(model, config, backbones: Mapping[str, Any], images: Mapping[str, Image],
                 masks: Mapping[str, Image], features: pd.DataFrame, *, method: str = "gradcam",
                 out_dir: str | Path | None = None, case_id: str = "case", opacity: float = 0.4,
                 cmap: str = "cividis", direction: str = "auto",
                 skipped: list[str] | None = None, only_used: bool = False) -> list[CamResult]:
    """Grad-CAM of every (sequence, backbone) with a D-score in ``model``.

    ``features``: the case's feature row (one-row DataFrame with the deep columns).
    ``direction``: "positive" maps what raises the D-score (evidence for
    HER2-positive), "negative" what lowers it, "auto" the positive side unless
    that map is empty, then the negative side (noted). Grad-CAM keeps only
    evidence *for* its target (ReLU): with a D-score built on a few pooled
    channels, one side is often empty everywhere.
    A (sequence, backbone) whose input cannot be rebuilt (e.g. slice modes other
    than "largest") is skipped with a message appended to ``skipped``; with
    ``only_used`` a D-score the final model does not keep gets no map, only a message
    in ``skipped`` ("this block is not used by the model").
    With ``out_dir`` each map is written as ``<case>_<seq>_<backbone>_<method>.nii.gz``
    (source geometry) and ``.png`` (slice + overlay).
    """
    from her2core.explain.figures import save_overlay_png
    if method not in G.METHODS:
        raise Her2Error(f"unknown Grad-CAM method {method!r}", hint="choose one of " + ", ".join(G.METHODS))
    source_images, pre = images, None
    if getattr(config, "preprocessing", None):
        # the networks saw the registered / resampled images: the maps are computed on
        # them and placed back on each source image's grid
        from her2core.features.extract import preprocessed
        pre = preprocessed(case_id, dict(images), dict(masks), config)
        images, masks = pre.images, pre.masks
    out: list[CamResult] = []
    for seq in config.sequences:
        for name in config.backbones.get(seq, []):
            found = find_scorer(model, name)
            if found is None:
                log.info("no D-score for backbone %s in the model: no map for %s", name, seq)
                continue
            col, scorer = found
            used_vars = model.used_variables() if hasattr(model, "used_variables") else None
            if only_used and used_vars is not None and col not in used_vars:
                if skipped is not None:
                    skipped.append(f"{seq} {name}: no map: {col} is not used by the model "
                                   "(dropped by the second level's selection)")
                continue
            bb = backbones[name]
            dim = int(bb.dim)
            seq_cols = [f"{seq}__{name}__f{i:04d}" for i in range(dim)]
            in_cols = scorer.input_columns()
            if not set(seq_cols) <= set(in_cols):
                log.info("D-score %s does not use %s: no map", col, seq)
                continue
            d_model = float(np.ravel(scorer.decision_function(features))[0])
            if direction not in ("positive", "negative", "auto"):
                raise Her2Error(f"direction {direction!r}: choose positive, negative or auto")
            notes: list[str] = []
            side = "negative" if direction == "negative" else "positive"
            sign = 1.0 if side == "positive" else -1.0
            head = G.score_head_from_model(bb.model, scorer, in_cols, features,
                                           sequence_columns=seq_cols, sign=sign).to(bb.device)
            if float(head.linear.weight.abs().max()) == 0.0:
                notes.append(f"D-score {col} uses no feature of {seq}: nothing to map")
            if used_vars is not None and col not in used_vars:
                notes.append(f"{col} is not in the final nomogram (dropped by its selection): "
                             "this map explains a score that does not change the prediction")
            try:
                if bb.kind == "3d":
                    x, crop = cam_input_3d(bb, images[seq], masks[seq], config)
                    z = None
                    if method != "gradcam":
                        notes.append(f"3-D backbone: 3-D Grad-CAM used instead of {method} "
                                     "(pytorch-grad-cam's other methods are 2-D only)")
                else:
                    x, crop, z = cam_input_2d(bb, images[seq], masks[seq], config)
            except Her2Error as err:
                msg = f"{seq} {name}: no map ({err})"
                log.warning("Grad-CAM skipped: %s", msg)
                if skipped is not None:
                    skipped.append(msg)
                continue
            layers, reshape, desc = G.target_layers_for(head)

            def run_cam(h):
                if bb.kind == "3d":
                    return G.gradcam_3d(h, x)
                return G.compute_cam(h, x, method, target_layers=layers, reshape_transform=reshape)

            cam = run_cam(head)
            if direction == "auto" and np.max(cam) <= 0:
                side, sign = "negative", -1.0
                head = G.score_head_from_model(bb.model, scorer, in_cols, features,
                                               sequence_columns=seq_cols, sign=sign).to(bb.device)
                cam = run_cam(head)
                notes.append("no region raises this D-score: the map shows what lowers it")
            G.assert_no_hooks(bb.model)
            import torch
            with torch.inference_mode():
                d_head = sign * float(head(x.float())[0, 0])
            if not math.isclose(d_head, d_model, rel_tol=1e-3, abs_tol=1e-3):
                notes.append(f"the head's D-score {d_head:.4f} differs from the model's "
                             f"{d_model:.4f}: the map may not match the extracted features")
            placed = place_map(cam, crop, images[seq])
            if pre is not None:
                placed = pre.to_source(placed, seq, source_images[seq])
                z = None
                notes.append("computed on the preprocessed image (" + ", ".join(
                    f"{k} {v}" for k, v in config.preprocessing.items()) + ") and placed back "
                    "on the source grid")
            img_slice, map_slice, zz = _slice_for_display(source_images[seq], placed, z)
            res = CamResult(seq, name, method if bb.kind != "3d" else "gradcam3d", desc, placed,
                            img_slice, map_slice, zz, d_head, d_model, side, bb.weights_identity,
                            bool(np.max(cam) <= 0), notes)
            if res.empty:
                res.notes.append("the map is empty: no region " +
                                 ("raises" if side == "positive" else "lowers") + " this D-score")
            if out_dir is not None:
                out_dir = Path(out_dir)
                stem = f"{case_id}_{seq}_{name}_{res.method}".replace("+", "pp")
                desc = f"her2core {res.method} {seq} {name} D-score" + \
                    (" RANDOM-INIT weights: not meaningful" if res.random_init else "")
                save_map(placed, out_dir / f"{stem}.nii.gz", description=desc)
                title = (f"{case_id} {seq} {name} {res.method}: what "
                         f"{'raises' if side == 'positive' else 'lowers'} the D-score ({d_head:+.3f})")
                save_overlay_png(out_dir / f"{stem}.png", img_slice, map_slice, title=title,
                                 cmap=cmap, opacity=opacity, random_init=res.random_init)
            out.append(res)
    return out
