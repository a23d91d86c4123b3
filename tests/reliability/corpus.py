"""The bad-input corpus: every way a user's files can be wrong, made on the fly.

Nothing here is a committed binary: each item is built by a function from a
small synthetic cohort (two cases, ``syn-0000`` good, ``syn-0001`` broken) or
as a loose upload file. ``run_corpus.py`` feeds every item through every entry
point and classifies the outcome as a clean error, an accepted input, or a
crash.

Item kinds:
- "case": a cohort whose case ``BAD`` (syn-0001) has one broken file; the good
  case must stay usable and the message must name ``BAD`` and ``file``.
- "table": a cohort whose cohort.csv is broken; the message must name cohort.csv
  (and the case where one row is at fault).
- "upload": a single file as a user would upload it (image, mask, DICOM zip).

``expect`` is "error" (must be refused with a clean message) or "ok" (valid
input that must load), or "either" (refusing or accepting are both correct,
crashing is not).
"""
from __future__ import annotations

import gzip
import io
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

GOOD = "syn-0000"
BAD = "syn-0001"


@dataclass
class Item:
    name: str
    kind: str                 # "case" | "table" | "upload"
    expect: str               # "error" | "ok" | "either"
    file: str                 # the file the message must name (relative name)
    build: Callable[[Path], Path]
    sequence: str | None = None   # for uploads: how the app would load it
    file_loads: bool = False      # the file itself is a readable image; the case is what is wrong


# ------------------------------------------------------------------ helpers
def base_cohort(dest: Path, template: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


def make_template(dest: Path) -> Path:
    from her2core.synthetic import make_cohort
    return make_cohort(dest, n=2, seed=7, modalities="both", shape=(24, 24, 8), us_size=64,
                       reader2_fraction=0.0)


def _case(root: Path) -> Path:
    return root / "cases" / BAD


def _ref(root: Path) -> sitk.Image:
    return sitk.ReadImage(str(_case(root) / "DCE.nii.gz"))


def _write_like(arr: np.ndarray, ref: sitk.Image, path: Path) -> None:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(path))


def _nifti_huge_header(path: Path) -> None:
    """A valid NIfTI-1 header that claims 60000 x 60000 x 60000 int16 voxels."""
    hdr = bytearray(352)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, 60000 % 32768, 30000, 30000, 1, 1, 1, 1)
    struct.pack_into("<h", hdr, 70, 4)        # datatype int16
    struct.pack_into("<h", hdr, 72, 16)       # bitpix
    struct.pack_into("<8f", hdr, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", hdr, 108, 352.0)   # vox_offset
    hdr[344:348] = b"n+1\0"
    path.write_bytes(gzip.compress(bytes(hdr) + b"\0" * 64))


# ------------------------------------------------------------------ case items
def _replace(name: str, fn: Callable[[Path, Path], None]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        fn(_case(root), _case(root) / name)
        return root
    return build


def _zero(case: Path, p: Path) -> None:
    p.write_bytes(b"")


def _truncate(case: Path, p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])


def _truncate_raw_nii(case: Path, p: Path) -> None:
    img = sitk.ReadImage(str(p))
    raw = case / "DCE.nii"
    sitk.WriteImage(img, str(raw))
    p.unlink()
    data = raw.read_bytes()
    raw.write_bytes(data[: 352 + 100])


def _text(case: Path, p: Path) -> None:
    p.write_bytes(b"case_id,her2\nthis is a text file, not an image\n")


def _huge(case: Path, p: Path) -> None:
    _nifti_huge_header(p)


def _four_d(case: Path, p: Path) -> None:
    shutil.copy(case / "DCE_phases.nii.gz", p)


def _nan(case: Path, p: Path) -> None:
    ref = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(ref).astype(np.float32)
    arr[2, 3, 4] = np.nan
    _write_like(arr, ref, p)


def _inf(case: Path, p: Path) -> None:
    ref = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(ref).astype(np.float32)
    arr[1, 1, 1] = np.inf
    _write_like(arr, ref, p)


def _one_voxel(case: Path, p: Path) -> None:
    img = sitk.Image(1, 1, 1, sitk.sitkInt16)
    sitk.WriteImage(img, str(p))


def _mask_empty(case: Path, p: Path) -> None:
    ref = sitk.ReadImage(str(p))
    _write_like(np.zeros(sitk.GetArrayFromImage(ref).shape, np.uint8), ref, p)


def _mask_multilabel(case: Path, p: Path) -> None:
    ref = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(ref).astype(np.uint8)
    zz, yy, xx = np.nonzero(arr)
    arr[zz[: len(zz) // 2], yy[: len(zz) // 2], xx[: len(zz) // 2]] = 2
    _write_like(arr, ref, p)


def _mask_other_grid(case: Path, p: Path) -> None:
    ref = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(ref)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([s * 1.5 for s in ref.GetSpacing()])
    img.SetOrigin(ref.GetOrigin())
    img.SetDirection(ref.GetDirection())
    sitk.WriteImage(img, str(p))


def _mask_outside(case: Path, p: Path) -> None:
    ref = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(ref)
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    img.SetOrigin([o + 500.0 for o in ref.GetOrigin()])
    sitk.WriteImage(img, str(p))


def _mask_soft(case: Path, p: Path) -> None:
    ref = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(ref).astype(np.float32) * 0.37
    _write_like(arr, ref, p)


def _rgb_png(case: Path, p: Path) -> None:
    from PIL import Image as PILImage
    g = np.asarray(PILImage.open(p).convert("L"))
    rgb = np.stack([g, g // 2, 255 - g], axis=-1).astype(np.uint8)
    PILImage.fromarray(rgb, "RGB").save(p)


def _png16(case: Path, p: Path) -> None:
    from PIL import Image as PILImage
    g = np.asarray(PILImage.open(p).convert("L")).astype(np.uint16) * 257
    PILImage.fromarray(g).save(p)


def _png_rgb_mask(case: Path, p: Path) -> None:
    from PIL import Image as PILImage
    m = np.asarray(PILImage.open(p).convert("L")) > 0
    rgb = np.zeros(m.shape + (3,), np.uint8)
    rgb[m] = (255, 0, 0)
    rgb[:3, :3] = (0, 255, 0)
    PILImage.fromarray(rgb, "RGB").save(p)


def _dicom_series(case: Path, name: str, *, drop: int | None = None, jitter: bool = False,
                  second_series: bool = False) -> None:
    """Replace case/<name>.nii.gz by a DICOM folder case/<name>/ with a defect."""
    src = case / f"{name}.nii.gz"
    img = sitk.Cast(sitk.ReadImage(str(src)), sitk.sitkInt16)
    src.unlink()
    folder = case / name
    folder.mkdir()
    _write_dicom(img, folder, "1.2.826.0.1.3680043.2.1125.1", drop=drop, jitter=jitter)
    if second_series:
        _write_dicom(img, folder, "1.2.826.0.1.3680043.2.1125.2", prefix="b")


def _write_dicom(img: sitk.Image, folder: Path, uid: str, *, drop: int | None = None,
                 jitter: bool = False, prefix: str = "a") -> None:
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = img.GetDirection()
    for z in range(img.GetDepth()):
        if drop is not None and z == drop:
            continue
        sl = img[:, :, z]
        pos = list(img.TransformIndexToPhysicalPoint((0, 0, z)))
        if jitter and z % 2 == 1:
            pos[2] += 0.9 * img.GetSpacing()[2]
        for tag, value in [
            ("0008|0060", "MR"), ("0020|000e", uid), ("0020|000d", uid + ".0"),
            ("0010|0010", "Corpus^Patient"), ("0010|0020", "PID-CORPUS"),
            ("0020|0013", str(z + 1)),
            ("0020|0032", "\\".join(f"{v:.6f}" for v in pos)),
            ("0020|0037", "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
            ("0028|0030", f"{img.GetSpacing()[1]:.6f}\\{img.GetSpacing()[0]:.6f}"),
            ("0018|0050", f"{img.GetSpacing()[2]:.6f}"),
            ("0008|0018", f"{uid}.{z + 1}"),
        ]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{(z * 7919) % 97:03d}_{z}.dcm"))
        writer.Execute(sl)


def _dicom_missing(root: Path) -> Path:
    _dicom_series(_case(root), "T1", drop=3)
    return root


def _dicom_mixed(root: Path) -> Path:
    _dicom_series(_case(root), "T1", second_series=True)
    return root


def _dicom_spacing(root: Path) -> Path:
    _dicom_series(_case(root), "T1", jitter=True)
    return root


# ------------------------------------------------------------------ table items
def _table(transform: Callable[[str], bytes]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        p = root / "cohort.csv"
        p.write_bytes(transform(p.read_text(encoding="utf-8")))
        return root
    return build


def _set_cell(text: str, case: str, column: str, value: str) -> str:
    lines = text.splitlines()
    header = lines[0].split(",")
    col = header.index(column)
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[0] == case:
            cells[col] = value
        out.append(",".join(cells))
    return "\n".join(out) + "\n"


def _dup(text: str) -> bytes:
    lines = text.splitlines()
    return ("\n".join(lines + [lines[1]]) + "\n").encode()


def _unsafe(text: str) -> bytes:
    return text.replace(BAD, "../../etc").encode()


def _rename_case(new_id: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        p = root / "cohort.csv"
        p.write_text(p.read_text(encoding="utf-8").replace(BAD, new_id))
        return root
    return build


# ------------------------------------------------------------------ upload items
def _upload(fn: Callable[[Path], Path]) -> Callable[[Path], Path]:
    return fn


def _zip_traversal(dest: Path) -> Path:
    p = dest / "DCE.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("../../evil.dcm", b"DICM" * 10)
        z.writestr("ok/slice1.dcm", b"\0" * 128 + b"DICM")
    return p


def _zip_absolute(dest: Path) -> Path:
    p = dest / "DCE.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("/tmp/evil.dcm", b"DICM" * 10)
    return p


def _zip_bomb(dest: Path) -> Path:
    p = dest / "DCE.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for i in range(3):
            with z.open(f"s{i}.dcm", "w", force_zip64=True) as f:
                chunk = b"\0" * (1 << 24)
                for _ in range(64):          # 1 GiB of zeros per entry, ~1 MB compressed
                    f.write(chunk)
    return p


def _zip_empty(dest: Path) -> Path:
    p = dest / "DCE.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "no dicom here")
    return p


def _zip_corrupt(dest: Path) -> Path:
    p = dest / "DCE.zip"
    p.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    return p


def _upload_text_png(dest: Path) -> Path:
    p = dest / "US.png"
    p.write_text("not a png")
    return p


def _upload_truncated_png(dest: Path) -> Path:
    from PIL import Image as PILImage
    p = dest / "US.png"
    PILImage.fromarray((np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:60])
    return p


def _upload_pickle(dest: Path) -> Path:
    import pickle
    p = dest / "T1.nii.gz"
    p.write_bytes(pickle.dumps({"not": "an image"}))
    return p


def _upload_jpg_as_nii(dest: Path) -> Path:
    from PIL import Image as PILImage
    p = dest / "T2.nii.gz"
    buf = io.BytesIO()
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="JPEG")
    p.write_bytes(buf.getvalue())
    return p


def _upload_bmp_rgb(dest: Path) -> Path:
    from PIL import Image as PILImage
    p = dest / "US.bmp"
    arr = np.zeros((40, 50, 3), np.uint8)
    arr[10:30, 10:40] = (200, 120, 40)
    PILImage.fromarray(arr, "RGB").save(p)
    return p


def items() -> list[Item]:
    img = "DCE.nii.gz"
    msk = "mask.nii.gz"
    out = [
        Item("zero-byte NIfTI", "case", "error", img, _replace(img, _zero)),
        Item("truncated NIfTI (.nii.gz)", "case", "error", img, _replace(img, _truncate)),
        Item("truncated NIfTI (.nii)", "case", "error", "DCE.nii", _replace(img, _truncate_raw_nii)),
        Item("text renamed as NIfTI", "case", "error", img, _replace(img, _text)),
        Item("header claims 60000^3 voxels", "case", "error", img, _replace(img, _huge)),
        Item("4-D where 3-D expected", "case", "error", img, _replace(img, _four_d)),
        Item("NaN voxel", "case", "error", img, _replace(img, _nan)),
        Item("Inf voxel", "case", "error", img, _replace(img, _inf)),
        Item("one-voxel image", "case", "error", img, _replace(img, _one_voxel), file_loads=True),
        Item("zero-byte T2", "case", "error", "T2.nii.gz", _replace("T2.nii.gz", _zero)),
        Item("text as T1", "case", "error", "T1.nii.gz", _replace("T1.nii.gz", _text)),
        Item("4-D T2", "case", "error", "T2.nii.gz", _replace("T2.nii.gz", _four_d)),
        Item("truncated DCE phases", "case", "error", "DCE_phases.nii.gz",
             _replace("DCE_phases.nii.gz", _truncate)),
        Item("3-D where DCE phases (4-D) expected", "case", "error", "DCE_phases.nii.gz",
             _replace("DCE_phases.nii.gz", lambda c, p: shutil.copy(c / "DCE.nii.gz", p))),
        Item("empty mask", "case", "error", msk, _replace(msk, _mask_empty)),
        Item("multi-label mask", "case", "error", msk, _replace(msk, _mask_multilabel)),
        Item("mask on another grid", "case", "error", msk, _replace(msk, _mask_other_grid)),
        Item("mask outside the image", "case", "error", msk, _replace(msk, _mask_outside)),
        Item("zero-byte mask", "case", "error", msk, _replace(msk, _zero)),
        Item("non-binary (soft) mask", "case", "either", msk, _replace(msk, _mask_soft)),
        Item("RGB ultrasound PNG", "case", "ok", "US.png", _replace("US.png", _rgb_png)),
        Item("16-bit ultrasound PNG", "case", "ok", "US.png", _replace("US.png", _png16)),
        Item("text renamed as PNG", "case", "error", "US.png", _replace("US.png", _text)),
        Item("truncated PNG", "case", "error", "US.png", _replace("US.png", _truncate)),
        Item("zero-byte ultrasound mask", "case", "error", "US_mask.png",
             _replace("US_mask.png", _zero)),
        Item("RGB ultrasound mask with two colours", "case", "either", "US_mask.png",
             _replace("US_mask.png", _png_rgb_mask)),
        Item("DICOM series with a missing slice", "case", "error", "T1", _dicom_missing),
        Item("DICOM folder with two series", "case", "error", "T1", _dicom_mixed),
        Item("DICOM series with inconsistent spacing", "case", "error", "T1", _dicom_spacing),
        Item("CSV: non-numeric age", "table", "error", "cohort.csv",
             _table(lambda t: _set_cell(t, BAD, "age", "fifty").encode())),
        Item("CSV: her2 = 2", "table", "error", "cohort.csv",
             _table(lambda t: _set_cell(t, BAD, "her2", "2").encode())),
        Item("CSV: ki67 = 150 %", "table", "error", "cohort.csv",
             _table(lambda t: _set_cell(t, BAD, "ki67", "150").encode())),
        Item("CSV: age = -3", "table", "error", "cohort.csv",
             _table(lambda t: _set_cell(t, BAD, "age", "-3").encode())),
        Item("CSV: unknown enhancement curve", "table", "error", "cohort.csv",
             _table(lambda t: _set_cell(t, BAD, "enhancement_curve", "wavy").encode())),
        Item("CSV: her2_ihc = 4+", "table", "error", "cohort.csv",
             _table(lambda t: _set_cell(t, BAD, "her2_ihc", "4+").encode())),
        Item("CSV: duplicate case id", "table", "error", "cohort.csv", _table(_dup)),
        Item("CSV: path-traversal case id", "table", "error", "cohort.csv", _table(_unsafe)),
        Item("CSV: case id with a space", "table", "error", "cohort.csv", _rename_case("syn 0001")),
        Item("CSV: UTF-8 BOM", "table", "ok", "cohort.csv",
             _table(lambda t: b"\xef\xbb\xbf" + t.encode())),
        Item("CSV: Latin-1 bytes", "table", "error", "cohort.csv",
             _table(lambda t: _set_cell(t, BAD, "center", "Créteil").encode("latin-1"))),
        Item("CSV: UTF-16", "table", "error", "cohort.csv", _table(lambda t: t.encode("utf-16"))),
        Item("CSV: no case_id column", "table", "error", "cohort.csv",
             _table(lambda t: t.replace("case_id", "patient", 1).encode())),
        Item("CSV: empty file", "table", "error", "cohort.csv", _table(lambda t: b"")),
        Item("CSV: binary garbage", "table", "error", "cohort.csv",
             _table(lambda t: bytes(range(256)) * 4)),
        Item("CSV: semicolon separated", "table", "error", "cohort.csv",
             _table(lambda t: t.replace(",", ";").encode())),
        Item("CSV: ragged row", "table", "error", "cohort.csv",
             _table(lambda t: t.replace(f"{BAD},", f"{BAD},1,2,3,4,", 1).rstrip("\n").encode()
                    + b",x,y,z,extra\n")),
        Item("upload: zip with ../ entry", "upload", "error", "DCE.zip", _zip_traversal, "DCE"),
        Item("upload: zip with absolute path", "upload", "error", "DCE.zip", _zip_absolute, "DCE"),
        Item("upload: zip bomb (3 GiB of zeros)", "upload", "error", "DCE.zip", _zip_bomb, "DCE"),
        Item("upload: zip without DICOM", "upload", "error", "DCE.zip", _zip_empty, "DCE"),
        Item("upload: corrupt zip", "upload", "error", "DCE.zip", _zip_corrupt, "DCE"),
        Item("upload: text as PNG", "upload", "error", "US.png", _upload_text_png, "US"),
        Item("upload: truncated PNG", "upload", "error", "US.png", _upload_truncated_png, "US"),
        Item("upload: pickle renamed .nii.gz", "upload", "error", "T1.nii.gz", _upload_pickle, "T1"),
        Item("upload: JPEG renamed .nii.gz", "upload", "error", "T2.nii.gz", _upload_jpg_as_nii, "T2"),
        Item("upload: RGB BMP ultrasound", "upload", "ok", "US.bmp", _upload_bmp_rgb, "US"),
    ]
    return out
