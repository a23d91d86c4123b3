"""Net reclassification improvement (NRI) and integrated discrimination improvement (IDI).

Formulas of Pencina, D'Agostino Sr, D'Agostino Jr and Vasan (Statistics in
Medicine 27:157-172, 2008), as implemented by R Hmisc ``improveProb`` (which
this module matches for the continuous NRI and the IDI). With ``new`` the model
and ``ref`` the reference model, events = cases with y = 1 (n_e of them),
non-events y = 0 (n_n):

* a case moves *up* when the new model puts it in a higher risk category than
  the reference (categorical NRI, categories cut at ``cutoffs``, a probability
  equal to a cut-off falls in the upper category) or gives it a higher
  probability (continuous NRI, "NRI > 0"); *down* likewise;
* NRI_events = (up_e - down_e) / n_e, NRI_nonevents = (down_n - up_n) / n_n,
  NRI = NRI_events + NRI_nonevents;
* Var(NRI_events) = (up_e + down_e) / n_e^2 - (up_e - down_e)^2 / n_e^3 (the same
  for non-events), SE(NRI) = sqrt of their sum, z = NRI / SE, two-sided normal p,
  Wald CI NRI +- z SE;
* IDI = [mean(new - ref) over events] - [mean(new - ref) over non-events],
  SE = sqrt(var_e(new - ref) / n_e + var_n(new - ref) / n_n) (R ``var``, n - 1).

Note (Pepe 2011, Kerr 2014): NRI and IDI of nested models fitted on the same data
are biased towards improvement, and their Wald p-values are not valid tests of
added value; report them on validation data, beside the AUC difference.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats

from her2core.metrics._common import as_binary
from her2core.metrics.calibration import check_probabilities

__all__ = ["NRI", "IDI", "Reclassification", "nri_categorical", "nri_continuous", "idi",
           "reclassification"]


@dataclass
class NRI:
    kind: str                 # "categorical" | "continuous"
    nri: float
    se: float
    z: float
    p: float
    lower: float
    upper: float
    nri_events: float
    se_events: float
    nri_nonevents: float
    se_nonevents: float
    n_events: int
    n_nonevents: int
    up_events: int
    down_events: int
    up_nonevents: int
    down_nonevents: int
    cutoffs: list[float] = field(default_factory=list)
    level: float = 0.95
    # categorical: counts [ref category][new category] for events and non-events
    table_events: list[list[int]] = field(default_factory=list)
    table_nonevents: list[list[int]] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IDI:
    idi: float
    se: float
    z: float
    p: float
    lower: float
    upper: float
    mean_change_events: float      # improveProb's improveSens
    mean_change_nonevents: float   # minus improveProb's improveSpec
    discrimination_slope_ref: float
    discrimination_slope_new: float
    n_events: int
    n_nonevents: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def _inputs(y, p_ref, p_new):
    y = as_binary(y)
    a = check_probabilities(p_ref, y.size, "p_ref")
    b = check_probabilities(p_new, y.size, "p_new")
    if y.min() == y.max():
        raise ValueError("NRI / IDI need both events and non-events")
    return y, a, b


def _nri_from_moves(kind, up, down, y, level, cutoffs=(), te=None, tn=None, cats=None) -> NRI:
    ev, ne = y == 1, y == 0
    n_e, n_n = int(ev.sum()), int(ne.sum())
    ue, de = int(up[ev].sum()), int(down[ev].sum())
    un, dn = int(up[ne].sum()), int(down[ne].sum())
    nri_e = (ue - de) / n_e
    nri_n = (dn - un) / n_n
    v_e = (ue + de) / n_e ** 2 - (ue - de) ** 2 / n_e ** 3
    v_n = (dn + un) / n_n ** 2 - (dn - un) ** 2 / n_n ** 3
    nri = nri_e + nri_n
    se = float(np.sqrt(v_e + v_n))
    z = nri / se if se > 0 else float("nan")
    p = float(2 * stats.norm.sf(abs(z))) if se > 0 else float("nan")
    q = stats.norm.ppf(1 - (1 - level) / 2)
    return NRI(kind=kind, nri=float(nri), se=se, z=float(z), p=p, lower=float(nri - q * se),
               upper=float(nri + q * se), nri_events=float(nri_e), se_events=float(np.sqrt(v_e)),
               nri_nonevents=float(nri_n), se_nonevents=float(np.sqrt(v_n)), n_events=n_e,
               n_nonevents=n_n, up_events=ue, down_events=de, up_nonevents=un,
               down_nonevents=dn, cutoffs=[float(c) for c in cutoffs], level=level,
               table_events=te or [], table_nonevents=tn or [], categories=cats or [])


def categories(p, cutoffs: Sequence[float]) -> np.ndarray:
    """Risk category index 0..len(cutoffs): p < c1 -> 0, c1 <= p < c2 -> 1, ..."""
    c = np.sort(np.asarray(cutoffs, dtype=float))
    return np.searchsorted(c, np.asarray(p, float), side="right")


def nri_categorical(y, p_ref, p_new, cutoffs: Sequence[float], level: float = 0.95) -> NRI:
    """Categorical NRI with risk categories cut at ``cutoffs`` (see the module docstring)."""
    y, a, b = _inputs(y, p_ref, p_new)
    cut = sorted(float(c) for c in cutoffs)
    if not cut or any(not 0 < c < 1 for c in cut):
        raise ValueError("cut-offs must lie strictly between 0 and 1")
    ca, cb = categories(a, cut), categories(b, cut)
    k = len(cut) + 1
    te = np.zeros((k, k), dtype=int)
    tn = np.zeros((k, k), dtype=int)
    np.add.at(te, (ca[y == 1], cb[y == 1]), 1)
    np.add.at(tn, (ca[y == 0], cb[y == 0]), 1)
    edges = [0.0] + cut + [1.0]
    cats = [f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == k - 1 else ')'}" for i in range(k)]
    return _nri_from_moves("categorical", cb > ca, cb < ca, y, level, cut, te.tolist(),
                           tn.tolist(), cats)


def nri_continuous(y, p_ref, p_new, level: float = 0.95) -> NRI:
    """Continuous ("category-free", NRI > 0) NRI: Hmisc ``improveProb(p_ref, p_new, y)``."""
    y, a, b = _inputs(y, p_ref, p_new)
    d = b - a
    return _nri_from_moves("continuous", d > 0, d < 0, y, level)


def idi(y, p_ref, p_new, level: float = 0.95) -> IDI:
    """Integrated discrimination improvement (see the module docstring)."""
    y, a, b = _inputs(y, p_ref, p_new)
    d = b - a
    ev, ne = y == 1, y == 0
    n_e, n_n = int(ev.sum()), int(ne.sum())
    val = float(d[ev].mean() - d[ne].mean())
    ve = d[ev].var(ddof=1) / n_e if n_e > 1 else float("nan")
    vn = d[ne].var(ddof=1) / n_n if n_n > 1 else float("nan")
    se = float(np.sqrt(ve + vn))
    z = val / se if se > 0 else float("nan")
    p = float(2 * stats.norm.sf(abs(z))) if se > 0 else float("nan")
    q = stats.norm.ppf(1 - (1 - level) / 2)
    return IDI(idi=val, se=se, z=float(z), p=p, lower=float(val - q * se),
               upper=float(val + q * se), mean_change_events=float(d[ev].mean()),
               mean_change_nonevents=float(d[ne].mean()),
               discrimination_slope_ref=float(a[ev].mean() - a[ne].mean()),
               discrimination_slope_new=float(b[ev].mean() - b[ne].mean()),
               n_events=n_e, n_nonevents=n_n, level=level)


@dataclass
class Reclassification:
    new: str
    reference: str
    categorical: NRI | None
    continuous: NRI
    idi: IDI
    note: str = ("NRI and IDI with Pencina (2008) standard errors (R Hmisc improveProb); "
                 "on the data a model was fitted to they favour it")

    def to_dict(self) -> dict:
        return {"new": self.new, "reference": self.reference, "note": self.note,
                "categorical": self.categorical.to_dict() if self.categorical else None,
                "continuous": self.continuous.to_dict(), "idi": self.idi.to_dict()}


def reclassification(y, p_ref, p_new, cutoffs: Sequence[float] | None = (0.3, 0.7), *,
                     new: str = "new", reference: str = "reference",
                     level: float = 0.95) -> Reclassification:
    """Categorical NRI (when ``cutoffs``), continuous NRI and IDI of ``p_new`` over ``p_ref``."""
    cat = nri_categorical(y, p_ref, p_new, cutoffs, level) if cutoffs else None
    return Reclassification(new=new, reference=reference, categorical=cat,
                            continuous=nri_continuous(y, p_ref, p_new, level),
                            idi=idi(y, p_ref, p_new, level))
