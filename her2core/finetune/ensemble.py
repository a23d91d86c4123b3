"""The deployed fine-tuned ensemble: K fold networks whose mean logit is the D-score.

``FineTunedEnsemble.load(out_dir)`` reads ``finetune.json``, checks the sha256 of
every fold model and loads them from safetensors only (no pickle). It rebuilds
a case's network input exactly as in training (:func:`her2core.finetune.data.prepare_input`,
no augmentation), and offers:

* :meth:`predict_images` - one case's logit (mean of the fold logits);
* :meth:`predict_cohort` - logits of cohort cases (DataFrame + per-case errors);
* :meth:`penultimate_features` - the pooled pre-logit features (paper 003's
  2048 of ResNet101, for PCA and early fusion), per fold, fold-averaged, or
  out-of-fold for training cases;
* :meth:`cam_input` / :meth:`gradcam` - the network input with its crop
  geometry on the source grid and the fold networks, so that
  :mod:`her2core.explain.gradcam` computes the map of the logit and
  :func:`her2core.explain.placement.place_map` puts it on the source image.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BundleError, Her2Error
from . import data as D
from .nets import ArchInfo, arch_info, load_state, logits, net_input, penultimate, skeleton
from .settings import FinetuneSettings

log = logging.getLogger(__name__)


def verify_models(out: Path, manifest: Mapping[str, Any]) -> None:
    """BundleError when a fold model is missing or its sha256 differs from finetune.json."""
    from ..features.weights import file_sha256
    for name, ident in manifest.get("models", {}).items():
        p = Path(out) / name
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise BundleError(f"unsafe model file name {name!r} in finetune.json", file=out)
        if not p.is_file():
            raise BundleError("fold model missing", file=p,
                              hint="copy the whole fine-tune folder")
        if "sha256:" + file_sha256(p) != ident:
            raise BundleError("fold model changed since training (sha256 differs from "
                              "finetune.json)", file=p, hint="use the files written by finetune")


@dataclass
class CamInput:
    """What Grad-CAM needs for one case.

    ``x``: the network input, (1, 3, S, S) for 2-D networks, (1, 1, S, S, S) for
    the 3-D one, on the ensemble's device. ``crop``: the region of ``reference``
    the input was made from, as an Image on its grid (``crop_box_image``), ready
    for ``place_map(cam, crop, reference)``. ``slice_index``: the source slice of a
    2-D network on MRI.
    """

    x: Any
    crop: Any
    reference: Any
    slice_index: int | None
    kind: str
    case_id: str | None = None


@dataclass
class FineTunedCam:
    """A Grad-CAM of the ensemble's logit, placed on the source image grid."""

    map_image: Any               # Image on the reference grid (sequence "gradcam")
    cam: np.ndarray              # mean of the fold maps on the network input grid
    per_fold: list[np.ndarray]
    input: CamInput
    logit: float
    method: str
    target_layer: str
    notes: list[str] = field(default_factory=list)


class FineTunedEnsemble:
    """K fine-tuned fold networks (eval mode, frozen) and the input recipe they were trained on."""

    def __init__(self, settings: FinetuneSettings, info: ArchInfo,
                 files: Sequence[tuple[Path, str]], *, device: str = "cpu",
                 manifest: Mapping[str, Any] | None = None):
        from safetensors.torch import load_file

        from ..features.backbones import resolve_device
        from ..features.weights import file_sha256
        self.settings = settings
        self.info = info
        self.device = device if str(device).startswith("cuda:") else resolve_device(device)
        self.manifest = dict(manifest or {})
        self.files = [Path(p) for p, _ in files]
        self._nets = []
        for path, sha in files:
            if sha and file_sha256(path) != str(sha).replace("sha256:", ""):
                raise BundleError("fold model changed (sha256 differs)", file=path)
            try:
                state = load_file(str(path), device="cpu")
            except Exception as exc:  # not a safetensors file
                raise BundleError(f"cannot read fold model: {type(exc).__name__}", file=path) \
                    from exc
            net = skeleton(info, settings.size)
            load_state(net, state, file=path)
            net.eval().to(self.device)
            for p in net.parameters():
                p.requires_grad_(False)
            self._nets.append(net)

    # ------------------------------------------------------------ loading
    @classmethod
    def load(cls, out_dir, device: str = "cpu") -> "FineTunedEnsemble":
        from .train import FORMAT, MANIFEST
        out = Path(out_dir)
        path = out / MANIFEST
        if not path.is_file():
            raise BundleError("no finetune.json: not a fine-tuned ensemble folder", file=out)
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise BundleError(f"unknown fine-tune format {manifest.get('format')!r}", file=path)
        verify_models(out, manifest)
        settings = FinetuneSettings.from_dict(manifest["settings"])
        info = arch_info(settings.arch)
        files = [(out / f["model_file"], f["sha256"]) for f in manifest["folds"]]
        return cls(settings, info, files, device=device, manifest=manifest)

    # ------------------------------------------------------------ description
    @property
    def networks(self) -> list:
        """The fold networks (eval mode); ``net(x)`` is (N, 1) logits."""
        return list(self._nets)

    @property
    def sequence(self) -> str:
        return self.settings.sequence

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def input_shape(self) -> tuple[int, ...]:
        s = int(self.settings.size)
        if self.kind == "3d":
            return (1, s, s, s)
        return (3, s, s)

    @property
    def weights_identity(self) -> str | None:
        """Identity of the starting weights ("sha256:<hex>" or "random-init")."""
        return (self.manifest.get("weights") or {}).get("identity")

    @property
    def model_identities(self) -> dict[str, str]:
        return dict(self.manifest.get("models", {}))

    @property
    def random_init(self) -> bool:
        return bool(self.manifest.get("random_init"))

    @property
    def feature_dim(self) -> int:
        import torch
        with torch.inference_mode():
            x = torch.zeros((1,) + self.input_shape, device=self.device)
            return int(penultimate(self._nets[0], x, self.kind).shape[1])

    def feature_columns(self) -> list[str]:
        return [f"{self.sequence}__{self.info.block}__f{i:04d}" for i in range(self.feature_dim)]

    # ------------------------------------------------------------ inputs
    def case_input(self, image, mask, case_id: str | None = None) -> D.CaseInput:
        """The network input of one case (as in training, without augmentation) and its crop."""
        return D.prepare_input(image, mask, self.settings, self.info, case_id=case_id)

    def _pick(self, images: Mapping[str, Any], masks: Mapping[str, Any]):
        seq = self.sequence
        if seq not in images:
            raise Her2Error(f"the fine-tuned network reads the {seq} image; none was given",
                            hint=f"pass images[{seq!r}] and masks[{seq!r}]")
        if seq not in masks:
            raise Her2Error(f"no ROI mask for the {seq} image", hint=f"pass masks[{seq!r}]")
        return images[seq], masks[seq]

    def _batches(self, xs: Sequence[Any]):
        import torch
        b = 2 * int(self.settings.batch)
        for i in range(0, len(xs), b):
            yield net_input(torch.stack(list(xs[i:i + b])), self.info, self.device)

    # ------------------------------------------------------------ predictions
    def fold_logits(self, xs: Sequence[Any]) -> np.ndarray:
        """(n_folds, n) logits of input tensors."""
        import torch
        out = []
        with torch.inference_mode():
            for net in self._nets:
                parts = [logits(net, x).cpu().numpy() for x in self._batches(xs)]
                out.append(np.concatenate(parts) if parts else np.zeros(0))
        return np.asarray(out, dtype=np.float64)

    def predict_tensors(self, xs: Sequence[Any]) -> np.ndarray:
        """Mean fold logit of input tensors (the ensemble's D-score)."""
        return self.fold_logits(xs).mean(axis=0)

    def predict_images(self, images: Mapping[str, Any], masks: Mapping[str, Any]) -> float:
        """The ensemble logit of one case from its Images and masks (keyed by sequence)."""
        import torch
        image, mask = self._pick(images, masks)
        ci = self.case_input(image, mask)
        return float(self.predict_tensors([torch.from_numpy(ci.x)])[0])

    def _decode(self, cohort, case_ids, workers: int, progress=None):
        from .train import _read_cohort
        coh = _read_cohort(cohort)
        ids = list(coh.case_ids if case_ids is None else case_ids)
        items = [(c, coh.files(c)) for c in ids]
        inputs, errors = D.decode_cases(items, self.settings, self.info, workers=workers,
                                        progress=progress)
        return [c for c in ids if c in inputs], inputs, errors

    def predict_cohort(self, cohort, case_ids: Sequence[str] | None = None, *, workers: int = 0,
                       progress=None):
        """(DataFrame indexed by case_id with ``logit`` and ``p``, list of per-case Her2Errors)."""
        import pandas as pd
        ids, inputs, errors = self._decode(cohort, case_ids, workers, progress)
        lg = self.predict_tensors([inputs[c] for c in ids]) if ids else np.zeros(0)
        df = pd.DataFrame({"logit": lg, "p": 1.0 / (1.0 + np.exp(-lg))},
                          index=pd.Index(ids, name="case_id"))
        return df, errors

    # ------------------------------------------------------------ features
    def _features(self, xs: Sequence[Any], folds: Sequence[int]) -> np.ndarray:
        import torch
        acc = None
        with torch.inference_mode():
            for k in folds:
                parts = [penultimate(self._nets[k], x, self.kind).cpu().numpy()
                         for x in self._batches(xs)]
                f = np.concatenate(parts).astype(np.float64)
                acc = f if acc is None else acc + f
        return acc / len(folds)

    def _fold_of(self) -> dict[str, int]:
        out = {}
        for f in self.manifest.get("folds", []):
            for c in f.get("val_ids", []):
                out[str(c)] = int(f["fold"])
        return out

    def penultimate_features(self, cohort=None, case_ids: Sequence[str] | None = None, *,
                             images: Mapping[str, Any] | None = None,
                             masks: Mapping[str, Any] | None = None, fold: int | str | None = None,
                             workers: int = 0):
        """Pre-logit features, columns ``{sequence}__ft_<arch>__f0000 ...``.

        ``fold``: None = mean over the fold networks (the deployed ensemble);
        an int = that fold's network; "oof" = each training case from the fold
        network that did not train on it (out-of-fold, for fitting PCA / early
        fusion without in-sample features), other cases from the mean.
        Give a cohort (and optionally case_ids), or one case's ``images`` /
        ``masks``. Returns (DataFrame indexed by case_id, list of Her2Errors).
        """
        import pandas as pd
        import torch
        n = len(self._nets)
        if isinstance(fold, int) and not 0 <= fold < n:
            raise Her2Error(f"fold {fold} outside 0..{n - 1}")
        if fold not in (None, "oof") and not isinstance(fold, int):
            raise Her2Error(f"fold {fold!r}: use None, a fold number, or 'oof'")
        if images is not None:
            image, mask = self._pick(images, masks or {})
            ids, inputs, errors = ["case"], {"case": torch.from_numpy(
                self.case_input(image, mask).x)}, []
        else:
            if cohort is None:
                raise Her2Error("give a cohort or one case's images and masks")
            ids, inputs, errors = self._decode(cohort, case_ids, workers)
        cols = self.feature_columns()
        rows = np.zeros((len(ids), len(cols)))
        if fold is None or isinstance(fold, int):
            sel = list(range(n)) if fold is None else [fold]
            if ids:
                rows[:] = self._features([inputs[c] for c in ids], sel)
        else:
            fold_of = self._fold_of()
            groups: dict[int | None, list[int]] = {}
            for i, c in enumerate(ids):
                groups.setdefault(fold_of.get(c), []).append(i)
            for k, idx in groups.items():
                sel = list(range(n)) if k is None else [k]
                rows[idx] = self._features([inputs[ids[i]] for i in idx], sel)
        return pd.DataFrame(rows, index=pd.Index(ids, name="case_id"), columns=cols), errors

    # ------------------------------------------------------------ Grad-CAM
    def cam_input(self, images: Mapping[str, Any], masks: Mapping[str, Any],
                  case_id: str | None = None) -> CamInput:
        """The network input (on the device) and its crop geometry for Grad-CAM."""
        import torch
        image, mask = self._pick(images, masks)
        ci = self.case_input(image, mask, case_id=case_id)
        x = net_input(torch.from_numpy(ci.x)[None], self.info, self.device)
        return CamInput(x=x, crop=ci.crop, reference=image, slice_index=ci.slice_index,
                        kind=self.kind, case_id=case_id)

    def gradcam(self, images: Mapping[str, Any], masks: Mapping[str, Any], *,
                method: str = "gradcam", case_id: str | None = None) -> FineTunedCam:
        """Grad-CAM of the ensemble logit: the mean of the fold networks' maps, placed
        on the source image grid (same size, spacing, origin, direction)."""
        import torch

        from ..explain import gradcam as G
        from ..explain.placement import place_map
        ci = self.cam_input(images, masks, case_id=case_id)
        maps = []
        layer = ""
        for net in self._nets:
            _, _, layer = G.target_layers_for(net)
            if self.kind == "3d":
                maps.append(G.gradcam_3d(net, ci.x))
            else:
                maps.append(G.compute_cam(net, ci.x, method))
        cam = np.mean(maps, axis=0).astype(np.float32)
        with torch.inference_mode():
            lg = float(np.mean([float(logits(net, ci.x)[0]) for net in self._nets]))
        notes = []
        if self.kind == "3d" and method != "gradcam":
            notes.append("3-D networks get Grad-CAM (the other methods are 2-D only)")
        if self.random_init:
            notes.append("fine-tuned from random initialisation")
        placed = place_map(cam, ci.crop, ci.reference)
        return FineTunedCam(map_image=placed, cam=cam, per_fold=maps, input=ci, logit=lg,
                            method="gradcam" if self.kind == "3d" else method,
                            target_layer=layer, notes=notes)
