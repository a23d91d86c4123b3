"""DICOM SEG (highdicom) round trip voxel for voxel on an oblique, anisotropic series;
references checked on import; RTSTRUCT contours rasterised at pixel centres."""
from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from her2core import deid
from her2core.cli import main
from her2core.errors import GeometryError
from her2core.imaging import load_image, save_image
from her2core.imaging.dicom_seg import (RTSTRUCT_SOP_CLASS, DicomSegError, export_dicom_seg,
                                        import_dicom_seg, import_rtstruct, rtstruct_rois)
from her2core.imaging.dicom_synth import FAKE_PATIENT, write_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("segstudy")
    return root, write_study(root, n_phases=2)


def _ids():
    return [v for v in FAKE_PATIENT.values() if len(v) >= 3] + ["Testperson", "Erika"]


def _mask(ref):
    m = np.zeros(ref.shape, np.uint8)
    m[2:6, 8:17, 6:14] = 1
    m[3, 10, 9] = 0                              # a hole and an isolated voxel must survive
    m[7, 0, 0] = 1
    return ref.with_array(m, sequence="mask", modality="SEG")


def test_round_trip_keeps_the_mask_voxel_for_voxel(study, tmp_path):
    root, s = study
    ref = load_image(root / "t1")
    mask = _mask(ref)
    res = export_dicom_seg(mask, root / "t1", tmp_path / "seg.dcm")
    assert res.n_frames == 5 and res.referenced_series_uid == s["T1"]["uid"]
    ds = pydicom.dcmread(str(tmp_path / "seg.dcm"))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == s["T1"]["uid"]
    t1_sops = {str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID)
               for f in s["T1"]["files"]}
    frame_refs = {str(fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
                  for fg in ds.PerFrameFunctionalGroupsSequence}
    assert len(frame_refs) == 5 and frame_refs <= t1_sops
    assert ds.PatientIdentityRemoved == "YES"
    assert deid.find_identifiers([tmp_path / "seg.dcm"], _ids()) == []
    back = import_dicom_seg(tmp_path / "seg.dcm", root / "t1")
    np.testing.assert_array_equal(back.array, mask.array)
    assert back.grid_differences(ref, spacing_rtol=0, origin_atol=0, direction_atol=0) == []
    # the whole study folder as reference: the SEG finds its own series among five
    np.testing.assert_array_equal(import_dicom_seg(tmp_path / "seg.dcm", root).array, mask.array)


def test_keep_patient_and_semiautomatic(study, tmp_path):
    root, _ = study
    ref = load_image(root / "t1")
    export_dicom_seg(_mask(ref), root / "t1", tmp_path / "seg.dcm", keep_patient=True,
                     algorithm="semiautomatic", label="Lesion")
    ds = pydicom.dcmread(str(tmp_path / "seg.dcm"))
    assert str(ds.PatientID) == FAKE_PATIENT["PatientID"]
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert ds.SegmentSequence[0].SegmentLabel == "Lesion"


def test_seg_of_another_series_or_grid_is_refused(study, tmp_path):
    root, s = study
    ref = load_image(root / "t1")
    export_dicom_seg(_mask(ref), root / "t1", tmp_path / "seg.dcm")
    with pytest.raises(DicomSegError, match="references series .* another series"):
        import_dicom_seg(tmp_path / "seg.dcm", root / "dyn0")
    t2 = load_image(root / "t2")
    with pytest.raises(GeometryError, match="not on|size"):
        export_dicom_seg(_mask(ref), root / "t2", tmp_path / "bad.dcm")
    with pytest.raises(DicomSegError, match="not a readable DICOM Segmentation"):
        import_dicom_seg(s["T1"]["files"][0], root / "t1")
    assert t2.shape != ref.shape


def _rtstruct(path, ref, series_uid, study_uid, frame_uid, contours_index, name="GTV"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "RTSTRUCT", study_uid, generate_uid()
    ds.PatientName, ds.PatientID = FAKE_PATIENT["PatientName"], FAKE_PATIENT["PatientID"]
    se = Dataset()
    se.SeriesInstanceUID = series_uid
    st = Dataset()
    st.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    st.ReferencedSOPInstanceUID = study_uid
    st.RTReferencedSeriesSequence = Sequence([se])
    fr = Dataset()
    fr.FrameOfReferenceUID = frame_uid
    fr.RTReferencedStudySequence = Sequence([st])
    ds.ReferencedFrameOfReferenceSequence = Sequence([fr])
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 1, name, frame_uid
    ds.StructureSetROISequence = Sequence([roi])
    items = []
    for poly in contours_index:
        c = Dataset()
        c.ContourGeometricType = "CLOSED_PLANAR"
        pts = ref.index_to_physical(np.asarray(poly, float))
        c.NumberOfContourPoints = len(pts)
        c.ContourData = [f"{v:.6f}" for v in pts.ravel()]
        items.append(c)
    rc = Dataset()
    rc.ReferencedROINumber = 1
    rc.ContourSequence = Sequence(items)
    ds.ROIContourSequence = Sequence([rc])
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_rtstruct_contours_become_pixel_centre_masks(study, tmp_path):
    root, s = study
    ref = load_image(root / "t1")
    frame = str(pydicom.dcmread(str(s["T1"]["files"][0]), stop_before_pixels=True).FrameOfReferenceUID)
    study_uid = str(pydicom.dcmread(str(s["T1"]["files"][0]), stop_before_pixels=True).StudyInstanceUID)
    square = [(4.5, 6.5, 3), (10.5, 6.5, 3), (10.5, 12.5, 3), (4.5, 12.5, 3)]
    hole = [(7.5, 9.5, 3), (8.5, 9.5, 3), (8.5, 10.5, 3), (7.5, 10.5, 3)]
    other = [(2.6, 2.6, 5), (5.4, 2.6, 5), (5.4, 4.4, 5), (2.6, 4.4, 5)]
    rs = _rtstruct(tmp_path / "rs.dcm", ref, s["T1"]["uid"], study_uid, frame, [square, hole, other])
    assert rtstruct_rois(rs) == [(1, "GTV")]
    mask = import_rtstruct(rs, root)
    expected = np.zeros(ref.shape, np.uint8)
    expected[3, 7:13, 5:11] = 1                  # rows y 7..12, columns x 5..10
    expected[3, 10, 8] = 0                       # the hole (even-odd rule)
    expected[5, 3:5, 3:6] = 1
    np.testing.assert_array_equal(mask.array, expected)
    assert mask.same_grid(ref)
    other_series = _rtstruct(tmp_path / "rs2.dcm", ref, s["DCE_0"]["uid"], study_uid, frame, [square])
    with pytest.raises(DicomSegError, match="drawn on another series"):
        import_rtstruct(other_series, root / "t1")
    tilted = [(4.5, 6.5, 3), (10.5, 6.5, 3.6), (10.5, 12.5, 3), (4.5, 12.5, 3)]
    off = _rtstruct(tmp_path / "rs3.dcm", ref, s["T1"]["uid"], study_uid, frame, [tilted])
    with pytest.raises(DicomSegError, match="does not lie on a slice"):
        import_rtstruct(off, root / "t1")
    with pytest.raises(DicomSegError, match="not an RTSTRUCT"):
        import_rtstruct(s["T1"]["files"][0], root / "t1")


def test_cli_export_import(study, tmp_path, capsys, caplog):
    root, _ = study
    ref = load_image(root / "t1")
    mask = _mask(ref)
    mpath = save_image(mask, tmp_path / "mask.nii.gz")
    with caplog.at_level(logging.INFO):
        assert main(["dicom-seg", "export", "--mask", str(mpath), "--reference",
                     str(root / "t1"), "--out", str(tmp_path / "seg.dcm")]) == 0
    assert "5 frames" in capsys.readouterr().out
    # highdicom's per-module "copy attributes" INFO lines do not reach the user
    assert not [r for r in caplog.records if r.name.startswith("highdicom")]
    assert logging.getLogger("highdicom").level == logging.NOTSET    # level restored
    assert main(["dicom-seg", "import", "--seg", str(tmp_path / "seg.dcm"), "--reference",
                 str(root / "t1"), "--out", str(tmp_path / "back.nii.gz")]) == 0
    np.testing.assert_array_equal(load_image(tmp_path / "back.nii.gz").array, mask.array)
    assert main(["dicom-seg", "import", "--seg", str(tmp_path / "seg.dcm"), "--reference",
                 str(root / "t2"), "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "another series" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()
