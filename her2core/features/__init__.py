"""Feature extraction: frozen deep backbones (timm, 3-D ResNet18) and pyradiomics.

Public entry points (docs/architecture.md, "Features"):

* :func:`extract_cohort_features` (cohort, config, cache_dir=None, progress=None)
  -> (DataFrame indexed by case_id, list[Her2Error])
* :func:`extract_case_features` (case_images, masks, config) -> pandas Series
* :class:`FeatureConfig`, :func:`create_backbone`, :data:`REGISTRY`,
  :func:`load_backbones` (load once, pass ``backbones=`` to the calls above)
* lower level: :class:`FeatureExtractor`; :mod:`.deep` (``prepare_slices``,
  ``prepare_volume``, ``build_inputs``, ``collate``, ``run_batch``);
  :func:`extract_radiomics`; :func:`describe_features` (model-card lines)

Column names: ``"{sequence}__{backbone}__f{i:04d}"`` (deep) and
``"{sequence}__radiomics__{pyradiomics name}"`` (radiomics).
"""
from .backbones import (REGISTRY, Backbone, BackboneSpec, create_backbone, get_spec,
                        known_backbones, random_init_warning, resolve_device)
from .config import FeatureConfig
from .extract import (FeatureExtractor, describe_features, extract_case_features,
                      extract_cohort_features, load_backbones)
from .radiomics import extract_radiomics
from .weights import RANDOM_INIT, WeightsSource, file_sha256, save_state_dict

__all__ = [
    "REGISTRY", "Backbone", "BackboneSpec", "create_backbone", "get_spec", "known_backbones",
    "random_init_warning", "resolve_device", "FeatureConfig", "RANDOM_INIT", "WeightsSource",
    "file_sha256", "save_state_dict", "FeatureExtractor", "extract_case_features",
    "extract_cohort_features", "load_backbones", "extract_radiomics", "describe_features",
]
