#!/usr/bin/env python3
"""Cohort extraction on Ray with 1 and 2 local workers, against the local path, in one run.

Cohort: ``--n`` clinical-size cases (her2core.synthetic.clinical_demo_cases, 448 x 448 x
100 at 0.75 x 0.75 x 1.5 mm; ``--distinct`` generated ones hard-linked under new ids).
Features: the demo recipe (ResNet18, random-init, on DCE and T2 + DCE radiomics), the
command-line path (``fill_feature_cache`` into a fresh cache folder per run), so each
run pays what `python -m her2core extract` pays: file digests for the cache keys,
loading, cropping, radiomics, the forward passes, writing the cache.

Runs, interleaved ``--repeats`` times: the local path (DataLoader workers, this
process's networks), Ray with 1 worker, Ray with 2 workers (one local Ray of
``--cpus`` CPUs, started once; start-up and worker start timed apart).

Ratios, each against a reference that is a real ceiling:
* scaling efficiency = (cases/s with 2 workers) / (2 x cases/s with 1 worker): the
  ceiling of 2 workers is twice one;
* Ray / local, both with 2 CPUs doing the work;
* the workers' CPU seconds over wall time = the cores they really got (a shared machine
  may not give 2 workers 2 cores); efficiency per core obtained = the same scaling with
  each run's cases/s divided by its cores;
* per-case overhead of Ray = 1-worker seconds per case / seconds per case of the same
  work in-process, serially (``--serial-n`` cases through FeatureExtractor with no
  DataLoader workers): the in-process serial run is the floor of one worker.

The 1000-case cost is extrapolated from the CPU seconds one worker spends per case,
the per-core efficiency, the Ray start-up and the cache bytes per case. Writes benchmarks/results/ray_cpu.json.

  python benchmarks/bench_ray.py --n 8
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILES = ("DCE.nii.gz", "T2.nii.gz", "mask.nii.gz")


def load_average():
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def make_bench_cohort(src: Path, dst: Path, n: int) -> Path:
    """n cases: the generated ones again under new ids (hard links: no copy of the bytes)."""
    import pandas as pd
    table = pd.read_csv(src / "cohort.csv", dtype=str)
    rows = []
    for i in range(n):
        row = table.iloc[i % len(table)].copy()
        new = f"r{i:05d}"
        (dst / "cases" / new).mkdir(parents=True)
        for name in FILES:
            a, b = src / "cases" / row["case_id"] / name, dst / "cases" / new / name
            try:
                os.link(a, b)
            except OSError:
                shutil.copy(a, b)
        row["case_id"] = new
        rows.append(row)
    pd.DataFrame(rows).to_csv(dst / "cohort.csv", index=False)
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8, help="cases per run")
    ap.add_argument("--distinct", type=int, default=4, help="distinct generated cases")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds")
    ap.add_argument("--serial-n", type=int, default=2, help="cases of the in-process serial floor")
    ap.add_argument("--recipe", default="demo")
    ap.add_argument("--cache-dir", default=None, help="cache of the generated cases")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    import torch
    from her2core.cohort import read_cohort
    from her2core.features.distributed import RayExecutor
    from her2core.features.extract import FeatureExtractor, fill_feature_cache
    from her2core.models.recipes import load_recipe
    from her2core.models.workflow import feature_config_for
    from her2core.synthetic import clinical_demo_cases

    src = clinical_demo_cases(a.cache_dir, n=a.distinct)
    cfg = feature_config_for(load_recipe(a.recipe), random_init=True, device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    runs: dict[str, list[float]] = {"local": [], "ray_1": [], "ray_2": []}
    cache_bytes, n_feat, chunks, cpu = [], None, {}, {"ray_1": [], "ray_2": []}
    loads = [load_average()]
    try:
        root = make_bench_cohort(src, tmp / "cohort", a.n)
        cohort = read_cohort(root)
        ex = FeatureExtractor(cfg)
        backbones = ex.backbones
        # serial in-process floor (no DataLoader workers, no Ray)
        serial_cfg = feature_config_for(load_recipe(a.recipe), random_init=True, device="cpu")
        serial_cfg.num_workers = 0
        t = time.perf_counter()
        FeatureExtractor(serial_cfg, backbones).extract_cohort(cohort, case_ids=cohort.case_ids[:a.serial_n])
        t_serial = (time.perf_counter() - t) / a.serial_n
        ray_ex = RayExecutor(num_cpus=a.cpus)
        t = time.perf_counter()
        ray_ex.connect()
        t_connect = time.perf_counter() - t
        t_start = {}
        for r in range(a.repeats):
            for name in ("local", "ray_1", "ray_2"):
                cache = tmp / f"cache_{name}_{r}"
                if name == "local":
                    executor = None
                else:
                    ray_ex.workers = 1 if name == "ray_1" else 2
                    t = time.perf_counter()  # workers started before timing (a fixed cost)
                    ray_ex.start(ex)
                    t_start.setdefault(name, []).append(time.perf_counter() - t)
                    executor = ray_ex
                t = time.perf_counter()
                res = fill_feature_cache(cohort, cfg, cache, executor=executor, backbones=backbones)
                runs[name].append(time.perf_counter() - t)
                if executor is not None:
                    chunks[name] = ray_ex.info.get("chunk_size")
                    cpu[name].append(ray_ex.info.get("worker_cpu_s"))
                assert not res.errors and res.computed == a.n, res.errors
                n_feat = res.features.shape[1]
                cache_bytes.append(sum(p.stat().st_size for p in cache.glob("*")) / a.n)
                loads.append(load_average())
        ray_ex.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {k: min(v) for k, v in runs.items()}
    # cores the workers really got: their CPU seconds over the run's wall time (a shared
    # machine may not give 2 workers 2 cores)
    cores_got = {k: statistics.median(c / w for c, w in zip(cpu[k], runs[k])) for k in cpu}
    cpu_per_case = {k: statistics.median(cpu[k]) / a.n for k in cpu}
    cps = {k: a.n / v for k, v in best.items()}
    eff = cps["ray_2"] / (2 * cps["ray_1"])
    per_case_1 = best["ray_1"] / a.n
    startup = t_connect + max(v[0] for v in t_start.values())
    cache_per_case = statistics.median(cache_bytes)
    eff_core = (cps["ray_2"] / cores_got["ray_2"]) / (cps["ray_1"] / cores_got["ray_1"])
    cpu_case = cpu_per_case["ray_1"]          # CPU seconds of one case on one worker
    extrap = {
        "cases": 1000,
        "worker_cpu_seconds_per_case": cpu_case,
        "wall_seconds_per_case_one_worker_here": per_case_1,
        "core_hours": 1000 * cpu_case / 3600,
        "wall_hours_this_machine_2_workers_as_measured": (startup + 1000 / cps["ray_2"]) / 3600,
        "wall_hours_16_workers": (startup + 1000 * cpu_case / (16 * min(1.0, eff_core))) / 3600,
        "wall_hours_64_workers": (startup + 1000 * cpu_case / (64 * min(1.0, eff_core))) / 3600,
        "feature_cache_gb": 1000 * cache_per_case / 1e9,
        "input_gb_read": 1000 * sum((src / "cases" / "clin-000" / f).stat().st_size for f in FILES) / 1e9,
        "assumes": ("each worker gets a whole core (1 torch thread), at the per-core efficiency "
                    "measured with 2 workers; Ray start-up once; input from a shared file "
                    "system at no extra cost"),
    }
    res = {
        "cohort": {"cases": a.n, "distinct": a.distinct, "shape_xyz": [448, 448, 100],
                   "spacing_mm": [0.75, 0.75, 1.5], "sequences": cfg.sequences},
        "recipe": a.recipe, "features": n_feat, "batch_size": cfg.batch_size,
        "ray_chunk_size": chunks,
        "input_size": {"2d_px": cfg.input_size, "backbones": cfg.backbones,
                       "radiomics": cfg.radiomics_for()},
        "threads": {"ray_worker_torch": 1, "local_torch_intra_op": torch.get_num_threads(),
                    "local_dataloader_workers": cfg.workers, "ray_cpus": a.cpus,
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "seconds": {"runs": runs, "best": best, "ray_connect": t_connect, "worker_start": t_start,
                    "serial_in_process_per_case": t_serial},
        "cases_per_s": cps,
        "scaling_efficiency_2_workers": eff,
        "worker_cpu_seconds_per_case": cpu_per_case,
        "cores_obtained_by_workers": cores_got,
        "scaling_efficiency_per_core_obtained": eff_core,
        "ratio_ray2_over_local": cps["ray_2"] / cps["local"],
        "ratio_ray1_per_case_over_serial_floor": per_case_1 / t_serial,
        "cache_bytes_per_case": cache_per_case,
        "extrapolated_1000_cases": extrap,
        "repeats": a.repeats,
        "machine": f"{platform.processor() or platform.machine()} x{os.cpu_count()} cores",
        "load_average": loads,
        "note": ("shared machine: runs interleaved, fastest of each; load_average sampled after "
                 "every run. Ray start-up and worker start are fixed costs, not in cases/s"),
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ray_cpu.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"bench_ray: {a.n} clinical-size cases | local {cps['local']:.3f} cases/s, Ray 1 worker "
          f"{cps['ray_1']:.3f}, 2 workers {cps['ray_2']:.3f} | scaling efficiency {eff:.2f} | "
          f"Ray2/local {cps['ray_2'] / cps['local']:.2f} | Ray overhead per case "
          f"{per_case_1 / t_serial:.2f}x the serial floor | cores the workers got: 1 worker "
          f"{cores_got['ray_1']:.2f}, 2 workers {cores_got['ray_2']:.2f} | start-up {startup:.0f} s | 1000 cases: "
          f"{extrap['core_hours']:.2f} core-hours, {extrap['wall_hours_16_workers']:.2f} h on 16 "
          f"workers | {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
