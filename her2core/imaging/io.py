"""Reading and writing images; the one place for SimpleITK (LPS) <-> nibabel (RAS).

Every reader returns an :class:`~her2core.imaging.image.Image` and every failure a
user can cause is a :class:`~her2core.errors.Her2Error` naming the file:

* missing / empty / corrupt / truncated / mis-named file -> ``ImageLoadError``
* declared size above ``max_voxels`` (checked from the header, before any voxel
  is allocated), zip expanding above ``max_zip_bytes`` -> ``InputLimitError``
* wrong dimensionality for the sequence (e.g. a 4-D file given as T1),
  NaN / Inf voxels -> ``ImageLoadError``

Formats: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd),
a DICOM series in a folder or a .zip (slices ordered by their position along the
slice normal, series chosen by SeriesInstanceUID), single DICOM files (2-D
ultrasound), PNG / JPEG / BMP (2-D ultrasound; colour collapsed to grey with
ITU-R BT.601 luminance weights, 16-bit grey kept as uint16).
"""
from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import nibabel as nib
import numpy as np
import pydicom
import pydicom.errors
import SimpleITK as sitk

from her2core import deid
from her2core.errors import Her2Error, ImageLoadError, InputLimitError

from .image import Image

log = logging.getLogger(__name__)

#: Largest declared voxel count accepted by default (512 M voxels).
DEFAULT_MAX_VOXELS = 512 * 1024 ** 2
#: Largest total uncompressed size of a zip accepted by default (2 GiB).
DEFAULT_MAX_ZIP_BYTES = 2 * 1024 ** 3
#: Largest number of members of a zip accepted by default.
DEFAULT_MAX_ZIP_MEMBERS = 100_000

#: Suffix -> (format name, SimpleITK ImageIO forced for it).
VOLUME_FORMATS = {
    ".nii.gz": ("NIfTI", "NiftiImageIO"),
    ".nii": ("NIfTI", "NiftiImageIO"),
    ".nrrd": ("NRRD", "NrrdImageIO"),
    ".nhdr": ("NRRD", "NrrdImageIO"),
    ".mha": ("MetaImage", "MetaImageIO"),
    ".mhd": ("MetaImage", "MetaImageIO"),
}
PICTURE_FORMATS = {
    ".png": ("PNG", "PNGImageIO"),
    ".jpg": ("JPEG", "JPEGImageIO"),
    ".jpeg": ("JPEG", "JPEGImageIO"),
    ".bmp": ("BMP", "BMPImageIO"),
}
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")

#: ITU-R BT.601 luma weights used to collapse RGB(A) to grey.
LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)

#: Dimensionality each cohort sequence must have (None: not checked).
EXPECTED_NDIM = {
    "T1": 3, "T2": 3, "DCE": 3, "DCE_phases": 4, "mask": None, "mask_reader2": None,
    "US": 2, "US_mask": 2,
}
_MODALITY = {"T1": "MR", "T2": "MR", "DCE": "MR", "DCE_phases": "MR", "US": "US",
             "mask": "SEG", "mask_reader2": "SEG", "US_mask": "SEG"}

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# ============================================================ public API
def load_image(path: str | os.PathLike, sequence: str | None = None,
               modality: str | None = None, series_uid: str | None = None, *,
               expected_ndim: int | None = None, spacing: Sequence[float] | None = None,
               max_voxels: int = DEFAULT_MAX_VOXELS,
               max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES,
               case_id: str | None = None) -> Image:
    """Load any supported image file, DICOM folder or DICOM zip as an Image.

    Args:
        path: file, DICOM folder or .zip of a DICOM series.
        sequence: what it is ("T1", "T2", "DCE", "DCE_phases", "US", "mask", ...);
            also sets the expected dimensionality (see ``EXPECTED_NDIM``) and the
            default modality.
        modality: "MR", "US", "SEG"; default from ``sequence``.
        series_uid: SeriesInstanceUID to pick when a folder / zip holds several.
        expected_ndim: 2, 3 or 4 (phases); overrides the default of ``sequence``.
            A 3-D file with a single slice is accepted as 2-D.
        spacing: (x, y) pixel size in mm for 2-D pictures that carry none.
        max_voxels: refuse images whose header declares more voxels.
        max_zip_bytes: refuse zips that expand to more bytes.
        case_id: named in errors.

    Raises:
        ImageLoadError, InputLimitError (both name the file).
    """
    path = Path(path)
    if expected_ndim is None and sequence is not None:
        expected_ndim = EXPECTED_NDIM.get(sequence)
    if modality is None and sequence is not None:
        modality = _MODALITY.get(sequence)
    try:
        image = _load_any(path, series_uid=series_uid, max_voxels=max_voxels,
                          max_zip_bytes=max_zip_bytes, spacing=spacing,
                          expected_ndim=expected_ndim)
        image = _check_dimension(image, expected_ndim, path)
        _check_finite(image, path)
    except Her2Error as err:
        raise err.with_context(case_id=case_id, file=path)
    image.sequence = sequence
    image.modality = modality if modality is not None else image.modality
    image.source = str(path)
    log.debug("loaded %s: %r", path.name, image)
    return image


def save_image(image: Image, path: str | os.PathLike) -> Path:
    """Write an Image (any format SimpleITK writes from the suffix) with its geometry.

    PNG / JPEG / BMP need 2-D uint8 (or uint16 for PNG) data.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = _suffix(path)
    if suffix in PICTURE_FORMATS:
        ok = {np.dtype(np.uint8), np.dtype(np.bool_)} | (
            {np.dtype(np.uint16)} if suffix == ".png" else set())
        if image.ndim != 2 or image.array.dtype not in ok:
            raise ValueError(f"save_image: {suffix} needs a 2-D uint8 image, "
                             f"got {image.array.ndim}-D {image.array.dtype}")
    compress = suffix in (".nii.gz", ".nrrd", ".mha")
    sitk.WriteImage(image.to_sitk(), str(path), compress)
    return path


# ------------------------------------------------------------ header only
@dataclass(frozen=True)
class ImageInfo:
    """What a header declares, read without loading voxels."""

    dimension: int
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    n_components: int
    pixel_type: str

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.size, dtype=np.int64))


def read_image_info(path: str | os.PathLike) -> ImageInfo:
    """Header of a NIfTI / NRRD / MHA / PNG / JPEG / BMP / DICOM file (no voxels read)."""
    path = Path(path)
    _check_file(path)
    reader = _header_reader(path)
    return ImageInfo(reader.GetDimension(), tuple(reader.GetSize()), tuple(reader.GetSpacing()),
                     tuple(reader.GetOrigin()), tuple(reader.GetDirection()),
                     reader.GetNumberOfComponents(),
                     sitk.GetPixelIDValueAsString(reader.GetPixelID()))


# ============================================================ nibabel (RAS)
def lps_affine(image: Image) -> np.ndarray:
    """4 x 4 affine (index (x, y, z, 1) -> LPS mm); 2-D images as one-slice 3-D."""
    if image.ndim == 3:
        return image.affine()
    a = np.eye(4)
    a[:2, :2] = image.direction_matrix * np.asarray(image.spacing)[None, :]
    a[:2, 3] = image.origin
    return a


def ras_affine(image: Image) -> np.ndarray:
    """4 x 4 affine (index -> RAS mm), the nibabel / NIfTI convention."""
    return LPS_TO_RAS @ lps_affine(image)


def geometry_from_affine(affine: np.ndarray, *, ras: bool = True,
                         tol: float = 1e-4) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(spacing, origin LPS, direction) from a 4 x 4 affine (RAS by default).

    Raises ValueError for a sheared affine (columns not orthogonal).
    """
    a = np.asarray(affine, dtype=float)
    if ras:
        a = LPS_TO_RAS @ a
    m = a[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"affine has a zero column: {a.tolist()}")
    direction = m / spacing[None, :]
    if np.max(np.abs(direction.T @ direction - np.eye(3))) > tol:
        raise ValueError("affine is sheared (its columns are not orthogonal)")
    return tuple(spacing), tuple(a[:3, 3]), tuple(direction.ravel())


def to_nibabel(image: Image) -> nib.Nifti1Image:
    """Nifti1Image (data in (x, y, z[, t]) order, RAS affine) of an Image.

    A 2-D image becomes a one-slice 3-D volume.
    """
    arr = image.array
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    data = np.transpose(arr)  # (z,y,x)->(x,y,z); (t,z,y,x)->(x,y,z,t)
    if image.ndim == 2:
        data = data[:, :, None]
    affine = ras_affine(image)
    nii = nib.Nifti1Image(data, affine)
    nii.set_qform(affine, code=1)
    nii.set_sform(affine, code=1)
    if image.is_phases:
        nii.header.set_xyzt_units("mm", "sec")
    else:
        nii.header.set_xyzt_units("mm")
    return nii


def from_nibabel(nii: nib.spatialimages.SpatialImage, *, sequence: str | None = None,
                 modality: str | None = None, source: str | None = None) -> Image:
    """Image from a nibabel image (RAS affine -> LPS geometry; data transposed)."""
    data = np.asanyarray(nii.dataobj)
    if data.ndim not in (3, 4):
        raise ImageLoadError(f"nibabel image is {data.ndim}-D; expected 3-D or 4-D", file=source)
    try:
        spacing, origin, direction = geometry_from_affine(nii.affine, ras=True)
    except ValueError as exc:
        raise ImageLoadError(f"unusable affine: {exc}", file=source) from None
    return Image(np.ascontiguousarray(np.transpose(data)), spacing, origin, direction,
                 sequence=sequence, modality=modality, source=source)


# ============================================================ DICOM
@dataclass
class DicomSeriesInfo:
    """One series found in a folder or zip (no patient identifiers, no dates).

    ``n_slices`` counts image planes (files, or frames of a multi-frame file);
    ``time_s`` is the acquisition (else series / content) time of the day in
    seconds, used only to order and space phases -- :func:`list_series` turns it
    into ``time_offset_s`` from the earliest series listed. ``temporal_positions``
    is the number of distinct TemporalPositionIdentifier values (a DCE stored as
    one series with several phases has more than one).
    """

    uid: str
    files: list[str] = field(default_factory=list)  # relative to the folder / zip root
    modality: str | None = None
    description: str | None = None
    rows: int | None = None
    columns: int | None = None
    series_number: int | None = None
    n_slices: int = 0
    temporal_position: int | None = None
    temporal_positions: int = 1
    time_s: float | None = None
    time_offset_s: float | None = None
    sop_class_uid: str | None = None
    frame_of_reference_uid: str | None = None

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def is_image(self) -> bool:
        """False for DICOM SEG, RTSTRUCT, SR, presentation states and other non-image objects."""
        return (self.sop_class_uid not in NON_IMAGE_SOP_CLASSES) and \
            (self.modality or "") not in NON_IMAGE_MODALITIES and bool(self.rows)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "uid", "modality", "description", "rows", "columns", "series_number", "n_slices",
            "temporal_position", "temporal_positions", "time_offset_s", "sop_class_uid")}
        d["n_files"] = self.n_files
        return d


#: SOP classes that hold no image pixels to view (SEG, RTSTRUCT, SR, KOS, presentation state)
NON_IMAGE_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.481.3",
    "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22",
    "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.59",
    "1.2.840.10008.5.1.4.1.1.11.1",
})
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "SR", "KO", "PR", "REG", "RTPLAN"})


def list_dicom_series(path: str | os.PathLike, *,
                      max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES,
                      images_only: bool = False) -> list[DicomSeriesInfo]:
    """The DICOM series in a folder (searched recursively) or a .zip.

    ``images_only`` also lists series without pixel rows (SEG, RTSTRUCT, SR) when False.
    """
    path = Path(path)
    with _dicom_root(path, max_zip_bytes) as root:
        series = _scan_dicom(root, path, images_only=images_only)
        return [_series_info(uid, root, items) for uid, items in series.items()]


def load_dicom_series_set(path: str | os.PathLike, uids: Sequence[str], *,
                          split_temporal: bool = False,
                          max_voxels: int = DEFAULT_MAX_VOXELS,
                          max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> dict[str, list[Image]]:
    """Several series of one folder / zip, scanned (and a zip extracted) once.

    Returns {uid: [Image]}: one Image per series, or with ``split_temporal`` one per
    TemporalPositionIdentifier of a series that holds several (a DCE stored as one
    series), in temporal order.
    """
    path = Path(path)
    out: dict[str, list[Image]] = {}
    try:
        with _dicom_root(path, max_zip_bytes) as root:
            series = _scan_dicom(root, path)
            for uid in uids:
                uid = _choose_series(series, uid, path)
                groups = _temporal_groups(series[uid]) if split_temporal else [series[uid]]
                images = []
                for items in groups:
                    image = _read_dicom_series(items, path, max_voxels)
                    image.source = str(path)
                    image.meta["series_uid"] = uid
                    images.append(image)
                out[uid] = images
    except Her2Error as err:
        raise err.with_context(file=path)
    return out


def load_dicom_reference(path: str | os.PathLike, series_uid: str | None = None, *,
                         max_voxels: int = DEFAULT_MAX_VOXELS,
                         max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES
                         ) -> tuple[Image, list[pydicom.Dataset]]:
    """A single-frame DICOM series as an Image plus its slice headers (no pixels), the
    headers in the Image's slice order (array index 0 first): what a DICOM SEG or an
    RTSTRUCT refers to. Identifiers in the headers are registered for log redaction."""
    path = Path(path)
    try:
        with _dicom_root(path, max_zip_bytes) as root:
            series = _scan_dicom(root, path)
            uid = _choose_series(series, series_uid, path)
            items = series[uid]
            if len(items) < 2:
                raise ImageLoadError(
                    "the reference series has a single file; a volume of one file per slice "
                    "is needed", file=path, hint="export the series as one file per slice")
            image = _read_dicom_series(items, path, max_voxels)
            files, *_ = _order_slices(items, path)
            headers = []
            for f in files:
                ds = pydicom.dcmread(str(f), stop_before_pixels=True)
                deid.register_identifiers(deid.identifiers_of(ds))
                headers.append(ds)
    except Her2Error as err:
        raise err.with_context(file=path)
    image.source = str(path)
    image.meta["series_uid"] = uid
    return image, headers


def _temporal_groups(items):
    tps = [ds.get("TemporalPositionIdentifier", None) for _, ds in items]
    if any(t is None for t in tps) or len(set(int(t) for t in tps)) < 2:
        return [items]
    groups: dict[int, list] = {}
    for item, t in zip(items, tps):
        groups.setdefault(int(t), []).append(item)
    return [groups[k] for k in sorted(groups)]


def load_dicom_series(path: str | os.PathLike, series_uid: str | None = None, *,
                      max_voxels: int = DEFAULT_MAX_VOXELS,
                      max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> Image:
    """One DICOM series from a folder or a .zip as an Image (LPS geometry).

    Slices are ordered by their ImagePositionPatient projected on the slice
    normal (row x column cosines), never by file name. When several series are
    present, ``series_uid`` must name one (the error lists them).
    """
    path = Path(path)
    try:
        with _dicom_root(path, max_zip_bytes) as root:
            series = _scan_dicom(root, path)
            uid = _choose_series(series, series_uid, path)
            image = _read_dicom_series(series[uid], path, max_voxels)
    except Her2Error as err:
        raise err.with_context(file=path)
    image.source = str(path)
    return image


# ============================================================ internals
def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageLoadError("file not found", file=path, hint="check the path and the file name")
    if path.is_file() and path.stat().st_size == 0:
        raise ImageLoadError("file is empty (0 bytes)", file=path,
                             hint="the upload or copy may have failed; provide the file again")


def _sitk_reason(exc: Exception) -> str:
    """The useful line of a SimpleITK exception, without source paths."""
    text = str(exc)
    for marker in ("sitk::ERROR:", "ERROR:"):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    text = " ".join(text.split())
    # ITK object pointers ("NiftiImageIO(0x5617...): ") and "Reason: Success" say nothing
    text = re.sub(r"\b\w+\(0x[0-9a-fA-F]+\):\s*", "", text)
    text = re.sub(r"\s*Reason: Success\b", "", text)
    return text[:200]


def _header_reader(path: Path) -> sitk.ImageFileReader:
    suffix = _suffix(path)
    fmt = VOLUME_FORMATS.get(suffix) or PICTURE_FORMATS.get(suffix)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if fmt is not None:
        reader.SetImageIO(fmt[1])
    elif suffix in DICOM_SUFFIXES or suffix == "":
        reader.SetImageIO("GDCMImageIO")
    name = fmt[0] if fmt else "DICOM"
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageLoadError(
            f"cannot read the {name} header: {_sitk_reason(exc)}", file=path,
            hint=f"the file is corrupt, truncated or not a {name} file") from None
    return reader


def _execute(reader: sitk.ImageFileReader | sitk.ImageSeriesReader, path: Path, name: str) -> sitk.Image:
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise ImageLoadError(
            f"cannot read the {name} voxel data: {_sitk_reason(exc)}", file=path,
            hint="the file is probably truncated or corrupt; export it again") from None


def _check_nifti_complete(path: Path) -> None:
    """Check NIfTI voxel data ourselves before SimpleITK reads it.

    ITK zero-fills truncated NIfTI data and turns NaN / Inf into 0 without a word,
    so the data block is streamed once (in chunks, nothing kept): its length is
    compared with what the header declares, the gzip CRC is verified, and
    floating-point voxels are checked for NaN / Inf.
    """
    try:
        nii = nib.load(str(path))
        hdr = nii.header
        dtype = hdr.get_data_dtype()
        offset = int(nii.dataobj.offset)
        need = int(np.prod(hdr.get_data_shape(), dtype=np.int64)) * dtype.itemsize
    except Exception as exc:  # noqa: BLE001 - any header problem is the file's fault
        raise ImageLoadError(f"cannot read the NIfTI header: {exc}", file=path,
                             hint="the file is corrupt or not a NIfTI file") from None
    opener = gzip.open if _suffix(path) == ".nii.gz" else open
    have = bad = 0
    chunk_size = 1 << 22  # a multiple of every item size
    try:
        with opener(path, "rb") as fh:
            head = fh.read(offset)
            if len(head) < offset:
                raise EOFError("file ends inside the header")
            while have < need and (chunk := fh.read(min(chunk_size, need - have))):
                have += len(chunk)
                if dtype.kind in "fc":
                    usable = len(chunk) - len(chunk) % dtype.itemsize
                    values = np.frombuffer(chunk[:usable], dtype=dtype)
                    bad += int(values.size - np.count_nonzero(np.isfinite(values)))
            if have == need:
                fh.read(1 << 16)  # reach the end of a gzip stream: verifies its CRC
    except (OSError, EOFError, zlib.error) as exc:
        raise ImageLoadError(f"the file is truncated or corrupt ({exc})", file=path,
                             hint="export or copy the file again") from None
    if have < need:
        raise ImageLoadError(f"file is truncated: {offset + have:,} bytes of the "
                             f"{offset + need:,} its header declares", file=path,
                             hint="export or copy the file again")
    if bad:
        raise ImageLoadError(f"image has {bad} NaN or infinite voxels", file=path,
                             hint="fix or mask these voxels before loading")


def _inflate_into(path: Path, skip: int, out: memoryview, chunk: int = 1 << 22) -> int:
    """Decompress a gzip file once: its first ``skip`` bytes dropped, the next ones into
    ``out``. Returns the bytes placed. zlib checks every member's CRC-32 and length
    (zlib.error when they differ); a stream that ends early raises EOFError."""
    pos = placed = 0
    d, fed = None, False
    with open(path, "rb") as fh:
        while buf := fh.read(chunk):
            while buf:
                if not fed and pos and not buf.strip(b"\0"):
                    break                             # zero padding after the last member
                if d is None:
                    d = zlib.decompressobj(31)
                fed = True
                data = d.decompress(buf, 1 << 24)     # bounded: a mask inflates 1000-fold
                buf = d.unconsumed_tail
                a, b = max(skip - pos, 0), min(len(data), skip + len(out) - pos)
                if b > a:
                    out[pos + a - skip:pos + b - skip] = data[a:b]
                    placed += b - a
                pos += len(data)
                if d.eof:                             # a further gzip member may follow
                    buf = d.unused_data
                    d, fed = None, False
    if fed:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    if pos < skip:
        raise EOFError("file ends inside the header")
    return placed


#: SimpleITK scalar pixel types -> numpy dtypes (the NIfTI types read without ITK).
_SITK_SCALAR_DTYPES = {
    sitk.sitkUInt8: np.uint8, sitk.sitkInt8: np.int8, sitk.sitkUInt16: np.uint16,
    sitk.sitkInt16: np.int16, sitk.sitkUInt32: np.uint32, sitk.sitkInt32: np.int32,
    sitk.sitkUInt64: np.uint64, sitk.sitkInt64: np.int64, sitk.sitkFloat32: np.float32,
    sitk.sitkFloat64: np.float64,
}


def _read_nifti(path: Path, reader: sitk.ImageFileReader) -> Image | None:
    """A scalar NIfTI image from one pass over its (gzip) data, or None for ITK to read.

    The data block is decompressed once, straight into the voxel array; its length
    is compared with what the header declares and the gzip CRC is verified (ITK
    zero-fills truncated data without a word). Geometry (spacing, origin,
    direction) is ITK's, from the header ``reader`` already read, and
    ``scl_slope`` / ``scl_inter`` are applied to ITK's output pixel type, so the
    Image equals what ``reader.Execute()`` gives. NaN / Inf are kept for
    ``load_image`` to refuse. Vector, complex and RGB files return None.
    """
    try:
        nii = nib.load(str(path))
        hdr = nii.header
        dtype = hdr.get_data_dtype()
        offset = int(nii.dataobj.offset)
        shape = tuple(int(v) for v in hdr.get_data_shape())
        # nibabel moves scl_slope / scl_inter from the header into the data proxy
        slope, inter = float(nii.dataobj.slope), float(nii.dataobj.inter)
    except Exception as exc:  # noqa: BLE001 - any header problem is the file's fault
        raise ImageLoadError(f"cannot read the NIfTI header: {exc}", file=path,
                             hint="the file is corrupt or not a NIfTI file") from None
    size = tuple(int(v) for v in reader.GetSize())
    target = _SITK_SCALAR_DTYPES.get(reader.GetPixelID())
    n = int(np.prod(size, dtype=np.int64))
    if (target is None or reader.GetNumberOfComponents() != 1 or dtype.kind not in "iuf"
            or n != int(np.prod(shape, dtype=np.int64)) or not 2 <= len(size) <= 4):
        return None
    scaled = slope != 1 or inter != 0
    if not scaled and np.dtype(target) != dtype.newbyteorder("="):
        return None
    raw = np.empty(n, dtype=dtype)
    need = raw.nbytes
    try:
        if _suffix(path) == ".nii.gz":
            have = _inflate_into(path, offset, memoryview(raw).cast("B"))
        else:
            with open(path, "rb") as fh:
                fh.seek(offset)
                have = fh.readinto(memoryview(raw).cast("B"))
                if os.fstat(fh.fileno()).st_size < offset:
                    raise EOFError("file ends inside the header")
    except (OSError, EOFError, zlib.error) as exc:
        raise ImageLoadError(f"the file is truncated or corrupt ({exc})", file=path,
                             hint="export or copy the file again") from None
    if have < need:
        raise ImageLoadError(f"file is truncated: {offset + have:,} bytes of the "
                             f"{offset + need:,} its header declares", file=path,
                             hint="export or copy the file again")
    if not dtype.isnative:
        raw = raw.astype(dtype.newbyteorder("="))
    if scaled:  # as ITK: raw * slope + intercept in double, stored as its pixel type
        raw = (raw.astype(np.float64) * slope + inter).astype(target)
    arr = raw.reshape(size[::-1])
    dim = len(size)
    spacing, origin = reader.GetSpacing(), reader.GetOrigin()
    direction = np.asarray(reader.GetDirection(), float).reshape(dim, dim)
    if dim == 4:  # phases: (t, z, y, x) on the 3-D grid
        spacing, origin, direction = spacing[:3], origin[:3], direction[:3, :3]
    try:
        return Image(arr, spacing, origin, tuple(direction.ravel()), meta={"format": "NIfTI"})
    except ValueError as exc:
        raise ImageLoadError(f"unusable geometry: {exc}", file=path) from None


def _check_voxels(n_voxels: int, size: Sequence[int], max_voxels: int, path: Path) -> None:
    if n_voxels > max_voxels:
        raise InputLimitError(
            f"image declares size {tuple(int(s) for s in size)} = {n_voxels:,} voxels, above the "
            f"limit of {max_voxels:,}", file=path,
            hint="crop or downsample the image, or raise max_voxels if it is genuine")


def _load_any(path: Path, *, series_uid: str | None, max_voxels: int, max_zip_bytes: int,
              spacing: Sequence[float] | None, expected_ndim: int | None) -> Image:
    _check_file(path)
    if path.is_dir() or _suffix(path) == ".zip":
        return load_dicom_series(path, series_uid, max_voxels=max_voxels,
                                 max_zip_bytes=max_zip_bytes)
    suffix = _suffix(path)
    if suffix in VOLUME_FORMATS:
        return _read_file(path, VOLUME_FORMATS[suffix][0], max_voxels)
    if suffix in PICTURE_FORMATS:
        image = _read_file(path, PICTURE_FORMATS[suffix][0], max_voxels)
        image = _squeeze_2d(image, path) if image.ndim == 3 else image
        if spacing is None:
            return image.replace(spacing=(1.0, 1.0), origin=(0.0, 0.0),
                                 direction=(1.0, 0.0, 0.0, 1.0), spacing_known=False)
        return image.replace(spacing=tuple(spacing), origin=(0.0, 0.0),
                             direction=(1.0, 0.0, 0.0, 1.0), spacing_known=True)
    if suffix in DICOM_SUFFIXES or suffix == "":
        image = _read_file(path, "DICOM", max_voxels)
        if expected_ndim == 2 and image.ndim == 3 and image.shape[0] == 1:
            image = _squeeze_2d(image, path)
        if image.ndim == 2:
            return _dicom_2d_spacing(image, path, spacing)
        return image
    raise ImageLoadError(
        f"unsupported file type '{suffix or path.name}'", file=path,
        hint="use .nii/.nii.gz, .nrrd, .mha, a DICOM folder or .zip, .dcm, .png, .jpg or .bmp")


# PatientName, PatientID, OtherPatientIDs, PatientBirthDate, AccessionNumber, InstitutionName,
# ReferringPhysicianName: registered for log redaction, never kept in Image.meta.
_SITK_IDENTIFYING_KEYS = ("0010|0010", "0010|0020", "0010|1000", "0010|0030", "0008|0050",
                          "0008|0080", "0008|0090")


def _read_file(path: Path, name: str, max_voxels: int) -> Image:
    reader = _header_reader(path)
    size = reader.GetSize()
    _check_voxels(int(np.prod(size, dtype=np.int64)), size, max_voxels, path)
    if name == "NIfTI":
        image = _read_nifti(path, reader)
        if image is not None:
            return image
        _check_nifti_complete(path)  # a layout read by ITK itself (vector, complex, RGB)
    img = _execute(reader, path, name)
    meta = {"format": name}
    if name == "DICOM":
        deid.register_identifiers(
            reader.GetMetaData(k).strip() for k in _SITK_IDENTIFYING_KEYS if reader.HasMetaDataKey(k))
        for key, label in (("0008|0060", "dicom_modality"), ("0028|0030", "pixel_spacing"),
                           ("0028|1050", "window_center"), ("0028|1051", "window_width"),
                           ("0018|0050", "slice_thickness")):
            if reader.HasMetaDataKey(key):
                meta[label] = reader.GetMetaData(key).strip()
    return _sitk_to_image(img, path, meta)


def _sitk_to_image(img: sitk.Image, path: Path, meta: dict) -> Image:
    ncomp = img.GetNumberOfComponentsPerPixel()
    if ncomp == 1:
        try:
            return Image.from_sitk(img, meta=meta)
        except ValueError as exc:
            raise ImageLoadError(f"unusable geometry: {exc}", file=path) from None
    arr = sitk.GetArrayFromImage(img)  # (..., C)
    if ncomp in (3, 4):
        grey = np.tensordot(arr[..., :3].astype(np.float64), np.asarray(LUMINANCE_WEIGHTS),
                            axes=([-1], [0])).astype(np.float32)
        meta = dict(meta, colour=("RGBA" if ncomp == 4 else "RGB") + " collapsed to grey")
    elif ncomp == 2:  # grey + alpha
        grey = arr[..., 0]
        meta = dict(meta, colour="grey+alpha: alpha dropped")
    else:
        raise ImageLoadError(f"image has {ncomp} components per pixel; expected grey or RGB(A)",
                             file=path)
    dim = img.GetDimension()
    try:
        return Image(grey, img.GetSpacing(), img.GetOrigin(),
                     img.GetDirection(), meta=meta) if dim in (2, 3) else _bad_dim(path, dim)
    except ValueError as exc:
        raise ImageLoadError(f"unusable geometry: {exc}", file=path) from None


def _bad_dim(path: Path, dim: int) -> Image:
    raise ImageLoadError(f"colour image with {dim} dimensions is not supported", file=path)


def _squeeze_2d(image: Image, path: Path) -> Image:
    """A 3-D image with one slice as 2-D (keeps in-plane geometry when it is 2-D)."""
    if image.ndim != 3 or image.shape[0] != 1:
        return image
    d3 = image.direction_matrix
    d2 = d3[:2, :2]
    if np.allclose(d2.T @ d2, np.eye(2), atol=1e-4):
        direction, origin = tuple(d2.ravel()), image.origin[:2]
    else:  # oblique plane in 3-D: keep pixel sizes, drop the 3-D placement
        direction, origin = (1.0, 0.0, 0.0, 1.0), (0.0, 0.0)
    return Image(image.array[0], image.spacing[:2], origin, direction,
                 spacing_known=image.spacing_known, meta=dict(image.meta))


def _dicom_2d_spacing(image: Image, path: Path, spacing: Sequence[float] | None) -> Image:
    """2-D DICOM: PixelSpacing, else the ultrasound region calibration, else unknown."""
    if spacing is not None:
        return image.replace(spacing=tuple(spacing), spacing_known=True)
    if "pixel_spacing" in image.meta:
        return image
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        for tag in ("ImagerPixelSpacing",):
            if tag in ds:
                row, col = (float(v) for v in ds[tag].value)
                return image.replace(spacing=(col, row), spacing_known=True)
        regions = ds.get("SequenceOfUltrasoundRegions")
        if regions:
            reg = regions[0]
            # PhysicalUnits 3 = cm
            if int(reg.get("PhysicalUnitsXDirection", 0)) == 3 and \
                    int(reg.get("PhysicalUnitsYDirection", 0)) == 3:
                dx = abs(float(reg.PhysicalDeltaX)) * 10.0
                dy = abs(float(reg.PhysicalDeltaY)) * 10.0
                if dx > 0 and dy > 0:
                    return image.replace(spacing=(dx, dy), spacing_known=True)
    except Exception as exc:  # noqa: BLE001 - calibration is optional; image already read
        log.debug("no ultrasound calibration in %s: %s", path.name, exc)
    return image.replace(spacing=(1.0, 1.0), spacing_known=False)


def _check_dimension(image: Image, expected: int | None, path: Path) -> Image:
    if expected is None:
        return image
    if expected == 2 and image.ndim == 3 and not image.is_phases and image.shape[0] == 1:
        image = _squeeze_2d(image, path)
    if expected == 3 and image.is_phases and image.array.shape[0] == 1:
        image = image.phase(0)  # a 4-D file with a single time point
    got = image.array.ndim
    if got != expected:
        what = {2: "2-D", 3: "3-D", 4: "4-D (phases)"}
        raise ImageLoadError(
            f"expected a {what[expected]} image, got {what.get(got, f'{got}-D')} with shape "
            f"{image.array.shape}", file=path,
            hint="check that the right file was given for this sequence")
    return image


def _check_finite(image: Image, path: Path) -> None:
    arr = image.array
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ImageLoadError(f"image has {int(bad.sum())} NaN or infinite voxels", file=path,
                                 hint="fix or mask these voxels before loading")


# ------------------------------------------------------------ zip
def _safe_member(name: str) -> bool:
    if not name or name.startswith(("/", "\\")):
        return False
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if parts and ":" in parts[0]:
        return False
    return ".." not in parts


def extract_zip(path: str | os.PathLike, dest: str | os.PathLike,
                max_bytes: int = DEFAULT_MAX_ZIP_BYTES,
                max_members: int = DEFAULT_MAX_ZIP_MEMBERS) -> Path:
    """Extract a zip into ``dest`` safely and return ``dest``.

    Refuses path-traversal / absolute / symlink / encrypted members (ImageLoadError) and
    archives whose total uncompressed size exceeds ``max_bytes`` or member count
    exceeds ``max_members`` (InputLimitError), counting actual bytes written too, so a
    header that under-declares its size cannot expand past the limit.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"not a readable zip archive ({exc})", file=path) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise InputLimitError(f"zip has {len(infos):,} members, above the limit of "
                                  f"{max_members:,}", file=path)
        total = 0
        for info in infos:
            if not _safe_member(info.filename):
                raise ImageLoadError(
                    f"zip member '{info.filename}' points outside the archive", file=path,
                    hint="unsafe archive refused; zip the folder again")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ImageLoadError(f"zip member '{info.filename}' is a symbolic link",
                                     file=path, hint="unsafe archive refused")
            if info.flag_bits & 0x1:
                raise ImageLoadError(f"zip member '{info.filename}' is encrypted", file=path)
            total += info.file_size
        if total > max_bytes:
            raise InputLimitError(
                f"zip expands to {total:,} bytes, above the limit of {max_bytes:,}", file=path,
                hint="send fewer series or raise max_zip_bytes")
        root = Path(dest)
        root.mkdir(parents=True, exist_ok=True)
        written = 0
        for info in infos:
            target = root / PurePosixPath(info.filename.replace("\\", "/"))
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise InputLimitError(
                                f"zip expands to more than {max_bytes:,} bytes", file=path)
                        dst.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError,
                    NotImplementedError, zlib.error) as exc:
                # NotImplementedError: compression methods / flags zipfile cannot read
                # (found by tests/reliability/test_fuzz.py); RuntimeError: encryption.
                raise ImageLoadError(f"zip member '{info.filename}' is corrupt or uses an "
                                     f"unsupported zip feature ({exc})", file=path) from None
    return root


@contextlib.contextmanager
def extracted_zip(path: Path, max_bytes: int = DEFAULT_MAX_ZIP_BYTES,
                  max_members: int = DEFAULT_MAX_ZIP_MEMBERS) -> Iterator[Path]:
    """``extract_zip`` into a temporary directory that is removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="her2zip_")
    try:
        yield extract_zip(path, tmp, max_bytes, max_members)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _dicom_root(path: Path, max_zip_bytes: int) -> Iterator[Path]:
    _check_file(path)
    if path.is_dir():
        yield path
    elif _suffix(path) == ".zip":
        with extracted_zip(path, max_zip_bytes) as root:
            yield root
    else:
        raise ImageLoadError("expected a DICOM folder or a .zip of one", file=path)


# ------------------------------------------------------------ DICOM series
_HEADER_TAGS = ["SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient",
                "Rows", "Columns", "NumberOfFrames", "Modality", "SeriesDescription",
                "InstanceNumber", "SOPClassUID", "SeriesNumber", "AcquisitionTime", "SeriesTime",
                "ContentTime", "TemporalPositionIdentifier", "FrameOfReferenceUID",
                "WindowCenter", "WindowWidth", "SliceThickness", *deid.IDENTIFYING_VALUES]


#: written by ``pacs fetch`` beside the series it retrieved (her2core.pacs.UID_MAP_NAME):
#: not a stray file worth a "skipped" line
FETCH_UID_MAP = "uid_map.json"


def _scan_dicom(root: Path, shown: Path, *, images_only: bool = True
                ) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    """SeriesInstanceUID -> [(file, header)], reading headers only; non-DICOM files skipped
    (and, with ``images_only``, files without pixel rows such as RTSTRUCT / SR)."""
    series: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    skipped = 0
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root)
        if any(part.startswith(".") or part == "__MACOSX" for part in rel.parts) or \
                file.name.upper() == "DICOMDIR" or file.name == FETCH_UID_MAP:
            continue
        ds = _read_header(file)
        if ds is None:
            skipped += 1
            continue
        # identifiers are read only so that logs redact them and exports refuse them
        deid.register_identifiers(deid.identifiers_of(ds))
        for kw in deid.IDENTIFYING_VALUES:
            if kw in ds:
                del ds[kw]
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not uid or (images_only and ("Rows" not in ds or
                                        str(ds.get("SOPClassUID", "")) in NON_IMAGE_SOP_CLASSES)):
            skipped += 1
            continue
        series.setdefault(uid, []).append((file, ds))
    if skipped:
        log.info("%s: skipped %d non-image / non-DICOM files", shown.name, skipped)
    if not series:
        raise ImageLoadError("no DICOM image files found", file=shown,
                             hint="give a folder or .zip that holds one DICOM series")
    return series


def _read_header(file: Path) -> pydicom.Dataset | None:
    """DICOM header (no pixels), also of files without the 128-byte preamble; None if not DICOM."""
    for force in (False, True):
        try:
            return pydicom.dcmread(str(file), stop_before_pixels=True,
                                   specific_tags=_HEADER_TAGS, force=force)
        except pydicom.errors.InvalidDicomError:
            continue
        except Exception:  # noqa: BLE001 - any unreadable file in the folder is skipped
            return None
    return None


def _series_info(uid: str, root: Path, items: list[tuple[Path, pydicom.Dataset]]) -> DicomSeriesInfo:
    ds = items[0][1]

    def _int(value):
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    n_slices = sum(max(_int(d.get("NumberOfFrames", 1)) or 1, 1) for _, d in items)
    tps = {_int(d.get("TemporalPositionIdentifier")) for _, d in items} - {None}
    times = [t for t in (_dicom_time(d) for _, d in items) if t is not None]
    return DicomSeriesInfo(uid=uid, files=[str(f.relative_to(root)) for f, _ in items],
                           modality=str(ds.get("Modality", "")) or None,
                           description=str(ds.get("SeriesDescription", "")) or None,
                           rows=_int(ds.get("Rows")), columns=_int(ds.get("Columns")),
                           series_number=_int(ds.get("SeriesNumber")), n_slices=n_slices,
                           temporal_position=min(tps) if len(tps) == 1 else None,
                           temporal_positions=max(len(tps), 1),
                           time_s=min(times) if times else None,
                           sop_class_uid=str(ds.get("SOPClassUID", "")) or None,
                           frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None)


def _dicom_time(ds) -> float | None:
    """AcquisitionTime (else SeriesTime, ContentTime) as seconds of the day, or None."""
    for kw in ("AcquisitionTime", "SeriesTime", "ContentTime"):
        text = str(ds.get(kw, "") or "").strip()
        if len(text) >= 4 and text[:4].isdigit():
            try:
                hh, mm = int(text[:2]), int(text[2:4])
                sec = float(text[4:]) if len(text) > 4 else 0.0
                return hh * 3600.0 + mm * 60.0 + sec
            except ValueError:
                continue
    return None


def _choose_series(series: dict, series_uid: str | None, path: Path) -> str:
    if series_uid is not None:
        if series_uid not in series:
            raise ImageLoadError(
                f"series {series_uid} not found; series present: {_list_uids(series)}", file=path,
                hint="pass one of the listed SeriesInstanceUIDs")
        return series_uid
    if len(series) > 1:
        raise ImageLoadError(
            f"{len(series)} DICOM series found: {_list_uids(series)}", file=path,
            hint="choose one (--series-uid on the command line, series_uid= in Python; "
                 "`python -m her2core series list --dicom PATH` lists them), or keep one "
                 "series per folder")
    return next(iter(series))


def _list_uids(series: dict) -> str:
    return "; ".join(f"{uid} ({len(items)} files)" for uid, items in sorted(series.items()))


def _read_dicom_series(items: list[tuple[Path, pydicom.Dataset]], path: Path,
                       max_voxels: int) -> Image:
    ds0 = items[0][1]
    frames = max(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in items)
    n_vox = int(ds0.Rows) * int(ds0.Columns) * len(items) * frames
    _check_voxels(n_vox, (int(ds0.Columns), int(ds0.Rows), len(items) * frames), max_voxels, path)
    if len(items) == 1:
        img = _read_file(items[0][0], "DICOM", max_voxels)
        if img.ndim == 3 and img.shape[0] == 1:
            img = _squeeze_2d(img, path)
        if img.ndim == 2:
            img = _dicom_2d_spacing(img, items[0][0], None)
        return img
    if frames > 1:
        raise ImageLoadError("series mixes several multi-frame files", file=path,
                             hint="give one multi-frame file or one file per slice")
    files, origin, direction, dz = _order_slices(items, path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    reader.SetImageIO("GDCMImageIO")
    img = _execute(reader, path, "DICOM series")
    if img.GetNumberOfComponentsPerPixel() != 1:
        image = _sitk_to_image(img, path, {"format": "DICOM"})
    else:
        image = Image.from_sitk(img, meta={"format": "DICOM"})
    # Geometry from the headers we sorted on (ITK agrees; this makes it explicit).
    spacing = (image.spacing[0], image.spacing[1], dz)
    mod = str(ds0.get("Modality", "")) or None
    meta = {"format": "DICOM", "n_slices": len(files), "dicom_modality": mod}
    meta.update(_display_attributes(ds0))
    return image.replace(spacing=spacing, origin=origin, direction=direction, meta=meta)


def _display_attributes(ds) -> dict:
    """The header's display window (first WindowCenter / WindowWidth) and SliceThickness,
    as text, for the viewer; absent ones are left out."""
    out = {}
    for kw, label in (("WindowCenter", "window_center"), ("WindowWidth", "window_width"),
                      ("SliceThickness", "slice_thickness")):
        value = ds.get(kw)
        if value is None or value == "":
            continue
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0] if len(value) else None
        if value is not None:
            out[label] = str(value)
    return out


def _order_slices(items: list[tuple[Path, pydicom.Dataset]], path: Path):
    """Sort slices along the normal; returns files, origin, direction, slice spacing."""
    iops, ipps = [], []
    for file, ds in items:
        iop, ipp = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
        if iop is None or ipp is None or len(iop) != 6 or len(ipp) != 3:
            raise ImageLoadError(
                f"slice {file.name} lacks ImagePositionPatient / ImageOrientationPatient",
                file=path, hint="the slices cannot be ordered in space; export the series again")
        iops.append([float(v) for v in iop])
        ipps.append([float(v) for v in ipp])
    iops_a, ipps_a = np.asarray(iops), np.asarray(ipps)
    if np.max(np.abs(iops_a - iops_a[0])) > 1e-4:
        raise ImageLoadError("slices of the series have different orientations", file=path,
                             hint="the folder may mix several series or a localiser")
    row, col = iops_a[0, :3], iops_a[0, 3:]
    normal = np.cross(row, col)
    pos = ipps_a @ normal
    order = np.argsort(pos, kind="stable")
    pos = pos[order]
    gaps = np.diff(pos)
    if np.any(gaps < 1e-3):
        raise ImageLoadError(
            f"{int(np.sum(gaps < 1e-3)) + 1} slices share a position", file=path,
            hint="the series may hold several phases or echoes; split them into one folder each")
    dz = float(np.mean(gaps))
    if np.max(np.abs(gaps - dz)) > 0.01 * dz + 1e-3:
        raise ImageLoadError(
            f"slice gaps are uneven ({gaps.min():.4g} to {gaps.max():.4g} mm)", file=path,
            hint="slices may be missing from the series")
    files = [items[i][0] for i in order]
    direction = tuple(np.column_stack([row, col, normal]).ravel())
    origin = tuple(ipps_a[order[0]])
    return files, origin, direction, dz
