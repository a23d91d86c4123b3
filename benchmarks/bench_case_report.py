"""Per-case full report of recipe 000 on a clinical-size case (the app's runtime, networks loaded).

    python3 benchmarks/bench_case_report.py [--device cpu|cuda] [--repeats 3]
        [--train-n 40] [--out benchmarks/results/case_report_cpu.json]

1. Trains recipe 000 (T1, T2, DCE; ResNet50 / VGG16 / EfficientNet-B0 / ViT-Small per
   sequence: 4 backbones x 3 sequences; random-init, no bootstrap) on a small synthetic
   cohort (her2core.synthetic.make_cohort) once, into --work.
2. Takes a clinical-size case (448 x 448 x 100 at 0.75 x 0.75 x 1.5 mm, DCE phases;
   her2core.synthetic.clinical_demo_cases, generated on first use into the cache).
3. Times, with the backbones already created (as in the app after its first case):
   loading the case's files, the image part (12 backbone forward passes on the ROI crops,
   block scores, the Grad-CAM of every score the final model uses) and the clinical part
   (probability, interval, nomogram points, exact SHAP), ``--repeats`` times; also the
   same with Grad-CAM forced on all 12 (sequence, backbone) maps (the explain grid).
Reference in the same run: the 12 bare forward passes on the same prepared inputs (the
ceiling of the image part without Grad-CAM). Targets: <= 3 s on this CPU, <= 0.5 s on a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _train(work: Path, n: int, device: str) -> Path:
    from her2core.synthetic import make_cohort
    from her2core.workflows.train import TrainSettings, train_bundle
    out = work / f"bundle_000_n{n}"
    if (out / "MANIFEST").is_file():
        return out
    root = work / f"cohort_n{n}"
    if not (root / "cohort.csv").is_file():
        make_cohort(root, n=n, seed=3, centres=2, modalities="mri", shape=(48, 48, 12),
                    overwrite=True)
    train_bundle(TrainSettings(cohort=root, out=out, recipe="000", random_init=True,
                               bootstrap=0, device=device, cache_dir=str(work / "cache"),
                               overwrite=True, oof_folds=3))
    return out


def same_run_ab(bundle, config, pred, images, masks, cid, rounds: int = 3) -> dict:
    """The two runtime changes timed against their former form on this case, interleaved
    in this process (the machine's load changes between runs, not within a round):
    block scores of the feature row with / without the extraction's attrs, and roi_bbox
    against the former argwhere box on each mask."""
    import numpy as np
    from her2core.features.extract import FeatureExtractor
    from her2core.imaging import ops
    row = FeatureExtractor(config, pred.backbones()).extract_case(images, masks, case_id=cid)
    X_attrs = row.to_frame().T.astype(float)
    X_plain = X_attrs.copy()
    X_plain.attrs = {}
    model = bundle.models["her2"]

    def argwhere_box(mask):
        idx = np.argwhere(mask.array > 0)[:, ::-1]
        return tuple(int(v) for v in idx.min(axis=0)), tuple(int(v) for v in idx.max(axis=0) + 1)
    t_a, t_p, b_old, b_new = [], [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        za = model.block_scores(X_attrs)
        t_a.append(time.perf_counter() - t)
        t = time.perf_counter()
        zp = model.block_scores(X_plain)
        t_p.append(time.perf_counter() - t)
        t = time.perf_counter()
        old = [argwhere_box(m) for m in masks.values()]
        b_old.append(time.perf_counter() - t)
        t = time.perf_counter()
        new = [ops.roi_bbox(m) for m in masks.values()]
        b_new.append(time.perf_counter() - t)
    med = statistics.median
    return {"block_scores_s": {"with_attrs": med(t_a), "without": med(t_p),
                               "same_scores": bool((za.to_numpy() == zp.to_numpy()).all())},
            "roi_bbox_s_all_masks": {"argwhere": med(b_old), "projections": med(b_new),
                                     "same_boxes": old == new},
            "masks": {s: list(m.array.shape) for s, m in masks.items()},
            "attrs_bytes": len(json.dumps(X_attrs.attrs, default=str))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-n", type=int, default=40)
    ap.add_argument("--work", default="/tmp/her2_bench_case_report")
    ap.add_argument("--grid-repeats", type=int, default=1,
                    help="repeats of the 12-map Grad-CAM grid (slow on a CPU)")
    ap.add_argument("--before", default=None, metavar="JSON",
                    help="a result of this benchmark before a change: kept under 'before' "
                         "with the ratios of the two")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's own, i.e. the app's)")
    ap.add_argument("--also", default=None, metavar="JSON",
                    help="another run of this benchmark (other threads) kept under 'also'")
    ap.add_argument("--gpu-note", default=None,
                    help="what is known of a GPU run (e.g. none lent to this task)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "case_report_cpu.json"))
    a = ap.parse_args(argv)
    import numpy as np
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)

    from her2core.bundle import load_bundle
    from her2core.cohort import read_cohort
    from her2core.features import deep
    from her2core.features.extract import load_case
    from her2core.predictor import CasePredictor
    from her2core.synthetic import clinical_demo_cases
    from her2core.workflows.explain import case_clinical_values

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    bundle = load_bundle(_train(work, a.train_n, a.device))
    train_s = time.time() - t0
    coh = read_cohort(clinical_demo_cases())
    cid = coh.case_ids[0]
    pred = CasePredictor(bundle, device=a.device)
    pred.backbones()                                      # created once, as the app does
    config = pred.config
    images, masks = load_case(coh.files(cid), config)     # warm the page cache once
    clin = case_clinical_values(coh, cid)
    shape = list(images["DCE"].shape)
    load, image_s, clinical_s, full_s, grid_s, bare_s = [], [], [], [], [], []
    parts_t, loads_avg = [], []
    for rep in range(a.repeats):
        loads_avg.append([round(v, 2) for v in os.getloadavg()])
        t = time.perf_counter()
        images, masks = load_case(coh.files(cid), config)
        load.append(time.perf_counter() - t)
        t = time.perf_counter()
        part = pred.image_part(images, masks, case_id=cid)
        image_s.append(time.perf_counter() - t)
        parts_t.append(dict(part.timings))
        t = time.perf_counter()
        cp = pred.clinical_part(part, clin)
        clinical_s.append(time.perf_counter() - t)
        full_s.append(load[-1] + image_s[-1] + clinical_s[-1])
        # the explain grid: Grad-CAM of all 12 (sequence, backbone) blocks
        from her2core.explain.case import case_gradcam
        if rep < a.grid_repeats:
            t = time.perf_counter()
            cams = case_gradcam(bundle.models["her2"], config, pred.backbones(), images, masks,
                                part.features)
            grid_s.append(time.perf_counter() - t)
        # reference: the 12 bare forward passes on the prepared inputs
        bbs = pred.backbones()
        plan = deep.input_plan(config, bbs)
        batch = deep.collate([deep.build_inputs(cid, images, masks, config, plan)])
        t = time.perf_counter()
        with torch.inference_mode():
            deep.run_batch(batch, config, bbs)
        bare_s.append(time.perf_counter() - t)
    med = statistics.median
    ab = same_run_ab(bundle, config, pred, images, masks, cid)
    out = {
        "settings": {"device": a.device, "repeats": a.repeats, "train_n": a.train_n,
                     "case_shape_zyx": shape, "case": cid,
                     "backbones": {s: config.backbones.get(s) for s in config.sequences},
                     "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                     "load_average": os.getloadavg(), "python": platform.python_version(),
                     "train_seconds": round(train_s, 1)},
        "seconds_median": {"load": med(load), "image_part": med(image_s),
                           "clinical_part": med(clinical_s), "full_report": med(full_s),
                           "gradcam_grid_12": med(grid_s), "bare_forward_12": med(bare_s)},
        "ratio_image_part_over_bare_forward": med(image_s) / max(med(bare_s), 1e-9),
        "used_scores": part.tasks["her2"].used, "maps_in_report": len(part.tasks["her2"].gradcam),
        "grid_maps": len(cams), "probability": cp.probability,
        "target_s": 0.5 if a.device.startswith("cuda") else 3.0,
        "ratio_full_report_over_bare_forward": med(full_s) / max(med(bare_s), 1e-9),
        "runs": {"load": load, "image_part": image_s, "clinical_part": clinical_s,
                 "gradcam_grid_12": grid_s, "bare_forward_12": bare_s,
                 "image_part_timings": parts_t, "load_average": loads_avg},
        "random_init": bundle.random_init,
        "same_run_ab": ab,
        "meets_target": bool(med(full_s) <= (0.5 if a.device.startswith("cuda") else 3.0)),
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import subprocess
        out["settings"]["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT,
                                                   capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    if a.gpu_note:
        out["gpu"] = a.gpu_note
    if a.also:
        also = json.loads(Path(a.also).read_text())
        out["also"] = {k: also.get(k) for k in ("settings", "seconds_median", "same_run_ab",
                                                  "meets_target", "when_utc")}
    if a.before:
        before = json.loads(Path(a.before).read_text())
        before.pop("before", None)
        out["before"] = before
        bm, am = before["seconds_median"], out["seconds_median"]
        out["speedup_before_over_after"] = {k: bm[k] / am[k] for k in am
                                            if k in bm and am[k] > 0}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=float) + "\n", encoding="utf-8")
    print(json.dumps(out["seconds_median"], indent=1), "ratio", out["ratio_image_part_over_bare_forward"])
    return 0 if np.isfinite(out["seconds_median"]["full_report"]) else 1


if __name__ == "__main__":
    sys.exit(main())
