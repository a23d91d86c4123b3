"""Input pipeline of fine-tuning: cohort files -> network inputs -> seeded augmentation.

Per case (decoded once, in DataLoader workers, :func:`decode_cases`):

* the image and its ROI are read as in feature extraction
  (:func:`her2core.features.extract.load_case`: the MRI mask is checked, and
  resampled nearest-neighbour onto T1 / T2 when drawn on DCE; the US mask is
  checked on the ultrasound picture);
* the ROI is refused when its in-plane bounding box is narrower than
  ``min_roi_px`` (one-line MaskError naming the case and mask file);
* crop: the ROI bounding box grown by ``margin_px`` in-plane (= the box of the
  mask dilated by ``margin_px``, paper 001: 50 px; :func:`her2core.imaging.ops.roi_bbox`),
  clipped to the image; z-score over the crop (:func:`her2core.imaging.ops.zscore`);
* 2-D networks: the largest-ROI axial slice (``slice_mode="largest"``) or the
  2.5-D stack of it and its neighbours (``"25d"``, three channels); the crop is
  padded symmetrically with 0 (= the crop mean) to a square and resized
  (bilinear, antialiased) to ``size`` x ``size``. A one-channel input is
  replicated to the network's three channels on the device;
* the 3-D network: the crop volume (no margin along z, as paper 001)
  resized trilinearly to ``size``^3 (:func:`her2core.features.deep.prepare_volume`).

The crop geometry (:func:`her2core.explain.placement.crop_box_image`) goes with
the input, so a Grad-CAM map can be placed back on the source grid.

Augmentation (training only, in the workers, per sample): random flips,
scaling and shifts, Gaussian blur, brightness (intensity shift) and contrast
(intensity scale), Gaussian noise -- torchvision ``transforms.v2`` for 2-D
inputs, MONAI for 3-D volumes; ``augmentation="crop_flip"`` (paper 003) is a random
crop and horizontal / vertical flips only. The random state of every sample is derived from
(seed, fold, epoch, case index) alone, so the augmented batch does not depend
on the number of workers, on the process that draws it (DDP), or on a resume.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import Her2Error, MaskError
from .nets import ArchInfo

log = logging.getLogger(__name__)


def derive_seed(*keys: int) -> int:
    """A 31-bit seed that depends on every key (numpy SeedSequence)."""
    ss = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys])
    return int(ss.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


# ---------------------------------------------------------------- per case
@dataclass
class CaseInput:
    """Network input of one case and where it came from.

    ``x``: (C, S, S) for 2-D networks (C = 1, or 3 for "25d"), (1, S, S, S) for
    the 3-D network, float32. ``crop``: the region the network saw as an Image
    on the source image's grid (2-D crop of a 2-D image; a one-slice 3-D crop
    for a 2-D network on MRI; the crop volume for the 3-D network).
    ``slice_index``: the source axial slice (2-D network on MRI), else None.
    """

    case_id: str
    x: np.ndarray
    crop: Any = None
    slice_index: int | None = None


class _Seq:
    """What extract.load_case reads from a feature config: the sequences, and the feature
    region (the network reads the tumour ROI; its dilation is the settings' margin)."""

    region = "tumour"

    def __init__(self, sequence: str):
        self.sequences = [sequence]


def load_case_image(files, sequence: str):
    """(image, mask on its grid) of one case (Her2Error naming the case and file)."""
    from ..features.extract import load_case
    images, masks = load_case(files, _Seq(sequence))
    return images[sequence], masks[sequence]


def _check_roi(mask, settings, case_id) -> None:
    from ..imaging import ops
    start, stop = ops.roi_bbox(mask)
    w, h = int(stop[0] - start[0]), int(stop[1] - start[1])
    need = int(settings.min_roi_px)
    if min(w, h) < need:
        raise MaskError(f"the ROI is {w} x {h} px in-plane, smaller than the {need} px the crop "
                        f"needs", case_id=case_id, file=mask.source,
                        hint="check the mask (or lower min_roi_px)")


def _resize2d(arr: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    if tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
    return t[0].numpy()


def prepare_input(image, mask, settings, info: ArchInfo, case_id: str | None = None) -> CaseInput:
    """The network input of one case (see the module docstring) with its crop geometry."""
    from ..explain.placement import crop_box_image
    from ..features import deep
    from ..imaging import ops
    cid = case_id or "case"
    src = getattr(image, "source", None)
    if image.is_phases:
        raise Her2Error("a 4-D phases image cannot go to the network", case_id=case_id,
                        file=src, hint="use the DCE (3-D) image")
    if info.kind == "3d" and image.ndim != 3:
        raise Her2Error(f"the 3-D network {info.arch} needs a 3-D image, this one is "
                        f"{image.ndim}-D", case_id=case_id, file=src,
                        hint="use a 2-D network for ultrasound")
    if mask.ndim != image.ndim:
        raise MaskError(f"the mask is {mask.ndim}-D but the image is {image.ndim}-D",
                        case_id=case_id, file=getattr(mask, "source", None))
    if not np.any(mask.array):
        raise MaskError("the ROI is empty", case_id=case_id, file=getattr(mask, "source", None))
    _check_roi(mask, settings, case_id)
    m = int(settings.margin_px)
    size = int(settings.size)
    if info.kind == "3d":
        start, stop = ops.roi_bbox(mask, margin_px=(m, m, 0))
        v = deep.prepare_volume(image, mask, margin_px=m)          # (1, d, h, w) z-scored
        x = deep.resize_volume(v, size).numpy()
        crop = crop_box_image(image, start, tuple(int(b - a) for a, b in zip(start, stop)))
        return CaseInput(cid, np.ascontiguousarray(x, dtype=np.float32), crop, None)
    margin = (m, m, 1) if image.ndim == 3 else m
    start, stop = ops.roi_bbox(mask, margin_px=margin)
    img_c = ops.zscore(ops.crop(image, start, stop))
    z = None
    if image.ndim == 3:
        mask_c = ops.crop(mask, start, stop)
        k = int(ops.largest_roi_slice(mask_c))
        z = int(start[2]) + k
        if settings.slice_mode == "25d":
            arr = np.asarray(ops.stack_25d(img_c, mask_c, 3, index=k), dtype=np.float32)
        else:
            arr = img_c.array[k][None].astype(np.float32)
    else:
        arr = img_c.array[None].astype(np.float32)
    arr = deep._pad_square(arr, 0.0)
    w, h = int(stop[0] - start[0]), int(stop[1] - start[1])
    n = arr.shape[-1]
    x0, y0 = int(start[0]) - (n - w) // 2, int(start[1]) - (n - h) // 2
    if image.ndim == 3:
        crop = crop_box_image(image, (x0, y0, z), (n, n, 1))
    else:
        crop = crop_box_image(image, (x0, y0), (n, n))
    x = _resize2d(arr, size)
    return CaseInput(cid, np.ascontiguousarray(x, dtype=np.float32), crop, z)


# ---------------------------------------------------------------- augmentation
class _BrightnessContrast:
    """x * contrast + brightness on z-scored inputs (no clamping to [0, 1])."""

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, p: float = 0.5):
        self.brightness, self.contrast, self.p = brightness, contrast, p

    def __call__(self, x):
        import torch
        if float(torch.rand(())) >= self.p:
            return x
        c = 1.0 + (float(torch.rand(())) * 2 - 1) * self.contrast
        b = (float(torch.rand(())) * 2 - 1) * self.brightness
        return x * c + b


class Augment2D:
    """Seeded torchvision-v2 augmentation of a (C, S, S) tensor (paper 001's list).

    Horizontal flip (p 0.5; also vertical for MRI, p 0.5), scaling 0.9-1.1 and
    shifts up to 10 % (p 0.5), Gaussian blur sigma 0.1-1.0 (p 0.2), brightness
    +-0.1 and contrast x(0.9-1.1) (p 0.5), Gaussian noise sigma 0.05 (p 0.2).
    """

    def __init__(self, sequence: str):
        from torchvision.transforms import v2
        steps: list[Any] = [v2.RandomHorizontalFlip(0.5)]
        if sequence != "US":
            steps.append(v2.RandomVerticalFlip(0.5))
        steps += [
            v2.RandomApply([v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1),
                                            interpolation=v2.InterpolationMode.BILINEAR,
                                            fill=0.0)], p=0.5),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.0))], p=0.2),
            _BrightnessContrast(0.1, 0.1, p=0.5),
            v2.RandomApply([v2.GaussianNoise(mean=0.0, sigma=0.05, clip=False)], p=0.2),
        ]
        self.transform = v2.Compose(steps)

    def __call__(self, x, seed: int):
        import torch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return self.transform(x).contiguous()


class AugmentCropFlip:
    """Seeded 2-D augmentation of paper 003: a random square crop of 80-100 % of the side,
    resized back to the input size (bilinear, antialiased), horizontal and vertical flips
    (p 0.5 each). Nothing else: the paper lists only these."""

    def __init__(self, size: int):
        from torchvision.transforms import v2
        self.transform = v2.Compose([
            v2.RandomResizedCrop(int(size), scale=(0.64, 1.0), ratio=(1.0, 1.0),
                                 interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)])

    def __call__(self, x, seed: int):
        import torch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return self.transform(x).contiguous()


class Augment3D:
    """Seeded MONAI augmentation of a (1, S, S, S) volume.

    Flip along x (p 0.5), scaling 0.9-1.1 and shifts up to 10 % (p 0.5), Gaussian
    smoothing sigma 0.25-1.0 (p 0.2), intensity shift +-0.1 and scale x(0.9-1.1)
    (p 0.5 each), Gaussian noise std 0.05 (p 0.2).
    """

    def __init__(self, size: int, device: str | None = None):
        from monai.transforms import (Compose, RandAffine, RandFlip, RandGaussianNoise,
                                      RandGaussianSmooth, RandScaleIntensity, RandShiftIntensity)
        t = 0.1 * size
        self.transform = Compose([
            RandFlip(prob=0.5, spatial_axis=2),
            RandAffine(prob=0.5, scale_range=(0.1, 0.1, 0.1), translate_range=(t, t, t),
                       mode="bilinear", padding_mode="zeros",
                       device=None if device is None else __import__("torch").device(device)),
            RandGaussianSmooth(sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), sigma_z=(0.25, 1.0),
                               prob=0.2),
            RandShiftIntensity(offsets=0.1, prob=0.5),
            RandScaleIntensity(factors=0.1, prob=0.5),
            RandGaussianNoise(prob=0.2, mean=0.0, std=0.05),
        ])

    def __call__(self, x, seed: int):
        import torch
        self.transform.set_random_state(seed=int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            out = self.transform(x)
        out = out.as_tensor() if hasattr(out, "as_tensor") else out
        return torch.as_tensor(out, dtype=torch.float32).contiguous()


def make_augment(settings, info: ArchInfo, device: str | None = None) -> Callable | None:
    """The augmentation of a run (None when off); ``device`` for one that runs on a GPU."""
    if not settings.augment:
        return None
    if info.kind == "3d":
        if getattr(settings, "augmentation", "default") != "default":
            raise Her2Error(f"augmentation {settings.augmentation} is 2-D only",
                            hint="use augmentation default for a 3-D network")
        return Augment3D(int(settings.size), device=device)
    if getattr(settings, "augmentation", "default") == "crop_flip":
        return AugmentCropFlip(int(settings.size))
    return Augment2D(settings.sequence)


def augment_on_device(settings, info: ArchInfo, device: str) -> bool:
    """Where augmentation runs: "auto" = on the GPU for 3-D volumes on CUDA (a 96^3 affine
    resampling costs ~90 ms on one CPU core), in the DataLoader workers otherwise."""
    where = settings.augment_on
    if where == "auto":
        return info.kind == "3d" and str(device).startswith("cuda")
    return where == "device"


# ---------------------------------------------------------------- datasets
def _as_her2(exc: Exception, case_id: str) -> Her2Error:
    from ..features.extract import _as_her2 as as_her2
    return as_her2(exc, case_id)


class DecodeDataset:
    """Item i: (case_id, CaseInput or None, Her2Error or None); errors never raised."""

    def __init__(self, items: Sequence[tuple[str, Any]], settings, info: ArchInfo):
        self.items = list(items)
        self.settings = settings
        self.info = info

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        cid, files = self.items[i]
        try:
            image, mask = load_case_image(files, self.settings.sequence)
            ci = prepare_input(image, mask, self.settings, self.info, case_id=cid)
            ci.crop = None   # geometry is not needed for training; keep the item small
            return cid, ci, None
        except Exception as exc:  # one case's problem; the others go on
            return cid, None, _as_her2(exc, cid)


def _first(batch):
    return batch


def worker_init(_: int) -> None:
    import SimpleITK as sitk
    import torch
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    torch.set_num_threads(1)


def decode_cases(items: Sequence[tuple[str, Any]], settings, info: ArchInfo, *, workers: int = 0,
                 progress: Callable[[int, int], Any] | None = None,
                 cancel=None) -> tuple[dict[str, Any], list[Her2Error]]:
    """{case_id: input tensor} of every good case, and one Her2Error per bad case."""
    import torch
    from torch.utils.data import DataLoader
    ds = DecodeDataset(items, settings, info)
    loader = DataLoader(ds, batch_size=1, shuffle=False, num_workers=int(workers),
                        collate_fn=_first, worker_init_fn=worker_init if workers else None)
    out: dict[str, Any] = {}
    errors: list[Her2Error] = []
    for n, batch in enumerate(loader, 1):
        for cid, ci, err in batch:
            if err is not None:
                log.warning("fine-tune: %s", err)
                errors.append(err)
            else:
                out[cid] = torch.from_numpy(ci.x)
        if progress is not None:
            progress(n, len(ds))
        if cancel is not None and cancel.is_set():
            break
    return out, errors


class TrainDataset:
    """Item (i, epoch): (augmented input i, label i); the augmentation seed is
    ``derive_seed(seed, fold, epoch, i)``."""

    def __init__(self, xs: Sequence[Any], ys: Sequence[float], augment: Callable | None,
                 seed: int, fold: int):
        self.xs = list(xs)
        self.ys = np.asarray(ys, dtype=np.float32)
        self.augment = augment
        self.seed = int(seed)
        self.fold = int(fold)

    def __len__(self) -> int:
        return len(self.xs)

    def seed_of(self, i: int, epoch: int) -> int:
        return derive_seed(self.seed, 11, self.fold, epoch, i)

    def __getitem__(self, key):
        i, epoch = key
        x = self.xs[i]
        if self.augment is not None:
            x = self.augment(x, self.seed_of(i, epoch))
        return x, self.ys[i], i


def epoch_batches(n: int, batch: int, seed: int, fold: int, epoch: int,
                  world: int = 1) -> list[list[int]]:
    """The global batches of one epoch: a seeded permutation cut into ``batch``-sized
    pieces; a last piece smaller than max(2, world) joins the previous batch (batch
    statistics need two cases, and every process needs one)."""
    perm = np.random.default_rng(derive_seed(seed, 13, fold, epoch)).permutation(n)
    out = [perm[i:i + batch].tolist() for i in range(0, n, batch)]
    if len(out) > 1 and len(out[-1]) < max(2, world):
        out[-2].extend(out.pop())
    return out


class EpochBatchSampler:
    """Batch sampler over epochs ``start .. epochs - 1`` in one pass: this process's
    share ``[(index, epoch), ...]`` of every global batch (``rank::world``).

    One DataLoader iterator then spans all epochs of a fold, so the workers keep
    augmenting the next epoch's first batches while the main process validates.
    """

    def __init__(self, n: int, batch: int, seed: int, fold: int, rank: int = 0, world: int = 1,
                 start: int = 0, epochs: int = 1):
        self.n, self.batch, self.seed, self.fold = int(n), int(batch), int(seed), int(fold)
        self.rank, self.world = int(rank), int(world)
        self.start, self.epochs = int(start), int(epochs)

    def global_batches(self, epoch: int) -> list[list[int]]:
        return epoch_batches(self.n, self.batch, self.seed, self.fold, epoch, self.world)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.global_batches(0))

    def __len__(self) -> int:
        return self.steps_per_epoch * max(0, self.epochs - self.start)

    def __iter__(self):
        for epoch in range(self.start, self.epochs):
            for b in self.global_batches(epoch):
                yield [(i, epoch) for i in b[self.rank::self.world]]


def collate_train(items):
    """(inputs, labels, case indices) of a batch."""
    import torch
    xs = torch.stack([it[0] for it in items])
    ys = torch.as_tensor(np.asarray([it[1] for it in items], dtype=np.float32))
    idx = torch.as_tensor([int(it[2]) for it in items], dtype=torch.long)
    return xs, ys, idx
