"""The ROI as a DICOM Segmentation (highdicom) that references its source series; SEG and
RTSTRUCT import onto the source series' grid.

* :func:`export_dicom_seg` writes a binary mask lying on a DICOM series' grid as a
  DICOM SEG (one frame per non-empty source slice, each frame referencing its
  source image; ReferencedSeriesSequence names the series). By default the patient
  and study attributes copied from the source are blanked (the workbench writes no
  identifiers); ``keep_patient=True`` keeps them, for storing the SEG back into the
  PACS the series came from. UIDs are kept either way: they are the reference.
* :func:`import_dicom_seg` reads a SEG back as a uint8 mask Image on the source
  series' grid, voxel for voxel. A SEG that references another series (or another
  frame of reference) is refused with a message naming both.
* :func:`import_rtstruct` rasterises an RTSTRUCT ROI (closed planar contours in LPS
  mm) onto the reference grid: pixel centres inside a contour, nested contours
  combined by the even-odd rule (holes), each contour on the slice it lies in.
  Written here rather than with rt-utils: rt-utils matches contours to slices by
  exact z position on axial series only and depends on OpenCV; here the contours
  are mapped through the reference Image's own geometry, so oblique and
  anisotropic series work and the pixel-centre convention matches the viewer's
  polygon tool (:func:`her2core.viewer.polygon_to_mask`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pydicom

from her2core import deid
from her2core.errors import MaskError

from .image import Image
from .io import list_dicom_series, load_dicom_reference
from .mask import check_mask

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
#: patient / study attributes that a SEG must carry (type 2): blanked, not removed
_TYPE2_BLANK = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                "StudyTime", "ReferringPhysicianName", "AccessionNumber", "StudyID")


class DicomSegError(MaskError):
    """A DICOM SEG / RTSTRUCT that cannot be written or read onto its reference series."""


@dataclass
class SegExport:
    """What :func:`export_dicom_seg` wrote."""

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    referenced_series_uid: str
    n_frames: int
    kept_patient: bool

    def to_dict(self) -> dict:
        return {"path": str(self.path), "sop_instance_uid": self.sop_instance_uid,
                "series_instance_uid": self.series_instance_uid,
                "referenced_series_uid": self.referenced_series_uid,
                "n_frames": self.n_frames, "kept_patient": self.kept_patient}


# ============================================================ export
def export_dicom_seg(mask: Image, reference: str | os.PathLike, out: str | os.PathLike, *,
                     series_uid: str | None = None, label: str = "Tumour",
                     algorithm: str = "manual", series_description: str = "HER2 workbench ROI",
                     series_number: int = 9901, keep_patient: bool = False) -> SegExport:
    """Write ``mask`` (on the reference series' grid) as a DICOM SEG file ``out``.

    Args:
        mask: binary (or single-label) 3-D mask Image lying on the reference series' grid.
        reference: DICOM folder or zip holding the source series.
        series_uid: the source series when ``reference`` holds several.
        label: segment label; ``algorithm`` "manual" or "semiautomatic" (assisted).
        keep_patient: keep the source's patient / study attributes (for a PACS).
    Raises:
        GeometryError when the mask is not on the series' grid, MaskError for an empty
        mask, ImageLoadError for an unreadable reference.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from her2core import __version__
    out = Path(out)
    ref_img, headers = load_dicom_reference(reference, series_uid)
    if mask.ndim != 3 or mask.is_phases:
        raise DicomSegError(f"a DICOM SEG of a series needs a 3-D mask, got {mask.ndim}-D",
                            file=mask.source)
    binary = check_mask(mask, ref_img)                 # strict: same grid or GeometryError
    algorithm = algorithm.upper()
    if algorithm not in ("MANUAL", "SEMIAUTOMATIC"):
        raise DicomSegError(f"algorithm {algorithm!r}: use manual or semiautomatic")
    ident = None
    if algorithm == "SEMIAUTOMATIC":
        ident = hd.AlgorithmIdentificationSequence(
            name="her2core assisted segmentation", version=__version__,
            family=codes.cid7162.ArtificialIntelligence)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=algorithm,
        algorithm_identification=ident)
    pixels = np.ascontiguousarray(binary.array.astype(np.uint8))
    headers = [complete_type2(h) for h in headers]
    seg_series_uid = hd.UID()
    hd_log = logging.getLogger("highdicom")
    level = hd_log.level
    hd_log.setLevel(max(level, logging.WARNING))   # one INFO line per copied module otherwise
    try:
        seg = _segmentation(hd, headers, pixels, description, seg_series_uid, series_number)
    finally:
        hd_log.setLevel(level)
    seg.SeriesDescription = series_description
    if not keep_patient:
        _blank_identifiers(seg)
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(out))
    ref_uid = str(headers[0].SeriesInstanceUID)
    log.debug("wrote DICOM SEG %s (%d frames) referencing series %s", out.name,
             int(seg.NumberOfFrames), ref_uid)
    return SegExport(path=out, sop_instance_uid=str(seg.SOPInstanceUID),
                     series_instance_uid=str(seg_series_uid), referenced_series_uid=ref_uid,
                     n_frames=int(seg.NumberOfFrames), kept_patient=keep_patient)


def _segmentation(hd, headers, pixels, description, seg_series_uid, series_number):
    from her2core import __version__
    return hd.seg.Segmentation(
        source_images=headers, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=seg_series_uid,
        series_number=int(series_number), sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="HER2 workbench", manufacturer_model_name="her2core",
        software_versions=__version__, device_serial_number="none",
        content_description="tumour ROI", content_label="ROI", omit_empty_frames=True)


def complete_type2(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The patient / study attributes DICOM requires to be present (type 2) added empty where a
    de-identified series dropped them (the Basic Profile removes several)."""
    for kw in _TYPE2_BLANK:
        if kw not in ds:
            setattr(ds, kw, "")
    return ds


def _blank_identifiers(ds: pydicom.Dataset) -> None:
    """Blank type-2 patient / study attributes, remove the other identifying ones (not UIDs)."""
    deid.register_identifiers(deid.identifiers_of(ds))
    for kw in deid.BASIC_PROFILE_REMOVE:
        if kw in _TYPE2_BLANK or kw in ("ContentDate", "ContentTime", "SeriesDate", "SeriesTime",
                                        "SeriesDescription", "SourceImageSequence"):
            continue
        if kw in ds:
            del ds[kw]
    for kw in _TYPE2_BLANK:
        if kw in ds:
            setattr(ds, kw, "")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "HER2 workbench: patient and study identifiers blanked"


# ============================================================ import
def import_dicom_seg(seg_path: str | os.PathLike, reference: str | os.PathLike, *,
                     segment: int | str | None = None) -> Image:
    """A DICOM SEG as a uint8 mask Image (1 = segment) on its source series' grid.

    ``reference`` is the DICOM folder / zip holding the series the SEG was drawn on;
    ``segment`` picks a segment by number or label when the SEG has several.
    Raises DicomSegError for a file that is not a SEG, a SEG referencing another
    series or frame of reference, or an unknown segment.
    """
    import highdicom as hd
    seg_path = Path(seg_path)
    try:
        seg = hd.seg.segread(str(seg_path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one message
        raise DicomSegError(f"not a readable DICOM Segmentation ({type(exc).__name__}: "
                            f"{str(exc)[:200]})", file=seg_path) from None
    deid.register_identifiers(deid.identifiers_of(seg))
    refs = _seg_referenced_series(seg)
    ref_img, headers = _matching_reference(reference, refs, seg_path, "SEG")
    _same_frame_of_reference(getattr(seg, "FrameOfReferenceUID", None), headers[0], seg_path)
    number = _choose_segment(seg, segment, seg_path)
    uids = [str(h.SOPInstanceUID) for h in headers]
    try:
        arr = seg.get_pixels_by_source_instance(
            uids, segment_numbers=[number], combine_segments=True,
            assert_missing_frames_are_empty=False)
    except Exception as exc:  # noqa: BLE001 - frames without source references: by position
        log.debug("SEG source lookup failed (%s); using plane positions", exc)
        arr = _seg_by_position(seg, number, ref_img, seg_path)
    arr = (np.asarray(arr) > 0).astype(np.uint8)
    if arr.shape != ref_img.shape:
        raise DicomSegError(f"SEG frames are {arr.shape[1:]} pixels, the reference series "
                            f"{ref_img.shape[1:]}", file=seg_path)
    if not arr.any():
        raise DicomSegError(f"segment {number} is empty on the reference series", file=seg_path)
    return Image(arr, ref_img.spacing, ref_img.origin, ref_img.direction, sequence="mask",
                 modality="SEG", source=str(seg_path),
                 meta={"segment": number, "referenced_series_uid": str(headers[0].SeriesInstanceUID)})


def _seg_referenced_series(seg) -> set[str]:
    refs = {str(item.SeriesInstanceUID) for item in getattr(seg, "ReferencedSeriesSequence", [])}
    for study in getattr(seg, "StudiesContainingOtherReferencedInstancesSequence", []):
        refs |= {str(item.SeriesInstanceUID) for item in getattr(study, "ReferencedSeriesSequence", [])}
    return refs


def _matching_reference(reference, refs: set[str], file: Path, kind: str):
    series = [s for s in list_dicom_series(reference) if s.is_image]
    present = [s.uid for s in series]
    if not refs:
        raise DicomSegError(f"the {kind} names no referenced series", file=file,
                            hint="it cannot be placed on a grid; export it again with references")
    match = [u for u in present if u in refs]
    if not match:
        raise DicomSegError(
            f"the {kind} references series {', '.join(sorted(refs))}, but the reference folder "
            f"holds {', '.join(present) or 'no image series'}: it was drawn on another series",
            file=file, hint="give the DICOM folder of the series the ROI was drawn on")
    return load_dicom_reference(reference, match[0])


def _same_frame_of_reference(frame_uid, header, file: Path) -> None:
    a = str(frame_uid or "")
    b = str(getattr(header, "FrameOfReferenceUID", "") or "")
    if a and b and a != b:
        raise DicomSegError(f"frame of reference {a} differs from the series' {b}", file=file,
                            hint="the ROI was drawn in another coordinate system")


def _choose_segment(seg, segment, file: Path) -> int:
    numbers = list(seg.segment_numbers)
    labels = {int(d.SegmentNumber): str(d.SegmentLabel) for d in seg.SegmentSequence}
    if segment is None:
        if len(numbers) == 1:
            return int(numbers[0])
        raise DicomSegError(f"the SEG holds {len(numbers)} segments: " + ", ".join(
            f"{n} {labels.get(n, '')!r}" for n in numbers), file=file,
            hint="choose one by number or label")
    if isinstance(segment, str) and not segment.isdigit():
        found = [n for n, lab in labels.items() if lab.lower() == segment.lower()]
        if not found:
            raise DicomSegError(f"no segment labelled {segment!r}; labels: "
                                f"{', '.join(labels.values())}", file=file)
        return found[0]
    if int(segment) not in numbers:
        raise DicomSegError(f"no segment {segment}; segments: {numbers}", file=file)
    return int(segment)


def _seg_by_position(seg, number: int, ref: Image, file: Path) -> np.ndarray:
    """Place each frame of a segment by its ImagePositionPatient on the reference grid."""
    out = np.zeros(ref.shape, np.uint8)
    pixels = seg.pixel_array
    if pixels.ndim == 2:
        pixels = pixels[None]
    for i, fg in enumerate(seg.PerFrameFunctionalGroupsSequence):
        seg_no = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if seg_no != number:
            continue
        ipp = [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient]
        idx = ref.physical_to_index(ipp)
        k = int(round(idx[2]))
        if abs(idx[2] - k) > 0.1 or np.max(np.abs(idx[:2])) > 0.1 or not 0 <= k < ref.shape[0]:
            raise DicomSegError(f"SEG frame {i + 1} does not lie on a slice of the reference "
                                "series", file=file)
        out[k] |= (pixels[i] > 0).astype(np.uint8)
    return out


def rtstruct_rois(path: str | os.PathLike) -> list[tuple[int, str]]:
    """(ROINumber, ROIName) of every ROI of an RTSTRUCT file."""
    ds = _read_rtstruct(Path(path))
    return [(int(r.ROINumber), str(r.ROIName)) for r in ds.StructureSetROISequence]


def _read_rtstruct(path: Path) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DicomSegError(f"not a readable DICOM file ({type(exc).__name__})", file=path) from None
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS and ds.get("Modality") != "RTSTRUCT":
        raise DicomSegError("not an RTSTRUCT (RT Structure Set)", file=path)
    deid.register_identifiers(deid.identifiers_of(ds))
    return ds


def import_rtstruct(path: str | os.PathLike, reference: str | os.PathLike, *,
                    roi: int | str | None = None) -> Image:
    """An RTSTRUCT ROI as a uint8 mask Image on its reference series' grid (module docstring).

    Raises DicomSegError for a file that is not an RTSTRUCT, one referencing another
    series, an ROI that is unknown / ambiguous / empty, or contours off the slices.
    """
    from her2core.viewer import polygon_to_mask
    path = Path(path)
    ds = _read_rtstruct(path)
    refs: set[str] = set()
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []):
        for st in fr.get("RTReferencedStudySequence", []):
            for se in st.get("RTReferencedSeriesSequence", []):
                refs.add(str(se.SeriesInstanceUID))
    ref_img, headers = _matching_reference(reference, refs, path, "RTSTRUCT")
    rois = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    number = _choose_roi(rois, roi, path)
    contours = [c for rc in ds.ROIContourSequence if int(rc.ReferencedROINumber) == number
                for c in rc.get("ContourSequence", [])]
    for fr in ds.get("StructureSetROISequence", []):
        if int(fr.ROINumber) == number:
            _same_frame_of_reference(fr.get("ReferencedFrameOfReferenceUID"), headers[0], path)
    nz, ny, nx = ref_img.shape
    out = np.zeros(ref_img.shape, bool)
    used = 0
    for i, c in enumerate(contours):
        if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) not in ("CLOSED_PLANAR", ""):
            continue
        pts = np.asarray([float(v) for v in c.ContourData], dtype=float).reshape(-1, 3)
        if len(pts) < 3:
            continue
        idx = ref_img.physical_to_index(pts)
        k = int(round(float(np.mean(idx[:, 2]))))
        if np.max(np.abs(idx[:, 2] - k)) > 0.25:
            raise DicomSegError(f"contour {i + 1} of ROI {rois[number]!r} does not lie on a slice "
                                "of the reference series", file=path,
                                hint="the RTSTRUCT was drawn on another grid")
        if not 0 <= k < nz:
            raise DicomSegError(f"contour {i + 1} of ROI {rois[number]!r} lies outside the "
                                "reference series", file=path)
        out[k] ^= polygon_to_mask(idx[:, 0], idx[:, 1], (ny, nx))
        used += 1
    if not used or not out.any():
        raise DicomSegError(f"ROI {rois[number]!r} has no closed contour on the reference series",
                            file=path)
    return Image(out.astype(np.uint8), ref_img.spacing, ref_img.origin, ref_img.direction,
                 sequence="mask", modality="SEG", source=str(path),
                 meta={"roi": rois[number], "referenced_series_uid": str(headers[0].SeriesInstanceUID)})


def _choose_roi(rois: dict[int, str], roi, path: Path) -> int:
    listing = ", ".join(f"{n} {name!r}" for n, name in rois.items())
    if roi is None:
        if len(rois) == 1:
            return next(iter(rois))
        raise DicomSegError(f"the RTSTRUCT holds {len(rois)} ROIs: {listing}", file=path,
                            hint="choose one by number or name")
    if isinstance(roi, str) and not roi.isdigit():
        found = [n for n, name in rois.items() if name.lower() == roi.lower()]
        if not found:
            raise DicomSegError(f"no ROI named {roi!r}; ROIs: {listing}", file=path)
        return found[0]
    if int(roi) not in rois:
        raise DicomSegError(f"no ROI {roi}; ROIs: {listing}", file=path)
    return int(roi)


__all__ = ["DicomSegError", "SegExport", "complete_type2", "export_dicom_seg", "import_dicom_seg",
           "import_rtstruct", "rtstruct_rois", "SEG_SOP_CLASS", "RTSTRUCT_SOP_CLASS"]
