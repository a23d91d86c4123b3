"""Write a 3-D Image as a DICOM MR series (one file per slice), for tests, benchmarks and demos.

The series carries exactly the geometry of the Image (ImagePositionPatient per slice,
ImageOrientationPatient from the direction's first two columns, PixelSpacing as
row, column spacing) and whatever patient / study attributes the caller gives, so a
test can check that identifiers are removed downstream. The direction must be a
rotation (determinant +1): DICOM orders slices along row x column, so a
left-handed grid would come back with its slice axis reversed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .image import Image

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def derived_uid(*parts: str) -> str:
    """A deterministic UID under 2.25 (as DICOM allows for UUID-derived UIDs)."""
    digest = int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:30], 16)
    return f"2.25.{digest}"


def write_dicom_series(image: Image, folder: str | Path, *, series_uid: str | None = None,
                       study_uid: str | None = None, frame_of_reference_uid: str | None = None,
                       series_number: int = 1, description: str = "synthetic",
                       acquisition_time: str | None = None, temporal_position: int | None = None,
                       patient: Mapping[str, str] | None = None,
                       extra: Mapping[str, object] | None = None,
                       shuffle_names: bool = True) -> list[Path]:
    """Write ``image`` (3-D, integer or float -> int16) as one DICOM file per slice.

    Args:
        patient: attributes such as PatientName, PatientID, PatientBirthDate,
            AccessionNumber, InstitutionName, StudyDate (written as given).
        extra: any further keyword -> value pairs.
        shuffle_names: file names unrelated to slice order (as PACS exports are).
    Returns:
        the files written, in slice order.
    """
    if image.ndim != 3 or image.is_phases:
        raise ValueError("write_dicom_series needs a 3-D image")
    d = image.direction_matrix
    if np.linalg.det(d) < 0:
        raise ValueError("DICOM slices need a right-handed direction (determinant +1)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_of_reference_uid or derived_uid(study_uid, "frame")
    arr = np.asarray(image.array)
    if not np.issubdtype(arr.dtype, np.integer) or arr.dtype.itemsize > 2 or \
            arr.dtype == np.uint16:
        arr = np.clip(np.rint(arr), -32768, 32767)
    arr = arr.astype(np.int16)
    nz, ny, nx = arr.shape
    sx, sy, sz = image.spacing
    iop = [float(v) for v in (*d[:, 0], *d[:, 1])]
    name_seed = int(hashlib.sha256(series_uid.encode()).hexdigest()[:8], 16)
    names = np.random.default_rng(name_seed).permutation(nz) if shuffle_names else np.arange(nz)
    files = []
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        sop_uid = derived_uid(series_uid, str(k))
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{int(names[k]):05d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "MR"
        ds.SeriesDescription = description
        ds.SeriesNumber = int(series_number)
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        if acquisition_time is not None:
            ds.AcquisitionTime = acquisition_time
            ds.SeriesTime = acquisition_time
        if temporal_position is not None:
            ds.TemporalPositionIdentifier = int(temporal_position)
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                   "StudyTime", "ReferringPhysicianName", "AccessionNumber", "StudyID"):
            setattr(ds, kw, "")                  # type 2: present, empty unless given
        for kw, value in (patient or {}).items():
            setattr(ds, kw, value)
        ds.ImagePositionPatient = [float(v) for v in image.index_to_physical((0, 0, k))]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = [float(sy), float(sx)]
        ds.SliceThickness = float(sz)
        ds.SpacingBetweenSlices = float(sz)
        ds.Rows, ds.Columns = int(ny), int(nx)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.PixelData = np.ascontiguousarray(arr[k]).tobytes()
        for kw, value in (extra or {}).items():
            setattr(ds, kw, value)
        ds.save_as(str(path), enforce_file_format=True)
        files.append(path)
    return files


def read_series_datasets(files: Sequence[str | Path]) -> list[pydicom.Dataset]:
    """pydicom Datasets (with pixels) of the given files."""
    return [pydicom.dcmread(str(f)) for f in files]


__all__ = ["MR_IMAGE_STORAGE", "derived_uid", "write_dicom_series", "read_series_datasets"]
