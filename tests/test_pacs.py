"""DICOMweb against a real Orthanc (Debian orthanc + orthanc-dicomweb) on a free local port:
push a study with patient identifiers, search it, retrieve it through her2core.pacs, check
geometry and de-identification, store a DICOM SEG back; servers that are unreachable or
refuse, and a study without images, give one clear message."""
from __future__ import annotations

import glob

import numpy as np
import pydicom
import pytest

from her2core import deid, pacs
from her2core.cli import main
from her2core.imaging import load_image
from her2core.imaging.dicom_seg import export_dicom_seg, import_dicom_seg
from her2core.imaging.dicom_synth import FAKE_PATIENT, write_sr_only_study, write_study
from her2core.imaging.series import build_case, list_series, suggest_mapping

pytestmark = pytest.mark.skipif(pacs.orthanc_binary() is None,
                                reason="Orthanc is not installed (apt-get install orthanc "
                                       "orthanc-dicomweb)")


def _ids():
    return [v for v in FAKE_PATIENT.values() if len(v) >= 3] + ["Testperson", "Erika", "Quincy"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("orthanc")
    study_dir = root / "study"
    series = write_study(study_dir, n_phases=2)
    with pacs.local_orthanc(root / "server") as srv:
        files = sorted(str(f) for f in study_dir.rglob("*.dcm"))
        assert pacs.store_instances(srv.url, files, client=srv.client()) == len(files)
        study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        yield srv, study_dir, series, study_uid


def test_find_studies_by_patient_and_date(server):
    srv, _, _, study_uid = server
    client = srv.client()
    found = pacs.find_studies(srv.url, patient_id=FAKE_PATIENT["PatientID"], client=client)
    assert [s.study_uid for s in found] == [study_uid]
    st = found[0]
    assert st.date == "20240312" and st.modalities == ["MR"] and st.n_series in (4, 5)
    assert st.description == "MR BREAST BILAT"
    assert st.line().split("\t")[:4] == [study_uid, "20240312", "MR", "MR BREAST BILAT"]
    assert [s.study_uid for s in pacs.find_studies(srv.url, study_date="20240101-20241231",
                                                   client=client)] == [study_uid]
    assert pacs.find_studies(srv.url, study_date="20250101-", client=client) == []
    with pytest.raises(pacs.PacsError, match="not YYYYMMDD"):
        pacs.find_studies(srv.url, study_date="March 2024", client=client)


def test_fetch_is_de_identified_and_keeps_geometry(server, tmp_path):
    srv, study_dir, series, study_uid = server
    res = pacs.fetch_study(srv.url, study_uid, tmp_path / "got", client=srv.client())
    assert res.n_files == 4 * 8 and len(res.series) == 4
    files = glob.glob(str(tmp_path / "got" / "*" / "*.dcm"))
    assert len(files) == 32
    assert deid.find_identifiers(files, _ids()) == []
    ds = pydicom.dcmread(files[0])
    assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName) == ""
    assert not str(ds.StudyInstanceUID).startswith(study_uid[:20])      # UIDs replaced
    infos = list_series(tmp_path / "got")
    assert [i.description for i in infos] == ["t1_fl3d_tra", "t2_tse_tra", "fl3d_dyn_ph0",
                                              "fl3d_dyn_ph1"]
    assert [i.time_offset_s for i in infos] == [0.0, 300.0, 600.0, 690.0]
    case = build_case(tmp_path / "got", suggest_mapping(infos))
    for role, key in (("T1", "T1"), ("T2", "T2")):
        ref = series[key]["image"]
        got = case[role]
        np.testing.assert_array_equal(got.array, ref.array)
        np.testing.assert_allclose(got.spacing, ref.spacing, rtol=1e-6)
        np.testing.assert_allclose(got.origin, ref.origin, atol=1e-5)
        np.testing.assert_allclose(got.direction, ref.direction, atol=1e-6)
    np.testing.assert_array_equal(case["DCE_phases"].array[1], series["DCE_1"]["image"].array)
    # the same study again: same de-identified UIDs (one-way hash), refused into a full folder
    with pytest.raises(pacs.PacsError, match="not empty"):
        pacs.fetch_study(srv.url, study_uid, tmp_path / "got", client=srv.client())
    one = pacs.fetch_study(srv.url, study_uid, tmp_path / "t1only", client=srv.client(),
                           series=[series["T1"]["uid"]])
    assert one.n_files == 8
    assert list_series(tmp_path / "t1only")[0].uid == infos[0].uid


def test_seg_made_on_a_fetched_series_goes_back_to_the_server(server, tmp_path):
    srv, study_dir, series, study_uid = server
    client = srv.client()
    got = tmp_path / "got"
    pacs.fetch_study(srv.url, study_uid, got, client=client, series=[series["T1"]["uid"]])
    ref_dir = got / "S01_MR"
    ref = load_image(ref_dir)
    m = np.zeros(ref.shape, np.uint8)
    m[2:5, 6:12, 5:11] = 1
    out = export_dicom_seg(ref.with_array(m), ref_dir, tmp_path / "seg.dcm")
    assert deid.find_identifiers([out.path], _ids()) == []
    # without relinking it would land in a new, de-identified study; relinked it joins the
    # server's study and references the server's T1 series
    assert pacs.store_instances(srv.url, [out.path], client=client, relink=got) == 1
    remote = pacs.find_series(srv.url, study_uid, client=client)
    assert sorted(s.modality for s in remote) == ["MR", "MR", "MR", "MR", "SEG"]
    seg_uid = next(s.uid for s in remote if s.modality == "SEG")
    stored = list(client.iter_series(study_uid, seg_uid))
    assert len(stored) == 1
    assert stored[0].ReferencedSeriesSequence[0].SeriesInstanceUID == series["T1"]["uid"]
    assert str(stored[0].PatientID) == FAKE_PATIENT["PatientID"]
    stored[0].save_as(str(tmp_path / "server_seg.dcm"))
    np.testing.assert_array_equal(import_dicom_seg(tmp_path / "server_seg.dcm",
                                                   study_dir / "t1").array, m)
    assert not any(v in (tmp_path / "seg.dcm").read_bytes().decode("latin-1") for v in _ids())
    with pytest.raises(pacs.PacsError, match="no image series"):
        pacs.fetch_study(srv.url, study_uid, tmp_path / "segonly", client=client,
                         series=[seg_uid])
    with pytest.raises(pacs.PacsError, match="no readable uid_map.json"):
        pacs.store_instances(srv.url, [out.path], client=client, relink=tmp_path / "nothing")


def test_unreachable_refusing_and_empty(server, tmp_path):
    srv, _, _, study_uid = server
    with pytest.raises(pacs.PacsError, match="needs credentials.*HTTP 401"):
        pacs.find_studies(srv.url)                        # no credentials
    with pytest.raises(pacs.PacsError, match="has no such resource|HTTP 404"):
        pacs.find_studies(srv.url.replace("dicom-web", "no-such-root"), client=pacs.connect(
            srv.url.replace("dicom-web", "no-such-root"), headers=srv.headers))
    closed = f"http://127.0.0.1:{_closed_port()}/dicom-web"
    with pytest.raises(pacs.PacsError, match="cannot reach"):
        pacs.find_studies(closed)
    with pytest.raises(pacs.PacsError, match="not a DICOMweb URL"):
        pacs.connect("ftp://x")
    with pytest.raises(pacs.PacsError, match="not found"):
        pacs.fetch_study(srv.url, "1.2.3.4.5", tmp_path / "x", client=srv.client())
    sr_study = write_sr_only_study(tmp_path / "sr.dcm")
    pacs.store_instances(srv.url, [tmp_path / "sr.dcm"], client=srv.client())
    with pytest.raises(pacs.PacsError, match="no image series .*SR only"):
        pacs.fetch_study(srv.url, sr_study, tmp_path / "sr", client=srv.client())
    assert not (tmp_path / "sr").exists() and not (tmp_path / "sr.partial").exists()


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_find_and_fetch(server, tmp_path, capsys, caplog):
    srv, _, _, study_uid = server
    user_url = srv.url.replace("http://", "http://her2:her2-test@")
    assert main(["pacs", "find", "--url", user_url, "--patient-id",
                 FAKE_PATIENT["PatientID"]]) == 0
    out = capsys.readouterr().out
    expected = [st.line() for st in pacs.find_studies(srv.url, client=srv.client(),
                                                      patient_id=FAKE_PATIENT["PatientID"])]
    assert out.splitlines() == expected
    assert expected[0].startswith(f"{study_uid}\t20240312\tMR")
    with caplog.at_level("INFO"):
        assert main(["pacs", "fetch", "--url", user_url, "--study", study_uid,
                     "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    # the fetch's own uid_map.json is not reported as a skipped stray file
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    assert "retrieved 32 files in 4 series" in out and "suggested: --t1 1 --t2 2" in out
    assert (tmp_path / "f" / "uid_map.json").exists()
    assert not any(v in out for v in _ids())
    assert main(["pacs", "find", "--url", f"http://127.0.0.1:{_closed_port()}/dicom-web"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach") and len(err.strip().splitlines()) == 1
    assert main(["pacs", "fetch", "--url", user_url, "--study", study_uid,
                 "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
