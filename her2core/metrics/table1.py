"""Table 1: characteristics of the cases by outcome, one block per data set.

For each variable and each set (training / internal / external), the cases of
the positive class (HER2-positive, or HER2-low for the HER2-low task) are
compared with the negative class, with the tests R users expect:

* continuous variables: Shapiro-Wilk in each class (R ``shapiro.test``); when
  neither rejects normality at ``normal_alpha`` (0.05) the summary is mean (SD)
  and the test Welch's t-test (R ``t.test`` default, ``var.equal = FALSE``),
  otherwise median [Q1, Q3] (type-7 quantiles, R ``quantile``) and the
  Wilcoxon-Mann-Whitney test as R ``wilcox.test`` does it by default: exact
  when both classes have fewer than 50 cases and there are no ties, otherwise
  the normal approximation with continuity and tie corrections;
* categorical variables: counts (%) per level; Pearson's chi-squared test
  (R ``chisq.test``, with Yates' continuity correction on 2 x 2 tables, R's
  default) when every expected count is at least 5, otherwise Fisher's exact
  test (R ``fisher.test``: two-sided p = sum of the probabilities of the tables
  no more likely than the observed one, relative tolerance 1e-7);
* p-values are adjusted within each set by Benjamini-Hochberg (R
  ``p.adjust(method = "BH")``).

A variable is categorical when it is a pandas Categorical, text, boolean, or
numeric with at most ``max_levels_numeric_categorical`` (5) distinct integer
values (0/1 flags, grade); override with ``categorical=`` / ``continuous=``.
A variable with a single level (or no values) in a set gets a row with a note
and no p-value; the other rows are unaffected.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln

__all__ = ["Table1", "Table1Row", "table1", "p_adjust_bh", "fisher_exact_kx2",
           "chisq_test", "welch_t_test", "wilcoxon_rank_sum", "is_categorical"]

MAX_ENUMERATION = 2_000_000


# ----------------------------------------------------------------------------- tests
def p_adjust_bh(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (R ``p.adjust(p, "BH")``); NaN stays NaN
    and does not count in n."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    n = q.size
    if n == 0:
        return out
    order = np.argsort(q)[::-1]  # decreasing
    ranks = np.arange(n, 0, -1)
    adj = np.minimum.accumulate(n / ranks * q[order])
    res = np.empty(n)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def welch_t_test(x, y) -> tuple[float, float, float]:
    """(t, df, p) of R ``t.test(x, y)`` (Welch, two-sided)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    t = (x.mean() - y.mean()) / se
    df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
    return float(t), float(df), float(2 * stats.t.sf(abs(t), df))


def wilcoxon_rank_sum(x, y) -> tuple[float, float, str]:
    """(W, p, method) of R ``wilcox.test(x, y)`` with its defaults.

    W = sum of the ranks of x minus nx(nx+1)/2. Exact p when nx < 50, ny < 50 and no
    ties; otherwise normal approximation, continuity correction 0.5, tie-corrected
    variance."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    nx, ny = x.size, y.size
    r = stats.rankdata(np.concatenate([x, y]))
    w = float(r[:nx].sum() - nx * (nx + 1) / 2)
    ties = np.unique(r, return_counts=True)[1]
    has_ties = bool((ties > 1).any())
    if nx < 50 and ny < 50 and not has_ties:
        res = stats.mannwhitneyu(x, y, alternative="two-sided", method="exact")
        return w, float(res.pvalue), "exact"
    z = w - nx * ny / 2
    sigma = math.sqrt(nx * ny / 12 * ((nx + ny + 1) - np.sum(ties ** 3 - ties)
                                      / ((nx + ny) * (nx + ny - 1))))
    corr = 0.5 * np.sign(z)
    zz = (z - corr) / sigma if sigma > 0 else 0.0
    p = float(min(1.0, 2 * stats.norm.sf(abs(zz))))
    return w, p, "normal approximation with continuity correction"


def chisq_test(table) -> tuple[float, int, float, np.ndarray]:
    """(X-squared, df, p, expected) of R ``chisq.test(table)`` (Yates on 2 x 2)."""
    t = np.asarray(table, dtype=float)
    n = t.sum()
    e = np.outer(t.sum(axis=1), t.sum(axis=0)) / n
    if t.shape == (2, 2):
        yates = min(0.5, float(np.min(np.abs(t - e))))
        x2 = float(np.sum((np.abs(t - e) - yates) ** 2 / e))
    else:
        x2 = float(np.sum((t - e) ** 2 / e))
    df = (t.shape[0] - 1) * (t.shape[1] - 1)
    return x2, int(df), float(stats.chi2.sf(x2, df)), e


def fisher_exact_kx2(table) -> tuple[float, str]:
    """Two-sided Fisher exact p of a k x 2 table, as R ``fisher.test`` (relative
    tolerance 1e-7 on the observed probability). Returns (p, method)."""
    t = np.asarray(table, dtype=np.int64)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError("fisher_exact_kx2 needs a k x 2 table")
    rows = t.sum(axis=1)
    c1 = int(t[:, 0].sum())
    n = int(rows.sum())
    lr = gammaln(rows + 1)

    def logp_terms(i, x):  # log C(r_i, x)
        return lr[i] - gammaln(x + 1) - gammaln(rows[i] - x + 1)

    # partial sums over all rows but the last: arrays of (sum of x, log prod C(r_i, x_i));
    # the last row is then fixed by the column sum. Prune sums that exceed c1 or can no
    # longer reach it.
    rest = np.concatenate([np.cumsum(rows[::-1])[::-1][1:], [0]])  # capacity after row i
    sums = np.array([0])
    logs = np.array([0.0])
    k = len(rows)
    for i in range(k - 1):
        xs = np.arange(int(rows[i]) + 1)
        lt = logp_terms(i, xs)
        s_new = (sums[:, None] + xs[None, :]).ravel()
        l_new = (logs[:, None] + lt[None, :]).ravel()
        keep = (s_new <= c1) & (s_new + rest[i] >= c1)
        sums, logs = s_new[keep], l_new[keep]
        if sums.size > MAX_ENUMERATION:
            res = stats.fisher_exact(t, method=stats.MonteCarloMethod(
                n_resamples=100_000, rng=np.random.default_rng(1)))
            return float(res.pvalue), "Monte Carlo (1e5 tables; exact enumeration too large)"
    last = c1 - sums
    ok = (last >= 0) & (last <= rows[-1])
    logs = logs[ok] + logp_terms(k - 1, last[ok])
    log_den = gammaln(n + 1) - gammaln(c1 + 1) - gammaln(n - c1 + 1)
    probs = np.exp(logs - log_den)
    obs = np.exp(sum(logp_terms(i, t[i, 0]) for i in range(k)) - log_den)
    p = float(probs[probs <= obs * (1 + 1e-7)].sum())
    return min(1.0, p), "exact"


def shapiro_p(x) -> float:
    x = np.asarray(x, float)
    if x.size < 3 or x.size > 5000 or np.ptp(x) == 0:
        return float("nan")
    return float(stats.shapiro(x).pvalue)


# ----------------------------------------------------------------------------- table
@dataclass
class Table1Row:
    variable: str
    set: str
    kind: str                       # "continuous" | "categorical"
    n_pos: int
    n_neg: int
    missing_pos: int
    missing_neg: int
    summary_pos: str
    summary_neg: str
    summary_all: str
    test: str                       # "t-test (Welch)", "Mann-Whitney", "chi-squared", "Fisher", ""
    statistic: float
    p: float
    p_fdr: float = float("nan")
    normal: bool | None = None      # continuous: passed the normality check
    method_detail: str = ""
    note: str = ""
    levels: list = field(default_factory=list)  # categorical: [{level, n_pos, pct_pos, ...}]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Table1:
    positive_label: str
    negative_label: str
    sets: list[str]
    rows: list[Table1Row]
    normal_alpha: float = 0.05
    notes: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        cols = ["variable", "set", "kind", "n_pos", "n_neg", "summary_pos", "summary_neg",
                "summary_all", "missing_pos", "missing_neg", "test", "statistic", "p", "p_fdr",
                "normal", "method_detail", "note"]
        return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.rows], columns=cols)

    def levels_frame(self) -> pd.DataFrame:
        out = []
        for r in self.rows:
            for lv in r.levels:
                out.append({"variable": r.variable, "set": r.set, **lv})
        return pd.DataFrame(out, columns=["variable", "set", "level", "n_pos", "pct_pos",
                                          "n_neg", "pct_neg", "n_all", "pct_all"])

    def to_dict(self) -> dict:
        return {"positive_label": self.positive_label, "negative_label": self.negative_label,
                "sets": list(self.sets), "normal_alpha": self.normal_alpha,
                "notes": list(self.notes), "rows": [r.to_dict() for r in self.rows]}


def is_categorical(s: pd.Series, max_levels: int = 5) -> bool:
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == bool:
        return True
    if not pd.api.types.is_numeric_dtype(s):
        return True
    v = s.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return False
    u = np.unique(v)
    return u.size <= max_levels and bool(np.all(u == np.round(u)))


def _fmt(v: float, digits: int = 1) -> str:
    return "NA" if not np.isfinite(v) else f"{v:.{digits}f}"


def _digits(x: np.ndarray) -> int:
    ax = np.abs(x[np.isfinite(x)])
    if ax.size == 0:
        return 1
    m = np.median(ax)
    return 3 if m < 1 else (2 if m < 10 else 1)


def _cont_summary(x: np.ndarray, normal: bool, d: int) -> str:
    if x.size == 0:
        return "no values"
    if normal:
        sd = x.std(ddof=1) if x.size > 1 else float("nan")
        return f"{_fmt(x.mean(), d)} ({_fmt(sd, d)})"
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75], method="linear")
    return f"{_fmt(med, d)} [{_fmt(q1, d)}, {_fmt(q3, d)}]"


def _level_label(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _continuous_row(name, set_name, xp, xn, mp, mn, normal_alpha) -> Table1Row:
    d = _digits(np.concatenate([xp, xn]))
    row = dict(variable=name, set=set_name, kind="continuous", n_pos=int(xp.size),
               n_neg=int(xn.size), missing_pos=mp, missing_neg=mn)
    if xp.size < 2 or xn.size < 2:
        note = (f"{name}: fewer than 2 values in a class in set {set_name}; no test")
        normal = False
        return Table1Row(**row, summary_pos=_cont_summary(xp, False, d),
                         summary_neg=_cont_summary(xn, False, d),
                         summary_all=_cont_summary(np.concatenate([xp, xn]), False, d),
                         test="", statistic=float("nan"), p=float("nan"), normal=normal, note=note)
    allv = np.concatenate([xp, xn])
    if np.ptp(allv) == 0:
        return Table1Row(**row, summary_pos=_cont_summary(xp, True, d),
                         summary_neg=_cont_summary(xn, True, d),
                         summary_all=_cont_summary(allv, True, d), test="",
                         statistic=float("nan"), p=float("nan"), normal=None,
                         note=f"{name} takes a single value in set {set_name}; no test")
    sp, sn = shapiro_p(xp), shapiro_p(xn)
    normal = bool(np.isfinite(sp) and np.isfinite(sn) and sp > normal_alpha and sn > normal_alpha)
    detail = f"Shapiro-Wilk p = {_fmt(sp, 3)} / {_fmt(sn, 3)}"
    if normal:
        t, df, p = welch_t_test(xp, xn)
        test, stat, detail = "t-test (Welch)", t, detail + f"; t = {t:.3f}, df = {df:.2f}"
    else:
        w, p, how = wilcoxon_rank_sum(xp, xn)
        test, stat, detail = "Mann-Whitney", w, detail + f"; W = {w:g} ({how})"
    return Table1Row(**row, summary_pos=_cont_summary(xp, normal, d),
                     summary_neg=_cont_summary(xn, normal, d),
                     summary_all=_cont_summary(allv, normal, d), test=test, statistic=float(stat),
                     p=float(p), normal=normal, method_detail=detail)


def _categorical_row(name, set_name, vp: pd.Series, vn: pd.Series, mp, mn,
                     all_levels: list) -> Table1Row:
    levels = [lv for lv in all_levels if (vp == lv).any() or (vn == lv).any()]
    cp = np.array([int((vp == lv).sum()) for lv in levels])
    cn = np.array([int((vn == lv).sum()) for lv in levels])
    n_p, n_n = int(cp.sum()), int(cn.sum())
    lv_rows, sp, sn, sa = [], [], [], []
    for lv, a, b in zip(levels, cp, cn):
        pa = 100 * a / n_p if n_p else float("nan")
        pb = 100 * b / n_n if n_n else float("nan")
        pt = 100 * (a + b) / (n_p + n_n) if n_p + n_n else float("nan")
        lab = _level_label(lv)
        lv_rows.append({"level": lab, "n_pos": int(a), "pct_pos": pa, "n_neg": int(b),
                        "pct_neg": pb, "n_all": int(a + b), "pct_all": pt})
        sp.append(f"{lab}: {a} ({_fmt(pa)}%)")
        sn.append(f"{lab}: {b} ({_fmt(pb)}%)")
        sa.append(f"{lab}: {a + b} ({_fmt(pt)}%)")
    row = dict(variable=name, set=set_name, kind="categorical", n_pos=n_p, n_neg=n_n,
               missing_pos=mp, missing_neg=mn, summary_pos="; ".join(sp) or "no values",
               summary_neg="; ".join(sn) or "no values", summary_all="; ".join(sa) or "no values",
               levels=lv_rows)
    if len(levels) < 2:
        one = _level_label(levels[0]) if levels else "none"
        return Table1Row(**row, test="", statistic=float("nan"), p=float("nan"),
                         note=f"{name} has a single level ({one}) in set {set_name}; no test")
    if n_p == 0 or n_n == 0:
        return Table1Row(**row, test="", statistic=float("nan"), p=float("nan"),
                         note=f"set {set_name} has no {'positive' if n_p == 0 else 'negative'} "
                              f"case with a value of {name}; no test")
    tab = np.column_stack([cp, cn])
    x2, df, p, e = chisq_test(tab)
    if np.all(e >= 5):
        test = "chi-squared"
        detail = (f"X-squared = {x2:.3f}, df = {df}"
                  + (" (Yates' continuity correction)" if tab.shape == (2, 2) else ""))
        return Table1Row(**row, test=test, statistic=x2, p=p, method_detail=detail)
    pf, how = fisher_exact_kx2(tab)
    return Table1Row(**row, test="Fisher", statistic=float("nan"), p=pf,
                     method_detail=f"smallest expected count {e.min():.2f} < 5; {how}")


def table1(data: pd.DataFrame, outcome: pd.Series | str, *, sets: pd.Series | str | None = None,
           variables: Iterable[str] | None = None, categorical: Iterable[str] = (),
           continuous: Iterable[str] = (), normal_alpha: float = 0.05,
           positive_label: str = "HER2-positive", negative_label: str = "HER2-negative",
           set_order: Sequence[str] = ("training", "internal", "external"),
           max_levels_numeric_categorical: int = 5) -> Table1:
    """Table 1 (see the module docstring).

    ``data``: one row per case; ``outcome``: 0/1 Series aligned with ``data`` (or a
    column name); cases with a missing outcome are left out. ``sets``: set name per
    case (Series or column; None = one set "all"). ``variables``: columns to describe
    (default every column except outcome and sets). One row per variable and set."""
    df = data.copy()
    y = df[outcome] if isinstance(outcome, str) else pd.Series(outcome).reindex(df.index)
    if sets is None:
        st = pd.Series("all", index=df.index)
    else:
        st = df[sets] if isinstance(sets, str) else pd.Series(sets).reindex(df.index)
    keep = y.notna() & st.notna()
    df, y, st = df[keep], y[keep].astype(int), st[keep].astype(str)
    if variables is None:
        drop = {c for c in (outcome, sets) if isinstance(c, str)}
        variables = [c for c in df.columns if c not in drop]
    variables = list(variables)
    cat, cont = set(categorical), set(continuous)
    present = list(dict.fromkeys(st))
    order = [s for s in set_order if s in present] + [s for s in present if s not in set_order]
    rows: list[Table1Row] = []
    notes: list[str] = []
    for sname in order:
        in_set = st == sname
        ys = y[in_set]
        if ys.nunique() < 2:
            notes.append(f"set {sname} has only {'positive' if ys.iloc[0] == 1 else 'negative'} "
                         f"cases ({len(ys)}): no comparison between classes")
        for v in variables:
            col = df.loc[in_set, v]
            is_cat = v in cat or (v not in cont and is_categorical(df[v],
                                                                   max_levels_numeric_categorical))
            pos, neg = col[ys == 1], col[ys == 0]
            mp, mn = int(pos.isna().sum()), int(neg.isna().sum())
            if is_cat:
                full = df[v]
                if isinstance(full.dtype, pd.CategoricalDtype):
                    all_levels = list(full.cat.categories)
                else:
                    all_levels = sorted(full.dropna().unique().tolist(), key=lambda x: (str(type(x)), x))
                r = _categorical_row(v, sname, pos.dropna(), neg.dropna(), mp, mn, all_levels)
            else:
                xp = pd.to_numeric(pos, errors="coerce").dropna().to_numpy(float)
                xn = pd.to_numeric(neg, errors="coerce").dropna().to_numpy(float)
                r = _continuous_row(v, sname, xp, xn, mp, mn, normal_alpha)
            rows.append(r)
        idx = [i for i, r in enumerate(rows) if r.set == sname]
        adj = p_adjust_bh([rows[i].p for i in idx])
        for i, a in zip(idx, adj):
            rows[i].p_fdr = float(a)
    notes += [r.note for r in rows if r.note]
    return Table1(positive_label=positive_label, negative_label=negative_label, sets=order,
                  rows=rows, normal_alpha=normal_alpha, notes=notes)
