"""The Case page as a radiologist works (issue 14 app parts, issue 17 items 2 and 10):
seeded segmentation, a second reader, DICOM SEG out and back in, the series picker of a
DICOM study, a PACS over DICOMweb, what the model reads, messages in the user's terms, and
upload folders that go with the session."""
from __future__ import annotations

import gc
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from streamlit.testing.v1 import AppTest

from her2core.imaging.dicom_synth import write_study

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
DEMO = ROOT / "assets" / "demo_cohort"


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _case_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    _run(at)
    at.switch_page("app_pages/case.py")
    return _run(at)


def _open_demo(case_id: str = "syn-0001") -> AppTest:
    if not (DEMO / "cohort.csv").is_file():
        pytest.skip("assets/demo_cohort is not in this checkout")
    at = _case_page()
    at.selectbox(key="demo_pick").set_value(case_id)
    at.button(key="open_demo").click()
    return _run(at)


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * np.count_nonzero(a & b) / (a.sum() + b.sum())


# ----------------------------------------------------------------------------- seeded ROI
def test_seed_on_the_slice_segments_the_lesion_and_a_bad_seed_loses_nothing():
    at = _open_demo("syn-0001")
    truth = at.session_state["editors"]["DCE"].mask.copy()
    idx = at.slider(key="case_slice_axial").value
    rr, cc = np.nonzero(truth[idx])
    at.button(key="case_clear").click()
    _run(at)
    assert at.session_state["editors"]["DCE"].voxels == 0
    at.number_input(key="case_seed_row").set_value(int(np.median(rr)))
    at.number_input(key="case_seed_col").set_value(int(np.median(cc)))
    at.button(key="case_segment").click()
    _run(at)
    ed = at.session_state["editors"]["DCE"]
    assert ed.voxels > 0 and _dice(ed.mask, truth) > 0.7, _dice(ed.mask, truth)
    assert at.session_state["roi_source"]["DCE"] == "assisted"
    assert any(t.startswith("Assisted ROI:") for t in _texts(at.caption))
    got = ed.mask.copy()
    # a seed in the background is refused with one message; the ROI drawn stays
    at.number_input(key="case_seed_row").set_value(0)
    at.number_input(key="case_seed_col").set_value(0)
    at.button(key="case_segment").click()
    _run(at)
    errs = _texts(at.error)
    assert errs and any("seed" in e.lower() or "lesion" in e.lower() for e in errs), errs
    np.testing.assert_array_equal(at.session_state["editors"]["DCE"].mask, got)
    # undo goes back to before the assisted ROI (it is an edit like any other)
    at.button(key="case_undo").click()
    _run(at)
    assert at.session_state["editors"]["DCE"].voxels == 0
    # and the caption about the assisted ROI goes with it
    assert not any(t.startswith("Assisted ROI:") for t in _texts(at.caption))


def test_box_on_the_slice_segments_the_lesion():
    at = _open_demo("syn-0001")
    truth = at.session_state["editors"]["DCE"].mask.copy()
    idx = at.slider(key="case_slice_axial").value
    rr, cc = np.nonzero(truth[idx])
    at.radio(key="case_seg_how").set_value("a box")
    _run(at)
    for k, v in (("r0", rr.min() - 2), ("c0", cc.min() - 2), ("r1", rr.max() + 2),
                 ("c1", cc.max() + 2)):
        at.number_input(key=f"case_box_{k}").set_value(int(v))
    at.button(key="case_segment").click()
    _run(at)
    got = at.session_state["editors"]["DCE"].mask
    assert _dice(got, truth) > 0.6, _dice(got, truth)
    assert got[:idx].any() or got[idx + 1:].any()          # a 3-D mask from one slice's box


# ----------------------------------------------------------------------------- second reader
def test_second_reader_roi_gives_dice_and_per_reader_features(tmp_path):
    at = _open_demo("syn-0001")
    m = sitk.ReadImage(str(DEMO / "cases/syn-0001/mask.nii.gz"))
    eroded = sitk.BinaryErode(m > 0, [1, 1, 0])
    p = tmp_path / "reader2.nii.gz"
    sitk.WriteImage(sitk.Cast(eroded, sitk.sitkUInt8), str(p))
    at.file_uploader(key="case_r2up").set_value(("reader2.nii.gz", p.read_bytes(), "application/gzip"))
    _run(at)
    at.button(key="case_r2apply").click()
    _run(at)
    a = sitk.GetArrayFromImage(m) > 0
    b = sitk.GetArrayFromImage(eroded) > 0
    want = 2 * (a & b).sum() / (a.sum() + b.sum())
    dice = next(x for x in at.metric if x.label == "Dice")
    assert dice.value == f"{want:.3f}"
    at.button(key="case_r2feat").click()
    _run(at)
    table = at.dataframe[-1].value
    assert {"reader 1", "reader 2"} <= set(table.columns)
    assert "original_shape_VoxelVolume" in table.index
    assert table.loc["original_shape_VoxelVolume", "reader 2"] < \
        table.loc["original_shape_VoxelVolume", "reader 1"]
    assert any("needs two or more cases" in c for c in _texts(at.caption))
    # a second case read by both readers: the per-feature ICC between readers appears
    at.selectbox(key="demo_pick").set_value("syn-0002")
    at.button(key="open_demo").click()
    _run(at)
    m2 = sitk.ReadImage(str(DEMO / "cases/syn-0002/mask.nii.gz"))
    sitk.WriteImage(sitk.Cast(sitk.BinaryErode(m2 > 0, [1, 1, 0]), sitk.sitkUInt8), str(p))
    at.file_uploader(key="case_r2up").set_value(("reader2.nii.gz", p.read_bytes(), "application/gzip"))
    _run(at)
    at.button(key="case_r2apply").click()
    _run(at)
    at.button(key="case_r2feat").click()
    _run(at)
    assert any("Per-feature ICC(3,1) between readers over 2 cases" in t for t in _texts(at.markdown))


def test_reader_icc_matches_the_selection_icc():
    import pandas as pd
    from her2core.imaging.agreement import reader_icc
    from her2core.selection import icc
    rng = np.random.default_rng(0)
    a = pd.DataFrame(rng.normal(size=(6, 3)), index=list("abcdef"), columns=["f1", "f2", "f3"])
    b = a + rng.normal(scale=0.3, size=a.shape)
    out = reader_icc(a, b.iloc[::-1])              # rows matched by case id, not position
    for f in a.columns:
        assert out.loc[f, "icc"] == pytest.approx(icc(np.column_stack([a[f], b[f]])), abs=1e-12)
    assert (out["n_cases"] == 6).all()


# ----------------------------------------------------------------------------- DICOM study
@pytest.fixture(scope="module")
def study_zip(tmp_path_factory) -> tuple[bytes, dict]:
    root = tmp_path_factory.mktemp("study")
    series = write_study(root / "s", n_phases=3)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted((root / "s").rglob("*.dcm")):
            z.write(f, str(f.relative_to(root)))
    return buf.getvalue(), series


def _open_study(study_zip) -> AppTest:
    data, _ = study_zip
    at = _case_page()
    at.file_uploader(key="up_study").set_value(("breast_mri_study.zip", data, "application/zip"))
    _run(at)
    at.button(key="study_list").click()
    return _run(at)


def test_series_picker_lists_the_series_and_builds_the_case(study_zip):
    _, series = study_zip
    at = _open_study(study_zip)
    table = at.dataframe[0].value
    assert len(table) == 5 and list(table["slices"]) == [8] * 5
    assert at.selectbox(key="picker_T1").value == series["T1"]["uid"]
    assert at.selectbox(key="picker_T2").value == series["T2"]["uid"]
    assert at.multiselect(key="picker_phases").value == [series[f"DCE_{k}"]["uid"] for k in range(3)]
    # the user changes the mapping: no T2
    at.selectbox(key="picker_T2").set_value("none")
    _run(at)
    at.text_input(key="picker_case_id").set_value("mri-7")
    at.button(key="picker_open").click()
    _run(at)
    case = at.session_state["case"]
    assert case.case_id == "mri-7" and case.sequences == ["DCE", "T1"]
    assert "DCE_phases" in case.files
    assert case.dicom["DCE"][1] == series["DCE_1"]["uid"]      # DCE = first post-contrast phase
    assert case.dicom["T1"][1] == series["T1"]["uid"]
    img = at.session_state["case"]
    from webapp import services as S
    dce, _ = S.canonical_for(img, "DCE")
    np.testing.assert_array_equal(dce.array, series["DCE_1"]["image"].array)
    assert any("breast_mri_study.zip" in c for c in _texts(at.caption))


def test_roi_goes_out_as_dicom_seg_and_comes_back_voxel_for_voxel(study_zip, tmp_path):
    _, series = study_zip
    at = _open_study(study_zip)
    at.button(key="picker_open").click()
    _run(at)
    ed = at.session_state["editors"]["DCE"]
    roi = np.zeros(ed.mask.shape, bool)
    roi[2:6, 8:15, 6:13] = True
    ed.set_mask(roi)
    _run(at)
    at.button(key="case_segmake").click()
    _run(at)
    data = at.session_state["seg_export"][3]
    assert [b.label for b in at.get("download_button") if "SEG" in b.label] == ["Download the DICOM SEG"]
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.Modality == "SEG"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series["DCE_1"]["uid"]
    assert str(ds.get("PatientName", "")) == ""                # no identifiers leave the app
    at.button(key="case_clear").click()
    _run(at)
    at.file_uploader(key="case_segup").set_value(("roi_seg.dcm", data, "application/dicom"))
    _run(at)
    at.button(key="case_segapply").click()
    _run(at)
    np.testing.assert_array_equal(at.session_state["editors"]["DCE"].mask, roi)
    assert at.session_state["roi_source"]["DCE"] == "DICOM SEG"
    assert not any(t.startswith("Assisted ROI:") for t in _texts(at.caption))
    # a SEG of another series (T1) is refused while DCE is shown; the ROI stays
    from her2core.imaging import load_image
    from her2core.imaging.dicom_seg import export_dicom_seg
    t1_dir = Path(series["T1"]["files"][0]).parent
    t1 = load_image(t1_dir)
    m = np.zeros(t1.shape, np.uint8)
    m[3:5, 5:9, 5:9] = 1
    export_dicom_seg(t1.with_array(m, sequence="mask", modality="SEG"), t1_dir, tmp_path / "t1.dcm")
    at.file_uploader(key="case_segup").set_value(("t1_seg.dcm", (tmp_path / "t1.dcm").read_bytes(),
                                                  "application/dicom"))
    _run(at)
    at.button(key="case_segapply").click()
    _run(at)
    assert any("another series" in e and "t1_seg.dcm" in e for e in _texts(at.error)), _texts(at.error)
    np.testing.assert_array_equal(at.session_state["editors"]["DCE"].mask, roi)


def test_demo_case_says_why_there_is_no_dicom_seg():
    at = _open_demo("syn-0001")
    assert any("was not opened from DICOM series" in c for c in _texts(at.caption))


# ----------------------------------------------------------------------------- PACS
def test_unreachable_pacs_is_one_visible_message():
    at = _case_page()
    at.text_input(key="pacs_url").set_value("http://127.0.0.1:9/dicom-web")
    _run(at)
    at.button(key="pacs_search").click()
    _run(at)
    errs = _texts(at.error)
    assert errs and any("127.0.0.1:9" in e for e in errs), errs
    assert not any("Traceback" in e for e in errs)
    at.text_input(key="pacs_url").set_value("pacs.example.org")
    _run(at)
    at.button(key="pacs_search").click()
    _run(at)
    assert any("not a DICOMweb URL" in e for e in _texts(at.error))


@pytest.mark.slow
def test_pacs_search_retrieve_pick_and_open(tmp_path):
    from her2core import pacs
    if pacs.orthanc_binary() is None:
        pytest.skip("Orthanc is not installed")
    study = tmp_path / "study"
    series = write_study(study, n_phases=2)
    with pacs.local_orthanc(tmp_path / "server") as srv:
        files = sorted(str(f) for f in study.rglob("*.dcm"))
        pacs.store_instances(srv.url, files, client=srv.client())
        at = _case_page()
        at.text_input(key="pacs_url").set_value(srv.url)
        at.text_input(key="pacs_user").set_value("her2")
        at.text_input(key="pacs_password").set_value("her2-test")
        _run(at)
        at.button(key="pacs_search").click()
        _run(at)
        assert len(at.dataframe[0].value) == 1
        at.button(key="pacs_fetch").click()
        _run(at)
        assert any("de-identified" in s for s in _texts(at.success))
        assert at.selectbox(key="picker_T1").value != "none"
        at.button(key="picker_open").click()
        _run(at)
    case = at.session_state["case"]
    assert case.sequences == ["DCE", "T1", "T2"]
    from webapp import services as S
    t1, _ = S.canonical_for(case, "T1")
    np.testing.assert_array_equal(t1.array, series["T1"]["image"].array)
    assert "FAKE" not in str(t1.meta) and "Testperson" not in str(t1.meta)


# ----------------------------------------------------------------------------- model needs
def test_case_page_shows_what_the_model_reads(with_bundle):
    at = _open_demo("syn-0001")
    assert any("What this model reads" in t for t in _texts(at.markdown))
    from PIL import Image as PILImage
    buf = io.BytesIO()
    PILImage.fromarray(np.zeros((30, 30), np.uint8)).save(buf, format="PNG")
    at.file_uploader(key="up_US").set_value(("us.png", buf.getvalue(), "image/png"))
    _run(at)
    at.button(key="load_upload").click()
    _run(at)
    warns = _texts(at.warning)
    assert any("This model reads" in w and "the case has no" in w for w in warns), warns
    assert not at.error, _texts(at.error)            # the upload itself is fine


# ----------------------------------------------------------------------------- messages
def test_upload_errors_name_the_users_file_in_the_apps_terms(tmp_path):
    at = _case_page()
    at.file_uploader(key="up_DCE").set_value(("notes.nii.gz", b"not an image", "application/gzip"))
    _run(at)
    at.button(key="load_upload").click()
    _run(at)
    errs = _texts(at.error)
    assert errs and "notes.nii.gz" in errs[0], errs
    for bad in ("DCE__", "her2_upload_", "/tmp", "0x", "please report"):
        assert bad not in errs[0], errs[0]
    assert "What to do:" in errs[0]
    # a mask on another grid: no "pass resample=True" (no such control in the app)
    img = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 400, (6, 20, 24)).astype(np.int16))
    img.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(img, str(tmp_path / "t1.nii.gz"))
    mask = sitk.GetImageFromArray(np.ones((6, 10, 12), np.uint8))
    mask.SetSpacing((1.6, 1.6, 3.0))
    mask.SetOrigin((40.0, 0.0, 0.0))
    sitk.WriteImage(mask, str(tmp_path / "my_roi.nii.gz"))
    at.file_uploader(key="up_DCE").set_value(None)
    at.file_uploader(key="up_T1").set_value(("t1.nii.gz", (tmp_path / "t1.nii.gz").read_bytes(),
                                             "application/gzip"))
    at.file_uploader(key="up_mask").set_value(("my_roi.nii.gz", (tmp_path / "my_roi.nii.gz").read_bytes(),
                                               "application/gzip"))
    _run(at)
    at.button(key="load_upload").click()
    _run(at)
    errs = _texts(at.error)
    assert errs and "my_roi.nii.gz" in errs[0], errs
    assert "resample=True" not in errs[0] and "mask__" not in errs[0], errs[0]


def test_cli_messages_stay_complete(tmp_path, capsys):
    from her2core.cli import main
    p = tmp_path / "DCE__notes.nii.gz"
    p.write_bytes(b"garbage")
    rc = main(["segment", "--image", str(p), "--seed-index", "1,1,1", "--out",
               str(tmp_path / "m.nii.gz")])
    err = capsys.readouterr().err
    assert rc != 0 and str(p) in err and "0x" not in err


# ----------------------------------------------------------------------------- cleanup
def test_upload_folder_goes_with_the_case_and_the_session(tmp_path):
    img = sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 400, (4, 16, 16)).astype(np.int16))
    sitk.WriteImage(img, str(tmp_path / "t1.nii.gz"))
    at = _case_page()
    at.file_uploader(key="up_T1").set_value(("t1.nii.gz", (tmp_path / "t1.nii.gz").read_bytes(),
                                             "application/gzip"))
    _run(at)
    at.button(key="load_upload").click()
    _run(at)
    first = Path(at.session_state["case"].folder)
    assert first.is_dir() and (first / next(iter(first.iterdir())).name).exists()
    assert Path(at.session_state["case"].files["T1"]).name == "t1.nii.gz"   # the user's name
    # a second upload replaces the case: the first one's files are removed
    at.button(key="load_upload").click()
    _run(at)
    second = Path(at.session_state["case"].folder)
    assert second.is_dir() and second != first and not first.exists()
    # a refused upload keeps nothing
    before = set(second.parent.iterdir())
    at.file_uploader(key="up_T1").set_value(("bad.nii.gz", b"xx", "application/gzip"))
    _run(at)
    at.button(key="load_upload").click()
    _run(at)
    assert set(second.parent.iterdir()) == before
    # the session's folder goes when the session's state goes
    from webapp.services import UploadFolder
    owner = at.session_state["upload_owner"]
    assert isinstance(owner, UploadFolder) and owner.path == second.parent
    folder = UploadFolder()
    path = folder.path
    (path / "x").write_text("x")
    del folder
    gc.collect()
    assert not path.exists()


def test_stale_upload_folders_are_swept(tmp_path, monkeypatch):
    import os
    import tempfile
    from webapp import services as S
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = tmp_path / (S.UPLOAD_PREFIX + "old")
    new = tmp_path / (S.UPLOAD_PREFIX + "new")
    old.mkdir(), new.mkdir()
    os.utime(old, (0, 0))
    assert S.sweep_stale_uploads() == 1
    assert not old.exists() and new.exists()
