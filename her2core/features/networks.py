"""A bundle's fine-tuned networks as feature columns of new cases (the inference side).

Training writes, per network and task, the fold ensemble into the bundle
(``networks/<name>_<task>/``; :mod:`her2core.finetune`). For a new case (or a
cohort) the columns are

* ``ft__<name>``: the ensemble's logit (mean of the fold models), the network's
  D-score in the second level (:class:`her2core.models.network.NetworkScore`);
* ``{sequence}__ft_<name>__f####``: its penultimate features (mean of the fold
  models), when the recipe uses them as a feature block (paper 003's PCA-64 early
  fusion).

During training the same columns hold out-of-fold values (each training case from
the fold model that never saw it): :func:`oof_columns`.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from her2core.errors import Her2Error

log = logging.getLogger(__name__)

__all__ = ["NetworkRunner", "feature_names", "oof_columns"]


def feature_names(name: str, sequence: str, dim: int) -> list[str]:
    return [f"{sequence}__ft_{name}__f{i:04d}" for i in range(int(dim))]


def _rename(frame: pd.DataFrame, name: str, sequence: str) -> pd.DataFrame:
    return frame.set_axis(feature_names(name, sequence, frame.shape[1]), axis=1)


def oof_columns(result, ensemble, cohort, *, features: bool, name: str) -> tuple[pd.DataFrame, list]:
    """Training-time columns of a finished fine-tune: the out-of-fold logit of every
    training case, the held-out cases' ensemble logit, and (``features``) out-of-fold
    penultimate features. Returns (DataFrame indexed by case_id, errors)."""
    from her2core.models.network import network_column
    col = network_column(name)
    parts = [result.oof.set_index("case_id")[["logit"]].rename(columns={"logit": col})]
    if result.heldout is not None and len(result.heldout):
        parts.append(result.heldout.set_index("case_id")[["logit"]].rename(columns={"logit": col}))
    out = pd.concat(parts)
    out.index = out.index.astype(str)
    errors = list(result.errors)
    if features:
        feats, errs = ensemble.penultimate_features(cohort, case_ids=list(out.index), fold="oof")
        feats.index = feats.index.astype(str)
        out = out.join(_rename(feats, name, ensemble.sequence), how="left")
        errors += list(errs)
    return out, errors


class NetworkRunner:
    """The fine-tuned networks of one task of a bundle, loaded once (thread-safe)."""

    def __init__(self, entries: list[dict], device: str = "cpu"):
        self.entries = list(entries)
        self.device = device
        self._ens: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def sequences(self) -> list[str]:
        return list(dict.fromkeys(e["sequence"] for e in self.entries))

    def ensemble(self, entry: dict):
        from her2core.finetune import FineTunedEnsemble
        with self._lock:
            if entry["key"] not in self._ens:
                self._ens[entry["key"]] = FineTunedEnsemble.load(Path(entry["folder"]), device=self.device)
            return self._ens[entry["key"]]

    def case_columns(self, images: Mapping[str, Any], masks: Mapping[str, Any], *,
                     case_id: str = "case") -> pd.DataFrame:
        """One row: every network's logit (and penultimate features where used)."""
        from her2core.models.network import network_column
        row: dict[str, float] = {}
        for e in self.entries:
            ens = self.ensemble(e)
            try:
                row[network_column(e["name"])] = float(ens.predict_images(images, masks))
                if e.get("features"):
                    f, errs = ens.penultimate_features(images=images, masks=masks)
                    if errs:
                        raise errs[0]
                    row.update(_rename(f, e["name"], ens.sequence).iloc[0].to_dict())
            except Her2Error as err:
                raise err.with_context(case_id=case_id)
        return pd.DataFrame([row], index=[str(case_id)])

    def cohort_columns(self, cohort, case_ids=None) -> tuple[pd.DataFrame, list]:
        """Every network's columns for the cases of a cohort; (DataFrame, errors)."""
        from her2core.models.network import network_column
        frames, errors = [], []
        for e in self.entries:
            ens = self.ensemble(e)
            logits, errs = ens.predict_cohort(cohort, case_ids)
            errors += list(errs)
            lg = logits.copy()
            lg.index = lg.index.astype(str)
            part = lg[["logit"]].rename(columns={"logit": network_column(e["name"])})
            if e.get("features"):
                f, errs = ens.penultimate_features(cohort, case_ids=list(part.index))
                errors += list(errs)
                f.index = f.index.astype(str)
                part = part.join(_rename(f, e["name"], ens.sequence), how="left")
            frames.append(part)
        if not frames:
            return pd.DataFrame(index=pd.Index([], name="case_id")), errors
        out = pd.concat(frames, axis=1)
        return out, errors

    def gradcam(self, images, masks, *, case_id: str = "case", entries=None) -> list:
        """CamResult per network (of ``entries``, default all): the ensemble logit's
        Grad-CAM on its image's grid."""
        from her2core.explain.case import CamResult, _slice_for_display
        out = []
        for e in (self.entries if entries is None else entries):
            ens = self.ensemble(e)
            cam = ens.gradcam(images, masks, case_id=case_id)
            img = images[ens.sequence]
            img_sl, map_sl, z = _slice_for_display(img, cam.map_image, cam.input.slice_index)
            empty = float(cam.cam.max()) <= 0
            out.append(CamResult(ens.sequence, f"ft_{e['name']}", cam.method, cam.target_layer,
                                 cam.map_image, img_sl, map_sl, z, cam.logit, cam.logit, "positive",
                                 "random-init" if ens.random_init else str(ens.weights_identity or ""),
                                 empty, list(cam.notes)))
        return out
