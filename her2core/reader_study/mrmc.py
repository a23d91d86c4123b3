"""Reader-study statistics: per-reader accuracy and multi-reader multi-case ROC analysis.

Plain numpy / scipy, no database and no plotting: functions take arrays or a tidy
table of ratings and return plain dataclasses (``to_dict()`` gives JSON-ready dicts).

Conventions
-----------
* A *rating* is a number where larger means "more likely HER2-positive".
  Reads in the study are a binary call plus a confidence 0-100 in that call;
  :func:`confidence_to_rating` maps them onto one 0-100 scale::

      rating = 50 + confidence / 2   if the call is HER2-positive
      rating = 50 - confidence / 2   if the call is HER2-negative

  so every positive call ranks above every negative call (the empirical ROC
  passes through the reader's binary operating point) and, within a call, a
  more confident read moves further from 50. Confidence 0 gives 50 either way.
* AUC is the empirical (trapezoidal, Mann-Whitney) area: ties count one half.
* Obuchowski-Rockette (OR) analysis with the Hillis (2007) denominator degrees
  of freedom, as in OR-DBM MRMC 2.51 (Iowa), MRMCaov and RJafroc; error
  covariances are estimated by the jackknife over cases or by the DeLong method.
  Validated on the Van Dyke et al. (1993) data in tests/reference/mrmc/.
* Treatment differences are reported as ``test - reference`` (for the reader
  study: aided - unaided). Confidence intervals for proportions are Wilson
  score intervals.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats
from her2core.jsonutil import jsonable as _jsonable
from her2core.metrics import (ci_auc_delong, delong_covariance_matrix, placements, roc_curve,
                              wilson_ci)

__all__ = [
    "confidence_to_rating", "auc_covariance", "binary_metrics", "ratings_cube", "study_design",
    "or_analysis", "ORResult", "ReaderArmStats", "reader_arm_stats", "analyze_reads",
]


# --------------------------------------------------------------------------- basics

def confidence_to_rating(call_positive, confidence) -> np.ndarray:
    """Map a binary call plus confidence 0-100 to a 0-100 rating of HER2-positive.

    ``50 + c/2`` for a positive call, ``50 - c/2`` for a negative one (see module doc).
    """
    call = np.asarray(call_positive, dtype=bool)
    conf = np.asarray(confidence, dtype=float)
    if np.any((conf < 0) | (conf > 100)) or np.any(~np.isfinite(conf)):
        raise ValueError("confidence must lie in 0..100")
    return np.where(call, 50.0 + conf / 2.0, 50.0 - conf / 2.0)


def _roc_points(truth, score) -> dict[str, list[float]]:
    """Empirical ROC points (fpr, tpr) from (0, 0) to (1, 1) (her2core.metrics.roc_curve)."""
    c = roc_curve(np.asarray(truth).astype(int), np.asarray(score, dtype=float))
    return {"fpr": c.fpr[::-1], "tpr": c.sensitivity[::-1]}


def auc_covariance(truth, ratings, method: str = "jackknife"):
    """AUCs and their case-sampling covariance matrix.

    ``ratings`` (M, K): M reader x treatment combinations, K cases; NaN = not read (a
    nested or partially paired design). Each AUC is that of the cases the row read
    (her2core.metrics placements, Sun & Xu).

    method "jackknife": leave-one-case-out over all K cases, as MRMCaov ``jackknife``:
    a row that did not read case k keeps its full AUC at k;
    cov = (K-1)/K * sum_k (A_(k) - mean)(A_(k) - mean)^T.
    method "delong": S10/m + S01/n (DeLong 1988, pROC / her2core.metrics), fully crossed
    designs only (as MRMCaov).
    Returns (auc (M,), cov (M, M))."""
    truth = np.asarray(truth).astype(int)
    ratings = np.atleast_2d(np.asarray(ratings, dtype=float))
    if ratings.shape[1] != truth.shape[0]:
        raise ValueError("truth and ratings have different numbers of cases")
    if not set(np.unique(truth)) <= {0, 1}:
        raise ValueError("truth must be 0/1")
    read = np.isfinite(ratings)
    if method == "delong":
        if not read.all():
            raise ValueError("the DeLong covariance needs every reader to rate every case; "
                             "use the jackknife for nested or partially paired designs")
        return delong_covariance_matrix(truth, list(ratings))
    if method != "jackknife":
        raise ValueError(f"unknown covariance method {method!r} (use 'jackknife' or 'delong')")
    n_rows, k = ratings.shape
    auc = np.empty(n_rows)
    jk = np.empty((n_rows, k))
    for r in range(n_rows):
        idx = np.flatnonzero(read[r])
        tr = truth[idx]
        p = placements(tr, ratings[r, idx])
        m, n = p.v10.size, p.v01.size
        auc[r] = p.auc
        jk[r] = p.auc
        tot = p.auc * m * n
        pos, neg = idx[tr == 1], idx[tr == 0]
        # leaving out positive i: the kernel sum drops by n * V10_i, denominator (m-1) n
        jk[r, pos] = (tot - n * p.v10) / ((m - 1) * n) if m > 1 else np.nan
        jk[r, neg] = (tot - m * p.v01) / (m * (n - 1)) if n > 1 else np.nan
    dev = jk - jk.mean(axis=1, keepdims=True)
    return auc, (k - 1) / k * dev @ dev.T


@dataclass
class Proportion:
    estimate: float
    lower: float
    upper: float
    k: int
    n: int


def _prop(k, n, alpha):
    lo, hi = wilson_ci(int(k), int(n), 1 - alpha)
    return Proportion(k / n if n else float("nan"), lo, hi, int(k), int(n))


def binary_metrics(truth, call_positive, alpha: float = 0.05) -> dict[str, Proportion]:
    """Sensitivity, specificity, accuracy, PPV, NPV with Wilson CIs (paper 002, Table 3)."""
    t = np.asarray(truth).astype(int)
    c = np.asarray(call_positive).astype(bool)
    tp = int(np.sum(c & (t == 1)))
    fn = int(np.sum(~c & (t == 1)))
    tn = int(np.sum(~c & (t == 0)))
    fp = int(np.sum(c & (t == 0)))
    return {
        "sensitivity": _prop(tp, tp + fn, alpha),
        "specificity": _prop(tn, tn + fp, alpha),
        "accuracy": _prop(tp + tn, len(t), alpha),
        "ppv": _prop(tp, tp + fp, alpha),
        "npv": _prop(tn, tn + fn, alpha),
    }


# --------------------------------------------------------------------------- OR analysis

def ratings_cube(table, reader="reader", treatment="treatment", case="case",
                 truth="truth", rating="rating", treatments: Sequence | None = None,
                 allow_missing: bool = False):
    """Tidy table (one row per reader x treatment x case) -> arrays for :func:`or_analysis`.

    Returns (ratings (T, R, K), truth (K,), treatment labels, reader labels, case labels).
    Unless ``allow_missing``, the design must be fully crossed (every reader rates every
    case in every treatment); with it, missing ratings are NaN (nested / partially paired
    designs)."""
    import pandas as pd

    df = pd.DataFrame(table)
    tr_labels = list(treatments) if treatments is not None else sorted(df[treatment].unique(), key=str)
    rd_labels = sorted(df[reader].unique(), key=str)
    cs_labels = sorted(df[case].unique(), key=str)
    truth_by_case = df.groupby(case)[truth].agg(["min", "max"])
    if (truth_by_case["min"] != truth_by_case["max"]).any():
        bad = truth_by_case.index[truth_by_case["min"] != truth_by_case["max"]][0]
        raise ValueError(f"case {bad} has conflicting truth values")
    if df.duplicated([treatment, reader, case]).any():
        raise ValueError("more than one rating for a reader x treatment x case")
    piv = df.pivot_table(index=[treatment, reader], columns=case, values=rating, aggfunc="first")
    piv = piv.reindex(index=pd.MultiIndex.from_product([tr_labels, rd_labels]), columns=cs_labels)
    if piv.isna().any().any() and not allow_missing:
        raise ValueError("design is not fully crossed: some reader x treatment x case ratings are missing")
    cube = piv.to_numpy(dtype=float).reshape(len(tr_labels), len(rd_labels), len(cs_labels))
    t = truth_by_case["min"].reindex(cs_labels).to_numpy().astype(int)
    return cube, t, tr_labels, rd_labels, cs_labels


@dataclass
class TestResult:
    """One hypothesis test of equal treatment AUCs plus the CI of the difference."""
    analysis: str            # "RRRC", "FRRC" or "RRFC"
    statistic: str           # "F" or "chi2"
    value: float
    df1: float
    df2: float               # inf for chi-square / z
    p_value: float
    difference: float        # test - reference, reader-averaged
    std_err: float
    ci_lower: float
    ci_upper: float
    denominator: float       # error term of the F statistic (or chi2 variance term)


@dataclass
class ORResult:
    treatments: list
    readers: list
    n_cases: int
    n_positive: int
    n_negative: int
    cov_method: str
    alpha: float
    auc: list                # [treatment][reader]
    auc_mean: list           # per treatment (reader-averaged)
    ms_t: float
    ms_r: float
    ms_tr: float
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    var_r: float
    var_tr: float
    rrrc: TestResult
    frrc: TestResult
    rrfc: TestResult
    single_treatment: list = field(default_factory=list)   # per treatment dicts
    per_reader: list = field(default_factory=list)         # FRRC per-reader differences
    design: str = "factorial"
    n_ratings: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def _mean_offdiag(blocks):
    vals = [v for v in blocks]
    return float(np.mean(vals)) if vals else 0.0


DESIGNS = ("factorial", "partially paired", "cases nested within readers",
           "cases nested within treatments")


def study_design(read) -> str:
    """Design of a (T, R, K) mask of available ratings, as MRMCaov ``get_design``:
    "factorial" (every reader rates every case in every treatment), "cases nested within
    readers" (each case is read by one reader only: a split-plot design over readers),
    "cases nested within treatments" (each case is read in one treatment only), otherwise
    "partially paired"."""
    read = np.asarray(read, dtype=bool)
    if read.all():
        return "factorial"
    per_case_readers = read.any(axis=0).sum(axis=0)      # (K,)
    per_case_treatments = read.any(axis=1).sum(axis=0)   # (K,)
    if np.all(per_case_readers == 1) and read.shape[1] > 1:
        return "cases nested within readers"
    if np.all(per_case_treatments == 1) and read.shape[0] > 1:
        return "cases nested within treatments"
    return "partially paired"


def or_analysis(ratings, truth, *, cov_method: str = "jackknife", alpha: float = 0.05,
                treatments: Sequence | None = None, readers: Sequence | None = None,
                reference: int = 0, test: int = 1, design: str | None = None) -> ORResult:
    """Obuchowski-Rockette analysis of reader AUCs with Hillis degrees of freedom.

    ``ratings`` (T, R, K), ``truth`` (K,); NaN marks a rating that does not exist (split-plot
    / nested or partially paired designs, e.g. each reader reads a subset of the cases).
    The difference tested and reported is treatment ``test`` minus treatment ``reference``
    (indices; T may exceed 2, the F tests then cover all treatments while the CI is for
    that pair).

    Random readers / random cases (RRRC): F = MS(T) / [MS(T*R) + R max(Cov2 - Cov3, 0)],
    df2 = [MS(T*R) + R max(Cov2 - Cov3, 0)]^2 / [MS(T*R)^2 / ((T-1)(R-1))] (Hillis 2007).
    Fixed readers / random cases (FRRC): chi2 = (T-1) MS(T) / [Var - Cov1 + (R-1) max(Cov2 - Cov3, 0)].
    Random readers / fixed cases (RRFC): F = MS(T) / MS(T*R) on (T-1, (T-1)(R-1)) df.

    Designs (Hillis 2014 marginal-mean ANOVA, as MRMCaov): each AUC uses the cases its
    reader read in that treatment; covariances come from the jackknife over all cases
    (``auc_covariance``); for cases nested within readers Cov2 = Cov3 = 0, for cases nested
    within treatments Cov1 = Cov3 = 0 (those pairs share no case). ``design`` is detected
    from the NaN pattern unless given.
    """
    y = np.asarray(ratings, dtype=float)
    if y.ndim != 3:
        raise ValueError("ratings must have shape (treatments, readers, cases)")
    n_t, n_r, n_k = y.shape
    if n_t < 2:
        raise ValueError("MRMC comparison needs at least two treatments (arms)")
    if n_r < 2:
        raise ValueError("MRMC analysis needs at least two readers (random-reader analysis)")
    truth = np.asarray(truth).astype(int)
    read = np.isfinite(y)
    design = design or study_design(read)
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; use one of {', '.join(DESIGNS)}")
    if not read.any(axis=2).all():
        raise ValueError("a reader has no rating in a treatment")
    auc_flat, cov = auc_covariance(truth, y.reshape(n_t * n_r, n_k), cov_method)
    auc = auc_flat.reshape(n_t, n_r)
    idx = [(t, r) for t in range(n_t) for r in range(n_r)]

    same_r_diff_t, diff_r_same_t, diff_r_diff_t = [], [], []
    for a, (ta, ra) in enumerate(idx):
        for b, (tb, rb) in enumerate(idx):
            if a == b:
                continue
            if ra == rb:
                same_r_diff_t.append(cov[a, b])
            elif ta == tb:
                diff_r_same_t.append(cov[a, b])
            else:
                diff_r_diff_t.append(cov[a, b])
    var_error = float(np.mean(np.diag(cov)))
    cov1 = _mean_offdiag(same_r_diff_t)
    cov2 = _mean_offdiag(diff_r_same_t)
    cov3 = _mean_offdiag(diff_r_diff_t)
    if design == "cases nested within readers":
        cov2 = cov3 = 0.0
    elif design == "cases nested within treatments":
        cov1 = cov3 = 0.0

    grand = auc.mean()
    mt = auc.mean(axis=1)
    mr = auc.mean(axis=0)
    ms_t = n_r * np.sum((mt - grand) ** 2) / (n_t - 1)
    ms_r = n_t * np.sum((mr - grand) ** 2) / (n_r - 1)
    resid = auc - mt[:, None] - mr[None, :] + grand
    df_tr = (n_t - 1) * (n_r - 1)
    ms_tr = np.sum(resid ** 2) / df_tr
    var_tr = ms_tr - var_error + cov1 + cov2 - cov3
    var_r = (ms_r - var_error - (n_t - 1) * cov1 + cov2 + (n_t - 1) * cov3 - var_tr) / n_t

    diff = float(mt[test] - mt[reference])
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate data give inf / nan
        res = _or_tests(auc, cov, mt, ms_t, ms_r, ms_tr, var_error, cov1, cov2, cov3, var_r,
                        var_tr, diff, truth, n_t, n_r, n_k, df_tr, alpha, cov_method,
                        treatments, readers, reference, test, design)
    res.design = design
    res.n_ratings = int(read.sum())
    return res


def _or_tests(auc, cov, mt, ms_t, ms_r, ms_tr, var_error, cov1, cov2, cov3, var_r, var_tr, diff,
              truth, n_t, n_r, n_k, df_tr, alpha, cov_method, treatments, readers, reference,
              test, design="factorial") -> ORResult:

    # RRRC
    den = ms_tr + n_r * max(cov2 - cov3, 0.0)
    f = ms_t / den
    ddf = den ** 2 / (ms_tr ** 2 / df_tr) if ms_tr > 0 else np.inf
    p = float(stats.f.sf(f, n_t - 1, ddf))
    se = np.sqrt(2.0 / n_r * den)
    tq = stats.t.ppf(1 - alpha / 2, ddf)
    rrrc = TestResult("RRRC", "F", float(f), float(n_t - 1), float(ddf), p, diff, float(se),
                      float(diff - tq * se), float(diff + tq * se), float(den))

    # FRRC
    den_f = var_error - cov1 + (n_r - 1) * max(cov2 - cov3, 0.0)
    x2 = (n_t - 1) * ms_t / den_f
    se_f = np.sqrt(2.0 / n_r * den_f)
    z = stats.norm.ppf(1 - alpha / 2)
    frrc = TestResult("FRRC", "chi2", float(x2), float(n_t - 1), float("inf"),
                      float(stats.chi2.sf(x2, n_t - 1)), diff, float(se_f),
                      float(diff - z * se_f), float(diff + z * se_f), float(den_f))

    # RRFC
    f_c = ms_t / ms_tr
    se_c = np.sqrt(2.0 / n_r * ms_tr)
    tq_c = stats.t.ppf(1 - alpha / 2, df_tr)
    rrfc = TestResult("RRFC", "F", float(f_c), float(n_t - 1), float(df_tr),
                      float(stats.f.sf(f_c, n_t - 1, df_tr)), diff, float(se_c),
                      float(diff - tq_c * se_c), float(diff + tq_c * se_c), float(ms_tr))

    # single-treatment CIs (each from that treatment's data only)
    single = []
    for t in range(n_t):
        sub = cov[t * n_r:(t + 1) * n_r, t * n_r:(t + 1) * n_r]
        var_t = float(np.mean(np.diag(sub)))
        cov2_t = (0.0 if design == "cases nested within readers"
                  else float((sub.sum() - np.trace(sub)) / (n_r * (n_r - 1))))
        ms_r_t = float(np.sum((auc[t] - mt[t]) ** 2) / (n_r - 1))
        d_rr = ms_r_t + n_r * max(cov2_t, 0.0)
        se_rr = np.sqrt(d_rr / n_r)
        df_rr = d_rr ** 2 / (ms_r_t ** 2 / (n_r - 1)) if ms_r_t > 0 else np.inf
        q_rr = stats.t.ppf(1 - alpha / 2, df_rr)
        se_fr = np.sqrt((var_t + (n_r - 1) * max(cov2_t, 0.0)) / n_r)
        se_rf = np.sqrt(ms_r_t / n_r)
        q_rf = stats.t.ppf(1 - alpha / 2, n_r - 1)
        single.append({
            "treatment": _label(treatments, t), "auc": float(mt[t]), "ms_r": ms_r_t,
            "var_error": var_t, "cov2": cov2_t,
            "rrrc": {"std_err": float(se_rr), "df": float(df_rr),
                     "ci": [float(mt[t] - q_rr * se_rr), float(mt[t] + q_rr * se_rr)]},
            "frrc": {"std_err": float(se_fr),
                     "ci": [float(mt[t] - z * se_fr), float(mt[t] + z * se_fr)]},
            "rrfc": {"std_err": float(se_rf), "df": float(n_r - 1),
                     "ci": [float(mt[t] - q_rf * se_rf), float(mt[t] + q_rf * se_rf)]},
        })

    per_reader = []
    for r in range(n_r):
        a, b = reference * n_r + r, test * n_r + r
        var_r_err = 0.5 * (cov[a, a] + cov[b, b])
        se_r = np.sqrt(max(cov[a, a] + cov[b, b] - 2 * cov[a, b], 0.0))
        d = float(auc[test, r] - auc[reference, r])
        zr = d / se_r if se_r > 0 else float("nan")
        per_reader.append({
            "reader": _label(readers, r), "difference": d, "std_err": float(se_r),
            "var_error": float(var_r_err), "cov1": float(cov[a, b]),
            "z": float(zr), "p_value": float(2 * stats.norm.sf(abs(zr))) if se_r > 0 else float("nan"),
            "ci": [float(d - z * se_r), float(d + z * se_r)],
        })

    return ORResult(
        treatments=[_label(treatments, t) for t in range(n_t)],
        readers=[_label(readers, r) for r in range(n_r)],
        n_cases=int(n_k), n_positive=int(truth.sum()), n_negative=int((truth == 0).sum()),
        cov_method=cov_method, alpha=alpha, auc=auc.tolist(), auc_mean=mt.tolist(),
        ms_t=float(ms_t), ms_r=float(ms_r), ms_tr=float(ms_tr), var_error=var_error,
        cov1=cov1, cov2=cov2, cov3=cov3, var_r=float(var_r), var_tr=float(var_tr),
        rrrc=rrrc, frrc=frrc, rrfc=rrfc, single_treatment=single, per_reader=per_reader,
    )


def _label(labels, i):
    if labels is None:
        return i
    v = list(labels)[i]
    return v.item() if isinstance(v, np.generic) else v


# --------------------------------------------------------------------------- reader study

@dataclass
class ReaderArmStats:
    reader: str
    arm: str
    n_cases: int
    auc: float
    auc_se: float
    auc_lower: float
    auc_upper: float
    sensitivity: Proportion
    specificity: Proportion
    accuracy: Proportion
    ppv: Proportion
    npv: Proportion


def reader_arm_stats(reader, arm, truth, call_positive, rating, alpha=0.05) -> ReaderArmStats:
    """AUC (DeLong SE, Wald CI) and binary metrics of one reader in one arm.

    AUC fields are NaN when the reads cover only one truth class."""
    try:
        ci = ci_auc_delong(np.asarray(truth).astype(int), np.asarray(rating, dtype=float),
                           level=1 - alpha)
        auc, se, lo, hi = ci.auc, float(np.sqrt(ci.var)), ci.lower, ci.upper
    except ValueError:
        auc = se = lo = hi = float("nan")
    bm = binary_metrics(truth, call_positive, alpha)
    return ReaderArmStats(str(reader), str(arm), int(len(truth)), auc, se, lo, hi, **bm)


def analyze_reads(reads, *, readers_info: Iterable[dict] | None = None,
                  arms: Sequence[str] = ("unaided", "aided"), alpha: float = 0.05,
                  cov_methods: Sequence[str] = ("jackknife", "delong"),
                  model_scores: dict | None = None) -> dict[str, Any]:
    """Full analysis of a reader study from a tidy table of effective reads.

    ``reads``: table with columns reader, arm, case, truth (0/1), call_positive (bool),
    confidence (0-100) and optionally rating (computed by :func:`confidence_to_rating`
    when absent). ``readers_info``: dicts with name and level ("junior"/"senior").
    Returns a JSON-ready dict: per reader x arm statistics, aided - unaided per reader,
    junior vs senior summaries and OR MRMC results for each covariance method.
    ``model_scores`` ({case: score}, e.g. the model's p_her2) adds "standalone": the model
    alone as a reader against the readers of each arm (:func:`standalone_vs_readers`).
    Also: "agreement" (Cohen / Fleiss kappa of the calls), "reading_time", and, when the
    reads carry a HER2-low rating (``her2_low_rating``, from the HER2-low call and its
    confidence), "her2_low_mrmc": the OR analysis of HER2-low vs HER2-zero on truly
    HER2-negative cases (partially paired: a case called HER2-positive has no HER2-low read).
    Studies where not every reader reads every case (split-plot, partially paired) are
    analysed with every rating (jackknife covariances, MRMCaov semantics).
    """
    import pandas as pd

    df = pd.DataFrame(reads).copy()
    if df.empty:
        raise ValueError("no reads to analyse")
    if "rating" not in df:
        df["rating"] = confidence_to_rating(df["call_positive"], df["confidence"])
    levels = {str(r["name"]): r.get("level") for r in (readers_info or [])}
    df["reader"] = df["reader"].astype(str)

    per = []
    for (rd, arm), g in df.groupby(["reader", "arm"], sort=True):
        s = reader_arm_stats(rd, arm, g["truth"].to_numpy(), g["call_positive"].to_numpy(),
                             g["rating"].to_numpy(), alpha)
        d = _jsonable(asdict(s))
        d["level"] = levels.get(rd)
        try:
            d["roc"] = _roc_points(g["truth"].to_numpy(), g["rating"].to_numpy())
        except ValueError:
            d["roc"] = {"fpr": [], "tpr": []}
        if "time_on_case_s" in g:
            tt = g["time_on_case_s"].astype(float)
            d["time_on_case_s"] = {"median": float(tt.median()), "mean": float(tt.mean()),
                                   "total": float(tt.sum())}
        per.append(d)

    deltas = []
    ref_arm, test_arm = arms[0], arms[1]
    by = {(p["reader"], p["arm"]): p for p in per}
    for rd in sorted(df["reader"].unique()):
        a, b = by.get((rd, ref_arm)), by.get((rd, test_arm))
        if a and b:
            deltas.append({
                "reader": rd, "level": levels.get(rd),
                **{m: _minus(_est(b[m]), _est(a[m]))
                   for m in ("auc", "sensitivity", "specificity", "accuracy", "ppv", "npv")},
            })

    groups = {}
    for level in sorted({v for v in levels.values() if v}):
        names = [n for n, lv in levels.items() if lv == level]
        sub = df[df["reader"].isin(names)]
        if sub.empty:
            continue
        g_out = {"readers": sorted(names), "arms": {}}
        for arm in arms:
            ga = sub[sub["arm"] == arm]
            if ga.empty:
                continue
            bm = binary_metrics(ga["truth"], ga["call_positive"], alpha)
            g_out["arms"][arm] = {
                "mean_auc": _nanmean([p["auc"] for p in per
                                      if p["reader"] in names and p["arm"] == arm]),
                **_jsonable({k: asdict(v) for k, v in bm.items()}),
            }
        g_out["mrmc"] = _try_or(sub, arms, alpha, "jackknife")
        groups[level] = g_out

    her2_low = her2_low_metrics(df, alpha) if "her2_low_call" in df and "her2_low" in df else []
    out = {"alpha": alpha, "arms": list(arms), "her2_low": her2_low,
           "rating_rule": "rating = 50 + confidence/2 if read HER2-positive else 50 - confidence/2",
           "per_reader": per, "aided_minus_unaided": deltas, "groups": groups, "mrmc": {}}
    for m in cov_methods:
        out["mrmc"][m] = _try_or(df, arms, alpha, m)
    from her2core.reader_study.agreement import kappa_summary, reading_time_summary

    out["agreement"] = {"her2": kappa_summary(df, "call_positive", arms=arms)}
    if "her2_low_call" in df and df["her2_low_call"].notna().any():
        out["agreement"]["her2_low"] = kappa_summary(df, "her2_low_call", arms=arms)
    out["reading_time"] = reading_time_summary(df, arms=arms)
    if "her2_low_rating" in df and "her2_low" in df:
        low = df[(df["truth"] == 0) & df["her2_low"].notna() & df["her2_low_rating"].notna()]
        low = low.assign(truth=low["her2_low"].astype(int), rating=low["her2_low_rating"])
        out["her2_low_mrmc"] = ({"jackknife": _try_or(low, arms, alpha, "jackknife")}
                                if len(low) else {})
    if model_scores:
        out["standalone"] = {arm: _try_standalone(df[df["arm"] == arm], model_scores, alpha)
                             for arm in arms if (df["arm"] == arm).any()}
    return out


def _try_standalone(d, model_scores, alpha):
    """Model alone vs the readers of one arm, on the cases every reader read there."""
    n_r = d["reader"].nunique()
    per_case = d.groupby("case")["reader"].nunique()
    full = [c for c in per_case.index[per_case == n_r] if c in model_scores]
    note = None
    if len(full) < len(per_case):
        note = (f"{len(full)} of {len(per_case)} cases are read by every reader and scored by "
                "the model; the comparison uses those")
    try:
        if n_r < 2:
            raise ValueError(f"only {n_r} reader(s): the model-vs-readers test needs at least two")
        sub = d[d["case"].isin(full)]
        wide = sub.pivot_table(index="case", columns="reader", values="rating", aggfunc="first")
        truth = sub.groupby("case")["truth"].first().loc[wide.index].to_numpy()
        scores = np.array([float(model_scores[c]) for c in wide.index])
        out = {m: standalone_vs_readers(wide.to_numpy(float).T, scores, truth, method=m,
                                        alpha=alpha, readers=list(wide.columns)).to_dict()
               for m in ("1T-RRRC", "1T-RRFC")}
        out["model_auc"] = out["1T-RRRC"]["model_auc"]
    except ValueError as exc:
        return {"error": str(exc), "note": note}
    out["note"] = note
    return out


def her2_low_metrics(df, alpha: float = 0.05) -> list[dict]:
    """HER2-low vs HER2-zero calls per reader and arm (paper 002, Table 4).

    Scored on cases whose truth is HER2-negative with a known HER2-low / zero status and
    that the reader called HER2-negative (only those get a low / zero answer); positive
    class = HER2-low. Empty when the study did not ask the question."""
    out = []
    d = df[df["her2_low_call"].notna() & df["her2_low"].notna()]
    if "truth" in d:
        d = d[d["truth"] == 0]
    for (rd, arm), g in d.groupby(["reader", "arm"], sort=True):
        bm = binary_metrics(g["her2_low"].astype(int), g["her2_low_call"].astype(bool), alpha)
        out.append({"reader": rd, "arm": arm, "n_cases": int(len(g)),
                    **_jsonable({k: asdict(v) for k, v in bm.items()})})
    return out


def _nanmean(vals):
    v = np.array([np.nan if x is None else x for x in vals], dtype=float)
    return None if np.all(np.isnan(v)) else float(np.nanmean(v))


def _est(v):
    return v["estimate"] if isinstance(v, dict) else v


def _minus(b, a):
    return None if a is None or b is None else b - a


def _try_or(df, arms, alpha, method):
    """OR analysis of the reads of ``arms``. When every reader read every case in every arm
    the design is factorial; otherwise (a split-plot / partially paired study, or an interim
    analysis) the jackknife uses every rating, while the DeLong method, which needs a fully
    crossed design, uses the cases read by everyone (flagged in "note")."""
    d = df[df["arm"].isin(arms)]
    n_cells = d["reader"].nunique() * len(arms)
    per_case = d.groupby("case").apply(lambda g: len(set(zip(g["reader"], g["arm"]))),
                                       include_groups=False)
    full = per_case.index[per_case == n_cells]
    note = None
    allow_missing = False
    if len(full) < len(per_case):
        if method == "jackknife":
            allow_missing = True
            note = (f"{len(full)} of {len(per_case)} cases are read by every reader in every "
                    "arm; the analysis uses every rating (nested / partially paired design, "
                    "jackknife covariances)")
        else:
            note = (f"interim: {len(full)} of {len(per_case)} cases are read by every reader in "
                    "every arm; the MRMC analysis uses those only")
            d = d[d["case"].isin(full)]
    try:
        if d["reader"].nunique() < 2:
            raise ValueError(f"only {d['reader'].nunique()} reader(s): a random-reader MRMC "
                             "analysis needs at least two")
        cube, truth, trs, rds, _ = ratings_cube(d, treatment="arm", treatments=list(arms),
                                                allow_missing=allow_missing)
        out = or_analysis(cube, truth, cov_method=method, alpha=alpha, treatments=trs,
                          readers=rds, reference=0, test=1).to_dict()
    except ValueError as exc:
        return {"error": str(exc), "note": note}
    out["note"] = note
    return out


# --------------------------------------------------------------------------- model alone vs readers

@dataclass
class StandaloneResult:
    """The model read as one more reader on the same cases, against the readers
    (RJafroc ``StCadVsRad``). Differences are reader - model (RJafroc's convention)."""
    method: str               # "1T-RRRC" | "1T-RRFC"
    model_auc: float
    reader_auc: list
    readers: list
    mean_reader_auc: float
    mean_difference: float    # mean reader AUC - model AUC
    ci_difference: list
    ci_mean_reader: list
    statistic: float          # t
    df: float
    p_value: float
    var_r: float
    var_error: float = float("nan")
    cov2: float = float("nan")
    n_cases: int = 0
    alpha: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def standalone_vs_readers(reader_ratings, model_scores, truth, *, method: str = "1T-RRRC",
                          alpha: float = 0.05, readers: Sequence | None = None) -> StandaloneResult:
    """Test the model alone against the readers on the same cases (one treatment).

    "1T-RRRC" (random readers and cases; Hillis 2007 section 5.3 as RJafroc
    ``StCadVsRad(method = "1T-RRRC")``): with Psi_j = AUC_j - AUC_model, jackknife
    covariances of the Psi_j give Var and Cov2; MS(R) = var(Psi);
    den = MS(R) + max(J Cov2, 0), t = mean(Psi) / sqrt(den / J),
    df = den^2 / (MS(R)^2 / (J - 1)).
    "1T-RRFC" (cases fixed): one-sample t-test of the Psi_j (R ``t.test``), df = J - 1.
    ``reader_ratings`` (J, K), ``model_scores`` (K,), ``truth`` (K,), fully crossed."""
    y = np.atleast_2d(np.asarray(reader_ratings, dtype=float))
    s = np.asarray(model_scores, dtype=float)
    truth = np.asarray(truth).astype(int)
    n_j, n_k = y.shape
    if n_j < 2:
        raise ValueError("the model-vs-readers test needs at least two readers")
    if s.shape != (n_k,) or not np.isfinite(s).all() or not np.isfinite(y).all():
        raise ValueError("every reader and the model must rate every case")
    auc, cov = auc_covariance(truth, np.vstack([s, y]), "jackknife")
    psi = auc[1:] - auc[0]
    mean_psi = float(psi.mean())
    ms_r = float(np.var(psi, ddof=1))
    var_r = float(np.var(auc[1:], ddof=1))
    labels = [_label(readers, j) for j in range(n_j)] if readers is not None else list(range(n_j))
    if method == "1T-RRFC":
        se = np.sqrt(ms_r / n_j)
        df = float(n_j - 1)
        t = mean_psi / se if se > 0 else float("nan")
        q = stats.t.ppf(1 - alpha / 2, df)
        ci = [mean_psi - q * se, mean_psi + q * se]
        return StandaloneResult(method, float(auc[0]), auc[1:].tolist(), labels,
                                float(auc[1:].mean()), mean_psi, [float(c) for c in ci],
                                [float(c + auc[0]) for c in ci], float(t), df,
                                float(2 * stats.t.sf(abs(t), df)), var_r, n_cases=n_k,
                                alpha=alpha)
    if method != "1T-RRRC":
        raise ValueError("method must be '1T-RRRC' or '1T-RRFC'")
    # covariance of differences: Cov(A_j - A_0, A_j' - A_0)
    c = cov[1:, 1:] - cov[1:, [0]] - cov[[0], 1:] + cov[0, 0]
    var_error = float(np.mean(np.diag(c)))
    cov2 = float((c.sum() - np.trace(c)) / (n_j * (n_j - 1)))
    den = ms_r + max(n_j * cov2, 0.0)
    df = den ** 2 / (ms_r ** 2 / (n_j - 1)) if ms_r > 0 else float("inf")
    se = np.sqrt(den / n_j)
    t = mean_psi / se if se > 0 else float("nan")
    q = stats.t.ppf(1 - alpha / 2, df)
    ci = [mean_psi - q * se, mean_psi + q * se]
    return StandaloneResult(method, float(auc[0]), auc[1:].tolist(), labels,
                            float(auc[1:].mean()), mean_psi, [float(v) for v in ci],
                            [float(v + auc[0]) for v in ci], float(t), float(df),
                            float(2 * stats.t.sf(abs(t), df)), var_r, var_error, cov2, n_k, alpha)


# --------------------------------------------------------------------------- sample size

@dataclass
class PowerResult:
    analysis: str
    readers: int
    cases: int
    effect: float
    power: float
    ncp: float
    df2: float
    critical: float
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def or_power(effect: float, readers: int, cases: int, *, var_tr: float, cov1: float, cov2: float,
             cov3: float, var_error: float, pilot_cases: int, alpha: float = 0.05,
             analysis: str = "RRRC") -> PowerResult:
    """Power of the OR test of two treatments for J readers and K cases from pilot variance
    components (Hillis, Obuchowski and Berbaum, Acad Radiol 2011, eqn 10; as RJafroc
    ``SsPowerGivenJK(method = "OR")``). Case-dependent components scale with K*/K
    (K* = ``pilot_cases``); Var(TR) below 0 is set to 0.

    RRRC: den = Var(TR) + K*/K (Var - Cov1 + (J-1) max(Cov2 - Cov3, 0)),
    df2 = den^2 / ((Var(TR) + K*/K (Var - Cov1 - max(Cov2 - Cov3, 0)))^2 / (J - 1)),
    ncp = J d^2 / 2 / den, power = P(F'(1, df2, ncp) > F_{1-alpha}(1, df2)).
    FRRC: Var(TR) left out, chi-squared(1) with the same ncp. RRFC: den = Var(TR) +
    K*/K (Var - Cov1 - max(Cov2 - Cov3, 0)), df2 = J - 1."""
    j, k = int(readers), int(cases)
    vtr = max(float(var_tr), 0.0)
    f = pilot_cases / k
    dc = max(cov2 - cov3, 0.0)
    if analysis == "RRRC":
        den = vtr + f * (var_error - cov1 + (j - 1) * dc)
        df2 = den ** 2 / ((vtr + f * (var_error - cov1 - dc)) ** 2 / (j - 1))
        ncp = effect ** 2 * j / 2 / den
        crit = stats.f.ppf(1 - alpha, 1, df2)
        power = stats.ncf.sf(crit, 1, df2, ncp)
    elif analysis == "FRRC":
        den = f * (var_error - cov1 + (j - 1) * dc)
        df2 = float("inf")
        ncp = effect ** 2 * j / 2 / den
        crit = stats.chi2.ppf(1 - alpha, 1)
        power = stats.ncx2.sf(crit, 1, ncp)
    elif analysis == "RRFC":
        den = vtr + f * (var_error - cov1 - dc)
        df2 = float(j - 1)
        ncp = effect ** 2 * j / 2 / den
        crit = stats.f.ppf(1 - alpha, 1, df2)
        power = stats.ncf.sf(crit, 1, df2, ncp)
    else:
        raise ValueError("analysis must be RRRC, FRRC or RRFC")
    return PowerResult(analysis, j, k, float(effect), float(power), float(ncp), float(df2),
                       float(crit), alpha)


def sample_size(effect: float, readers: Sequence[int], *, target_power: float = 0.8,
                pilot: "ORResult | dict", alpha: float = 0.05, analysis: str = "RRRC",
                max_cases: int = 100_000) -> list[dict]:
    """Smallest number of cases reaching ``target_power`` for each number of readers, from a
    pilot study's OR variance components (``pilot``: an ORResult or its dict). A row with
    ``cases`` None says the target cannot be reached with that many readers (with random
    readers, Var(TR) caps the power however many cases are read)."""
    pd_ = pilot.to_dict() if hasattr(pilot, "to_dict") else dict(pilot)
    comps = dict(var_tr=pd_["var_tr"], cov1=pd_["cov1"], cov2=pd_["cov2"], cov3=pd_["cov3"],
                 var_error=pd_["var_error"], pilot_cases=pd_["n_cases"])
    rows = []
    for j in readers:
        def pw(k):
            return or_power(effect, j, k, alpha=alpha, analysis=analysis, **comps).power
        if pw(max_cases) < target_power:
            rows.append({"readers": int(j), "cases": None, "power": pw(max_cases),
                         "note": f"not reached with {max_cases} cases"})
            continue
        lo, hi = 2, 2
        while pw(hi) < target_power:
            lo, hi = hi, hi * 2
        while lo < hi:
            mid = (lo + hi) // 2
            if pw(mid) >= target_power:
                hi = mid
            else:
                lo = mid + 1
        rows.append({"readers": int(j), "cases": int(hi), "power": pw(hi), "note": ""})
    return rows
