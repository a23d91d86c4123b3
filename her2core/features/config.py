"""`FeatureConfig`: every setting that changes a feature value, serialisable to JSON.

The config is stored in model bundles (model_card.json) and is part of the
feature-cache key, so a change of any field gives new features.

Slice modes (2-D backbones; see also docs in :mod:`her2core.features.deep`):

* ``"largest"`` (default, as in papers 000 / 003): the axial slice (array index
  ``z``) with the largest ROI area, cropped to the ROI bounding box + ``margin_px``,
  made square, replicated to 3 channels, resized to the backbone's input size.
* ``"aggregate"``: the same crop on every slice that holds ROI voxels; the
  features are the mean over those slices.
* ``"25d"``: the largest-ROI slice and its two neighbours (2.5-D) as the three
  input channels.

Ultrasound (2-D) images have a single slice, so every mode gives the same input.
The 3-D backbone (``resnet3d18``, paper 001) always takes the ROI volume: the
bounding box of the mask grown by ``volume_margin_px`` (the paper's 50-pixel
dilation), z-scored, resized to ``volume_size``^3.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import Her2Error

SLICE_MODES = ("largest", "aggregate", "25d")
#: feature regions (same as her2core.imaging.ops.REGIONS)
REGIONS = ("tumour", "peritumoral", "tumour+peritumoral")
DEVICES = ("auto", "cpu", "cuda")
#: sequences this layer knows how to read from a cohort (cohort-format.md)
KNOWN_SEQUENCES = ("T1", "T2", "DCE", "US")

#: paper 000: four backbones on T1, T2 and DCE
PAPER_000_BACKBONES = ("resnet50", "vgg16", "efficientnet_b0", "vit_small_patch16_224")


def default_num_workers() -> int:
    """min(2, cores): decoding and cropping overlap the network without starving it."""
    return min(2, os.cpu_count() or 1)


@dataclass
class FeatureConfig:
    """What to extract and how.

    Attributes:
        sequences: image sequences to use ("T1", "T2", "DCE", "US").
        backbones: per sequence, the backbone names (see
            :data:`her2core.features.backbones.REGISTRY`); a sequence absent
            from the mapping gets no deep features.
        slice_mode: "largest" | "aggregate" | "25d" (module docstring).
        margin_px: pixels added around the ROI bounding box for 2-D crops.
        square: grow the crop to a square (keeps the aspect ratio when resized).
        intensity_percentiles: crop intensities are mapped linearly from these
            percentiles (of the crop) to [0, 1] and clipped, before the
            backbone's own mean / std normalisation.
        volume_margin_px: ROI dilation for the 3-D ROI volume (paper 001: 50).
        volume_size: edge of the cube the 3-D ROI volume is resized to (96).
        weights: per backbone name, "auto" (local file / cache, error when
            absent), a path to a weights file or folder, or "random-init".
            Backbones not named use ``default_weights``.
        default_weights: "auto" unless a caller explicitly asks for "random-init".
        weights_dir: an extra folder searched first for ``<name>.safetensors``
            (also read from the environment variable HER2_WEIGHTS_DIR).
        seed: seed of random initialisation (recorded with the features).
        radiomics: compute pyradiomics features as well.
        radiomics_sequences: sequences for radiomics (None: all of ``sequences``).
        radiomics_params: per sequence or per modality ("MR", "US"), a YAML
            parameter file or the name of a built-in one ("mri", "us",
            "mri_filters", "us_filters"); default "mri" for MR, "us" for US.
        input_size: override of the 2-D backbones' input resolution (square
            edge in pixels) for quick runs and tests; None = each backbone's
            own (224 for all registered ones). Ignored by ViTs (fixed patch grid).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        amp: mixed precision (bf16 where supported, else fp16) on CUDA.
        batch_size: cases per batch.
        num_workers: DataLoader worker processes (None: min(2, cores)).
        region: what each case's mask stands for: "tumour" (the ROI, default),
            "peritumoral" (the ring of ``peritumoral_mm`` around it, outside it)
            or "tumour+peritumoral" (both), for radiomics and deep features alike
            (see :func:`her2core.imaging.ops.feature_region`).
        peritumoral_mm: ring thickness in mm (one value, or per axis x, y, z),
            measured in physical units so anisotropic voxels get the same mm.
        peritumoral_px: ring thickness in pixels for pictures without a
            physical spacing (PNG ultrasound); None: such images are refused
            for a peritumoral region.
        resample_mm: MRI resampled to this spacing (x, y, z mm; paper 000:
            0.5, 0.5, 3) before extraction; None: each image on its own grid.
        register_to: every other MRI sequence rigidly registered to this one
            ("DCE" in paper 000) and resampled onto its grid before extraction;
            None: sequences aligned by physical coordinates only. Both are done by
            :func:`her2core.imaging.preprocess.preprocess_case`, masks carried.
    """

    sequences: list[str] = field(default_factory=lambda: ["T1", "T2", "DCE"])
    backbones: dict[str, list[str]] = field(default_factory=lambda: {
        s: list(PAPER_000_BACKBONES) for s in ("T1", "T2", "DCE")})
    slice_mode: str = "largest"
    margin_px: int = 10
    square: bool = True
    intensity_percentiles: tuple[float, float] = (0.5, 99.5)
    volume_margin_px: int = 50
    volume_size: int = 96
    weights: dict[str, str] = field(default_factory=dict)
    default_weights: str = "auto"
    weights_dir: str | None = None
    seed: int = 0
    radiomics: bool = False
    radiomics_sequences: list[str] | None = None
    radiomics_params: dict[str, str] = field(default_factory=dict)
    input_size: int | None = None
    device: str = "auto"
    amp: bool = True
    batch_size: int = 8
    num_workers: int | None = None
    region: str = "tumour"
    peritumoral_mm: float | list[float] = 5.0
    peritumoral_px: float | None = None
    resample_mm: list[float] | None = None
    register_to: str | None = None

    def __post_init__(self) -> None:
        self.sequences = list(self.sequences)
        self.backbones = {str(k): list(v) for k, v in dict(self.backbones).items()}
        self.intensity_percentiles = tuple(float(v) for v in self.intensity_percentiles)
        self.weights = {str(k): str(v) for k, v in dict(self.weights).items()}
        self.radiomics_params = {str(k): str(v) for k, v in dict(self.radiomics_params).items()}
        if self.radiomics_sequences is not None:
            self.radiomics_sequences = list(self.radiomics_sequences)
        if self.resample_mm is not None:
            self.resample_mm = list(self.resample_mm) if isinstance(self.resample_mm, (list, tuple)) \
                else self.resample_mm
        if isinstance(self.peritumoral_mm, (list, tuple)):
            self.peritumoral_mm = [float(v) for v in self.peritumoral_mm]
        self.validate()

    # ------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise Her2Error naming the first bad setting."""
        def bad(what: str, hint: str | None = None):
            raise Her2Error(f"feature settings: {what}", hint=hint)

        if not self.sequences:
            bad("no sequences chosen", "name at least one of " + ", ".join(KNOWN_SEQUENCES))
        for s in self.sequences:
            if s not in KNOWN_SEQUENCES:
                bad(f"unknown sequence {s!r}", "known: " + ", ".join(KNOWN_SEQUENCES))
        if len(set(self.sequences)) != len(self.sequences):
            bad(f"sequence listed twice in {self.sequences}")
        for s, names in self.backbones.items():
            if s not in self.sequences:
                bad(f"backbones given for {s!r}, which is not among the sequences {self.sequences}")
            if len(set(names)) != len(names):
                bad(f"backbone listed twice for {s}: {names}")
        if self.slice_mode not in SLICE_MODES:
            bad(f"slice_mode {self.slice_mode!r}", "choose one of " + ", ".join(SLICE_MODES))
        if self.device not in DEVICES:
            bad(f"device {self.device!r}", "choose one of " + ", ".join(DEVICES))
        if int(self.margin_px) < 0 or int(self.volume_margin_px) < 0:
            bad("margins must be >= 0 pixels")
        if not 8 <= int(self.volume_size) <= 256:
            bad(f"volume_size {self.volume_size} outside 8..256")
        lo, hi = self.intensity_percentiles
        if not 0 <= lo < hi <= 100:
            bad(f"intensity_percentiles {self.intensity_percentiles} must satisfy 0 <= lo < hi <= 100")
        if self.input_size is not None and not 16 <= int(self.input_size) <= 1024:
            bad(f"input_size {self.input_size} outside 16..1024")
        if int(self.batch_size) < 1:
            bad(f"batch_size {self.batch_size} must be >= 1")
        if self.num_workers is not None and int(self.num_workers) < 0:
            bad(f"num_workers {self.num_workers} must be >= 0")
        if not any(self.backbones.get(s) for s in self.sequences) and not self.radiomics:
            bad("nothing to extract: no backbone for any sequence and radiomics off")
        for s in self.radiomics_sequences or []:
            if s not in self.sequences:
                bad(f"radiomics sequence {s!r} is not among the sequences {self.sequences}")
        if self.region not in REGIONS:
            bad(f"region {self.region!r}", "choose one of " + ", ".join(REGIONS))
        mm = self.peritumoral_mm if isinstance(self.peritumoral_mm, list) else [self.peritumoral_mm]
        if len(mm) not in (1, 2, 3) or not all(0 < float(v) <= 100 for v in mm):
            bad(f"peritumoral_mm {self.peritumoral_mm}: one value or one per axis, each in (0, 100] mm")
        if self.peritumoral_px is not None and not 0 < float(self.peritumoral_px) <= 500:
            bad(f"peritumoral_px {self.peritumoral_px} outside (0, 500]")
        from ..imaging.preprocess import check_preprocessing
        try:
            check_preprocessing(self.resample_mm, self.register_to, self.sequences)
        except Her2Error as err:
            bad(err.message, err.hint)

    # ------------------------------------------------------------ derived
    @property
    def workers(self) -> int:
        return default_num_workers() if self.num_workers is None else int(self.num_workers)

    def weights_for(self, backbone: str) -> str:
        return self.weights.get(backbone, self.default_weights)

    def all_backbones(self) -> list[str]:
        """Distinct backbone names in first-use order."""
        out: list[str] = []
        for s in self.sequences:
            for b in self.backbones.get(s, []):
                if b not in out:
                    out.append(b)
        return out

    def radiomics_for(self) -> list[str]:
        if not self.radiomics:
            return []
        return list(self.radiomics_sequences) if self.radiomics_sequences is not None \
            else list(self.sequences)

    def feature_settings(self) -> dict[str, Any]:
        """The fields that change feature values (cache key, model card).

        device, batch size and workers are left out: they change speed, not
        values (up to mixed-precision rounding, recorded separately).
        """
        d = self.to_dict()
        for k in ("device", "batch_size", "num_workers"):
            d.pop(k)
        if d["region"] == "tumour":      # the ring settings change nothing then (and old keys hold)
            for k in ("region", "peritumoral_mm", "peritumoral_px"):
                d.pop(k)
        for k in ("resample_mm", "register_to"):   # off: the keys of earlier versions hold
            if d[k] is None:
                d.pop(k)
        return d

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing asked ({} when none): ``resample_mm``, ``register_to``."""
        return {k: v for k, v in (("resample_mm", self.resample_mm),
                                  ("register_to", self.register_to)) if v is not None}

    # ------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["intensity_percentiles"] = list(self.intensity_percentiles)
        return d

    def to_json(self, **kw: Any) -> str:
        kw.setdefault("indent", 2)
        kw.setdefault("sort_keys", True)
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise Her2Error(f"feature settings: unknown field(s) {unknown}",
                            hint="known: " + ", ".join(sorted(known)))
        return cls(**d)

    @classmethod
    def from_json(cls, text: str | bytes) -> "FeatureConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Her2Error(f"feature settings are not valid JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise Her2Error("feature settings JSON must be an object")
        return cls.from_dict(d)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise Her2Error(f"cannot read feature settings: {exc}", file=path) from exc
        try:
            return cls.from_json(text)
        except Her2Error as err:
            raise err.with_context(file=path)

    # ------------------------------------------------------------ presets
    @classmethod
    def paper_000(cls, **kw: Any) -> "FeatureConfig":
        """ResNet50, VGG16, EfficientNet-B0, ViT-Small on T1, T2, DCE (largest slice)."""
        return cls(**kw)

    @classmethod
    def paper_001(cls, **kw: Any) -> "FeatureConfig":
        """ConvNeXt V2 on ultrasound, 3-D ResNet18 on the DCE ROI volume."""
        kw.setdefault("sequences", ["DCE", "US"])
        kw.setdefault("backbones", {"DCE": ["resnet3d18"], "US": ["convnextv2_tiny"]})
        return cls(**kw)

    @classmethod
    def paper_003(cls, **kw: Any) -> "FeatureConfig":
        """ResNet50/101, VGG19, DenseNet121 on ultrasound + US radiomics with filters."""
        kw.setdefault("sequences", ["US"])
        kw.setdefault("backbones", {"US": ["resnet50", "resnet101", "vgg19", "densenet121"]})
        kw.setdefault("radiomics", True)
        kw.setdefault("radiomics_params", {"US": "us_filters"})
        return cls(**kw)
