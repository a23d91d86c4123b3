"""Series picker: list a multi-series study, map series to T1 / T2 / DCE phases, build a
4-D DCE on one grid, write a cohort case; bad mappings get one clear message."""
from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

from her2core import deid
from her2core.cli import main
from her2core.errors import GeometryError, Her2Error, ImageLoadError
from her2core.imaging import load_image
from her2core.imaging.dicom_synth import FAKE_PATIENT, write_study
from her2core.imaging.series import (build_case, build_case_series, list_series, resolve_series,
                                     suggest_mapping, write_case)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    return root, write_study(root)


def _ids():
    return [v for v in FAKE_PATIENT.values() if len(v) >= 3] + ["Testperson", "Erika"]


def test_list_series_describes_every_series_without_identifiers(study):
    root, s = study
    infos = list_series(root)
    assert [i.description for i in infos] == ["t1_fl3d_tra", "t2_tse_tra", "fl3d_dyn_ph0",
                                              "fl3d_dyn_ph1", "fl3d_dyn_ph2"]
    assert [i.series_number for i in infos] == [2, 3, 10, 11, 12]
    assert [i.time_offset_s for i in infos] == [0.0, 300.0, 600.0, 690.0, 780.0]
    assert [i.temporal_position for i in infos] == [None, None, 1, 2, 3]
    t1, t2 = infos[0], infos[1]
    assert (t1.rows, t1.columns, t1.n_slices, t1.modality) == (24, 20, 8, "MR")
    assert (t2.rows, t2.columns, t2.n_slices) == (16, 13, 8)
    assert t1.uid == s["T1"]["uid"]
    text = repr([i.to_dict() for i in infos])
    assert not any(v in text for v in _ids())
    assert suggest_mapping(infos) == {"T1": s["T1"]["uid"], "T2": s["T2"]["uid"],
                                      "DCE_phases": [s[f"DCE_{k}"]["uid"] for k in range(3)]}
    assert resolve_series("2", infos) == s["T2"]["uid"]
    with pytest.raises(ImageLoadError, match="1 to 5"):
        resolve_series("9", infos)


def test_build_case_stacks_phases_on_one_grid(study):
    root, s = study
    mapping = {"T1": s["T1"]["uid"], "T2": s["T2"]["uid"],
               "DCE_phases": [s[f"DCE_{k}"]["uid"] for k in range(3)]}
    built = build_case_series(root, mapping)
    case = built.images
    assert set(case) == {"T1", "T2", "DCE", "DCE_phases"}
    ph = case["DCE_phases"]
    assert ph.array.shape == (3, 8, 24, 20) and ph.sequence == "DCE_phases"
    for k in range(3):
        ref = s[f"DCE_{k}"]["image"]
        np.testing.assert_array_equal(ph.array[k], ref.array)
        assert ph.spatial_template().same_grid(ref)
    np.testing.assert_allclose(ph.direction, s["T1"]["image"].direction, atol=1e-9)
    np.testing.assert_array_equal(case["DCE"].array, ph.array[1])
    assert case["T2"].same_grid(s["T2"]["image"]) and not case["T2"].same_grid(case["T1"])
    assert any("phase 1" in n for n in built.notes)


def test_single_series_with_temporal_positions_is_split(tmp_path):
    s = write_study(tmp_path / "one", one_series_phases=True, n_phases=2)
    infos = list_series(tmp_path / "one")
    dyn = next(i for i in infos if i.uid == s["DCE"]["uid"])
    assert dyn.temporal_positions == 2 and dyn.n_slices == 16
    assert suggest_mapping(infos)["DCE_phases"] == [dyn.uid]
    case = build_case(tmp_path / "one", {"DCE_phases": [dyn.uid]})
    assert case["DCE_phases"].array.shape == (2, 8, 24, 20)


def test_bad_mappings_give_one_message(study, tmp_path):
    root, s = study
    with pytest.raises(GeometryError, match="different grids.*size"):
        build_case(root, {"DCE_phases": [s["DCE_0"]["uid"], s["T2"]["uid"]]})
    with pytest.raises(ImageLoadError, match="not found"):
        build_case(root, {"T1": "1.2.3"})
    with pytest.raises(ImageLoadError, match="unknown sequence"):
        build_case(root, {"FLAIR": s["T1"]["uid"]})
    with pytest.raises(ImageLoadError, match="at least two phases"):
        build_case(root, {"DCE_phases": [s["DCE_0"]["uid"]]})
    with pytest.raises(Her2Error, match="no series chosen"):
        build_case(root, {})


def test_zip_and_write_case_in_the_cohort_layout(study, tmp_path):
    root, s = study
    zpath = tmp_path / "study.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(root.rglob("*.dcm")):
            zf.write(f, f.relative_to(root).as_posix())
    assert len(list_series(zpath)) == 5
    case = build_case(zpath, {"T1": s["T1"]["uid"],
                              "DCE_phases": [s["DCE_0"]["uid"], s["DCE_1"]["uid"]]})
    cohort = tmp_path / "cohort"
    written = write_case(cohort, "pt-01", case)
    assert sorted(p.name for p in written) == ["DCE.nii.gz", "DCE_phases.nii.gz", "T1.nii.gz"]
    from her2core.cohort import read_cohort
    c = read_cohort(cohort)
    assert c.case_ids == ["pt-01"]
    files = c.files("pt-01")
    back = load_image(files.DCE_phases, sequence="DCE_phases")
    np.testing.assert_array_equal(back.array, case["DCE_phases"].array)
    assert back.spatial_template().same_grid(case["T1"])
    # a second case joins the same cohort.csv; an existing one is not overwritten
    write_case(cohort, "pt-02", {"T1": case["T1"]})
    assert read_cohort(cohort).case_ids == ["pt-01", "pt-02"]
    with pytest.raises(Her2Error, match="already has T1.nii.gz"):
        write_case(cohort, "pt-02", {"T1": case["T1"]})
    with pytest.raises(Her2Error, match="unsafe case_id"):
        write_case(cohort, "../x", {"T1": case["T1"]})
    assert deid.find_identifiers(list(cohort.rglob("*")), _ids()) == []


def test_series_cli_lists_and_builds(study, tmp_path, capsys):
    root, s = study
    assert main(["series", "list", "--dicom", str(root)]) == 0
    out = capsys.readouterr().out
    assert "t1_fl3d_tra" in out and "suggested: --t1 1 --t2 2 --dce-phases 3 4 5" in out
    assert not any(v in out for v in _ids())
    cohort = tmp_path / "c"
    assert main(["series", "build", "--dicom", str(root), "--cohort", str(cohort),
                 "--case-id", "A1", "--t1", "1", "--dce-phases", "3", "4", "5"]) == 0
    assert (cohort / "cases" / "A1" / "DCE_phases.nii.gz").exists()
    assert main(["series", "build", "--dicom", str(root), "--cohort", str(cohort),
                 "--case-id", "A2", "--dce-phases", "3", "2"]) == 2
    assert "different grids" in capsys.readouterr().err
    assert not (cohort / "cases" / "A2").exists()
    empty = tmp_path / "nodicom"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images", encoding="utf-8")
    assert main(["series", "list", "--dicom", str(empty)]) == 2
    assert "no DICOM image files" in capsys.readouterr().err
    shutil.rmtree(empty)


def test_a_demo_case_written_as_a_dicom_study_comes_back_voxel_for_voxel(tmp_path):
    # what the evidence and screenshot scripts do: demo-cohort case -> DICOM study (zip)
    # -> series picker -> cohort case equal to the demo's files, grid and voxels
    from her2core.imaging.dicom_synth import write_case_study
    from her2core.synthetic import make_cohort
    make_cohort(tmp_path / "demo", n=1, seed=3, centres=1, modalities="mri")
    case = tmp_path / "demo" / "cases" / "syn-0000"
    written = write_case_study(case, tmp_path / "study", zip_path=tmp_path / "study.zip")
    assert list(written) == ["T1", "T2", "DCE_0", "DCE_1", "DCE_2", "DCE_3"]
    infos = list_series(tmp_path / "study.zip")
    assert [i.description for i in infos] == ["t1_fl3d_tra_nonfs", "t2_tse_tra"] + [
        f"fl3d_dyn_ph{k}" for k in range(4)]
    guess = suggest_mapping(infos)
    assert guess["T1"] == written["T1"]["uid"] and guess["T2"] == written["T2"]["uid"]
    assert guess["DCE_phases"] == [written[f"DCE_{k}"]["uid"] for k in range(4)]
    built = build_case(tmp_path / "study.zip", guess)
    for role in ("T1", "T2", "DCE_phases"):
        ref = load_image(case / f"{role}.nii.gz")
        np.testing.assert_array_equal(built[role].array, ref.array)
        assert built[role].same_grid(ref), role
    assert deid.find_identifiers(written["T1"]["files"][:1], [FAKE_PATIENT["PatientID"]])
