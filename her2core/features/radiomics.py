"""Radiomics features with pyradiomics, from :class:`Image` objects (geometry kept).

Parameter files live in ``her2core/features/params/``:

* ``mri.yaml``: 3-D MRI; isotropic 1 mm resampling (B-spline image, nearest
  mask), binWidth 25, no normalisation; firstorder, shape, glcm, glrlm, glszm,
  gldm, ngtdm on the original image.
* ``us.yaml``: 2-D ultrasound; no resampling, binWidth 8 (0..255 grey
  levels), force2D along dimension 0; shape2D instead of shape.
* ``mri_filters.yaml``: the same plus wavelet and LoG (sigma 1, 2, 3 mm)
  filtered images (paper 003); ``us_filters.yaml``: us.yaml plus wavelet (LoG
  needs >= 4 voxels along every axis, which a 2-D image lacks).

A user file (any pyradiomics YAML / JSON parameter file) may be given instead.
Feature names are pyradiomics' own (``original_firstorder_Mean``, ...); the
``diagnostics_*`` entries are dropped from the feature row (the settings and
versions that matter are in :func:`radiomics_provenance`). pyradiomics' own
logging is set to WARNING.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from ..errors import Her2Error, MaskError

log = logging.getLogger(__name__)

PARAMS_DIR = Path(__file__).with_name("params")
BUILTIN_PARAMS = {
    "mri": PARAMS_DIR / "mri.yaml",
    "us": PARAMS_DIR / "us.yaml",
    "mri_filters": PARAMS_DIR / "mri_filters.yaml",
    "us_filters": PARAMS_DIR / "us_filters.yaml",
}
DEFAULT_PARAMS = {"MR": "mri", "US": "us"}

_EXTRACTORS = threading.local()      # per thread: {(params path, overrides): extractor}
_PARSE_LOCK = threading.Lock()


def _quiet() -> None:
    import radiomics
    radiomics.setVerbosity(logging.WARNING)
    logging.getLogger("radiomics").setLevel(logging.WARNING)
    # "GLCM is symmetrical, therefore Sum Average = 2 * Joint Average" on every call
    logging.getLogger("radiomics.glcm").setLevel(logging.ERROR)


def params_path(params: str | Path) -> Path:
    """A built-in name ("mri", "us", "mri_filters", "us_filters") or a file path."""
    if str(params) in BUILTIN_PARAMS:
        return BUILTIN_PARAMS[str(params)]
    p = Path(params)
    if not p.is_file():
        raise Her2Error("radiomics parameter file not found", file=p,
                        hint="give a pyradiomics YAML / JSON file or one of "
                             + ", ".join(BUILTIN_PARAMS))
    return p


def params_for(sequence: str, modality: str | None, choice: dict[str, str]) -> str:
    """The parameter spec of a sequence: by sequence, else by modality, else default."""
    if sequence in choice:
        return choice[sequence]
    mod = modality or ("US" if sequence == "US" else "MR")
    if mod in choice:
        return choice[mod]
    return DEFAULT_PARAMS.get(mod, "mri")


def get_extractor(params: str | Path, overrides: dict[str, Any] | None = None):
    """A RadiomicsFeatureExtractor for a parameter file, cached per process *and thread*.

    pyradiomics parses its parameter file with pykwalify / PyYAML, which is not
    thread-safe ("'StreamStartEvent' object has no attribute 'anchor'" when two app
    sessions start at once), so construction is serialised by a lock; and each thread
    gets its own extractor, so concurrent ``execute`` calls share no state.
    """
    _quiet()
    from radiomics.featureextractor import RadiomicsFeatureExtractor
    path = params_path(params)
    key = (str(path.resolve()), json.dumps(overrides or {}, sort_keys=True, default=str))
    cache = getattr(_EXTRACTORS, "by_key", None)
    if cache is None:
        cache = _EXTRACTORS.by_key = {}
    ext = cache.get(key)
    if ext is None:
        with _PARSE_LOCK:
            try:
                ext = RadiomicsFeatureExtractor(str(path))
            except Exception as exc:
                raise Her2Error(f"invalid radiomics parameter file: {exc}", file=path) from exc
        if overrides:
            ext.settings.update(overrides)
        cache[key] = ext
    return ext


def extract_radiomics(image, mask, params: str | Path = "mri",
                      overrides: dict[str, Any] | None = None, *,
                      case_id: str | None = None) -> dict[str, float]:
    """pyradiomics features of the ROI ``mask`` (binary, label 1) in ``image``.

    Both are :class:`~her2core.imaging.Image` on one grid; they are passed to
    pyradiomics as SimpleITK images with their spacing, origin and direction.
    Returns {pyradiomics feature name: float}, diagnostics dropped.
    """
    import numpy as np
    _quiet()
    ext = get_extractor(params, overrides)
    if image.is_phases:
        raise Her2Error("radiomics needs a 2-D or 3-D image, not 4-D phases",
                        case_id=case_id, file=image.source)
    m = np.asarray(mask.array)
    if not m.any():
        raise MaskError("the ROI is empty", case_id=case_id, file=mask.source)
    # float: pyradiomics 3.0.1 computes bin edges in the image dtype, and with
    # numpy 2 a uint8 image overflows there (255 + 2 * binWidth) -> wrong bins.
    img_s = _as_3d(image.with_array(np.asarray(image.array, dtype=np.float32)).to_sitk())
    mask_s = _as_3d(mask.with_array((m != 0).astype(np.uint8)).to_sitk())
    label = int(ext.settings.get("label", 1))
    try:
        result = ext.execute(img_s, mask_s, label=label)
    except Exception as exc:  # pyradiomics raises ValueError / RuntimeError on bad ROIs
        raise Her2Error(f"radiomics failed: {type(exc).__name__}: {str(exc)[:300]}",
                        case_id=case_id, file=image.source,
                        hint="check that the ROI is inside the image and large enough") from exc
    out: dict[str, float] = {}
    for k, v in result.items():
        if k.startswith("diagnostics_"):
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            log.debug("radiomics: non-numeric feature %s dropped", k)
    return out


def _as_3d(img):
    """A 2-D SimpleITK image as a one-slice 3-D image (pyradiomics' C code is 3-D).

    In-plane geometry is kept; the slice axis gets spacing 1 and is numpy axis
    0, which is why the 2-D parameter files use force2Ddimension 0.
    """
    import SimpleITK as sitk
    if img.GetDimension() != 2:
        return img
    out = sitk.JoinSeries([img])
    d = img.GetDirection()
    out.SetDirection((d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0))
    out.SetOrigin(tuple(img.GetOrigin()) + (0.0,))
    out.SetSpacing(tuple(img.GetSpacing()) + (1.0,))
    return out


def radiomics_columns(sequence: str, feats: dict[str, float]) -> dict[str, float]:
    return {f"{sequence}__radiomics__{k}": v for k, v in feats.items()}


def library_versions() -> dict[str, str]:
    from her2core.provenance import library_versions as versions
    out = versions("radiomics", "SimpleITK", "numpy", "pywt")
    out["pyradiomics"] = out.pop("radiomics", "?")
    if "pywt" in out:
        out["PyWavelets"] = out.pop("pywt")
    return out


def radiomics_provenance(params: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameter file (name + sha256), effective settings, enabled features, versions."""
    path = params_path(params)
    ext = get_extractor(params, overrides)
    return {
        "params": str(params),
        "params_file": path.name,
        "params_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "settings": json.loads(json.dumps(dict(ext.settings), default=str)),
        "image_types": json.loads(json.dumps(dict(ext.enabledImagetypes), default=str)),
        "feature_classes": json.loads(json.dumps(dict(ext.enabledFeatures), default=str)),
        "versions": library_versions(),
    }
