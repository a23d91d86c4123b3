"""Case preprocessing before feature extraction: rigid registration and resampling (paper 000).

Paper 000 aligns each patient's sequences by rigid-body registration and resamples every
MRI scan to 0.5 x 0.5 x 3 mm. :func:`preprocess_case` does both, in one place, for the
cohort path (``train``, ``predict``, ``explain``) and the one-case path (the app) alike:
:mod:`her2core.features.extract` calls it on every case when the FeatureConfig asks
(``resample_mm``, ``register_to``), so a bundle applies to new cases exactly what its
training applied.

* **Registration** (``register_to``, e.g. "DCE"): every other MRI sequence of the case is
  registered to the reference by :func:`~her2core.imaging.ops.register_rigid`
  (SimpleITK ``ImageRegistrationMethod``: Euler transform, Mattes mutual information,
  multi-resolution, seeded sampling) and resampled (linear) onto the reference grid, so
  all MRI sequences share one grid.
* **Resampling** (``resample_mm``, x y z in mm): the reference grid is resampled to that
  spacing first (:func:`~her2core.imaging.ops.resample_to_spacing`, same origin and
  direction), so a registered image is interpolated once; without registration each
  MRI image is resampled on its own.

Masks are carried with the images (nearest neighbour, never linear): a mask follows the
transform of the sequence its ROI was drawn on. Each mask Image may say where its ROI
was drawn in ``meta["roi_from"]`` (:func:`tag_roi`; the cohort's single ``mask.nii.gz``
drawn on DCE is DCE's ROI on every sequence): after registration the ROI of sequence
``s`` is the ROI of ``roi_from`` taken into the reference frame through that sequence's
transform (for a ROI drawn on the reference itself, the reference mask unchanged). A
mask without the tag is taken as drawn on its own image. Ultrasound and 2-D images are
left as they are.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from her2core.errors import GeometryError, Her2Error, MaskError

from .image import Image
from .ops import register_rigid, resample_to_reference, resample_to_spacing

log = logging.getLogger(__name__)

__all__ = ["MRI_SEQUENCES", "ROI_KEY", "PreprocessResult", "preprocess_case", "tag_roi",
           "roi_source", "grid_owner", "describe_preprocessing", "check_preprocessing"]

MRI_SEQUENCES = ("T1", "T2", "DCE")
ROI_KEY = "roi_from"


def tag_roi(mask: Image, sequence: str | None) -> Image:
    """``mask`` with ``meta["roi_from"] = sequence`` (the sequence its ROI was drawn on)."""
    if sequence is None or mask.meta.get(ROI_KEY) == sequence:
        return mask
    return mask.replace(meta={**mask.meta, ROI_KEY: str(sequence)})


def roi_source(mask: Image, sequence: str) -> str:
    """The sequence the mask's ROI was drawn on (its own sequence when untagged)."""
    return str(mask.meta.get(ROI_KEY) or sequence)


def grid_owner(mask: Image, images: Mapping[str, Image], default: str | None = None,
               prefer: Sequence[str] = ("DCE",)) -> str | None:
    """The MRI sequence of ``images`` whose grid the mask lies on (those in ``prefer``
    first: the cohort format's mask is drawn on DCE), else ``default``."""
    order = [s for s in prefer if s in images] + [s for s in images if s not in prefer]
    for seq in order:
        img = images[seq]
        if seq in MRI_SEQUENCES and img is not None and (img.ndim == 3 or img.is_phases):
            grid = img.spatial_template() if img.is_phases else img
            if mask.ndim == grid.ndim and mask.same_grid(grid):
                return seq
    return default


@dataclass
class PreprocessResult:
    """Images and masks after preprocessing, and how each sequence got there.

    ``transforms``: sequence -> SimpleITK transform mapping a point of the preprocessed
    grid to the source image (identity when only resampled); ``steps``: JSON-ready
    description per sequence (registration metric, translation, rotation, grid).
    """
    images: dict[str, Image]
    masks: dict[str, Image]
    transforms: dict[str, sitk.Transform] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_source(self, image: Image, sequence: str, source: Image) -> Image:
        """A map on ``sequence``'s preprocessed grid placed back on its ``source`` image's
        grid (linear; the inverse of the sequence's transform)."""
        tx = self.transforms.get(sequence)
        inv = None if tx is None else tx.GetInverse()
        ref = source.spatial_template() if source.is_phases else source
        return resample_to_reference(image, ref, is_mask=False, transform=inv)


def check_preprocessing(resample_mm, register_to, sequences: Sequence[str] | None = None) -> None:
    """Raise Her2Error naming a bad preprocessing setting."""
    if resample_mm is not None:
        vals = list(resample_mm) if isinstance(resample_mm, (list, tuple)) else None
        if vals is None or len(vals) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.05 <= float(v) <= 20
                for v in vals):
            raise Her2Error(f"resampling spacing {resample_mm!r} must be three numbers in mm "
                            "(x, y, z), each 0.05-20", hint="e.g. [0.5, 0.5, 3.0] (paper 000)")
    if register_to is not None:
        if register_to not in MRI_SEQUENCES:
            raise Her2Error(f"rigid registration target {register_to!r} must be an MRI sequence "
                            f"({', '.join(MRI_SEQUENCES)})")
        if sequences is not None and register_to not in sequences:
            raise Her2Error(f"rigid registration to {register_to}, which is not among the "
                            f"sequences {list(sequences)}",
                            hint=f"add {register_to} to the sequences or drop the registration")


def describe_preprocessing(resample_mm, register_to) -> str:
    """One plain sentence for model cards ("" when nothing is done)."""
    parts = []
    if register_to:
        parts.append(f"every other MRI sequence rigidly registered to {register_to} (SimpleITK, "
                     "Euler transform, Mattes mutual information) and resampled onto its grid")
    if resample_mm:
        parts.append("MRI resampled to " + " x ".join(f"{float(v):g}" for v in resample_mm)
                     + " mm (linear; masks nearest neighbour)")
    return ("; ".join(parts) + ", before feature extraction, for training and prediction "
            "alike") if parts else ""


def _euler_summary(tx: sitk.Transform) -> dict[str, Any]:
    """Translation (mm) and rotation (degrees) of a registration's Euler transform."""
    try:
        t = tx
        while isinstance(t, sitk.CompositeTransform) or t.GetName() == "CompositeTransform":
            t = sitk.CompositeTransform(t).GetNthTransform(0)
        e = sitk.Euler3DTransform(t)
        return {"translation_mm": [round(float(v), 3) for v in e.GetTranslation()],
                "rotation_deg": [round(math.degrees(float(a)), 3)
                                 for a in (e.GetAngleX(), e.GetAngleY(), e.GetAngleZ())]}
    except Exception:  # noqa: BLE001 - a description only
        return {"parameters": [float(v) for v in tx.GetParameters()]}


def _carried(mask: Image, grid: Image, tx: sitk.Transform | None, what: str,
             case_id: str | None) -> Image:
    out = resample_to_reference(mask, grid, is_mask=True, transform=tx)
    out = out.replace(array=(np.asarray(out.array) > 0).astype(np.uint8), sequence="mask",
                      modality="SEG", meta={**mask.meta})
    if not out.array.any():
        raise MaskError(f"the ROI is empty after {what}", case_id=case_id, file=mask.source,
                        hint="check that the ROI lies inside the image, or drop the recipe's "
                             "preprocessing")
    return out


def preprocess_case(images: Mapping[str, Image], masks: Mapping[str, Image], *,
                    resample_mm: Sequence[float] | None = None, register_to: str | None = None,
                    case_id: str | None = None, seed: int = 0) -> PreprocessResult:
    """Register and / or resample one case's MRI images and carry their masks (module doc).

    ``masks``: sequence -> mask on that sequence's grid (as feature extraction holds them).
    Sequences other than T1 / T2 / DCE (ultrasound) pass through unchanged.
    """
    out_i, out_m = dict(images), dict(masks)
    res = PreprocessResult(out_i, out_m)
    if not resample_mm and not register_to:
        return res
    check_preprocessing(resample_mm, register_to)
    mri = [s for s, img in images.items() if s in MRI_SEQUENCES and img is not None
           and (img.ndim == 3 or img.is_phases)]
    if not mri:
        return res
    spacing = tuple(float(v) for v in resample_mm) if resample_mm else None
    try:
        if register_to:
            if register_to not in images or images[register_to] is None:
                raise GeometryError(f"rigid registration to {register_to}: the case has no "
                                    f"{register_to} image",
                                    hint=f"add {register_to} or drop the recipe's registration")
            ref = images[register_to]
            fixed = resample_to_spacing(ref, spacing) if spacing else ref
            grid = fixed.spatial_template() if fixed.is_phases else fixed
            ident = sitk.Transform(3, sitk.sitkIdentity)
            res.transforms[register_to] = ident
            res.steps[register_to] = {"reference": True, "spacing": list(grid.spacing),
                                      "size": list(grid.size)}
            out_i[register_to] = fixed
            for s in mri:
                if s == register_to:
                    continue
                _, tx = register_rigid(images[s], ref, seed=seed)
                res.transforms[s] = tx
                out_i[s] = resample_to_reference(images[s], grid, is_mask=False, transform=tx)
                res.steps[s] = {"registered_to": register_to, **_euler_summary(tx),
                                "spacing": list(grid.spacing), "size": list(grid.size)}
                log.info("case %s: %s registered to %s: %s", case_id, s, register_to,
                         res.steps[s])
            for s in mri:
                if s not in masks or masks[s] is None:
                    continue
                src = roi_source(masks[s], s)
                if src not in res.transforms or src not in masks:
                    src = s          # drawn on a sequence this case does not use: its own
                what = (f"registration of {src} to {register_to}" if src != register_to
                        else f"resampling {register_to}")
                out_m[s] = tag_roi(_carried(masks[src], grid, res.transforms[src], what,
                                            case_id), src)
        else:
            for s in mri:
                out_i[s] = resample_to_spacing(images[s], spacing)
                res.transforms[s] = sitk.Transform(3, sitk.sitkIdentity)
                g = out_i[s].spatial_template() if out_i[s].is_phases else out_i[s]
                res.steps[s] = {"spacing": list(g.spacing), "size": list(g.size)}
                if s in masks and masks[s] is not None:
                    out_m[s] = _carried(masks[s], g, None, f"resampling {s}", case_id)
    except Her2Error as err:
        raise err.with_context(case_id=case_id)
    return res
