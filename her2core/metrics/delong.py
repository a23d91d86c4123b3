"""DeLong variance, confidence interval and tests for the AUC, as R pROC.

The placements are computed with the fast algorithm of Sun and Xu (IEEE
Signal Processing Letters 21(11), 2014): O(n log n) per score (one sort of the
pooled scores) instead of the O(n_cases * n_controls) kernel of DeLong et al.
(1988). Ties count one
half, as in pROC. Variances use the n-1 denominator (R ``var``), so the
numbers equal pROC's ``var(roc)``, ``cov(roc1, roc2)``, ``ci.auc(roc)``
(method "delong") and ``roc.test(..., method="delong")`` paired (Z test) and
unpaired (t test with pROC's degrees of freedom).

Direction: "<" (the default) means controls < cases, i.e. a higher score
means positive. That is the right choice for every probability or score
column; pROC's "auto" (pick by medians) is available but biases the AUC
upwards when the score is uninformative, so it is never the default here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from her2core.metrics._common import as_binary, as_score, split_cases_controls


@dataclass
class Placements:
    """DeLong structural components of one score."""

    auc: float
    v10: np.ndarray  # one per case: P(control < case) + 0.5 P(tie)
    v01: np.ndarray  # one per control: P(case > control) + 0.5 P(tie)
    direction: str


def placements(y, score, direction: str = "<") -> Placements:
    """Fast placements of one score (cases = y == 1).

    Sun & Xu write them with midranks: V10_i = (R_Z(x_i) - R_X(x_i)) / n and
    V01_j = 1 - (R_Z(y_j) - R_Y(y_j)) / m. The midrank differences are the
    number of controls (cases) below plus half of those tied, so one sort of
    the pooled scores and per-distinct-value counts give them directly."""
    cases, controls, direction = split_cases_controls(y, score, direction)
    m, n = cases.size, controls.size
    z = np.concatenate([cases, controls])
    order = np.argsort(z)
    zs = z[order]
    new = np.empty(zs.size, dtype=bool)
    new[0] = True
    np.not_equal(zs[1:], zs[:-1], out=new[1:])
    gid = np.cumsum(new) - 1
    inv = np.empty_like(gid)
    inv[order] = gid
    k = int(gid[-1]) + 1
    c = np.bincount(inv[:m], minlength=k)  # cases per distinct value
    d = np.bincount(inv[m:], minlength=k)  # controls per distinct value
    controls_below = np.cumsum(d) - d
    cases_above = m - np.cumsum(c)
    v10 = (controls_below + 0.5 * d)[inv[:m]] / n
    v01 = (cases_above + 0.5 * c)[inv[m:]] / m
    return Placements(auc=float(v10.mean()), v10=v10, v01=v01, direction=direction)


def _var(a: np.ndarray, b: np.ndarray) -> float:
    k = a.size
    if k < 2:
        return float("nan")
    return float(np.sum((a - a.mean()) * (b - b.mean())) / (k - 1))


def delong_var(y, score, direction: str = "<") -> float:
    """DeLong variance of the AUC (pROC ``var(roc)``)."""
    p = placements(y, score, direction)
    return _var(p.v10, p.v10) / p.v10.size + _var(p.v01, p.v01) / p.v01.size


def delong_cov(y, score_a, score_b, direction: str = "<") -> float:
    """DeLong covariance of two AUCs on the same cases (pROC ``cov``)."""
    pa = placements(y, score_a, direction)
    pb = placements(y, score_b, direction)
    return _var(pa.v10, pb.v10) / pa.v10.size + _var(pa.v01, pb.v01) / pa.v01.size


def delong_covariance_matrix(y, scores, direction: str = "<"):
    """AUCs (k,) and their DeLong covariance matrix (k, k) for k scores."""
    ps = [placements(y, s, direction) for s in scores]
    v10 = np.vstack([p.v10 for p in ps])
    v01 = np.vstack([p.v01 for p in ps])
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.cov(v10, ddof=1).reshape(len(ps), len(ps))
    s01 = np.cov(v01, ddof=1).reshape(len(ps), len(ps))
    return np.array([p.auc for p in ps]), s10 / m + s01 / n


@dataclass
class AucCI:
    auc: float
    lower: float
    upper: float
    level: float
    method: str
    var: float | None = None
    n_cases: int = 0
    n_controls: int = 0
    direction: str = "<"
    n_boot: int | None = None
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ci_auc_delong(y, score, level: float = 0.95, direction: str = "<") -> AucCI:
    """DeLong CI of the AUC: normal quantiles around the AUC, clipped to [0, 1]
    (pROC ``ci.auc(method="delong")``)."""
    p = placements(y, score, direction)
    m, n = p.v10.size, p.v01.size
    if m < 2 or n < 2:
        var = float("nan")
        lo = hi = float("nan")
    else:
        var = _var(p.v10, p.v10) / m + _var(p.v01, p.v01) / n
        z = stats.norm.ppf(1 - (1 - level) / 2)
        sd = np.sqrt(var)
        lo, hi = max(0.0, p.auc - z * sd), min(1.0, p.auc + z * sd)
    return AucCI(auc=p.auc, lower=float(lo), upper=float(hi), level=level,
                 method="delong", var=var, n_cases=m, n_controls=n,
                 direction=p.direction)


@dataclass
class DelongTest:
    """Result of a DeLong test of two AUCs (pROC ``roc.test``)."""

    auc_a: float
    auc_b: float
    auc_difference: float
    statistic: float  # Z (paired) or D (unpaired)
    p: float
    alternative: str
    paired: bool
    df: float | None = None  # unpaired only
    ci_difference: tuple[float, float] | None = None  # paired only
    level: float = 0.95
    method: str = "delong"

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["ci_difference"] is not None:
            d["ci_difference"] = list(d["ci_difference"])
        return d


def _p_value(stat: float, alternative: str, dist) -> float:
    if alternative == "two.sided":
        return float(2 * dist.cdf(-abs(stat)))
    if alternative == "greater":
        return float(dist.sf(stat))
    if alternative == "less":
        return float(dist.cdf(stat))
    raise ValueError("alternative must be 'two.sided', 'greater' or 'less', "
                     f"got {alternative!r}")


def delong_test_paired(y, score_a, score_b, alternative: str = "two.sided",
                       level: float = 0.95, direction: str = "<") -> DelongTest:
    """Paired DeLong test of two scores measured on the same cases.

    Z = (AUC_a - AUC_b) / sqrt(var_a + var_b - 2 cov); p from the normal.
    "greater" tests AUC_a > AUC_b. ``ci_difference`` is the normal CI of
    AUC_a - AUC_b (pROC's ``conf.int``).
    """
    y = as_binary(y)
    sa = as_score(score_a, y.size, "score_a")
    sb = as_score(score_b, y.size, "score_b")
    aucs, s = delong_covariance_matrix(y, [sa, sb], direction)
    diff = float(aucs[0] - aucs[1])
    sig2 = float(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    sig = np.sqrt(max(sig2, 0.0))
    if sig == 0:
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    else:
        z = diff / sig
    p = _p_value(z, alternative, stats.norm)
    q = stats.norm.ppf(1 - (1 - level) / 2)
    ci = (diff - q * sig, diff + q * sig)
    return DelongTest(auc_a=float(aucs[0]), auc_b=float(aucs[1]), auc_difference=diff,
                      statistic=float(z), p=p, alternative=alternative, paired=True,
                      ci_difference=(float(ci[0]), float(ci[1])), level=level)


def delong_test_unpaired(y_a, score_a, y_b, score_b, alternative: str = "two.sided",
                         direction: str = "<") -> DelongTest:
    """Unpaired DeLong test of two AUCs from two independent groups.

    D = (AUC_a - AUC_b) / sqrt(var_a + var_b) against a t distribution with
    pROC's degrees of freedom (var_a + var_b)^2 / (var_a^2/(N_a-1) + var_b^2/(N_b-1)).
    """
    pa = placements(y_a, score_a, direction)
    pb = placements(y_b, score_b, direction)
    va = _var(pa.v10, pa.v10) / pa.v10.size + _var(pa.v01, pa.v01) / pa.v01.size
    vb = _var(pb.v10, pb.v10) / pb.v10.size + _var(pb.v01, pb.v01) / pb.v01.size
    na = pa.v10.size + pa.v01.size
    nb = pb.v10.size + pb.v01.size
    diff = pa.auc - pb.auc
    d = diff / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    p = _p_value(d, alternative, stats.t(df))
    return DelongTest(auc_a=pa.auc, auc_b=pb.auc, auc_difference=float(diff),
                      statistic=float(d), p=p, alternative=alternative, paired=False,
                      df=float(df))


def naive_delong(y, score):
    """O(n_cases * n_controls) DeLong (1988), for tests and the benchmark only.

    Returns (auc, var)."""
    y = as_binary(y)
    s = as_score(score, y.size)
    x, c = s[y == 1], s[y == 0]
    k = (x[:, None] > c[None, :]).astype(float) + 0.5 * (x[:, None] == c[None, :])
    v10 = k.mean(axis=1)
    v01 = k.mean(axis=0)
    return float(k.mean()), _var(v10, v10) / x.size + _var(v01, v01) / c.size
