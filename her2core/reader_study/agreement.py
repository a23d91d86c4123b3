"""Agreement between readers (Cohen's and Fleiss' kappa) and reading time per case.

* Cohen's kappa of two readers' categorical calls on the same cases:
  statsmodels ``cohens_kappa`` (kappa = (p_o - p_e) / (1 - p_e), its asymptotic standard
  error and Wald CI, Fleiss, Cohen and Everitt 1969);
* Fleiss' kappa of several readers: statsmodels ``fleiss_kappa`` (Fleiss 1971), with a
  seeded case-bootstrap percentile CI;
* reading time: median and IQR per reader and arm, and aided - unaided per reader x case
  with the Wilcoxon signed-rank test (scipy, two-sided).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from her2core.jsonutil import jsonable

__all__ = ["cohen_kappa", "fleiss_kappa", "kappa_summary", "reading_time_summary"]


def _table(a, b, categories) -> np.ndarray:
    idx = {c: i for i, c in enumerate(categories)}
    t = np.zeros((len(categories), len(categories)))
    for x, y in zip(a, b):
        t[idx[x], idx[y]] += 1
    return t


def cohen_kappa(a: Sequence, b: Sequence, level: float = 0.95) -> dict[str, Any]:
    """Cohen's kappa of two raters' calls on the same cases (statsmodels)."""
    from statsmodels.stats.inter_rater import cohens_kappa

    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError("Cohen's kappa needs the two raters' calls on the same cases")
    cats = sorted(set(a) | set(b), key=str)
    t = _table(a, b, cats)
    po = float(np.trace(t) / t.sum())
    if len(cats) < 2:
        return {"kappa": float("nan"), "se": float("nan"), "lower": float("nan"),
                "upper": float("nan"), "agreement": po, "n": len(a),
                "note": "both raters gave a single category: kappa undefined"}
    r = cohens_kappa(t)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    k, se = float(r.kappa), float(r.std_kappa)
    return {"kappa": k, "se": se, "lower": k - z * se, "upper": k + z * se, "agreement": po,
            "n": len(a), "note": ""}


def fleiss_kappa(calls: np.ndarray, *, n_boot: int = 1000, seed: int = 20240601,
                 level: float = 0.95) -> dict[str, Any]:
    """Fleiss' kappa of ``calls`` (cases x raters, categorical values) with a case-bootstrap
    percentile CI."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa as _fk

    x = np.asarray(calls, dtype=object)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError("Fleiss' kappa needs a cases x raters table with 2 or more raters")
    cats = sorted({v for v in x.ravel()}, key=str)
    code = {c: i for i, c in enumerate(cats)}
    xi = np.vectorize(code.get)(x).astype(int)
    table, _ = aggregate_raters(xi, n_cat=len(cats))
    if len(cats) < 2:
        return {"kappa": float("nan"), "lower": float("nan"), "upper": float("nan"),
                "n_cases": int(x.shape[0]), "n_raters": int(x.shape[1]),
                "note": "a single category was used: kappa undefined"}
    k = float(_fk(table, method="fleiss"))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, table.shape[0], table.shape[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            v = _fk(table[idx], method="fleiss")
        if np.isfinite(v):
            boots.append(v)
    a = (1 - level) / 2
    lo, hi = (np.quantile(boots, [a, 1 - a]) if boots else (np.nan, np.nan))
    return {"kappa": k, "lower": float(lo), "upper": float(hi), "n_cases": int(x.shape[0]),
            "n_raters": int(x.shape[1]), "n_boot": n_boot, "seed": seed, "note": ""}


def kappa_summary(reads: pd.DataFrame, call: str = "call_positive", *,
                  arms: Sequence[str] = ("unaided", "aided")) -> dict[str, Any]:
    """Per arm: Fleiss' kappa of all readers and pairwise Cohen's kappa, on the cases every
    reader read in that arm; per reader: Cohen's kappa between the arms (same cases)."""
    out: dict[str, Any] = {"call": call, "arms": {}, "between_arms": []}
    d = reads[reads[call].notna()]
    for arm in arms:
        g = d[d["arm"] == arm]
        if g.empty:
            continue
        wide = g.pivot_table(index="case", columns="reader", values=call, aggfunc="first")
        wide = wide.dropna()
        res: dict[str, Any] = {"n_cases": int(len(wide)), "readers": [str(c) for c in wide.columns]}
        if wide.shape[1] >= 2 and len(wide):
            res["fleiss"] = fleiss_kappa(wide.to_numpy())
            pairs = []
            cols = list(wide.columns)
            for i in range(len(cols)):
                for j in range(i + 1, len(cols)):
                    r = cohen_kappa(wide[cols[i]].tolist(), wide[cols[j]].tolist())
                    pairs.append({"reader_a": str(cols[i]), "reader_b": str(cols[j]), **r})
            res["cohen_pairs"] = pairs
        out["arms"][arm] = res
    if len(arms) >= 2:
        for rd, g in d.groupby("reader"):
            w = g.pivot_table(index="case", columns="arm", values=call, aggfunc="first")
            if arms[0] in w and arms[1] in w:
                w = w[[arms[0], arms[1]]].dropna()
                if len(w):
                    out["between_arms"].append({"reader": str(rd), **cohen_kappa(
                        w[arms[0]].tolist(), w[arms[1]].tolist())})
    return jsonable(out)


def reading_time_summary(reads: pd.DataFrame, *, arms: Sequence[str] = ("unaided", "aided"),
                         time: str = "time_on_case_s") -> dict[str, Any]:
    """Reading time per case: per reader x arm and per arm (median, IQR, mean, total), and the
    paired aided - unaided difference (median, Wilcoxon signed-rank p)."""
    if time not in reads:
        return {"note": "no reading times recorded"}
    d = reads[reads[time].notna()]
    per = []
    for (rd, arm), g in d.groupby(["reader", "arm"], sort=True):
        t = g[time].astype(float)
        q1, med, q3 = np.quantile(t, [0.25, 0.5, 0.75])
        per.append({"reader": str(rd), "arm": arm, "n": int(len(t)), "median": float(med),
                    "q1": float(q1), "q3": float(q3), "mean": float(t.mean()),
                    "total": float(t.sum())})
    by_arm = {}
    for arm, g in d.groupby("arm"):
        t = g[time].astype(float)
        q1, med, q3 = np.quantile(t, [0.25, 0.5, 0.75])
        by_arm[arm] = {"n": int(len(t)), "median": float(med), "q1": float(q1), "q3": float(q3),
                       "mean": float(t.mean())}
    paired: dict[str, Any] = {}
    if len(arms) >= 2:
        w = d.pivot_table(index=["reader", "case"], columns="arm", values=time, aggfunc="first")
        if arms[0] in w and arms[1] in w:
            w = w[[arms[0], arms[1]]].dropna()
            diff = (w[arms[1]] - w[arms[0]]).to_numpy(float)
            if diff.size:
                p = (float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) and diff.size > 1
                     else float("nan"))
                paired = {"n_pairs": int(diff.size), "median_difference": float(np.median(diff)),
                          "mean_difference": float(diff.mean()), "wilcoxon_p": p,
                          "difference": f"{arms[1]} - {arms[0]}"}
    return jsonable({"per_reader": per, "per_arm": by_arm, "paired": paired})
