"""Time SHAP for one patient and the Grad-CAM grid of one case (CPU).

    python benchmarks/bench_explain.py [--repeats 5] [--method gradcam] [--out benchmarks/results/explain_cpu.json]

* SHAP: a combined nomogram (4 deep scores + 8 clinical predictors, 500 training
  cases; exact linear path), plus for comparison an XGBoost model (TreeExplainer)
  and an SVM (model-agnostic KernelExplainer, approximate) on the same predictors.
* Grad-CAM: paper 000's grid, 3 sequences (T1, T2, DCE) x 4 backbones (ResNet50,
  VGG16, EfficientNet-B0, ViT-Small) with RANDOM-INIT weights at 224 px, on one
  synthetic case: input preparation, CAM on the D-score head, placement into the
  source grid, NIfTI + PNG writing, and the grid PNG. Backbone creation is timed
  apart (the app caches backbones).

Prints a table and writes JSON. All outputs use random-init weights and say so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BACKBONES = ("resnet50", "vgg16", "efficientnet_b0", "vit_small_patch16_224")
SEQUENCES = ("T1", "T2", "DCE")


def _timeit(fn, repeats: int) -> dict:
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "median_cpu_s": statistics.median(cpu), "repeats": repeats}


def bench_shap(repeats: int) -> dict:
    from sklearn.svm import SVC

    from her2core.explain.shap_explain import explain_model
    from her2core.models.clinical import ClinicalModel
    from xgboost import XGBClassifier
    rng = np.random.default_rng(0)
    n = 500
    X = pd.DataFrame({f"dscore_{b}": rng.normal(0, 1, n) for b in BACKBONES})
    X["age"] = rng.normal(55, 11, n)
    for c in ("er", "pr", "aln_abnormal", "peritumoral_edema", "microcalcification"):
        X[c] = rng.integers(0, 2, n).astype(float)
    X["tumor_size_mm"] = rng.normal(26, 10, n)
    X["enhancement_curve"] = rng.choice(["persistent", "plateau", "washout"], n)
    X.loc[rng.choice(n, 20, replace=False), "tumor_size_mm"] = np.nan
    logit = X[[f"dscore_{b}" for b in BACKBONES]].sum(axis=1) - 0.8 * X["er"] \
        + 0.5 * (X["enhancement_curve"] == "washout")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    out = {"n_background": n, "n_predictors": X.shape[1]}
    nomo = ClinicalModel(selection="none").fit(X, y)
    one = X.iloc[[7]]
    res = explain_model(nomo, X, one)
    out["nomogram_linear"] = _timeit(lambda: explain_model(nomo, X, one), repeats)
    out["nomogram_linear"].update(method=res.method, additivity_error=res.additivity_error)
    num = X.drop(columns=["enhancement_curve"]).fillna(26.0)
    xgb = XGBClassifier(n_estimators=100, max_depth=3, n_jobs=1, verbosity=0).fit(num, y)
    res = explain_model(xgb, num, num.iloc[[7]])
    out["xgboost_tree"] = _timeit(lambda: explain_model(xgb, num, num.iloc[[7]]), repeats)
    out["xgboost_tree"].update(method=res.method, additivity_error=res.additivity_error)
    svm = SVC(probability=True, random_state=0).fit(num, y)
    res = explain_model(svm, num, num.iloc[[7]], time_budget_s=20)
    out["svm_kernel"] = _timeit(lambda: explain_model(svm, num, num.iloc[[7]], time_budget_s=20),
                                max(1, repeats // 2))
    out["svm_kernel"].update(method=res.method, approximate=res.approximate, note=res.note)
    return out


def bench_gradcam(method: str, workdir: Path) -> dict:
    import torch

    from her2core.explain import gradcam as G
    from her2core.explain.case import cam_input_2d
    from her2core.explain.figures import save_cam_grid_png, save_overlay_png
    from her2core.explain.placement import place_map, save_map
    from her2core.features.backbones import create_backbone
    from her2core.features.config import FeatureConfig
    from her2core.imaging import load_image
    from her2core.synthetic import make_cohort
    cohort = make_cohort(workdir / "cohort", n=1, seed=3, centres=1, modalities="mri",
                         shape=(128, 128, 24))
    case = next((cohort / "cases").iterdir())
    mask = load_image(case / "mask.nii.gz", sequence="mask", modality="SEG", expected_ndim=3)
    images = {s: load_image(case / f"{s}.nii.gz", sequence=s) for s in SEQUENCES}
    from her2core.imaging.mask import check_mask
    masks = {s: check_mask(mask, images[s], resample=True) for s in SEQUENCES}
    cfg = FeatureConfig(default_weights="random-init", device="cpu")
    out = {"method": method, "input_px": 224, "weights": "random-init", "maps": [],
           "torch_threads": torch.get_num_threads()}
    t_create = {}
    backbones = {}
    for name in BACKBONES:
        t = time.perf_counter()
        backbones[name] = create_backbone(name, "random-init", device="cpu")
        t_create[name] = time.perf_counter() - t
    out["backbone_creation_s"] = t_create
    rng = np.random.default_rng(0)
    cells = {}
    t_grid = time.perf_counter()
    for seq in SEQUENCES:
        for name in BACKBONES:
            bb = backbones[name]
            sel = rng.choice(bb.dim, 12, replace=False)
            head = G.ScoreHead(bb.model, sel, rng.normal(0, 0.5, 12), 0.0)
            t0 = time.perf_counter()
            x, crop, z = cam_input_2d(bb, images[seq], masks[seq], cfg)
            t1, c1 = time.perf_counter(), time.process_time()
            cam = G.compute_cam(head, x, method)
            t2, c2 = time.perf_counter(), time.process_time()
            placed = place_map(cam, crop, images[seq])
            stem = workdir / "maps" / f"{seq}_{name}"
            save_map(placed, stem.with_suffix(".nii.gz"))
            save_overlay_png(stem.with_suffix(".png"), images[seq].array[z], placed.array[z],
                             title=f"{seq} {name}", random_init=True)
            t3 = time.perf_counter()
            assert not G.leftover_hooks(bb.model)
            cells[(seq, name)] = (images[seq].array[z], placed.array[z])
            out["maps"].append({"sequence": seq, "backbone": name, "prepare_s": t1 - t0,
                                "cam_s": t2 - t1, "cam_cpu_s": c2 - c1, "place_write_s": t3 - t2,
                                "same_grid": placed.same_grid(images[seq])})
    save_cam_grid_png(workdir / "maps" / "grid.png", cells, title="benchmark grid", random_init=True)
    out["grid_total_s"] = time.perf_counter() - t_grid
    out["cam_only_total_s"] = sum(m["cam_s"] for m in out["maps"])
    out["per_backbone_cam_median_s"] = {
        b: statistics.median(m["cam_s"] for m in out["maps"] if m["backbone"] == b) for b in BACKBONES}
    out["per_backbone_cam_median_cpu_s"] = {
        b: statistics.median(m["cam_cpu_s"] for m in out["maps"] if m["backbone"] == b)
        for b in BACKBONES}
    out["cam_only_total_cpu_s"] = sum(m["cam_cpu_s"] for m in out["maps"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "explain_cpu.json"))
    args = ap.parse_args(argv)
    import torch
    info = {"machine": platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "load_average_before": os.getloadavg(), "cuda": torch.cuda.is_available(),
            "note": "random-init backbone weights: timings only, maps not meaningful"}
    shap_res = bench_shap(args.repeats)
    with tempfile.TemporaryDirectory() as d:
        cam_res = bench_gradcam(args.method, Path(d))
    info["load_average_after"] = os.getloadavg()
    result = {"environment": info, "shap_one_patient": shap_res, "gradcam_grid_one_case": cam_res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"SHAP one patient (nomogram, {shap_res['n_predictors']} predictors, "
          f"{shap_res['n_background']} background): "
          f"{shap_res['nomogram_linear']['median_s'] * 1000:.1f} ms (exact linear, additivity error "
          f"{shap_res['nomogram_linear']['additivity_error']:.1e})")
    print(f"  xgboost TreeExplainer: {shap_res['xgboost_tree']['median_s'] * 1000:.1f} ms; "
          f"SVM KernelExplainer (approximate): {shap_res['svm_kernel']['median_s']:.2f} s")
    print(f"Grad-CAM grid {len(SEQUENCES)} sequences x {len(BACKBONES)} backbones ({args.method}, "
          f"224 px, random-init, {cam_res['torch_threads']} threads): "
          f"{cam_res['grid_total_s']:.1f} s total, CAM alone {cam_res['cam_only_total_s']:.1f} s")
    for b, s in cam_res["per_backbone_cam_median_s"].items():
        print(f"  {b:24s} {s:.2f} s per map, {cam_res['per_backbone_cam_median_cpu_s'][b]:.2f} "
              f"CPU-s (creation {cam_res['backbone_creation_s'][b]:.1f} s)")
    print(f"  load average before / after: {info['load_average_before']} / {info['load_average_after']}")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
