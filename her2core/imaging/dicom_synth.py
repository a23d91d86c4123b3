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
                       shuffle_names: bool = True, first_instance: int = 1) -> list[Path]:
    """Write ``image`` (3-D, integer or float -> int16) as one DICOM file per slice.

    Args:
        patient: attributes such as PatientName, PatientID, PatientBirthDate,
            AccessionNumber, InstitutionName, StudyDate (written as given).
        extra: any further keyword -> value pairs.
        shuffle_names: file names unrelated to slice order (as PACS exports are).
        first_instance: InstanceNumber of the first slice (several writes into one series).
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
        number = first_instance + k
        sop_uid = derived_uid(series_uid, str(number))
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{first_instance - 1 + int(names[k]):05d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "MR"
        ds.SeriesDescription = description
        ds.SeriesNumber = int(series_number)
        ds.InstanceNumber = number
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


#: fake identifiers written by :func:`write_study` (tests check they never come out again)
FAKE_PATIENT = {"PatientName": "Testperson^Erika^Maria", "PatientID": "HER2-PID-0042",
                "PatientBirthDate": "19610417", "PatientSex": "F",
                "AccessionNumber": "ACC778899", "InstitutionName": "Saint Examplehospital",
                "ReferringPhysicianName": "Doctor^Quincy", "StudyDate": "20240312",
                "StudyTime": "101500", "StudyID": "ST9911", "StudyDescription": "MR BREAST BILAT"}


def rotation(angles=(0.3, 0.2, 0.0)) -> np.ndarray:
    """A rotation matrix (determinant +1) from angles about z, x, y (radians)."""
    az, ax, ay = angles
    cz, sz, cx, sx, cy, sy = np.cos(az), np.sin(az), np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ rx @ ry


def write_study(root: str | Path, *, shape=(8, 24, 20), spacing=(0.9, 0.7, 2.5),
                direction=None, n_phases: int = 3, seed: int = 0,
                patient: Mapping[str, str] | None = None, study_uid: str | None = None,
                one_series_phases: bool = False) -> dict[str, dict]:
    """A small breast-MRI-like study: T1 and DCE phases on one oblique, anisotropic grid,
    T2 on its own grid, each series in its own folder under ``root``, with patient
    identifiers (``FAKE_PATIENT`` by default) in every header.

    Returns {role: {"uid", "files", "image"}} with roles "T1", "T2", "DCE_1".."DCE_n"
    (or "DCE" holding every phase when ``one_series_phases``: one series, several
    TemporalPositionIdentifiers). The DCE lesion is an ellipsoid enhancing from phase 1.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    patient = dict(FAKE_PATIENT if patient is None else patient)
    study_uid = study_uid or derived_uid("study", str(root), str(seed))
    d = rotation() if direction is None else np.asarray(direction, float)
    nz, ny, nx = shape
    z, y, x = np.ogrid[:nz, :ny, :nx]
    lesion = (((x - nx / 2) * spacing[0] / 4.5) ** 2 + ((y - ny / 2) * spacing[1] / 4.0) ** 2
              + ((z - nz / 2) * spacing[2] / 5.0) ** 2) < 1
    base = 400 + 60 * np.sin(x / 3.0) + rng.normal(0, 15, shape)
    origin = (-35.5, 20.25, -12.0)
    out: dict[str, dict] = {}

    def put(role, arr, folder, number, desc, time_s, sp=spacing, org=origin, tp=None,
            series_uid=None, first=1):
        img = Image(np.asarray(arr, np.int16), sp, org, d.ravel(), sequence=role, modality="MR")
        uid = series_uid or derived_uid(study_uid, role)
        hh, rem = divmod(int(time_s), 3600)
        files = write_dicom_series(img, root / folder, series_uid=uid, study_uid=study_uid,
                                   series_number=number, description=desc,
                                   acquisition_time=f"{10 + hh:02d}{rem // 60:02d}{rem % 60:02d}",
                                   temporal_position=tp, patient=patient,
                                   frame_of_reference_uid=derived_uid(study_uid, "frame"),
                                   first_instance=first)
        out.setdefault(role, {"uid": uid, "files": [], "image": img})
        out[role]["files"] += files
        return img

    put("T1", base - 150 * lesion, "t1", 2, "t1_fl3d_tra", 0)
    sp2 = (spacing[0] * 1.5, spacing[1] * 1.5, spacing[2])
    t2_shape = (nz, int(ny / 1.5), int(nx / 1.5))
    put("T2", 300 + rng.normal(0, 15, t2_shape), "t2", 3, "t2_tse_tra", 300, sp=sp2)
    for k in range(n_phases):
        arr = base + (0 if k == 0 else 500 + 50 * k) * lesion + rng.normal(0, 10, shape)
        if one_series_phases:
            put("DCE", arr, "dyn", 10, "fl3d_dyn", 600 + 90 * k, tp=k + 1,
                series_uid=derived_uid(study_uid, "DCE"), first=1 + k * nz)
        else:
            put(f"DCE_{k}", arr, f"dyn{k}", 10 + k, f"fl3d_dyn_ph{k}", 600 + 90 * k, tp=k + 1)
    return out


def write_case_study(case_dir: str | Path, root: str | Path, *,
                     patient: Mapping[str, str] | None = None, study_uid: str | None = None,
                     zip_path: str | Path | None = None) -> dict[str, dict]:
    """A cohort case (T1, T2, DCE_phases NIfTI, e.g. from ``demo-cohort``) as a DICOM study:
    T1, T2 and each DCE phase its own series (folders ``t1``, ``t2``, ``dyn0``..), on the
    NIfTI files' exact grids, with patient identifiers (``FAKE_PATIENT`` by default) in
    every header, acquisition times in phase order and TemporalPositionIdentifier 1..n.
    With ``zip_path`` also a zip of the study (what a PACS export or a CD gives).

    Returns {role: {"uid", "files", "image", "folder"}} with roles "T1", "T2",
    "DCE_0".."DCE_n-1" (those the case has).
    """
    import zipfile

    from .io import load_image
    case_dir, root = Path(case_dir), Path(root)
    patient = dict(FAKE_PATIENT if patient is None else patient)
    study_uid = study_uid or derived_uid("case-study", case_dir.name)
    frame = derived_uid(study_uid, "frame")
    out: dict[str, dict] = {}
    plan = [("T1", "T1.nii.gz", "t1", "t1_fl3d_tra_nonfs", "100000", None),
            ("T2", "T2.nii.gz", "t2", "t2_tse_tra", "100500", None)]
    for role, name, folder, desc, time_s, tp in plan:
        if (case_dir / name).is_file():
            out[role] = {"image": load_image(case_dir / name), "folder": folder,
                         "desc": desc, "time": time_s, "tp": tp}
    if (case_dir / "DCE_phases.nii.gz").is_file():
        phases = load_image(case_dir / "DCE_phases.nii.gz")
        for k in range(phases.n_phases):
            rem = 600 + 90 * k
            out[f"DCE_{k}"] = {"image": phases.phase(k), "folder": f"dyn{k}",
                               "desc": f"fl3d_dyn_ph{k}",
                               "time": f"10{rem // 60:02d}{rem % 60:02d}", "tp": k + 1}
    for number, (role, item) in enumerate(out.items(), start=2):
        uid = derived_uid(study_uid, role)
        item["uid"] = uid
        item["files"] = write_dicom_series(
            item["image"], root / item["folder"], series_uid=uid, study_uid=study_uid,
            frame_of_reference_uid=frame, series_number=number, description=item.pop("desc"),
            acquisition_time=item.pop("time"), temporal_position=item.pop("tp"),
            patient=patient)
    if zip_path is not None:
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
            for item in out.values():
                for f in item["files"]:
                    z.write(f, f.relative_to(root))
    return out


def write_sr_only_study(path: str | Path, description: str | None = None) -> str:
    """One structured-report file (a study with no image series, for "no image series"
    errors), with fake identifiers; returns its StudyInstanceUID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "SR", "SR-ONLY-77", "Report^Only"
    ds.StudyDate, ds.ValueType = "20230101", "CONTAINER"
    if description is not None:
        ds.StudyDescription = description
    ds.save_as(str(path), enforce_file_format=True)
    return str(ds.StudyInstanceUID)


def read_series_datasets(files: Sequence[str | Path]) -> list[pydicom.Dataset]:
    """pydicom Datasets (with pixels) of the given files."""
    return [pydicom.dcmread(str(f)) for f in files]


__all__ = ["MR_IMAGE_STORAGE", "FAKE_PATIENT", "derived_uid", "rotation", "write_dicom_series",
           "write_study", "write_case_study", "read_series_datasets"]
