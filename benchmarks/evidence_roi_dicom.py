#!/usr/bin/env python3
"""Issue 14 end to end from the shell, as a new user runs it: every command the issue names on
real files, the bad inputs it lists, checked, with a transcript.

* ``demo-cohort`` makes a synthetic cohort; one case is written as a DICOM study (T1, T2 and
  each DCE phase its own series, fake patient identifiers in every header) and zipped
  (her2core.imaging.dicom_synth.write_case_study).
* ``segment`` with ``--seed-mm``, ``--seed-index`` and ``--box-mm`` (a box with a 25 % margin)
  on the NIfTI DCE phases and on a DICOM series: Dice against the drawn mask, and the
  written mask's geometry against the image's.
* ``dicom-seg export`` / ``import`` (folder and zip): voxels and geometry compared exactly;
  ``dicom-seg rtstruct`` on an RTSTRUCT made from the drawn mask's contours (OpenCV).
* ``series list`` (zip and folder) and ``series build`` with the suggested mapping: the
  case's files come back voxel for voxel.
* ``pacs find`` / ``pacs fetch`` against a real Orthanc with its DICOMweb plugin on a free
  port (her2core.pacs.local_orthanc, as tests/test_pacs.py): identifiers left, voxels and
  geometry of every fetched series against the study written.
* Bad input: seed outside the image, seed on no lesion, box with no volume, SEG of another
  series, unreachable / refusing server, unknown study, study without image series:
  exit code, one line on stderr, no traceback.

  python benchmarks/evidence_roi_dicom.py

Writes benchmarks/results/roi_dicom_transcript.txt (commands and their output, the
temporary folder shown as $T, credentials as USER:PASS) and roi_dicom_evidence.json.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


class Transcript:
    def __init__(self, tmp: Path):
        self.tmp, self.lines, self.runs = str(tmp), [], []

    def show(self, text: str) -> str:
        text = text.replace(self.tmp, "$T")
        return re.sub(r"//[^/@\s]+:[^/@\s]+@", "//USER:PASS@", text)

    def note(self, text: str) -> None:
        self.lines.append(self.show(text))

    def run(self, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "her2core", *args]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        secs = time.perf_counter() - t0
        shown = "python -m her2core " + " ".join(shlex.quote(a) for a in args)
        self.lines.append(self.show(f"$ {shown}"))
        for stream in (p.stdout, p.stderr):
            for line in stream.rstrip().splitlines():
                self.lines.append(self.show(line))
        self.lines.append(f"[exit {p.returncode}, {secs:.1f} s]")
        self.lines.append("")
        err_lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("INFO ")]
        rec = {"command": self.show(shown), "rc": p.returncode, "seconds": round(secs, 2),
               "traceback": "Traceback" in p.stdout + p.stderr,
               "stderr_lines": len(err_lines)}
        self.runs.append(rec)
        if expect_ok and p.returncode != 0:
            raise RuntimeError(f"{shown} failed:\n{p.stdout}\n{p.stderr}")
        if not expect_ok:
            rec["one_clear_line"] = (p.returncode != 0 and not rec["traceback"]
                                     and len(err_lines) == 1 and err_lines[0].startswith("error: "))
        return p


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def same_geometry(a, b) -> bool:
    """Identical size, spacing, origin and direction (exact floats, as SimpleITK reads them)."""
    import SimpleITK as sitk
    ra, rb = (sitk.ReadImage(str(p)) if isinstance(p, (str, Path)) else p for p in (a, b))
    return (ra.GetSize() == rb.GetSize() and ra.GetSpacing() == rb.GetSpacing()
            and ra.GetOrigin() == rb.GetOrigin() and ra.GetDirection() == rb.GetDirection())


def geometry_of(img) -> tuple:
    return (tuple(img.array.shape), tuple(float(v) for v in img.spacing),
            tuple(float(v) for v in img.origin), tuple(float(v) for v in np.ravel(img.direction)))


def write_rtstruct(mask_img, ref_uid: str, ref_series: dict, path: Path, name: str = "GTV") -> Path:
    """RTSTRUCT whose closed planar contours run 0.375 voxel outside the drawn mask's pixel
    centres (OpenCV outlines of the mask upsampled 4x), referencing the series."""
    import cv2
    import pydicom
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from her2core.imaging.dicom_seg import RTSTRUCT_SOP_CLASS
    first = pydicom.dcmread(str(ref_series["files"][0]), stop_before_pixels=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID = "RTSTRUCT", first.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = first.PatientName, first.PatientID
    se = Dataset()
    se.SeriesInstanceUID = ref_uid
    st = Dataset()
    st.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    st.ReferencedSOPInstanceUID = first.StudyInstanceUID
    st.RTReferencedSeriesSequence = Sequence([se])
    fr = Dataset()
    fr.FrameOfReferenceUID = first.FrameOfReferenceUID
    fr.RTReferencedStudySequence = Sequence([st])
    ds.ReferencedFrameOfReferenceSequence = Sequence([fr])
    roi = Dataset()
    roi.ROINumber, roi.ROIName = 1, name
    roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
    ds.StructureSetROISequence = Sequence([roi])
    items = []
    m = np.asarray(mask_img.array) > 0
    for k in range(m.shape[0]):
        if not m[k].any():
            continue
        up = np.kron(m[k].astype(np.uint8), np.ones((4, 4), np.uint8))
        contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for cnt in contours:
            uv = cnt[:, 0, :].astype(float)                       # (x, y) upsampled pixels
            ij = (uv + 0.5) / 4.0 - 0.5                           # original pixel units
            idx = np.column_stack([ij, np.full(len(ij), k, float)])
            pts = np.array([mask_img.index_to_physical(p) for p in idx])
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.6f}" for v in pts.ravel()]
            items.append(c)
    rc = Dataset()
    rc.ReferencedROINumber = 1
    rc.ContourSequence = Sequence(items)
    ds.ROIContourSequence = Sequence([rc])
    ds.save_as(str(path), enforce_file_format=True)
    return path


def main() -> int:
    from scipy import ndimage as ndi

    from her2core import deid, pacs
    from her2core.imaging import load_image
    from her2core.imaging.dicom_synth import FAKE_PATIENT, write_case_study, write_sr_only_study

    tmp = Path(tempfile.mkdtemp(prefix="roi_dicom_"))
    tr = Transcript(tmp)
    ev: dict = {"loadavg_start": os.getloadavg(), "python": sys.version.split()[0]}
    T = tmp
    tr.note("# 1. a synthetic cohort and one case of it as a DICOM study")
    tr.run("demo-cohort", "--out", str(T / "demo"), "--n", "4", "--modalities", "both")
    case = T / "demo" / "cases" / "syn-0000"
    series = write_case_study(case, T / "study", zip_path=T / "study.zip")
    tr.note(f"(python) write_case_study({case.name}) -> $T/study/{{t1,t2,dyn0..dyn3}} and "
            f"$T/study.zip: {sum(len(s['files']) for s in series.values())} files, "
            f"{len(series)} series, patient identifiers {sorted(FAKE_PATIENT)[:3]}... in every header")
    tr.note("")
    drawn = load_image(case / "mask.nii.gz")
    m = np.asarray(drawn.array) > 0
    depth = ndi.distance_transform_edt(m, sampling=tuple(drawn.spacing)[::-1])
    centre_zyx = np.unravel_index(int(np.argmax(depth)), m.shape)
    seed_idx = tuple(int(v) for v in centre_zyx[::-1])
    seed_mm = drawn.index_to_physical(seed_idx)
    z = int(np.argmax(m.reshape(m.shape[0], -1).sum(1)))
    ys, xs = np.nonzero(m[z])
    mx, my = 0.25 * (xs.max() - xs.min() + 1), 0.25 * (ys.max() - ys.min() + 1)
    c0 = drawn.index_to_physical((xs.min() - mx, ys.min() - my, z))
    c1 = drawn.index_to_physical((xs.max() + mx, ys.max() + my, z))
    fmt = lambda v: ",".join(f"{float(x):.2f}" for x in v)      # noqa: E731

    tr.note("# 2. assisted segmentation: seed in mm, seed index, a box drawn with a 25 % margin")
    img = str(case / "DCE_phases.nii.gz")
    seg = {}
    for name, flag, value in (("seed_mm", "--seed-mm", fmt(seed_mm)),
                              ("seed_index", "--seed-index", ",".join(map(str, seed_idx))),
                              ("box_mm", "--box-mm", fmt(c0) + "," + fmt(c1))):
        out = T / f"{name}.nii.gz"
        tr.run("segment", "--image", img, flag, value, "--out", str(out))
        seg[name] = {"dice_vs_drawn": round(dice(load_image(out).array, m), 4),
                     "geometry_identical_to_image": same_geometry(out, case / "DCE.nii.gz"),
                     "voxels": int((load_image(out).array > 0).sum())}
    dyn1 = T / "study" / "dyn1"
    tr.run("segment", "--image", str(dyn1), "--seed-mm", fmt(seed_mm), "--out", str(T / "seed_on_dicom.nii.gz"))
    on_dicom = load_image(T / "seed_on_dicom.nii.gz")
    seg["seed_mm_on_dicom_phase1"] = {
        "dice_vs_drawn": round(dice(on_dicom.array, m), 4),
        "geometry_equal_to_series": geometry_of(on_dicom)[:1] == geometry_of(load_image(dyn1))[:1]
        and np.allclose(geometry_of(on_dicom)[1], geometry_of(load_image(dyn1))[1])
        and np.allclose(geometry_of(on_dicom)[2], geometry_of(load_image(dyn1))[2]),
        "voxels": int((on_dicom.array > 0).sum())}
    ev["segment"] = seg
    ev["drawn_mask_voxels"] = int(m.sum())

    tr.note("# 3. DICOM SEG out and back in (folder and zip), RTSTRUCT in")
    tr.run("dicom-seg", "export", "--mask", str(T / "seed_on_dicom.nii.gz"), "--reference",
           str(dyn1), "--out", str(T / "seg.dcm"), "--semiautomatic")
    tr.run("dicom-seg", "import", "--seg", str(T / "seg.dcm"), "--reference", str(dyn1),
           "--out", str(T / "seg_back.nii.gz"))
    tr.run("dicom-seg", "import", "--seg", str(T / "seg.dcm"), "--reference", str(T / "study.zip"),
           "--out", str(T / "seg_back_zip.nii.gz"))
    ref = load_image(dyn1)
    rt = {}
    for name in ("seg_back", "seg_back_zip"):
        back = load_image(T / f"{name}.nii.gz")
        rt[name] = {"voxels_equal": bool(np.array_equal(back.array > 0, on_dicom.array > 0)),
                    "geometry_equal_to_mask": same_geometry(T / f"{name}.nii.gz",
                                                            T / "seed_on_dicom.nii.gz"),
                    "grid_same_as_series": bool(back.same_grid(ref)),
                    "voxels": int((back.array > 0).sum())}
    import pydicom
    sds = pydicom.dcmread(str(T / "seg.dcm"))
    rt["seg_references_series"] = sds.ReferencedSeriesSequence[0].SeriesInstanceUID == series["DCE_1"]["uid"]
    rt["seg_patient_name_blank"] = str(sds.get("PatientName", "")) == ""
    rt["identifiers_in_seg"] = len(deid.find_identifiers(
        [T / "seg.dcm"], [v for v in FAKE_PATIENT.values() if len(v) >= 6]))
    # the drawn mask (from NIfTI) onto its DICOM series and back
    tr.run("dicom-seg", "export", "--mask", str(case / "mask.nii.gz"), "--reference",
           str(T / "study" / "dyn0"), "--out", str(T / "seg_drawn.dcm"))
    tr.run("dicom-seg", "import", "--seg", str(T / "seg_drawn.dcm"), "--reference",
           str(T / "study" / "dyn0"), "--out", str(T / "seg_drawn_back.nii.gz"))
    back = load_image(T / "seg_drawn_back.nii.gz")
    rt["drawn_nifti_mask"] = {"voxels_equal": bool(np.array_equal(back.array > 0, m)),
                              "grid_same_as_nifti_mask": bool(back.same_grid(drawn))}
    write_rtstruct(drawn, series["DCE_0"]["uid"], series["DCE_0"], T / "rs.dcm")
    tr.run("dicom-seg", "rtstruct", "--rtstruct", str(T / "rs.dcm"), "--reference",
           str(T / "study" / "dyn0"), "--out", str(T / "rs_mask.nii.gz"))
    rsm = load_image(T / "rs_mask.nii.gz")
    rt["rtstruct"] = {"voxels_equal_to_drawn": bool(np.array_equal(rsm.array > 0, m)),
                      "dice_vs_drawn": round(dice(rsm.array, m), 4),
                      "grid_same_as_series": bool(rsm.same_grid(load_image(T / "study" / "dyn0")))}
    ev["dicom_seg"] = rt

    tr.note("# 4. series picker on the command line")
    p = tr.run("series", "list", "--dicom", str(T / "study.zip"))
    tr.run("series", "list", "--dicom", str(T / "study"))
    sug = re.search(r"suggested: (.*)", p.stdout).group(1).split()
    tr.run("series", "build", "--dicom", str(T / "study.zip"), "--cohort", str(T / "cohort"),
           "--case-id", "case-01", *sug)
    built = {}
    for role in ("T1", "T2", "DCE_phases", "DCE"):
        a, b = load_image(case / f"{role}.nii.gz"), load_image(T / "cohort" / "cases" / "case-01" / f"{role}.nii.gz")
        built[role] = {"voxels_equal": bool(np.array_equal(a.array, b.array)),
                       "same_grid": bool(a.same_grid(b))}
    ev["series"] = {"suggested": " ".join(sug), "built_vs_demo": built}

    tr.note("# 5. PACS over DICOMweb: a real Orthanc (Debian orthanc + orthanc-dicomweb) on a free port")
    with pacs.local_orthanc(T / "orthanc") as srv:
        files = sorted(glob.glob(str(T / "study" / "*" / "*.dcm")))
        stored = pacs.store_instances(srv.url, files, client=srv.client())
        sr_uid = write_sr_only_study(T / "sr.dcm", "report only")
        pacs.store_instances(srv.url, [str(T / "sr.dcm")], client=srv.client())
        tr.note(f"(python) local_orthanc: stored {stored} MR instances + 1 SR-only study")
        url = srv.url.replace("http://", "http://her2:her2-test@")
        study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        tr.run("pacs", "find", "--url", url)
        tr.run("pacs", "find", "--url", url, "--patient-id", FAKE_PATIENT["PatientID"])
        tr.run("pacs", "find", "--url", url, "--study-date", "20240101-20241231")
        tr.run("pacs", "fetch", "--url", url, "--study", study_uid, "--out", str(T / "fetched"))
        tr.run("pacs", "fetch", "--url", url, "--study", study_uid, "--series",
               series["DCE_0"]["uid"], series["DCE_1"]["uid"], "--out", str(T / "fetched_2"))
        got = sorted(glob.glob(str(T / "fetched" / "*" / "*.dcm")))
        ids = [v for v in FAKE_PATIENT.values() if len(v) >= 3] + ["Testperson", "Erika"]
        left = deid.find_identifiers(got, ids)
        per_series = {}
        by_desc = {pydicom.dcmread(s["files"][0], stop_before_pixels=True).SeriesDescription: r
                   for r, s in series.items()}
        for d in sorted(p for p in (T / "fetched").iterdir() if p.is_dir()):
            a = load_image(d)
            desc = pydicom.dcmread(next(d.glob("*.dcm")), stop_before_pixels=True).SeriesDescription
            src = series[by_desc[desc]]["image"]
            per_series[desc] = {"voxels_equal": bool(np.array_equal(a.array, src.array)),
                                "same_grid": bool(a.same_grid(src))}
        ev["pacs"] = {"files_fetched": len(got), "identifiers_left": left,
                      "fetched_vs_written": per_series,
                      "patient_name_in_fetched": str(pydicom.dcmread(got[0]).get("PatientName", ""))}
        tr.note("# 6. bad input: one clear line, non-zero exit, no traceback")
        from her2core.imaging import save_image
        moved = on_dicom.replace(origin=tuple(float(v) + 4.0 for v in on_dicom.origin))
        save_image(moved, T / "mask_moved_4mm.nii.gz")        # the series' grid shifted 4 mm
        dce = str(case / "DCE_phases.nii.gz")
        bad = [
            ("seed outside the image", ["segment", "--image", dce, "--seed-mm", "500,0,0", "--out", str(T / "x.nii.gz")]),
            ("seed index outside the image", ["segment", "--image", dce, "--seed-index", "60,2,3", "--out", str(T / "x.nii.gz")]),
            ("seed on no lesion", ["segment", "--image", dce, "--seed-index", "3,3,1", "--out", str(T / "x.nii.gz")]),
            ("box with no volume (a line)", ["segment", "--image", dce, "--box-index", "10,10,5,10,30,5", "--out", str(T / "x.nii.gz")]),
            ("box with no volume (2 x 2)", ["segment", "--image", dce, "--box-index", "10,10,5,11,11,5", "--out", str(T / "x.nii.gz")]),
            ("folder of several series, none chosen", ["segment", "--image", str(T / "study"), "--seed-mm", fmt(seed_mm), "--out", str(T / "x.nii.gz")]),
            ("SEG of another series", ["dicom-seg", "import", "--seg", str(T / "seg.dcm"), "--reference", str(T / "study" / "t2"), "--out", str(T / "x.nii.gz")]),
            ("not a SEG", ["dicom-seg", "import", "--seg", files[0], "--reference", str(T / "study" / "t1"), "--out", str(T / "x.nii.gz")]),
            ("mask not on the reference grid", ["dicom-seg", "export", "--mask", str(T / "mask_moved_4mm.nii.gz"), "--reference", str(dyn1), "--out", str(T / "x.dcm")]),
            ("unreachable server", ["pacs", "find", "--url", "http://127.0.0.1:9/dicom-web"]),
            ("refusing server (no credentials, HTTP 401)", ["pacs", "find", "--url", srv.url]),
            ("not a DICOMweb URL", ["pacs", "find", "--url", "ftp://pacs"]),
            ("unknown study", ["pacs", "fetch", "--url", url, "--study", "1.2.3.4.5", "--out", str(T / "none")]),
            ("study with no image series", ["pacs", "fetch", "--url", url, "--study", sr_uid, "--out", str(T / "sr_out")]),
            ("fetch into a non-empty folder", ["pacs", "fetch", "--url", url, "--study", study_uid, "--out", str(T / "fetched")]),
            ("series number not listed", ["series", "build", "--dicom", str(T / "study.zip"), "--cohort", str(T / "c2"), "--case-id", "c2", "--t1", "9"]),
        ]
        results = []
        for what, args in bad:
            tr.note(f"## {what}")
            tr.run(*args, expect_ok=False)
            r = dict(tr.runs[-1], input=what)
            results.append(r)
        ev["bad_input"] = results
        ev["x_mask_not_written"] = not (T / "x.nii.gz").exists()
    ev["loadavg_end"] = os.getloadavg()
    ev["all_bad_inputs_one_clear_line"] = all(r["one_clear_line"] for r in ev["bad_input"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "roi_dicom_transcript.txt").write_text("\n".join(tr.lines) + "\n", encoding="utf-8")
    (RESULTS / "roi_dicom_evidence.json").write_text(json.dumps(ev, indent=1, default=str) + "\n",
                                                      encoding="utf-8")
    print(json.dumps({k: v for k, v in ev.items() if k != "bad_input"}, indent=1, default=str))
    print("bad inputs:", [(r["input"], r["rc"], r["one_clear_line"]) for r in ev["bad_input"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
