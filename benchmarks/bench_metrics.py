"""Speed of the DeLong and bootstrap code against R pROC (or a naive O(n^2) DeLong).

Run from the repository root:

    python3 benchmarks/bench_metrics.py [--sizes 1000 100000 1000000] [--repeats 3]

For each n: simulated binormal scores (prevalence 0.3, two correlated scores,
values rounded to 4 decimals so that there are ties), then
* DeLong AUC + 95% CI of one score (her2core ``ci_auc_delong``),
* the paired DeLong test of the two scores (``delong_test_paired``),
and, at n = 1000, the 2000-resample stratified bootstrap CI
(``ci_auc_bootstrap``). Where ``Rscript`` with pROC is installed, the same data
go to R in the same run (``roc`` + ``ci.auc(method="delong")``,
``roc.test(method="delong", paired=TRUE)``, ``ci.auc(method="bootstrap",
boot.n=2000, boot.stratified=TRUE)``), timed inside R with ``system.time``
(CSV reading excluded), and the numbers are checked to agree. Without R, the
comparison is a naive O(n_cases * n_controls) DeLong, run only where it fits
in memory (n <= 20000).

Timings are the best of ``--repeats`` runs. Results go to
benchmarks/results/metrics.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from her2core.metrics import ci_auc_bootstrap, ci_auc_delong, delong_test_paired  # noqa: E402
from her2core.metrics.delong import naive_delong  # noqa: E402

R_SCRIPT = r"""
suppressMessages(library(pROC))
args <- commandArgs(TRUE)
d <- read.csv(args[1])
boot <- as.integer(args[2])
reps <- as.integer(args[3])
best <- function(f) min(sapply(seq_len(reps), function(i) system.time(f())[["elapsed"]]))
f_ci <- function() {
  r1 <- roc(d$y, d$a, levels = c(0, 1), direction = "<", quiet = TRUE)
  ci.auc(r1, method = "delong")
}
f_test <- function() {
  r1 <- roc(d$y, d$a, levels = c(0, 1), direction = "<", quiet = TRUE)
  r2 <- roc(d$y, d$b, levels = c(0, 1), direction = "<", quiet = TRUE)
  roc.test(r1, r2, method = "delong", paired = TRUE)
}
t_ci <- best(f_ci)
t_test <- best(f_test)
r1 <- roc(d$y, d$a, levels = c(0, 1), direction = "<", quiet = TRUE)
ci <- f_ci()
tt <- f_test()
out <- list(auc = as.numeric(r1$auc), ci_lower = ci[1], ci_upper = ci[3],
            z = unname(tt$statistic), p = tt$p.value, t_ci = t_ci, t_test = t_test)
if (boot > 0) {
  set.seed(1)
  t_boot <- system.time(cb <- ci.auc(r1, method = "bootstrap", boot.n = boot,
                                     boot.stratified = TRUE, progress = "none"))[["elapsed"]]
  out$t_boot <- t_boot; out$boot_lower <- cb[1]; out$boot_upper <- cb[3]
}
cat(paste(names(out), unlist(out), sep = "=", collapse = "\n"), "\n")
"""


def simulate(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    common = rng.normal(size=n)
    a = np.round(1.0 * y + 0.7 * common + 0.7 * rng.normal(size=n), 4)
    b = np.round(0.8 * y + 0.7 * common + 0.7 * rng.normal(size=n), 4)
    return y, a, b


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def have_r() -> bool:
    if not shutil.which("Rscript"):
        return False
    r = subprocess.run(["Rscript", "-e", "library(pROC)"], capture_output=True)
    return r.returncode == 0


def run_r(y, a, b, boot: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        np.savetxt(csv, np.column_stack([y, a, b]), delimiter=",", header="y,a,b", comments="",
                   fmt=["%d", "%.4f", "%.4f"])
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        r = subprocess.run(["Rscript", str(script), str(csv), str(boot), str(repeats)],
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
    out = {}
    for line in r.stdout.split("\n"):
        if "=" in line:
            k, v = line.strip().split("=", 1)
            out[k] = float(v)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    ap.add_argument("--boot-n", type=int, default=1000, help="n for the bootstrap timing")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-r", action="store_true", help="compare with the naive DeLong only")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "metrics.json"))
    args = ap.parse_args(argv)

    use_r = not args.no_r and have_r()
    ref_name = "R pROC" if use_r else "naive O(n^2) DeLong (numpy)"
    print(f"reference: {ref_name}")
    rows = []
    sizes = sorted(set(args.sizes) | {args.boot_n})
    for n in sizes:
        y, a, b = simulate(n)
        row: dict = {"n": n, "cases": int(y.sum())}
        if n in args.sizes:
            t_ci, ci = best_of(lambda: ci_auc_delong(y, a), args.repeats)
            t_test, tt = best_of(lambda: delong_test_paired(y, a, b), args.repeats)
            row.update(py_delong_ci_s=t_ci, py_paired_test_s=t_test, auc=ci.auc,
                       ci=[ci.lower, ci.upper], z=tt.statistic, p=tt.p)
        boot = args.boot if n == args.boot_n else 0
        if boot:
            t_boot, cb = best_of(lambda: ci_auc_bootstrap(y, a, n_boot=boot, seed=1),
                                 args.repeats)
            row.update(py_bootstrap_s=t_boot, py_bootstrap_ci=[cb.lower, cb.upper],
                       bootstrap_resamples=boot)
        if use_r:
            r = run_r(y, a, b, boot, args.repeats)
            if n in args.sizes:
                row.update(r_delong_ci_s=r["t_ci"], r_paired_test_s=r["t_test"],
                           ratio_delong_ci=r["t_ci"] / row["py_delong_ci_s"],
                           ratio_paired_test=r["t_test"] / row["py_paired_test_s"],
                           max_abs_diff_vs_r=max(abs(row["auc"] - r["auc"]),
                                                 abs(row["ci"][0] - r["ci_lower"]),
                                                 abs(row["ci"][1] - r["ci_upper"]),
                                                 abs(row["z"] - r["z"])))
            if boot:
                row.update(r_bootstrap_s=r["t_boot"], ratio_bootstrap=r["t_boot"] / t_boot,
                           r_bootstrap_ci=[r["boot_lower"], r["boot_upper"]])
        else:
            if n in args.sizes and n <= 20000:
                t_naive, (na, nv) = best_of(lambda: naive_delong(y, a), args.repeats)
                row.update(naive_delong_s=t_naive, ratio_delong_ci=t_naive / row["py_delong_ci_s"],
                           max_abs_diff_vs_naive=max(abs(na - row["auc"]),
                                                     abs(nv - ci_auc_delong(y, a).var)))
            elif n in args.sizes:
                row["naive_delong_s"] = None
                row["note"] = "naive O(n^2) skipped: kernel matrix too large"
        rows.append(row)
        msg = [f"n={n:>8}"]
        if "py_delong_ci_s" in row:
            msg.append(f"DeLong CI {row['py_delong_ci_s'] * 1e3:8.2f} ms")
            msg.append(f"paired test {row['py_paired_test_s'] * 1e3:8.2f} ms")
        if "ratio_delong_ci" in row:
            msg.append(f"ref/ours CI x{row['ratio_delong_ci']:.1f}")
        if "ratio_paired_test" in row:
            msg.append(f"test x{row['ratio_paired_test']:.1f}")
        if "max_abs_diff_vs_r" in row:
            msg.append(f"max|diff| vs R {row['max_abs_diff_vs_r']:.1e}")
        if boot:
            msg.append(f"bootstrap {boot} {row['py_bootstrap_s'] * 1e3:8.1f} ms")
            if "ratio_bootstrap" in row:
                msg.append(f"R {row['r_bootstrap_s']:.2f} s (x{row['ratio_bootstrap']:.1f})")
        print("  ".join(msg), flush=True)
    result = {"reference": ref_name, "repeats": args.repeats, "rows": rows,
              "machine": {"python": platform.python_version(), "numpy": np.__version__,
                          "platform": platform.platform(), "processor": platform.processor()},
              "timing": "best of repeats, seconds; R timed inside R (system.time)"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
