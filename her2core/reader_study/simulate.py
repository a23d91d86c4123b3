"""Simulated reader studies with known truth (Roe and Metz 1997 style model).

A reader j in arm t rates case k (truth d_k = 0/1) as

    x = mu_tj * d_k + R_j + C_k + TC_tk + RC_jk + E_tjk,

with mu_tj = mu_t + N(0, sd_reader_auc^2) and variances var_c + var_tc + var_rc + var_e = 1,
so that the AUC of an average reader is Phi(mu_t / sqrt(2)) (``auc_unaided``,
``auc_aided``). The model's score is s_k = mu_m d_k + C_k + N(0, 1 - var_c): its AUC is
Phi(mu_m / sqrt(2)) and it shares the case effect with the readers. A read is the call
x > mu_t / 2 with confidence min(100, 100 |x - mu_t / 2| / 2) (the study's 0-100 scale), so
the rating the study analyses is a monotone, discretised version of x; the HER2-low read of a
truly HER2-negative case follows the same model with its own truth and ``auc_low``.

Designs: "crossed" (every reader reads every case in both arms), "split-plot" (readers and
cases split into ``blocks`` groups; a reader reads only the cases of the group, in both
arms; ``blocks = n_readers`` nests cases within readers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["SimulatedStudy", "simulate_study"]


@dataclass
class SimulatedStudy:
    reads: pd.DataFrame          # reader, arm, case, truth, call_positive, confidence, ...
    model_scores: dict           # case -> model score
    truth: dict                  # the known population values
    readers_info: list = field(default_factory=list)


def simulate_study(*, n_readers: int = 6, n_cases: int = 100, prevalence: float = 0.4,
                   auc_unaided: float = 0.75, auc_aided: float = 0.85, model_auc: float = 0.85,
                   auc_low: float | None = 0.7, design: str = "crossed", blocks: int = 2,
                   var_c: float = 0.3, var_tc: float = 0.1, var_rc: float = 0.2,
                   var_r: float = 0.1, sd_reader_auc: float = 0.1, time_unaided_s: float = 90,
                   time_aided_s: float = 70, seed: int = 0) -> SimulatedStudy:
    """A simulated two-arm reader study (see the module docstring)."""
    rng = np.random.default_rng(seed)
    var_e = 1.0 - var_c - var_tc - var_rc
    if var_e <= 0:
        raise ValueError("var_c + var_tc + var_rc must be below 1")
    mu = {"unaided": np.sqrt(2) * stats.norm.ppf(auc_unaided),
          "aided": np.sqrt(2) * stats.norm.ppf(auc_aided)}
    n_pos = int(round(prevalence * n_cases))
    truth = np.array([1] * n_pos + [0] * (n_cases - n_pos))
    rng.shuffle(truth)
    low_truth = np.where(truth == 0, (rng.random(n_cases) < 0.6).astype(float), np.nan)
    cases = [f"sim-{k:04d}" for k in range(n_cases)]
    readers = [f"reader {j + 1}" for j in range(n_readers)]
    c = rng.normal(0, np.sqrt(var_c), n_cases)
    r = rng.normal(0, np.sqrt(var_r), n_readers)
    rc = rng.normal(0, np.sqrt(var_rc), (n_readers, n_cases))
    if design == "crossed":
        reads_case = np.ones((n_readers, n_cases), dtype=bool)
    elif design == "split-plot":
        cb = np.arange(n_cases) % blocks
        rb = np.arange(n_readers) % blocks
        reads_case = rb[:, None] == cb[None, :]
    else:
        raise ValueError("design must be 'crossed' or 'split-plot'")
    mu_low = np.sqrt(2) * stats.norm.ppf(auc_low) if auc_low else 0.0
    rows = []
    for arm in ("unaided", "aided"):
        tc = rng.normal(0, np.sqrt(var_tc), n_cases)
        mu_j = mu[arm] + rng.normal(0, sd_reader_auc, n_readers)
        for j in range(n_readers):
            e = rng.normal(0, np.sqrt(var_e), n_cases)
            x = mu_j[j] * truth + r[j] + c + tc + rc[j] + e
            thr = mu[arm] / 2 + r[j]
            xl = mu_low * np.nan_to_num(low_truth) + rng.normal(0, 1, n_cases)
            t_mean = time_unaided_s if arm == "unaided" else time_aided_s
            times = rng.gamma(4.0, t_mean / 4.0, n_cases)
            for k in np.flatnonzero(reads_case[j]):
                call = bool(x[k] > thr)
                conf = float(min(100.0, round(100 * abs(x[k] - thr) / 2)))
                low_call = low_conf = None
                if not call:
                    low_call = bool(xl[k] > mu_low / 2)
                    low_conf = float(min(100.0, round(100 * abs(xl[k] - mu_low / 2) / 2)))
                rows.append({"reader": readers[j], "arm": arm, "case": cases[k],
                             "truth": int(truth[k]), "her2_low": low_truth[k],
                             "call_positive": call, "confidence": conf,
                             "her2_low_call": low_call, "her2_low_confidence": low_conf,
                             "time_on_case_s": float(times[k])})
    reads = pd.DataFrame(rows)
    from her2core.reader_study.mrmc import confidence_to_rating

    reads["rating"] = confidence_to_rating(reads["call_positive"], reads["confidence"])
    has_low = reads["her2_low_call"].notna()
    reads["her2_low_rating"] = np.nan
    reads.loc[has_low, "her2_low_rating"] = confidence_to_rating(
        reads.loc[has_low, "her2_low_call"].astype(bool),
        reads.loc[has_low, "her2_low_confidence"].astype(float))
    mu_m = np.sqrt(2) * stats.norm.ppf(model_auc)
    s = mu_m * truth + c + rng.normal(0, np.sqrt(1 - var_c), n_cases)
    scores = dict(zip(cases, (1 / (1 + np.exp(-s))).tolist()))
    info = [{"name": rd, "level": "senior" if j % 2 else "junior"} for j, rd in enumerate(readers)]
    return SimulatedStudy(reads=reads, model_scores=scores, readers_info=info, truth={
        "auc_unaided": auc_unaided, "auc_aided": auc_aided, "model_auc": model_auc,
        "auc_difference": auc_aided - auc_unaided, "design": design, "n_readers": n_readers,
        "n_cases": n_cases, "seed": seed, "auc_low": auc_low,
        "note": "population AUCs of an average reader before discretising to the 0-100 scale"})
