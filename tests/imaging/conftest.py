"""Tiny synthetic volumes with awkward geometry, and writers for every format.

Geometry used throughout: size (x, y, z) = (7, 6, 5), spacing (0.7, 0.9, 2.5) mm,
origin (12.5, -31.0, 47.25) mm, and a direction that is a rotation combined with
an axis flip.
"""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

SIZE = (7, 6, 5)              # x, y, z
SHAPE = SIZE[::-1]            # numpy (z, y, x)
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (12.5, -31.0, 47.25)


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


#: rotation + flip of y: left-handed (det -1), fine for NIfTI / NRRD / MHA.
DIR_FLIP = _rot("z", 0.3) @ _rot("x", 0.2) @ np.diag([1.0, -1.0, 1.0])
#: rotation + flip of x and y (det +1): the only kind DICOM stores in slice order.
DIR_DICOM = _rot("z", 0.3) @ _rot("x", 0.2) @ np.diag([-1.0, -1.0, 1.0])


def make_volume(direction=DIR_FLIP, dtype=np.float32, seed=0, size=SIZE, spacing=SPACING,
                origin=ORIGIN) -> sitk.Image:
    rng = np.random.default_rng(seed)
    shape = tuple(size[::-1])
    if np.issubdtype(np.dtype(dtype), np.integer):
        arr = rng.integers(-1000, 3000, size=shape).astype(dtype)
    else:
        arr = rng.normal(100.0, 30.0, size=shape).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    return img


def write_dicom_series(img: sitk.Image, folder: Path, uid: str, *, shuffle_seed: int = 1,
                       modality: str = "MR") -> list[Path]:
    """One file per slice with position / orientation / spacing tags; names shuffled."""
    folder.mkdir(parents=True, exist_ok=True)
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    iop = "\\".join(f"{v:.12f}" for v in (*d[:, 0], *d[:, 1]))
    sx, sy, sz = img.GetSpacing()
    nz = img.GetDepth()
    names = np.random.default_rng(shuffle_seed).permutation(nz)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(nz):
        s = img[:, :, k]
        tags = {
            "0008|0060": modality,
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": uid.rsplit(".", 1)[0] + ".99",
            "0020|000e": uid,
            "0020|0037": iop,
            "0020|0032": "\\".join(f"{v:.12f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k))),
            "0028|0030": f"{sy:.12f}\\{sx:.12f}",
            "0018|0050": f"{sz:.12f}",
            "0020|0013": str(k + 1),
            "0008|103e": "synthetic",
        }
        for key, value in tags.items():
            s.SetMetaData(key, value)
        # file names in an order unrelated to the slice position
        path = folder / f"IM{int(names[k]):04d}_{(7 * k) % nz}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(s)
        files.append(path)
    return files


@pytest.fixture
def vol():
    """Namespace of helpers and constants."""
    return types.SimpleNamespace(make_volume=make_volume, write_dicom_series=write_dicom_series,
                                 SIZE=SIZE, SHAPE=SHAPE, SPACING=SPACING, ORIGIN=ORIGIN,
                                 DIR_FLIP=DIR_FLIP, DIR_DICOM=DIR_DICOM)
