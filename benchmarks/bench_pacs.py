"""Retrieving and loading a 100-slice series from a local Orthanc vs loading it from disk.

Run from the repository root (needs the Debian packages orthanc + orthanc-dicomweb):

    python3 benchmarks/bench_pacs.py [--slices 100] [--size 256] [--repeats 3]

A synthetic MR series (``--size`` x ``--size`` x ``--slices``, int16, patient
identifiers in every header) is written to disk and stored in a private Orthanc
(``her2core.pacs.local_orthanc``, DICOMweb plugin, free local port). Then, in the
same run and ``--repeats`` times each:

* disk: ``load_image(folder)`` of the written files;
* PACS: ``fetch_study`` (QIDO series list, WADO-RS retrieval, de-identification,
  writing the files) followed by ``load_image`` of the fetched folder;
* the QIDO study search alone.

The result is the PACS / disk ratio of medians (and that the fetched volume equals
the original voxel for voxel, with no identifier left). Results go to
benchmarks/results/pacs.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from her2core import deid, pacs  # noqa: E402
from her2core.imaging import Image, load_image  # noqa: E402
from her2core.imaging.dicom_synth import FAKE_PATIENT, rotation, write_dicom_series  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pacs.json"))
    args = ap.parse_args(argv)
    if pacs.orthanc_binary() is None:
        print("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    shape = (args.slices, args.size, args.size)
    arr = (400 + 100 * rng.standard_normal(shape)).astype(np.int16)
    image = Image(arr, (0.7, 0.7, 1.5), (-90.0, -80.0, -75.0), rotation().ravel(),
                  sequence="DCE", modality="MR")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = write_dicom_series(image, tmp / "disk", description="bench_dyn",
                                   patient=FAKE_PATIENT, acquisition_time="103012")
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        with pacs.local_orthanc(tmp / "server") as srv:
            client = srv.client()
            t = time.perf_counter()
            pacs.store_instances(srv.url, files, client=client)
            store_s = time.perf_counter() - t
            study_uid = pacs.find_studies(srv.url, client=client)[0].study_uid
            disk, remote, fetch_only, search = [], [], [], []
            for k in range(args.repeats):
                t = time.perf_counter()
                ref = load_image(tmp / "disk")
                disk.append(time.perf_counter() - t)
                target = tmp / f"fetched{k}"
                t = time.perf_counter()
                res = pacs.fetch_study(srv.url, study_uid, target, client=client)
                fetch_only.append(time.perf_counter() - t)
                got = load_image(target)
                remote.append(time.perf_counter() - t)
                t = time.perf_counter()
                pacs.find_studies(srv.url, patient_id=FAKE_PATIENT["PatientID"], client=client)
                search.append(time.perf_counter() - t)
                same = bool(np.array_equal(got.array, ref.array) and got.same_grid(ref))
                # names, IDs, dates, institution (times of day are kept on purpose: phase order)
                ids = [v for k, v in FAKE_PATIENT.items() if len(v) >= 3 and k != "StudyTime"]
                leaks = deid.find_identifiers(sorted(target.rglob("*.dcm")), ids)
                if k < args.repeats - 1:
                    shutil.rmtree(target)
    med = lambda v: float(np.median(v))  # noqa: E731
    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
           "series": {"shape_zyx": list(shape), "files": len(files), "megabytes": round(size_mb, 2)},
           "repeats": args.repeats, "store_s": round(store_s, 4),
           "disk_load_s": round(med(disk), 4), "pacs_fetch_s": round(med(fetch_only), 4),
           "pacs_fetch_and_load_s": round(med(remote), 4),
           "ratio_pacs_to_disk": round(med(remote) / med(disk), 3),
           "qido_search_s": round(med(search), 4), "files_fetched": res.n_files,
           "fetched_equals_original": same, "identifiers_left": len(leaks)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"{len(files)} slices ({size_mb:.1f} MB): disk load {out['disk_load_s']:.2f} s, "
          f"PACS fetch + de-identify + load {out['pacs_fetch_and_load_s']:.2f} s "
          f"(ratio {out['ratio_pacs_to_disk']:.1f}), QIDO search {out['qido_search_s'] * 1000:.0f} ms, "
          f"identical {same}, identifiers left {len(leaks)}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
