"""Cohort and single-case feature extraction (the public entry points).

``extract_cohort_features(cohort, config, cache_dir=None, progress=None)``
returns ``(DataFrame indexed by case_id, list[Her2Error])``. A torch DataLoader
with ``config.workers`` processes reads files, checks masks, crops, resizes
(and computes radiomics) while the main process runs the networks; a case
whose files are missing or broken is reported in the error list and skipped,
the others finish. ``progress(done, total, message)`` is called after every
batch.

The DataFrame's ``attrs["provenance"]`` holds the settings, the weights
identity of every backbone ("sha256:<hex>" or "random-init"), library versions,
device and precision, radiomics settings; ``attrs["weights"]`` the identities
alone and ``attrs["warning"]`` the random-init sentence (or None) for callers
to show on every output.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import Her2Error, MaskError
from . import deep
from .backbones import Backbone, amp_dtype, create_backbone, random_init_warning, resolve_device
from .cache import FeatureCache, cache_key, feature_versions, file_digest
from .config import FeatureConfig
from .radiomics import extract_radiomics, params_for, radiomics_provenance

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], Any]
MRI_SEQUENCES = ("T1", "T2", "DCE")


# ----------------------------------------------------------------- backbones
def load_backbones(config: FeatureConfig, device: str | None = None) -> dict[str, Backbone]:
    """Every backbone the config names, with its weights, on ``device`` (config's by default).

    Raises Her2Error when weights are missing (unless "random-init" is chosen).
    Callers that extract repeatedly (the app) keep the result and pass it back in.
    """
    dev = resolve_device(device or config.device)
    out: dict[str, Backbone] = {}
    for name in config.all_backbones():
        out[name] = create_backbone(name, config.weights_for(name), weights_dir=config.weights_dir,
                                    seed=config.seed, device=dev, amp=config.amp,
                                    volume_size=config.volume_size, input_px=config.input_size)
    return out


# ----------------------------------------------------------------- case loading
def _image_and_mask_paths(files, seq: str) -> tuple[Path | None, Path | None]:
    if seq == "US":
        return files.US, files.US_mask
    return getattr(files, seq), files.mask


def used_files(files, config: FeatureConfig) -> dict[str, Path]:
    """The files a case's features depend on (missing ones raise Her2Error)."""
    out: dict[str, Path] = {}
    cid = files.case_id
    for seq in config.sequences:
        img, msk = _image_and_mask_paths(files, seq)
        if img is None:
            raise Her2Error(f"no {seq} image", case_id=cid,
                            hint=f"add cases/{cid}/{seq}.* or leave {seq} out of the sequences")
        if msk is None:
            mname = "US_mask" if seq == "US" else "mask"
            raise MaskError(f"no {mname} for the {seq} image", case_id=cid,
                            hint=f"add cases/{cid}/{mname}.*")
        out[seq] = Path(img)
        out["US_mask" if seq == "US" else "mask"] = Path(msk)
    return out


def load_case(files, config: FeatureConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Images and masks (each mask on its image's grid) of one case."""
    from ..imaging import load_image
    from ..imaging.mask import check_mask, load_mask
    cid = files.case_id
    paths = used_files(files, config)
    from ..imaging.preprocess import grid_owner, tag_roi
    images: dict[str, Any] = {}
    masks: dict[str, Any] = {}
    mri_mask = None
    checked: list[tuple[Any, Any]] = []  # (image, its checked mask), reused on the same grid
    for seq in config.sequences:
        images[seq] = load_image(paths[seq], sequence=seq, case_id=cid)
    for seq in config.sequences:
        if seq == "US":
            masks[seq] = load_mask(paths["US_mask"], images[seq], case_id=cid)
            continue
        same = next((m for im, m in checked if im.same_grid(images[seq])), None)
        if same is not None:
            masks[seq] = same
            continue
        if mri_mask is None:
            mri_mask = load_image(paths["mask"], sequence="mask", modality="SEG",
                                  expected_ndim=3, case_id=cid)
        # the MRI mask is drawn on DCE (or T1); other sequences get it
        # resampled nearest-neighbour by physical coordinates (warned); each says whose
        # ROI it is, for the registration of the recipe's preprocessing
        masks[seq] = tag_roi(check_mask(mri_mask, images[seq], resample=True, case_id=cid),
                             grid_owner(mri_mask, images, default=seq))
        checked.append((images[seq], masks[seq]))
    return images, region_masks(masks, config, case_id=cid)


def region_masks(masks: dict[str, Any], config: FeatureConfig, *,
                 case_id: str | None = None) -> dict[str, Any]:
    """Each checked mask turned into the feature region ``config.region`` asks for
    (ROI, peritumoral ring of ``config.peritumoral_mm``, or both), on its image's grid."""
    if config.region == "tumour":
        return masks
    from ..imaging.ops import feature_region
    out = {}
    for seq, m in masks.items():
        try:
            out[seq] = feature_region(m, config.region, mm=config.peritumoral_mm,
                                      px=config.peritumoral_px)
        except Her2Error as err:
            raise err.with_context(case_id=case_id)
    return out


def case_radiomics(case_id: str, images, masks, config: FeatureConfig) -> dict[str, dict[str, float]]:
    out = {}
    for seq in config.radiomics_for():
        params = params_for(seq, images[seq].modality, config.radiomics_params)
        out[seq] = extract_radiomics(images[seq], masks[seq], params, case_id=case_id)
    return out


def preprocessed(case_id: str, images, masks, config: FeatureConfig):
    """The case's images and masks after the config's preprocessing (registration to
    ``register_to``, resampling to ``resample_mm``; unchanged when it asks none), as a
    :class:`~her2core.imaging.preprocess.PreprocessResult`."""
    from ..imaging.preprocess import preprocess_case
    return preprocess_case(images, masks, resample_mm=config.resample_mm,
                           register_to=config.register_to, case_id=case_id, seed=config.seed)


def inputs_from_images(case_id: str, images, masks, config: FeatureConfig,
                       plan) -> deep.CaseInputs:
    if config.preprocessing:
        pre = preprocessed(case_id, images, masks, config)
        images, masks = pre.images, pre.masks
    ci = deep.build_inputs(case_id, images, masks, config, plan)
    ci.radiomics = case_radiomics(case_id, images, masks, config)
    return ci


def _as_her2(exc: Exception, case_id: str) -> Her2Error:
    if isinstance(exc, Her2Error):
        return exc.with_context(case_id=case_id)
    log.error("case %s: unexpected %s during feature extraction", case_id, type(exc).__name__,
              exc_info=exc)
    return Her2Error(f"feature extraction failed: {type(exc).__name__}: {str(exc)[:300]}",
                     case_id=case_id, hint="the case was skipped; see the log for details")


class CohortDataset:
    """torch Dataset: item i = CaseInputs of case i (error captured, never raised)."""

    def __init__(self, items: list[tuple[str, Any]], config: FeatureConfig, plan):
        self.items = items
        self.config = config
        self.plan = plan

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> deep.CaseInputs:
        cid, files = self.items[i]
        try:
            images, masks = load_case(files, self.config)
            return inputs_from_images(cid, images, masks, self.config, self.plan)
        except Exception as exc:  # reported per case, the batch goes on
            return deep.CaseInputs(cid, error=_as_her2(exc, cid))


def _worker_init(_: int) -> None:
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    logging.getLogger("radiomics").setLevel(logging.WARNING)


# ----------------------------------------------------------------- extractor
class FeatureExtractor:
    """Backbones loaded once; extract for cohorts or single cases.

    ``FeatureExtractor(config)`` loads the weights (Her2Error when missing);
    pass ``backbones=`` to reuse already-loaded ones (e.g. from an app cache).
    """

    def __init__(self, config: FeatureConfig, backbones: Mapping[str, Backbone] | None = None):
        self.config = config
        self.device = resolve_device(config.device)
        if backbones is None:
            backbones = load_backbones(config, self.device)
        missing = [n for n in config.all_backbones() if n not in backbones]
        if missing:
            raise Her2Error(f"backbones not loaded: {missing}")
        self.backbones = dict(backbones)
        if self.backbones:
            self.device = next(iter(self.backbones.values())).device
        self.plan = deep.input_plan(config, self.backbones)
        self.stats: dict[str, float] = {}
        self._col_cache: dict[tuple, tuple[str, ...]] = {}

    # -------------------------------------------------------- provenance
    @property
    def weights(self) -> dict[str, str]:
        return {n: self.backbones[n].weights_identity for n in self.config.all_backbones()}

    def versions(self) -> dict[str, str]:
        return feature_versions(bool(self.config.radiomics_for()))

    def provenance(self) -> dict[str, Any]:
        dt = amp_dtype(self.device) if self.config.amp else None
        prov: dict[str, Any] = {
            "config": self.config.to_dict(),
            "weights": self.weights,
            "backbones": {n: self.backbones[n].describe() for n in self.config.all_backbones()},
            "warning": random_init_warning(self.weights),
            "versions": self.versions(),
            "device": self.device,
            "precision": str(dt).replace("torch.", "") if dt is not None else "float32",
            "slice_mode": self.config.slice_mode,
        }
        if self.config.radiomics_for():
            prov["radiomics"] = {
                seq: radiomics_provenance(params_for(seq, "US" if seq == "US" else "MR",
                                                     self.config.radiomics_params))
                for seq in self.config.radiomics_for()}
        return prov

    def _key(self, files: dict[str, Path]) -> str:
        return cache_key({k: file_digest(p) for k, p in files.items()},
                         self.config.feature_settings(), self.weights, self._versions)

    # -------------------------------------------------------- rows
    # A row is (column names tuple, float64 values): tens of thousands of
    # features per case make dicts the slow part on a GPU.
    def _columns(self, parts: tuple) -> tuple[str, ...]:
        cols = self._col_cache.get(parts)
        if cols is None:
            out: list[str] = []
            for p in parts:
                if p[0] == "deep":
                    out += deep.deep_columns(p[1], p[2], p[3])
                else:
                    out += [f"{p[1]}__radiomics__{k}" for k in p[2]]
            cols = self._col_cache[parts] = tuple(out)
        return cols

    def _rows(self, batch: deep.Batch) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        feats = deep.run_batch(batch, self.config, self.backbones)
        rows = {}
        for j, cid in enumerate(batch.case_ids):
            parts, vals = [], []
            for seq in self.config.sequences:
                for name in self.config.backbones.get(seq, []):
                    arr = feats[f"{seq}__{name}"][j]
                    parts.append(("deep", seq, name, int(arr.shape[0])))
                    vals.append(arr.astype(np.float64))
                if seq in batch.radiomics[j]:
                    r = batch.radiomics[j][seq]
                    parts.append(("radiomics", seq, tuple(r)))
                    vals.append(np.fromiter(r.values(), dtype=np.float64, count=len(r)))
            rows[cid] = (self._columns(tuple(parts)),
                         np.concatenate(vals) if vals else np.zeros(0))
        return rows

    def _frame(self, rows: dict[str, tuple[tuple[str, ...], np.ndarray]], order: list[str]):
        import pandas as pd
        ids = [c for c in order if c in rows]
        if ids:
            cols = rows[ids[0]][0]
            if all(rows[c][0] is cols or rows[c][0] == cols for c in ids):
                data = np.stack([rows[c][1] for c in ids])
                df = pd.DataFrame(data, index=pd.Index(ids, name="case_id"), columns=list(cols))
            else:  # e.g. a cache row from another radiomics feature set: align by name
                df = pd.DataFrame([pd.Series(rows[c][1], index=list(rows[c][0]), name=c)
                                   for c in ids])
                df.index.name = "case_id"
        else:
            df = pd.DataFrame(index=pd.Index([], name="case_id"))
        prov = self.provenance()
        df.attrs["provenance"] = prov
        df.attrs["weights"] = prov["weights"]
        df.attrs["warning"] = prov["warning"]
        return df

    # -------------------------------------------------------- single case
    def extract_case(self, case_images: Mapping[str, Any], masks: Any, *, case_id: str = "case"):
        """Features of one case from loaded Images (the app's uploaded case).

        ``masks``: one mask Image used for every MRI sequence (resampled
        nearest-neighbour onto a sequence with another grid) or a dict by
        sequence; the "US" sequence needs its own mask (key "US" or "US_mask").
        Returns a pandas Series named ``case_id`` with ``attrs`` as the cohort table.
        Raises Her2Error (naming the case) for a missing image or a bad mask.
        """
        from ..imaging.mask import check_mask
        from ..imaging.preprocess import ROI_KEY, grid_owner, tag_roi
        images, mk = {}, {}
        for seq in self.config.sequences:
            if seq not in case_images or case_images[seq] is None:
                raise Her2Error(f"no {seq} image", case_id=case_id,
                                hint=f"upload {seq} or leave it out of the sequences")
            images[seq] = case_images[seq]
        for seq in self.config.sequences:
            own = isinstance(masks, Mapping) and masks.get(seq) is not None
            if own:
                m = masks[seq]
            elif isinstance(masks, Mapping):
                m = masks.get("US_mask") if seq == "US" else masks.get("mask")
            else:
                m = None if seq == "US" else masks
            if m is None:
                raise MaskError(f"no mask for the {seq} image", case_id=case_id)
            # whose ROI it is (for registration): as tagged, its own when given for this
            # sequence, else the MRI sequence whose grid it lies on
            src = m.meta.get(ROI_KEY) or (seq if own or seq == "US" else
                                          grid_owner(m, images, default=seq))
            mk[seq] = tag_roi(check_mask(m, images[seq], resample=(seq != "US"),
                                         case_id=case_id), src)
        mk = region_masks(mk, self.config, case_id=case_id)
        ci = inputs_from_images(case_id, images, mk, self.config, self.plan)
        batch = deep.collate([ci])
        rows = self._rows(batch)
        df = self._frame(rows, [case_id])
        s = df.loc[case_id]
        s.attrs = dict(df.attrs)
        return s

    # -------------------------------------------------------- cohort
    def _local_batches(self, todo: list[tuple[str, Any]]):
        """(rows, errors) per DataLoader batch: workers prepare, this process runs the networks."""
        from torch.utils.data import DataLoader
        workers = min(self.config.workers, len(todo))
        ds = CohortDataset(todo, self.config, self.plan)
        loader = DataLoader(
            ds, batch_size=self.config.batch_size, shuffle=False, num_workers=workers,
            collate_fn=deep.collate, pin_memory=self.device == "cuda",
            prefetch_factor=2 if workers > 0 else None, worker_init_fn=_worker_init if workers else None)
        t_net = 0.0
        for batch in loader:
            t1 = time.perf_counter()
            new = self._rows(batch)
            t_net += time.perf_counter() - t1
            self.stats["network_s"] = t_net
            yield new, batch.errors

    def extract_cohort(self, cohort, cache_dir: str | Path | None = None,
                       progress: ProgressFn | None = None, case_ids: list[str] | None = None,
                       executor=None):
        """(DataFrame indexed by case_id, list[Her2Error]); see the module docstring.

        ``executor``: None runs here (DataLoader workers + this process's networks);
        a :class:`~her2core.features.distributed.RayExecutor` runs the cases on Ray.
        Either way each finished case is written to the cache at once.
        """
        if isinstance(cohort, (str, Path)):
            from ..cohort import read_cohort
            cohort = read_cohort(cohort)
        t0 = time.perf_counter()
        order = list(case_ids if case_ids is not None else cohort.case_ids)
        total = len(order)
        errors: list[Her2Error] = []
        rows: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        cache = FeatureCache(cache_dir) if cache_dir is not None else None
        self._versions = self.versions()
        keys: dict[str, str] = {}
        todo: list[tuple[str, Any]] = []
        for cid in order:
            try:
                files = cohort.files(cid)
                if cache is not None:
                    keys[cid] = self._key(used_files(files, self.config))
                    hit = cache.get(cid, keys[cid])
                    if hit is not None:
                        rows[cid] = (tuple(hit), np.fromiter(hit.values(), np.float64, len(hit)))
                        continue
                todo.append((cid, files))
            except Exception as exc:
                errors.append(_as_her2(exc, cid))
        done = total - len(todo)
        if progress is not None and done:
            progress(done, total, f"{done} cases from the feature cache")
        if todo:
            batches = self._local_batches(todo) if executor is None \
                else executor.map_batches(self, todo)
            for new, batch_errors in batches:
                for cid, row in new.items():
                    rows[cid] = row
                    if cache is not None:
                        cache.put(cid, keys[cid], dict(zip(*row)))
                errors.extend(batch_errors)
                for err in batch_errors:
                    log.warning("feature extraction skipped a case: %s", err)
                done += len(new) + len(batch_errors)
                if progress is not None:
                    progress(done, total, f"features: {done}/{total} cases")
        self.stats.update(total_s=time.perf_counter() - t0, computed=len(todo),
                          cached=cache.hits if cache is not None else 0)
        df = self._frame(rows, order)
        df.attrs["provenance"]["n_errors"] = len(errors)
        if executor is not None:
            df.attrs["provenance"]["executor"] = executor.describe()
        return df, errors


# ----------------------------------------------------------------- model card text
_MODE_TEXT = {
    "largest": "the axial slice with the largest ROI area",
    "aggregate": "every axial slice holding ROI (features averaged over the slices)",
    "25d": "the largest-ROI axial slice and its two neighbours as the 3 channels (2.5-D)",
}


def describe_features(provenance: Mapping[str, Any]) -> list[str]:
    """Plain-language lines on how features were made, for model cards and reports."""
    cfg = provenance["config"]
    lines = []
    for seq in cfg["sequences"]:
        names = cfg["backbones"].get(seq, [])
        if names:
            parts = []
            for n in names:
                b = provenance["backbones"][n]
                ident = b["weights"]["identity"]
                shown = "RANDOM INITIALISATION" if ident == "random-init" else ident[:19] + "..."
                parts.append(f"{n} ({b['dim']}-d, weights {shown})")
            lines.append(f"{seq}: deep features from " + ", ".join(parts))
    if any(provenance["backbones"][n]["kind"] == "2d" for n in provenance["backbones"]):
        lines.append(
            f"2-D input: {_MODE_TEXT[cfg['slice_mode']]}, cropped to the ROI bounding box "
            f"+ {cfg['margin_px']} px{', padded square' if cfg['square'] else ''}, intensities "
            f"{cfg['intensity_percentiles'][0]}-{cfg['intensity_percentiles'][1]} percentile "
            f"-> [0, 1], grey replicated to 3 channels, resized to the backbone input and "
            f"normalised with its own mean/std (ultrasound: the single image)")
    if any(provenance["backbones"][n]["kind"] == "3d" for n in provenance["backbones"]):
        lines.append(f"3-D input: ROI box + {cfg['volume_margin_px']} px in-plane, z-scored, "
                     f"resized to {cfg['volume_size']}^3")
    for seq, r in provenance.get("radiomics", {}).items():
        lines.append(f"{seq}: pyradiomics {r['versions']['pyradiomics']} features with "
                     f"{r['params_file']} (binWidth {r['settings'].get('binWidth')}, "
                     f"resampling {r['settings'].get('resampledPixelSpacing')})")
    lines.append(f"computed on {provenance['device']} in {provenance['precision']}")
    if provenance.get("warning"):
        lines.append(provenance["warning"])
    return lines


# ----------------------------------------------------------------- functions
def extract_cohort_features(cohort, config: FeatureConfig, cache_dir: str | Path | None = None,
                            progress: ProgressFn | None = None, *,
                            backbones: Mapping[str, Backbone] | None = None, executor=None):
    """Features of every case of ``cohort`` (a Cohort or its folder).

    Returns ``(DataFrame indexed by case_id, list[Her2Error])``. Weights that
    cannot be found raise Her2Error before any case is read. ``executor``: see
    :meth:`FeatureExtractor.extract_cohort` (None = this machine).
    """
    return FeatureExtractor(config, backbones).extract_cohort(cohort, cache_dir, progress,
                                                              executor=executor)


def extract_case_features(case_images: Mapping[str, Any], masks: Any, config: FeatureConfig, *,
                          backbones: Mapping[str, Backbone] | None = None, case_id: str = "case"):
    """Features of one case from loaded Images -> pandas Series (see FeatureExtractor.extract_case)."""
    return FeatureExtractor(config, backbones).extract_case(case_images, masks, case_id=case_id)


# ----------------------------------------------------------------- filling the cache
@dataclass
class CohortExtraction:
    """Result of :func:`fill_feature_cache`: the table, skipped cases, what was done where."""

    features: Any                      # pandas DataFrame indexed by case_id
    errors: list[Her2Error]
    computed: int                      # cases extracted in this run
    cached: int                        # cases read from the cache
    seconds: float
    cache_dir: str | None
    executor: dict[str, Any] | None    # RayExecutor.describe(), None when local

    def to_dict(self) -> dict[str, Any]:
        return {"cases": int(len(self.features)), "features": int(self.features.shape[1]),
                "computed": self.computed, "cached": self.cached,
                "errors": [{"case_id": e.case_id, "file": e.file, "message": str(e)}
                           for e in self.errors],
                "seconds": round(self.seconds, 3), "cache_dir": self.cache_dir,
                "executor": self.executor,
                "warning": self.features.attrs.get("warning")}


def fill_feature_cache(cohort, config: FeatureConfig, cache_dir: str | Path, *, executor=None,
                       progress: ProgressFn | None = None, case_ids: list[str] | None = None,
                       backbones: Mapping[str, Backbone] | None = None) -> CohortExtraction:
    """Extract every case of ``cohort`` missing from ``cache_dir`` (locally or on Ray).

    Later ``extract_cohort_features`` / ``train`` / ``predict`` calls with the same
    cache folder and settings read the rows instead of computing them.
    """
    ex = FeatureExtractor(config, backbones)
    t0 = time.perf_counter()
    df, errors = ex.extract_cohort(cohort, cache_dir, progress, case_ids=case_ids,
                                   executor=executor)
    cached = int(ex.stats.get("cached", 0))
    return CohortExtraction(df, errors, int(len(df)) - cached, cached, time.perf_counter() - t0,
                            str(cache_dir), executor.describe() if executor is not None else None)
