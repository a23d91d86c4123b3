#!/usr/bin/env python3
"""The app's image path at clinical size: load, viewer slice change, memory over many cases.

On the clinical-size demo cohort (her2core.synthetic.clinical_demo_cases: 448 x 448 x 100
voxels of 0.75 x 0.75 x 1.5 mm, 6 DCE phases, T2 on its own 3 mm grid), in one run:

* ``load``: ``load_image`` of every sequence of a case (.nii.gz), against the floor any
  .nii.gz reader has: one zlib decompression of the same files (``zlib.decompress``),
  and against the former path (a streaming check + a second decompression by ITK).
* ``slice_change``: the server work of one slice change on the case page, as
  webapp/widgets.py does it for the DCE (drawn), T2 and T1 columns: window presets
  (``Canonical.window_presets``, once per volume; the page's per-rerun call timed apart),
  ``Canonical.get_slice``, ``apply_window``, the mask slice, ``compose_rgb``,
  ``slice_figure`` and its JSON for the browser (plotly ``to_json``). Target < 100 ms.
  The floor it is compared with: slicing + windowing + PNG encoding of the same three
  slices (what any server-rendered viewer must do).
* ``page``: the Case page itself through streamlit's AppTest (app.py, its widgets and
  caches; the case set in the session): a slice change's server time measured inside the
  script thread (wall and CPU, from app.py's first call to the end of the page), for the
  three sequences side by side and for the large view; target < 100 ms.
* ``app_memory``: RSS of one AppTest session opening ``--opens`` cases one after another
  on the Case page through the app's caches (bounded: flat once they are full).
* ``memory``: ``--opens`` cases opened one after another (load + canonical of T1, T2,
  DCE, DCE_phases and the mask, the previous case released, as a page switching cases),
  RSS after each; flat = no growth from case to case (slope MB per case, last - first).
  The reference: the bytes the open case's arrays really hold (images + canonical
  copies), so RSS above that is overhead.

Writes benchmarks/results/clinical_size.json.

  python benchmarks/bench_clinical_size.py              # 4 distinct cases opened 20 times
  python benchmarks/bench_clinical_size.py --distinct 20  # 20 distinct cases (long first run)
"""
from __future__ import annotations

import argparse
import gc
import zlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SEQS = ("T1", "T2", "DCE", "DCE_phases")


def load_average():
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb(reset: bool = False) -> float:
    if reset:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def case_paths(cohort, cid):
    f = cohort.files(cid)
    return {s: getattr(f, s) for s in SEQS if getattr(f, s) is not None} | {"mask": f.mask}


def old_load(path):
    """The former NIfTI path: stream the data once to check it, then ITK reads it again."""
    import SimpleITK as sitk
    from her2core.imaging.io import _check_nifti_complete
    _check_nifti_complete(Path(path))
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def bench_load(cohort, cid, repeats):
    from her2core.imaging import load_image
    paths = case_paths(cohort, cid)
    rounds = {"load_image": [], "gzip_decompress_floor": [], "former_two_pass": []}
    for _ in range(repeats):  # interleaved: a busy machine slows all three alike
        t = time.perf_counter()
        for s, p in paths.items():
            load_image(p, sequence=s if s != "mask" else "mask")
        rounds["load_image"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for p in paths.values():
            zlib.decompress(Path(p).read_bytes(), 31)
        rounds["gzip_decompress_floor"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for p in paths.values():
            old_load(p)
        rounds["former_two_pass"].append(time.perf_counter() - t)
        gc.collect()
    best = {k: min(v) for k, v in rounds.items()}
    raw = sum(os.path.getsize(p) for p in paths.values())
    return {"files": {s: Path(p).name for s, p in paths.items()}, "compressed_mb": raw / 2**20,
            "seconds": best, "rounds": rounds,
            "ratio_load_over_decompress_floor": best["load_image"] / best["gzip_decompress_floor"],
            "ratio_former_over_load": best["former_two_pass"] / best["load_image"]}


def slice_change(cans, masks_can, view, idx, memo=True):
    """One rerun of the case viewer after the slice slider moved (webapp/widgets.py).

    ``memo=False``: presets from ``V.window_presets(volume)`` on every rerun, as the page
    calls them today; ``memo=True``: ``Canonical.window_presets`` (once per volume).
    """
    import plotly.io as pio
    from her2core import viewer as V
    timings = {}

    def tick(name, t0):
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0

    ref = cans["DCE"]
    editor = masks_can if isinstance(masks_can, V.MaskEditor) else V.MaskEditor(masks_can)
    masks_can = editor.mask
    t = time.perf_counter()
    presets = ref.window_presets(editor) if memo else V.window_presets(ref.array, masks_can)
    tick("window_presets", t)
    n_ref = ref.n_slices(view)
    frac = idx / max(n_ref - 1, 1)
    figs = []
    for seq in ("DCE", "T2", "T1"):
        can = cans[seq]
        ns = can.n_slices(view)
        j = idx if seq == "DCE" else int(round(frac * (ns - 1)))
        t = time.perf_counter()
        grey_src = can.get_slice(view, j)
        tick("get_slice", t)
        t = time.perf_counter()
        if seq == "DCE":
            wl = presets["Auto (1-99 %)"]
        else:
            wl = (can.window_presets() if memo else V.window_presets(can.array))["Auto (1-99 %)"]
        tick("window_presets", t)
        t = time.perf_counter()
        grey = V.apply_window(grey_src, *wl)
        tick("apply_window", t)
        t = time.perf_counter()
        m = ref.get_slice(view, idx, masks_can) if seq in ("DCE", "T1") else None
        tick("get_slice", t)
        t = time.perf_counter()
        rgb = V.compose_rgb(grey, mask=m, mask_opacity=0.35)
        tick("compose_rgb", t)
        t = time.perf_counter()
        fig = V.slice_figure(rgb, can.pixel_size(view), title=f"{seq} {view} {j}",
                             labels=V.axis_labels(view), selectable=seq == "DCE",
                             height=340)
        tick("slice_figure", t)
        t = time.perf_counter()
        figs.append(pio.to_json(fig, validate=False))
        tick("figure_json", t)
    return timings, sum(len(f) for f in figs)


def slice_floor(cans, view, idx, wls):
    """Slice + window + PNG of the three slices: what any server-side viewer must do."""
    from her2core import viewer as V
    n_ref = cans["DCE"].n_slices(view)
    frac = idx / max(n_ref - 1, 1)
    t = time.perf_counter()
    for seq in ("DCE", "T2", "T1"):
        can = cans[seq]
        j = idx if seq == "DCE" else int(round(frac * (can.n_slices(view) - 1)))
        V.rgb_to_png_bytes(V.apply_window(can.get_slice(view, j), *wls[seq]))
    return time.perf_counter() - t


def bench_viewer(cohort, cid, moves):
    from her2core import viewer as V
    from her2core.imaging import load_image
    from her2core.imaging.mask import load_mask
    paths = case_paths(cohort, cid)
    imgs = {s: load_image(paths[s], sequence=s) for s in ("T1", "T2", "DCE")}
    t = time.perf_counter()
    cans = {s: V.canonical(imgs[s]) for s in imgs}
    t_canonical = time.perf_counter() - t
    mask = load_mask(paths["mask"], imgs["DCE"])
    mask_can = V.MaskEditor(cans["DCE"].to_canonical(mask.array > 0))   # as the page holds it
    t = time.perf_counter()
    wls = {s: cans[s].window_presets()["Auto (1-99 %)"] for s in cans}  # memoized from here on
    t_presets = time.perf_counter() - t
    t = time.perf_counter()
    for s in cans:  # the former computation: percentiles of a float64 copy, every rerun
        a = np.asarray(cans[s].array, float)
        np.percentile(a[np.isfinite(a)], [0.5, 1, 5, 20, 95, 99, 99.5])
    t_plain = time.perf_counter() - t
    assert all(V.window_presets(cans[s].array) == cans[s].window_presets() for s in cans)
    out = {}
    for view in ("axial", "coronal"):
        n = cans["DCE"].n_slices(view)
        idxs = [int(v) for v in np.linspace(n * 0.3, n * 0.7, moves)]
        slice_change(cans, mask_can, view, idxs[0])  # warm-up (imports, plotly templates)
        per, floor, parts, sizes = [], [], {}, []
        for i in idxs:
            t = time.perf_counter()
            timings, nbytes = slice_change(cans, mask_can, view, i)
            per.append(time.perf_counter() - t)
            sizes.append(nbytes)
            for k, v in timings.items():
                parts.setdefault(k, []).append(v)
            floor.append(slice_floor(cans, view, i, wls))
        t = time.perf_counter()  # as the page calls the presets today (per rerun)
        slice_change(cans, mask_can, view, idxs[len(idxs) // 2], memo=False)
        today = time.perf_counter() - t
        med = statistics.median(per)
        out[view] = {"slice_change_ms": {"median": 1e3 * med, "min": 1e3 * min(per),
                                         "max": 1e3 * max(per)},
                     "per_figure_ms_median": 1e3 * med / 3,
                     "parts_ms_median": {k: 1e3 * statistics.median(v) for k, v in parts.items()},
                     "floor_ms_median": 1e3 * statistics.median(floor),
                     "ratio_over_floor": med / statistics.median(floor),
                     "slice_change_ms_presets_per_rerun_as_page_today": 1e3 * today,
                     "figure_json_kb": statistics.median(sizes) / 1024,
                     "slices_shown": {s: list(cans[s].get_slice(view, 0).shape) for s in cans},
                     "moves": len(idxs)}
    return {"canonical_s_three_volumes": t_canonical,
            "presets_once_per_volume_s_three_volumes": t_presets,
            "presets_former_float_copy_s_three_volumes": t_plain,
            "volume_shapes": {s: list(imgs[s].array.shape) for s in imgs},
            "columns": ["DCE (drawn, mask outline)", "T2 (own grid)", "T1 (mask outline)"],
            "target_ms": 100, "views": out}


def _app_case(cohort, cid):
    """The Case page's CaseData of a clinical-size case (as a demo case of that cohort)."""
    from webapp import services as S
    files = {k: str(v) for k, v in case_paths(cohort, cid).items() if k in ("T1", "T2", "DCE", "mask")}
    return S.CaseData(case_id=cid, source="demo", files=files,
                      hashes={k: S.file_sha256(v) for k, v in files.items()}, clinical={},
                      note="clinical-size synthetic case (no patient)")


class _ScriptClock:
    """Wall and CPU time of each run of app.py, measured inside the script thread: from
    app.py's init_state() to the end of the page it runs (StreamlitPage.run)."""

    def __init__(self):
        import webapp.state as WS
        from streamlit.navigation.page import StreamlitPage
        self.runs: list[tuple[float, float]] = []
        self._start = None
        orig_init, orig_run = WS.init_state, StreamlitPage.run
        clock = self

        def init_state(*a, **k):
            if k.get("allow_during_reading"):           # app.py's call: the run starts
                clock._start = (time.perf_counter(), time.thread_time())
            return orig_init(*a, **k)

        def run(page_self, *a, **k):
            try:
                return orig_run(page_self, *a, **k)
            finally:
                if clock._start is not None:
                    w, c = clock._start
                    clock.runs.append((time.perf_counter() - w, time.thread_time() - c))
                    clock._start = None
        WS.init_state, StreamlitPage.run = init_state, run
        self._undo = lambda: (setattr(WS, "init_state", orig_init),
                              setattr(StreamlitPage, "run", orig_run))

    def close(self):
        self._undo()


def bench_page(cohort, cid, moves):
    """The served Case page itself (streamlit AppTest: the real script, widgets and caches):
    server time of a slice change with the three sequences side by side (Large view off),
    and with the large view clinical-size cases open in."""
    from streamlit.testing.v1 import AppTest
    clock = _ScriptClock()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
        at.run()
        at.switch_page("app_pages/case.py")
        at.run()
        at.session_state["case"] = _app_case(cohort, cid)
        t = time.perf_counter()
        at.run()
        t_open = time.perf_counter() - t
        if at.exception:
            raise RuntimeError([e.value for e in at.exception])
        out = {"open_first_case_s": t_open}
        for layout, large in (("three_columns", False), ("large_view", True)):
            at.toggle(key="case_large").set_value(large)
            at.run()
            charts = len(at.get("plotly_chart"))
            sl = at.slider(key="case_slice_axial")
            n = sl.max + 1
            idxs = [int(v) for v in np.linspace(n * 0.3, n * 0.7, moves)]
            at.slider(key="case_slice_axial").set_value(idxs[-1])
            at.run()                                     # warm-up move
            wall, script, cpu = [], [], []
            for i in idxs:
                at.slider(key="case_slice_axial").set_value(i)
                clock.runs.clear()
                t = time.perf_counter()
                at.run()
                wall.append(time.perf_counter() - t)
                if at.exception:
                    raise RuntimeError([e.value for e in at.exception])
                script.append(clock.runs[-1][0])
                cpu.append(clock.runs[-1][1])
            med = statistics.median
            out[layout] = {
                "charts": charts, "moves": len(idxs),
                "script_ms": {"median": 1e3 * med(script), "min": 1e3 * min(script),
                              "max": 1e3 * max(script)},
                "script_cpu_ms_median": 1e3 * med(cpu),
                "apptest_run_ms_median": 1e3 * med(wall),
                "below_target": bool(1e3 * med(script) < 100)}
        return out
    finally:
        clock.close()


def page_at_commit(rev: str, a) -> dict:
    """bench_page on the app as it was at ``rev`` (this benchmark file run in that tree)."""
    import subprocess
    import tempfile
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="her2_bench_rev_") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        arch = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=arch.stdout, check=True)
        (tree / "benchmarks").mkdir(exist_ok=True)
        (tree / "benchmarks" / "bench_clinical_size.py").write_bytes(Path(__file__).read_bytes())
        if not (tree / "assets" / "demo_bundle").exists() and (ROOT / "assets" / "demo_bundle").exists():
            (tree / "assets").mkdir(exist_ok=True)
            (tree / "assets" / "demo_bundle").symlink_to(ROOT / "assets" / "demo_bundle")
        out = Path(tmp) / "page.json"
        cmd = [sys.executable, str(tree / "benchmarks" / "bench_clinical_size.py"),
               "--page-only", str(out), "--moves", str(a.moves), "--distinct", str(a.distinct)]
        if a.cache_dir:
            cmd += ["--cache-dir", a.cache_dir]
        r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
        if r.returncode != 0:
            return {"commit": commit, "error": r.stderr[-2000:]}
        return {"commit": commit, **json.loads(out.read_text())}


def bench_app_memory(cohort, ids, opens):
    """RSS of this process while one AppTest session opens ``opens`` cases one after another
    on the Case page (three columns drawn), through the app's own caches."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
    at.run()
    at.switch_page("app_pages/case.py")
    at.run()
    gc.collect()
    base = rss_mb()
    rows = []
    for k in range(opens):
        cid = ids[k % len(ids)]
        at.session_state["case"] = _app_case(cohort, cid)
        at.session_state["editors"] = {}
        t = time.perf_counter()
        at.run()
        if k == 0:
            at.toggle(key="case_large").set_value(False)
            at.run()
        dt = time.perf_counter() - t
        gc.collect()
        rows.append({"case": cid, "open_s": dt, "rss_mb": rss_mb()})
    rss = [r["rss_mb"] for r in rows]
    d = len(ids)
    tail = rss[d:] if len(rss) > d else rss
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) > 1 else 0.0
    return {"opens": opens, "distinct_cases": d, "baseline_rss_mb": base,
            "rss_after_first_round_mb": rss[min(d, len(rss)) - 1], "rss_last_mb": rss[-1],
            "rss_max_mb": max(rss),
            "slope_mb_per_case_after_first_round": slope,
            "flat_after_first_round": bool(abs(slope) < 5 and max(tail) - min(tail) < 150),
            "note": "the app's image caches are shared and bounded (24 images, 24 canonical "
                    "copies): RSS grows while distinct cases fill them, then stays",
            "per_case": rows}


def bench_memory(cohort, ids, opens):
    from her2core import viewer as V
    from her2core.imaging import load_image
    gc.collect()
    base = rss_mb()
    rows = []
    for k in range(opens):
        cid = ids[k % len(ids)]
        paths = case_paths(cohort, cid)
        peak_mb(reset=True)
        t = time.perf_counter()
        case = {s: load_image(p, sequence=s) for s, p in paths.items()}
        cans = {s: V.canonical(case[s]) for s in case if s != "mask"}
        held = sum(im.array.nbytes for im in case.values()) + sum(c.array.nbytes for c in cans.values())
        dt = time.perf_counter() - t
        open_rss, open_peak = rss_mb(), peak_mb()
        del case, cans  # the page moves on to the next case
        gc.collect()
        rows.append({"case": cid, "open_s": dt, "held_mb": held / 2**20, "rss_open_mb": open_rss,
                     "peak_mb": open_peak, "rss_after_release_mb": rss_mb()})
    after = [r["rss_after_release_mb"] for r in rows]
    opened = [r["rss_open_mb"] for r in rows]
    slope = float(np.polyfit(np.arange(len(after)), after, 1)[0]) if len(after) > 1 else 0.0
    held = statistics.median(r["held_mb"] for r in rows)
    return {"opens": opens, "distinct_cases": len(ids), "baseline_rss_mb": base,
            "rss_after_release_mb": {"first": after[0], "last": after[-1], "max": max(after)},
            "rss_while_open_mb": {"first": opened[0], "last": opened[-1], "max": max(opened)},
            "growth_last_minus_first_mb": after[-1] - after[0],
            "slope_mb_per_case": slope, "flat": bool(abs(slope) < 5 and after[-1] - after[0] < 100),
            "held_mb_per_case": held,
            "ratio_open_rss_increment_over_held": (statistics.median(opened) - base) / held,
            "ratio_peak_increment_over_held": (statistics.median(r["peak_mb"] for r in rows) - base) / held,
            "per_case": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--distinct", type=int, default=4, help="distinct clinical-size cases")
    ap.add_argument("--opens", type=int, default=20, help="cases opened one after another")
    ap.add_argument("--moves", type=int, default=9, help="slice changes timed per view")
    ap.add_argument("--repeats", type=int, default=3, help="load timings (interleaved)")
    ap.add_argument("--cache-dir", default=None, help="cache of the generated cases")
    ap.add_argument("--no-page", action="store_true", help="skip the AppTest page parts")
    ap.add_argument("--compare-commit", default=None, metavar="REV",
                    help="also time the Case page of the app as it was at REV (git archive "
                         "into a temp folder, same cases, this run): the before of a change")
    ap.add_argument("--page-only", default=None, metavar="JSON", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args(argv)
    import SimpleITK as sitk
    import torch  # noqa: F401 - the app process has it loaded; count it in the baseline
    from her2core.cohort import read_cohort
    from her2core.synthetic import clinical_demo_cases

    if a.page_only:                 # (the --compare-commit child, in the old tree)
        coh = read_cohort(clinical_demo_cases(a.cache_dir, n=a.distinct))
        Path(a.page_only).write_text(json.dumps(bench_page(coh, coh.case_ids[0], a.moves),
                                                default=float))
        return 0
    t = time.perf_counter()
    root = clinical_demo_cases(a.cache_dir, n=a.distinct,
                               progress=lambda d, n, m: print(f"  {m}", flush=True))
    t_gen = time.perf_counter() - t
    cohort = read_cohort(root)
    ids = cohort.case_ids
    loads = [load_average()]
    res = {"cohort": str(root), "generate_or_reuse_s": t_gen}
    res["load"] = bench_load(cohort, ids[0], a.repeats)
    loads.append(load_average())
    res["viewer"] = bench_viewer(cohort, ids[0], a.moves)
    loads.append(load_average())
    res["memory"] = bench_memory(cohort, ids, a.opens)
    loads.append(load_average())
    if not a.no_page:
        res["page"] = bench_page(cohort, ids[0], a.moves)
        loads.append(load_average())
        res["app_memory"] = bench_app_memory(cohort, ids, a.opens)
        loads.append(load_average())
        if a.compare_commit:
            res["page_at_commit"] = page_at_commit(a.compare_commit, a)
            loads.append(load_average())
    res.update({
        "threads": {"SimpleITK": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "batch": None, "input_size": {"shape_xyz": [448, 448, 100], "spacing_mm": [0.75, 0.75, 1.5],
                                      "dce_phases": 6, "T2_shape_xyz": [448, 448, 50]},
        "machine": f"{platform.processor() or platform.machine()} x{os.cpu_count()} cores",
        "load_average": loads,
        "note": "shared machine: load timings interleaved (fastest of each); see load_average",
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "clinical_size.json"
    path.write_text(json.dumps(res, indent=2, default=float) + "\n")
    ld, vw, mem = res["load"], res["viewer"]["views"], res["memory"]
    print(f"bench_clinical_size: load {ld['seconds']['load_image']:.2f} s/case "
          f"(decompress floor {ld['seconds']['gzip_decompress_floor']:.2f} s, ratio "
          f"{ld['ratio_load_over_decompress_floor']:.2f}; former two-pass "
          f"{ld['ratio_former_over_load']:.2f}x slower) | slice change axial "
          f"{vw['axial']['slice_change_ms']['median']:.0f} ms, coronal "
          f"{vw['coronal']['slice_change_ms']['median']:.0f} ms (target 100; floor "
          f"{vw['axial']['floor_ms_median']:.0f} ms) | memory over {mem['opens']} opens: "
          f"{mem['slope_mb_per_case']:+.1f} MB/case, last-first "
          f"{mem['growth_last_minus_first_mb']:+.0f} MB, flat={mem['flat']} | {path}")
    if "page_at_commit" in res and "three_columns" in res["page_at_commit"]:
        pb = res["page_at_commit"]
        print(f"  at {pb['commit'][:10]}: three columns {pb['three_columns']['script_ms']['median']:.0f} ms "
              f"({pb['three_columns']['script_cpu_ms_median']:.0f} ms CPU), large view "
              f"{pb['large_view']['script_ms']['median']:.0f} ms")
    if "page" in res:
        pg, am = res["page"], res["app_memory"]
        print(f"  Case page (AppTest) slice change: three columns "
              f"{pg['three_columns']['script_ms']['median']:.0f} ms script "
              f"({pg['three_columns']['script_cpu_ms_median']:.0f} ms CPU), large view "
              f"{pg['large_view']['script_ms']['median']:.0f} ms | app memory over "
              f"{am['opens']} opens: {am['rss_after_first_round_mb']:.0f} -> {am['rss_last_mb']:.0f} MB, "
              f"flat after the first round={am['flat_after_first_round']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
