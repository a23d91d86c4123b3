"""cohort.csv parsing, typing, labels, subsets and write/read round trips."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from numpy.testing import assert_allclose, assert_array_equal

from her2core.cohort import (CaseFiles, read_cohort, validate_cohort, write_cohort,
                             is_safe_case_id)
from her2core.errors import CohortError

HEADER = ("case_id,her2,her2_ihc,center,age,menopausal,er,pr,ki67,grade,tumor_size_mm,"
          "enhancement_curve,mass_shape,my_score,note\n")


def _write(tmp_path, text: str | bytes, name="c"):
    root = tmp_path / name
    root.mkdir()
    p = root / "cohort.csv"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return root


GOOD = HEADER + (
    "P1,1,3+,A,54,1,0,0,80,3,27.5,washout,irregular,0.5,first\n"
    "P2,0,1+,A,61,1,1,1,10,2,18,plateau,round_oval,,\n"
    "P3,0,0,B,45,0,1,,35.5,2,22,persistent,irregular,1.25,x\n"
    "P4,0,2+,B,,,,,,,,,,,\n"
    "P5,,3+,B,70,1,0,1,90,3,40,washout,irregular,2,\n"
    "P6,,,A,50,1,1,1,5,1,9,plateau,round_oval,3,\n"
)


def test_typed_table_and_missing_is_nan(tmp_path):
    c = read_cohort(_write(tmp_path, GOOD))
    t = c.table
    assert c.case_ids == ["P1", "P2", "P3", "P4", "P5", "P6"]
    assert not c.problems
    assert t.index.name == "case_id"
    assert_allclose(t["age"].to_numpy(), [54, 61, 45, np.nan, 70, 50])
    assert t["pr"].dtype == float and np.isnan(t.loc["P3", "pr"])   # empty is missing, not 0
    assert t.loc["P3", "er"] == 1.0 and t.loc["P1", "er"] == 0.0
    assert list(t["her2_ihc"].cat.categories) == ["0", "1+", "2+", "3+"]
    assert t.loc["P3", "her2_ihc"] == "0"
    assert pd.isna(t.loc["P6", "her2_ihc"])
    assert list(t["enhancement_curve"].cat.categories) == ["persistent", "plateau", "washout"]
    assert_allclose(t["my_score"].to_numpy(), [0.5, np.nan, 1.25, np.nan, 2, 3])  # extra numeric
    assert t.loc["P3", "note"] == "x" and pd.isna(t.loc["P2", "note"])           # extra text
    assert list(t.columns) == HEADER.strip().split(",")[1:]


def test_labels_her2_and_her2_low(tmp_path):
    c = read_cohort(_write(tmp_path, GOOD))
    y = c.labels("her2")
    # P5 has no her2 but IHC 3+ -> positive; P6 has neither -> left out
    assert y.to_dict() == {"P1": 1, "P2": 0, "P3": 0, "P4": 0, "P5": 1}
    low = c.labels("her2_low")
    # negatives only: P2 1+ -> low, P3 0 -> zero, P4 2+ without amplification -> low
    assert low.to_dict() == {"P2": 1, "P3": 0, "P4": 1}
    assert low.dtype.kind == "i" and low.name == "her2_low"
    with pytest.raises(ValueError, match="unknown task"):
        c.labels("er")


def test_subset_and_external_split(tmp_path):
    c = read_cohort(_write(tmp_path, GOOD))
    assert c.subset("center=A").case_ids == ["P1", "P2", "P6"]
    assert c.subset("center!=A").case_ids == ["P3", "P4", "P5"]
    assert c.exclude("center=A").case_ids == ["P3", "P4", "P5"]
    assert c.subset("center=B & er=1").case_ids == ["P3"]
    assert c.subset("her2_ihc=3+").case_ids == ["P1", "P5"]
    assert c.subset("er=1", invert=True).case_ids == ["P1", "P4", "P5"]  # missing -> complement
    train, test = c.external_split("center", "B")
    assert train.case_ids == ["P1", "P2", "P6"] and test.case_ids == ["P3", "P4", "P5"]
    with pytest.raises(CohortError, match="no column"):
        c.subset("hospital=A")
    with pytest.raises(CohortError, match="no case has"):
        c.external_split("center", "Z")


def test_bom_accepted_other_encodings_rejected(tmp_path):
    c = read_cohort(_write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode(), "bom"))
    assert c.case_ids[0] == "P1" and "her2" in c.table
    latin = ("case_id,center\nP1,Zürich\n").encode("latin-1")
    with pytest.raises(CohortError, match=r"cohort.csv.*not UTF-8.*line 2"):
        read_cohort(_write(tmp_path, latin, "latin"))
    with pytest.raises(CohortError, match="UTF-16"):
        read_cohort(_write(tmp_path, "case_id\nP1\n".encode("utf-16"), "u16"))
    with pytest.raises(CohortError, match="semicolons"):
        read_cohort(_write(tmp_path, "case_id;her2\nP1;1\n", "semi"))
    with pytest.raises(CohortError, match="missing"):
        read_cohort(tmp_path / "bom" / "nope") if False else read_cohort(tmp_path / "u16" / "..")


BAD = ("case_id,her2,her2_ihc,age,ki67,grade,tumor_size_mm,er,enhancement_curve,eer\n"
       "OK1,1,3+,50,20,2,20,1,washout,0.6\n"
       "AGE,0,0,150,20,2,20,1,plateau,0.6\n"
       "KI,0,1+,50,120,2,20,1,plateau,0.6\n"
       "GRADE,0,1+,50,20,4,20,1,plateau,0.6\n"
       "SIZE,0,1+,50,20,2,0,1,plateau,0.6\n"
       "TEXT,0,1+,50,20,2,big,1,plateau,0.6\n"
       "NA,0,1+,NA,20,2,20,1,plateau,0.6\n"
       "CODE,0,4+,50,20,2,20,yes,fast,0.6\n"
       "DUP,0,0,50,20,2,20,1,plateau,0.6\n"
       "DUP,1,3+,50,20,2,20,1,plateau,0.6\n"
       "../evil,0,0,50,20,2,20,1,plateau,0.6\n"
       "a/b,0,0,50,20,2,20,1,plateau,0.6\n"
       "CONTRA,1,0,50,20,2,20,1,plateau,0.6\n"
       "OK2,0,2+,50,20,2,20,0,persistent,0.6\n")


def test_bad_values_are_problems_naming_case_and_column(tmp_path):
    root = _write(tmp_path, BAD)
    kept = read_cohort(root, on_problem="keep")
    msgs = {str(p) for p in kept.problems}

    def has(case, col, words):
        hit = [m for m in msgs if m.startswith(f"case {case}, file cohort.csv: column {col}:")
               and all(w in m for w in words)]
        assert hit, (case, col, sorted(msgs))

    has("AGE", "age", ["'150'", "out of range", "0-120"])
    has("KI", "ki67", ["'120'", "0-100"])
    has("GRADE", "grade", ["'4'", "1, 2 or 3"])
    has("SIZE", "tumor_size_mm", ["'0'", "> 0"])
    has("TEXT", "tumor_size_mm", ["'big'", "not a number"])
    has("NA", "age", ["'NA'", "leave the cell empty"])
    has("CODE", "her2_ihc", ["'4+'", "0, 1+, 2+, 3+"])
    has("CODE", "er", ["'yes'", "not 0, 1"])
    has("CODE", "enhancement_curve", ["'fast'", "persistent, plateau, washout"])
    has("DUP", "case_id", ["appears 2 times"])
    has("../evil", "case_id", ["unsafe"])
    has("a/b", "case_id", ["unsafe"])
    has("CONTRA", "her2", ["contradicts her2_ihc = 0"])
    assert np.isnan(kept.table.loc["AGE", "age"])  # bad cell emptied, not clamped
    dropped = read_cohort(root)  # default: rows with problems are left out
    assert dropped.case_ids == ["OK1", "OK2"]
    with pytest.raises(CohortError, match=r"13 problem\(s\)"):
        read_cohort(root, on_problem="raise")


def test_safe_ids():
    assert is_safe_case_id("Pat-001_b")
    for bad in ("", "..", "a/b", "a\\b", "../x", "a b", "é", "x" * 129, "a.b"):
        assert not is_safe_case_id(bad)


def _img(arr, spacing=(0.8, 0.8, 2.0), origin=(10.0, -5.0, 3.0),
         direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)):
    from her2core.imaging import Image
    return Image(np.asarray(arr), spacing, origin, direction)


def test_round_trip_write_read(tmp_path):
    pytest.importorskip("her2core.imaging")
    c = read_cohort(_write(tmp_path, GOOD))
    rng = np.random.default_rng(0)
    dce = rng.integers(0, 1000, (6, 10, 12)).astype(np.int16)
    mask = np.zeros((6, 10, 12), np.uint8)
    mask[2:4, 3:6, 4:8] = 1
    images = {"P1": {"DCE": _img(dce), "mask": _img(mask),
                     "DCE_phases": _img(np.stack([dce, dce + 5, dce + 9])),
                     "US": _img(rng.integers(0, 255, (20, 24)).astype(np.uint8), (0.1, 0.1),
                                (0.0, 0.0), (1, 0, 0, 1)),
                     "US_mask": _img((rng.random((20, 24)) > 0.7).astype(np.uint8), (0.1, 0.1),
                                     (0.0, 0.0), (1, 0, 0, 1))}}
    out = write_cohort(tmp_path / "out", c.table, images)
    back = read_cohort(out, on_problem="raise")
    pd.testing.assert_frame_equal(back.table, c.table, check_dtype=False)
    f = back.files("P1")
    assert isinstance(f, CaseFiles)
    assert f.DCE.name == "DCE.nii.gz" and f.mask.name == "mask.nii.gz"
    assert f.US.name == "US.nii.gz" and f.T1 is None
    got = sitk.ReadImage(str(f.DCE))
    assert_array_equal(sitk.GetArrayFromImage(got), dce)
    assert_allclose(got.GetSpacing(), (0.8, 0.8, 2.0))
    assert_allclose(got.GetOrigin(), (10.0, -5.0, 3.0))
    assert_allclose(got.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert sitk.ReadImage(str(f.DCE_phases)).GetSize() == (12, 10, 6, 3)
    assert back.files("P2").present() == {}
    with pytest.raises(CohortError):
        write_cohort(tmp_path / "out", c.table)          # no silent overwrite
    with pytest.raises(CohortError, match="unsafe"):
        write_cohort(tmp_path / "o2", pd.DataFrame({"case_id": ["../x"], "age": [3]}))
    with pytest.raises(CohortError, match="unknown image name"):
        write_cohort(tmp_path / "o3", c.table, {"P1": {"FLAIR": _img(dce)}})
    # the written cohort validates: P1 has images, the other rows have no folder
    rep = validate_cohort(out)
    assert rep.case("P1").usable, [str(p) for p in rep.case("P1").problems]
    assert "row in cohort.csv but no case folder" in str(rep.case("P2").problems[0])


def test_round_trip_of_synthetic_cohort(tiny_cohort_ro, tmp_path):
    c = read_cohort(tiny_cohort_ro, on_problem="raise")
    out = write_cohort(tmp_path / "copy", c.table)
    assert (out / "cohort.csv").read_text(encoding="utf-8") == (tiny_cohort_ro / "cohort.csv").read_text(encoding="utf-8")


def test_other_formats_are_found(tmp_path):
    root = _write(tmp_path, "case_id\nC1\n")
    d = root / "cases" / "C1"
    d.mkdir(parents=True)
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    sitk.WriteImage(img, str(d / "T1.nrrd"))
    sitk.WriteImage(img, str(d / "T2.mha"))
    (d / "DCE").mkdir()
    (d / "t1.nii.gz").write_bytes(b"")
    f = read_cohort(root).files("C1")
    assert f.T1.name == "T1.nrrd" and f.T2.name == "T2.mha" and f.DCE.name == "DCE"
    with pytest.raises(CohortError, match="no such case"):
        read_cohort(root).files("C2")
    rep = validate_cohort(root)
    notes = rep.case("C1").notes
    assert any("case-sensitive" in n and "T1" in n for n in notes), notes


def test_clinical_only_cohort_is_valid(clinical_cohort):
    rep = validate_cohort(clinical_cohort)
    assert rep.ok and len(rep.usable) == 200 and not rep.images_present
    c = read_cohort(clinical_cohort)
    assert len(c.labels("her2")) == 200
    n_neg = int((c.labels("her2") == 0).sum())
    assert len(c.labels("her2_low")) == n_neg


def test_crlf_quotes_blank_lines_and_line_numbers(tmp_path):
    text = ('case_id,center,age,note\r\n'
            'A1,"Centre, North",50,"said ""hi"""\r\n'
            '\r\n'
            ',B,40,\r\n'
            'A2,B,,\r\n')
    root = _write(tmp_path, text)
    c = read_cohort(root, on_problem="keep")
    assert c.table.loc["A1", "center"] == "Centre, North"
    assert c.table.loc["A1", "note"] == 'said "hi"'
    msgs = [str(p) for p in c.problems]
    assert msgs == ["file cohort.csv: column case_id: empty case_id (line 4)"]
    assert read_cohort(root).case_ids == ["A1", "A2"]
    rep = validate_cohort(root)
    assert rep.case("(line 4)").problems and not rep.case("(line 4)").usable
    assert rep.usable == ["A1", "A2"]


def test_wrong_case_column_is_flagged(tmp_path):
    root = _write(tmp_path, "case_id,HER2,Age\nA1,1,50\n")
    c = read_cohort(root)
    assert "her2" not in c.table and c.labels("her2").empty
    assert any("'HER2'" in n and "'her2'" in n for n in c.notes)
    rep = validate_cohort(root)
    assert any("case-sensitive" in n for n in rep.notes)
    assert "note: column 'Age'" in rep.to_text()


def _write_dicom_series(img, folder):
    import time
    folder.mkdir(parents=True)
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125." + str(int(time.time()))
    direction = img.GetDirection()
    for i in range(img.GetDepth()):
        sl = img[:, :, i]
        pos = img.TransformIndexToPhysicalPoint((0, 0, i))
        for tag, value in (("0008|0060", "MR"), ("0020|000e", uid + ".1"),
                           ("0020|000d", uid), ("0020|0013", str(i + 1)),
                           ("0020|0032", "\\".join(map(str, pos))),
                           ("0020|0037", "\\".join(map(str, direction[0:3] + direction[3:6]))),
                           ("0018|0050", str(img.GetSpacing()[2])),
                           ("0028|0030", f"{img.GetSpacing()[1]}\\{img.GetSpacing()[0]}")):
            sl.SetMetaData(tag, value)
        w.SetFileName(str(folder / f"{i:03d}.dcm"))
        w.Execute(sl)


def test_dicom_folder_is_found_and_read(tmp_path):
    pytest.importorskip("her2core.imaging")
    root = _write(tmp_path, "case_id\nD1\n")
    d = root / "cases" / "D1"
    arr = (np.arange(5 * 16 * 16).reshape(5, 16, 16) % 200).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.7, 2.5))
    img.SetOrigin((-5.0, 3.0, 12.0))
    _write_dicom_series(img, d / "DCE")
    m = np.zeros_like(arr, dtype=np.uint8)
    m[1:4, 5:10, 5:10] = 1
    mask = sitk.GetImageFromArray(m)
    mask.CopyInformation(img)
    sitk.WriteImage(mask, str(d / "mask.nii.gz"))
    assert read_cohort(root).files("D1").DCE == d / "DCE"
    rep = validate_cohort(root)
    fr = rep.case("D1").files["DCE"]
    assert rep.case("D1").usable, rep.to_text()
    assert fr.size == (16, 16, 5) and fr.orientation == "LPS"
    assert_allclose(fr.spacing, (0.7, 0.7, 2.5), rtol=1e-4)


def test_hidden_and_stray_entries_are_notes_not_problems(tmp_path):
    root = _write(tmp_path, "case_id,age\nX,50\n")
    (root / "cases" / ".ipynb_checkpoints").mkdir(parents=True)
    (root / "cases" / "readme.txt").write_text("hi")
    rep = validate_cohort(root)
    assert rep.ok and rep.usable == ["X"] and not rep.images_present
    assert rep.notes == ["ignored hidden entries under cases/: .ipynb_checkpoints",
                         "ignored file cases/readme.txt: each case needs its own folder "
                         "cases/<case_id>/"]
    assert not read_cohort(root).has_images
