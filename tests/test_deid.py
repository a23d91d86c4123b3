"""Patient identifiers never reach logs or outputs; the Basic Profile strips DICOM copies."""
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from her2core import deid
from her2core.imaging.io import load_image, save_image

NAME, PID, BIRTH, ACC = "Doe^Janet", "MRN-0042-77", "19580214", "ACC-99817"


@pytest.fixture(autouse=True)
def _fresh_registry():
    deid.clear_identifiers()
    yield
    deid.clear_identifiers()


def _series(folder: Path) -> Path:
    folder.mkdir()
    arr = (np.arange(5 * 6 * 7) % 50).reshape(5, 6, 7).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.9, 2.0))
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    for z in range(5):
        sl = img[:, :, z]
        pos = img.TransformIndexToPhysicalPoint((0, 0, z))
        for tag, v in [("0010|0010", NAME), ("0010|0020", PID), ("0010|0030", BIRTH),
                       ("0008|0050", ACC), ("0008|0060", "MR"), ("0020|000e", "1.2.3.4.5"),
                       ("0020|0032", "\\".join(map(str, pos))), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                       ("0028|0030", "0.9\\0.8"), ("0008|0018", f"1.2.3.4.5.{z}")]:
            sl.SetMetaData(tag, v)
        w.SetFileName(str(folder / f"{z}.dcm"))
        w.Execute(sl)
    return folder


def test_loading_dicom_registers_identifiers_and_logs_redact_them(tmp_path, caplog):
    folder = _series(tmp_path / "DCE")
    image = load_image(folder, sequence="DCE")
    assert image.array.shape == (5, 6, 7)
    assert NAME not in repr(image.meta) and PID not in repr(image.meta)
    assert {NAME, PID, BIRTH, ACC, "Doe Janet", "Janet"} <= deid.registered_identifiers()
    logger = logging.getLogger("her2core.test")
    deid.install_log_redaction(logging.getLogger())
    caplog.handler.addFilter(deid.RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("case for %s (%s) born %s", NAME, PID, BIRTH)
    assert NAME not in caplog.text and PID not in caplog.text and BIRTH not in caplog.text
    assert caplog.text.count(deid.REDACTED) == 3


def test_written_nifti_carries_no_identifier_and_scan_finds_planted_ones(tmp_path):
    folder = _series(tmp_path / "T1")
    image = load_image(folder, sequence="T1")
    out = save_image(image, tmp_path / "T1.nii.gz")
    report = tmp_path / "report.json"
    report.write_text('{"case": "A1", "note": "seen by Dr X"}')
    assert deid.find_identifiers([out, report]) == []
    leaked = tmp_path / "leak.csv"
    leaked.write_text(f"case_id,name\nA1,{NAME.lower()}\n")
    hits = deid.find_identifiers([leaked])
    assert {f for f, _ in hits} == {str(leaked)}
    assert {NAME, "Janet", "Doe"} <= {v for _, v in hits}


def test_basic_profile_removes_identifiers_and_replaces_uids(tmp_path):
    folder = _series(tmp_path / "S")
    ds = pydicom.dcmread(str(folder / "0.dcm"))
    old_sop = ds.SOPInstanceUID
    deid.deidentify_dataset(ds)
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        assert kw not in ds
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.SOPInstanceUID != old_sop and ds.SOPInstanceUID.startswith("2.25.")
    # deterministic: the same UID maps to the same new UID, so series stay together
    ds2 = pydicom.dcmread(str(folder / "0.dcm"))
    assert deid.deidentify_dataset(ds2).SOPInstanceUID == ds.SOPInstanceUID
    out = tmp_path / "deid.dcm"
    ds.save_as(str(out))
    assert deid.find_identifiers([out], [NAME, PID, BIRTH, ACC]) == []


def test_profile_lists_name_real_dicom_attributes():
    from pydicom.datadict import keyword_dict
    unknown = [k for k in deid.BASIC_PROFILE_REMOVE + deid.IDENTIFYING_VALUES + deid.UID_ATTRIBUTES
               if k not in keyword_dict]
    assert unknown == []
