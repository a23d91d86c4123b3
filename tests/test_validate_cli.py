"""`python -m her2core validate` on a good synthetic cohort and on one broken on purpose."""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from her2core import cli
from her2core.cohort import validate_cohort
from her2core.synthetic import make_cohort


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "her2core", *args], capture_output=True,
                          text=True, timeout=120)


def test_synthetic_cohort_is_valid_exit_0(tiny_cohort_ro, tmp_path):
    out = tmp_path / "report.json"
    r = _cli("validate", "--cohort", str(tiny_cohort_ro), "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "Summary: 8 usable, 0 not usable" in r.stdout
    assert "found cases/syn-0000/DCE_phases.nii.gz: 4-D 32x32x8, 4 phases, spacing 1.6x1.6x3 mm, LPS" \
        in r.stdout
    assert "found cases/syn-0001/DCE.nii.gz: 3-D 32x32x8, spacing 1.9x1.9x3.5 mm, RAS" in r.stdout
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["ok"] is True and len(rep["usable"]) == 8 and rep["unusable"] == []
    files = rep["cases"][1]["files"]
    assert files["T2"]["size"] == [26, 26, 8]  # centre B: T2 on its own grid
    assert files["mask"]["orientation"] == "RAS"


def test_clinical_only_cohort_exit_0(tmp_path):
    root = make_cohort(tmp_path / "c", n=5, seed=0, modalities="none")
    r = _cli("validate", "--cohort", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "clinical table only" in r.stdout and "5 usable, 0 not usable" in r.stdout


def test_missing_folder_or_csv_is_one_line(tmp_path):
    r = _cli("validate", "--cohort", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cohort folder not found" in r.stdout


def _save(img, path: Path):
    sitk.WriteImage(img, str(path), useCompression=True)


def _break(root: Path) -> dict[str, str]:
    """Break cases of a 16-case cohort in one way each; returns case -> what was done."""
    cases = root / "cases"
    done = {}
    # missing file: the ROI is gone
    (cases / "syn-0000" / "mask.nii.gz").unlink()
    done["syn-0000"] = "missing mask"
    # truncated NIfTI
    p = cases / "syn-0001" / "DCE.nii.gz"
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    done["syn-0001"] = "truncated DCE"
    # text renamed .nii.gz
    (cases / "syn-0002" / "T2.nii.gz").write_text("patient notes, not an image\n")
    done["syn-0002"] = "text as T2"
    # 4-D where 3-D expected
    shutil.copy(cases / "syn-0003" / "DCE_phases.nii.gz", cases / "syn-0003" / "T1.nii.gz")
    done["syn-0003"] = "4-D T1"
    # empty mask
    m = sitk.ReadImage(str(cases / "syn-0004" / "mask.nii.gz"))
    _save(m * 0, cases / "syn-0004" / "mask.nii.gz")
    done["syn-0004"] = "empty mask"
    # multi-label mask
    m = sitk.ReadImage(str(cases / "syn-0005" / "mask.nii.gz"))
    a = sitk.GetArrayFromImage(m)
    a[a > 0] = 1
    a[0, 0, :3] = 2
    m2 = sitk.GetImageFromArray(a)
    m2.CopyInformation(m)
    _save(m2, cases / "syn-0005" / "mask.nii.gz")
    done["syn-0005"] = "two labels"
    # mask on another grid
    m = sitk.ReadImage(str(cases / "syn-0006" / "mask.nii.gz"))
    m.SetSpacing(tuple(s * 1.5 for s in m.GetSpacing()))
    _save(m, cases / "syn-0006" / "mask.nii.gz")
    done["syn-0006"] = "mask grid"
    # mask outside the image
    m = sitk.ReadImage(str(cases / "syn-0007" / "mask.nii.gz"))
    m.SetOrigin(tuple(o + 500.0 for o in m.GetOrigin()))
    _save(m, cases / "syn-0007" / "mask.nii.gz")
    done["syn-0007"] = "mask outside"
    # table: out of range, non-numeric, duplicate, unsafe id, row without folder
    lines = (root / "cohort.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    iage, isize, iki = header.index("age"), header.index("tumor_size_mm"), header.index("ki67")

    def edit(case, col, value):
        for k, ln in enumerate(lines):
            cells = ln.split(",")
            if cells[0] == case:
                cells[col] = value
                lines[k] = ",".join(cells)

    edit("syn-0008", iage, "150")
    edit("syn-0008", iki, "120")
    done["syn-0008"] = "age 150, ki67 120"
    edit("syn-0009", isize, "large")
    done["syn-0009"] = "size 'large'"
    dup = next(ln for ln in lines if ln.startswith("syn-0010,"))
    lines.append(dup)
    done["syn-0010"] = "duplicate row"
    lines.append("../escape" + dup[len("syn-0010"):])
    done["../escape"] = "unsafe id"
    lines.append("syn-9999" + dup[len("syn-0010"):])
    done["syn-9999"] = "row without folder"
    (root / "cohort.csv").write_text("\n".join(lines) + "\n")
    shutil.copytree(cases / "syn-0011", cases / "stray-01")
    done["stray-01"] = "folder without row"
    return done


EXPECT = {
    "syn-0000": ("cases/syn-0000/mask.nii.gz", "missing"),
    "syn-0001": ("cases/syn-0001/DCE.nii.gz", ("truncated", "cannot be read")),
    "syn-0002": ("cases/syn-0002/T2.nii.gz", ("not a", "cannot be read", "not an image")),
    "syn-0003": ("cases/syn-0003/T1.nii.gz", "3-D"),
    "syn-0004": ("cases/syn-0004/mask.nii.gz", "empty"),
    "syn-0005": ("cases/syn-0005/mask.nii.gz", "several labels (1, 2)"),
    "syn-0006": ("cases/syn-0006/mask.nii.gz", "not on the grid of cases/syn-0006/DCE.nii.gz"),
    "syn-0007": ("cases/syn-0007/mask.nii.gz", "outside"),
    "syn-0008": ("cohort.csv", "column age: value '150' is out of range (expected 0-120)"),
    "syn-0009": ("cohort.csv", "column tumor_size_mm: value 'large' is not a number"),
    "syn-0010": ("cohort.csv", "appears 2 times"),
    "../escape": ("cohort.csv", "unsafe case_id"),
    "syn-9999": ("cases/syn-9999/", "row in cohort.csv but no case folder"),
    "stray-01": ("cases/stray-01/", "case folder without a row in cohort.csv"),
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = make_cohort(tmp_path_factory.mktemp("broken") / "cohort", n=16, seed=3,
                       centres=2, modalities="mri", shape=(24, 24, 6))
    _break(root)
    return root


def test_broken_cohort_named_case_by_case(broken, tmp_path):
    out = tmp_path / "r.json"
    r = _cli("validate", "--cohort", str(broken), "--json", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    text = r.stdout
    for case, (file, words) in EXPECT.items():
        line = [ln for ln in text.splitlines()
                if ln.strip().startswith(f"PROBLEM case {case}, file {file}")
                and any(w in ln for w in ((words,) if isinstance(words, str) else words))]
        assert line, f"{case}: no line with {file!r} and {words!r}\n{text}"
    # the second syn-0008 problem (ki67) is reported too
    assert "case syn-0008, file cohort.csv: column ki67: value '120' is out of range" in text
    good = [f"syn-{i:04d}" for i in range(11, 16)]
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(rep["usable"]) == good
    assert set(rep["unusable"]) == set(EXPECT)
    assert f"Summary: 5 usable, {len(EXPECT)} not usable" in text
    for c in rep["cases"]:
        if c["case_id"] in EXPECT:
            assert c["problems"], c["case_id"]
            assert all(p["case_id"] == c["case_id"] for p in c["problems"])


def test_broken_cohort_in_process_report(broken):
    rep = validate_cohort(broken)
    assert not rep.ok
    assert rep.case("syn-0003").files["T1"].describe().startswith("cases/syn-0003/T1.nii.gz")
    assert rep.case("syn-0011").usable and rep.case("syn-0011").files["DCE"].orientation == "RAS"
    # the unsafe id never reaches the file system
    assert rep.case("../escape").files == {}
    # validate through cli.main gives exit code 1, not 2 (problems are not a crash)
    assert cli.main(["validate", "--cohort", str(broken)]) == 1


def test_gz_truncated_is_not_silently_read(tmp_path):
    img = sitk.GetImageFromArray(np.arange(4000, dtype=np.int16).reshape(10, 20, 20))
    p = tmp_path / "x.nii.gz"
    sitk.WriteImage(img, str(p), useCompression=True)
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[: len(raw) - 100]))  # valid gzip, short payload
    root = tmp_path / "c"
    (root / "cases" / "C1").mkdir(parents=True)
    (root / "cohort.csv").write_text("case_id\nC1\n")
    shutil.copy(p, root / "cases" / "C1" / "T1.nii.gz")
    rep = validate_cohort(root)
    msgs = " ".join(str(e) for e in rep.case("C1").problems)
    assert "case C1, file cases/C1/T1.nii.gz" in msgs
    assert not rep.case("C1").usable


ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.mark.skipif(not (ASSETS / "demo_cohort" / "cohort.csv").exists(),
                    reason="assets not generated (python tools/make_assets.py)")
def test_shipped_assets_validate():
    demo = validate_cohort(ASSETS / "demo_cohort")
    assert demo.ok and len(demo.usable) == 85, demo.to_text(verbose=False)
    centres = {c.files["DCE"].orientation for c in demo.cases}
    assert centres == {"LPS", "RAS"}
    busi = validate_cohort(ASSETS / "busi")
    assert busi.ok and busi.usable == ["BUSI_10483", "BUSI_10523", "BUSI_10509", "BUSI_10535"]
    assert busi.case("BUSI_10483").files["US"].size == (273, 398)
    assert busi.case("BUSI_10483").files["US"].spacing_known is False
    total = sum(p.stat().st_size for p in (ASSETS / "demo_cohort").rglob("*") if p.is_file())
    assert total < 15e6


def test_demo_cohort_command(tmp_path):
    out = tmp_path / "demo"
    r = _cli("demo-cohort", "--out", str(out), "--n", "4", "--seed", "3", "--centres", "2",
             "--modalities", "us")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "cases").iterdir()) == [f"syn-000{i}" for i in range(4)]
    assert sorted(p.name for p in (out / "cases" / "syn-0000").iterdir()) == ["US.png",
                                                                             "US_mask.png"]
    again = _cli("demo-cohort", "--out", str(out), "--n", "2")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    r = _cli("demo-cohort", "--out", str(out), "--n", "2", "--overwrite", "--modalities", "mri",
             "--size", "24x24x6")
    assert r.returncode == 0
    rep = validate_cohort(out)
    assert rep.ok and rep.usable == ["syn-0000", "syn-0001"]   # no stale case folders
    assert rep.case("syn-0001").files["DCE"].size == (24, 24, 6)
    bad = _cli("demo-cohort", "--out", str(tmp_path / "x"), "--size", "4x4")
    assert bad.returncode == 2 and "--size" in bad.stderr
