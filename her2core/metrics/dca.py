"""Decision curve analysis with the conventions of R dcurves ``dca()``.

For each threshold probability t in (0, 1) (default 0.01, 0.02, ..., 0.99):
* a case is test-positive when p >= t;
* tp_rate = mean(p >= t among cases) * prevalence,
  fp_rate = mean(p >= t among controls) * (1 - prevalence), where the
  prevalence is the sample's unless given (case-control data);
* net benefit NB = tp_rate - fp_rate * t / (1 - t) - harm;
* treat all: p = 1 for everyone; treat none: NB = 0;
* standardised net benefit = NB / prevalence (dcurves
  ``standardized_net_benefit``);
* net interventions avoided per ``per`` patients =
  (NB - NB_treat_all) / (t / (1 - t)) * per (dcurves
  ``net_intervention_avoided``, per 100 by default there, per 1 here unless
  asked).
Thresholds of 0 or 1 are dropped, as dcurves does. ``as_probability`` turns a
score that is not a probability into one by a logistic regression of the
outcome on it (dcurves ``as_probability``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.special import expit

from her2core.metrics._common import as_binary, as_score
from her2core.metrics.calibration import logistic_fit


def default_thresholds(start: float = 0.01, stop: float = 0.99, step: float = 0.01) -> np.ndarray:
    k = int(round((stop - start) / step))
    return np.round(start + step * np.arange(k + 1), 10)


@dataclass
class DecisionCurve:
    label: str
    thresholds: list[float]
    net_benefit: list[float]
    standardized_net_benefit: list[float]
    net_intervention_avoided: list[float | None]
    tp_rate: list[float]
    fp_rate: list[float]
    test_pos_rate: list[float]
    harm: float = 0.0

    def rows(self) -> list[dict]:
        return [{"threshold": t, "net_benefit": nb, "standardized_net_benefit": snb,
                 "net_intervention_avoided": nia}
                for t, nb, snb, nia in zip(self.thresholds, self.net_benefit,
                                           self.standardized_net_benefit,
                                           self.net_intervention_avoided)]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DCAResult:
    n: int
    prevalence: float
    prevalence_given: bool
    thresholds: list[float]
    models: dict[str, DecisionCurve]
    treat_all: DecisionCurve
    treat_none: DecisionCurve
    rule: str = "p >= threshold is positive"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _clean_thresholds(thresholds) -> np.ndarray:
    t = np.asarray(default_thresholds() if thresholds is None else thresholds, dtype=float)
    t = t[(t > 0) & (t < 1)]
    if t.size == 0:
        raise ValueError("no thresholds strictly between 0 and 1")
    return t


def _curve(label, y, p, t, prevalence, harm, nb_all, per) -> DecisionCurve:
    cases, controls = p[y == 1], p[y == 0]
    # mean(p >= t) over a sorted array via searchsorted: O((n + k) log n)
    cs, ds = np.sort(cases), np.sort(controls)
    sens = (cs.size - np.searchsorted(cs, t, side="left")) / cs.size
    fpf = (ds.size - np.searchsorted(ds, t, side="left")) / ds.size
    tp = sens * prevalence
    fp = fpf * (1 - prevalence)
    odds = t / (1 - t)
    nb = tp - fp * odds - harm
    if nb_all is None:
        nia = [None] * t.size
    else:
        nia = ((nb - nb_all) / odds * per).tolist()
    test_pos = (np.sum(p[None, :] >= t[:, None], axis=1) / p.size
                if p.size * t.size <= 5e7 else tp + fp)
    return DecisionCurve(label=label, thresholds=t.tolist(), net_benefit=nb.tolist(),
                         standardized_net_benefit=(nb / prevalence).tolist(),
                         net_intervention_avoided=nia, tp_rate=tp.tolist(),
                         fp_rate=fp.tolist(), test_pos_rate=np.asarray(test_pos).tolist(),
                         harm=float(harm))


def to_probability(y, score) -> np.ndarray:
    """dcurves ``as_probability``: fitted values of glm(y ~ score, binomial)."""
    y = as_binary(y)
    s = as_score(score, y.size)
    X = np.column_stack([np.ones(y.size), s])
    return expit(X @ logistic_fit(y, X).coef)


def decision_curves(y, models: dict, thresholds=None, prevalence: float | None = None,
                    harm: dict | None = None, per: float = 1.0,
                    as_probability: tuple | list = ()) -> DCAResult:
    """Net benefit of each model in ``models`` ({label: probabilities}) and of
    treat-all / treat-none over ``thresholds`` (see the module docstring)."""
    y = as_binary(y)
    t = _clean_thresholds(thresholds)
    if y.min() == y.max():
        raise ValueError("decision curves need both outcomes in the data")
    given = prevalence is not None
    if given:
        if not 0 < prevalence < 1:
            raise ValueError(f"prevalence must be in (0, 1), got {prevalence}")
        if as_probability:
            raise ValueError("cannot convert scores to risks in case-control data "
                             "(prevalence given)")
    prev = float(prevalence) if given else float(y.mean())
    harm = harm or {}
    ones = np.ones(y.size)
    treat_all = _curve("Treat All", y, ones, t, prev, 0.0, None, per)
    nb_all = np.asarray(treat_all.net_benefit)
    treat_all.net_intervention_avoided = [0.0] * t.size
    zeros = np.zeros(y.size)
    treat_none = _curve("Treat None", y, zeros, t, prev, 0.0, nb_all, per)
    treat_none.net_benefit = [0.0] * t.size
    treat_none.standardized_net_benefit = [0.0] * t.size
    curves = {}
    for label, p in models.items():
        p = as_score(p, y.size, label)
        if label in as_probability:
            p = to_probability(y, p)
        elif p.min() < 0 or p.max() > 1:
            raise ValueError(f"{label}: values must be probabilities in [0, 1] "
                             "(or list it in as_probability)")
        curves[label] = _curve(label, y, p, t, prev, float(harm.get(label, 0.0)), nb_all, per)
    return DCAResult(n=int(y.size), prevalence=prev, prevalence_given=given,
                     thresholds=t.tolist(), models=curves, treat_all=treat_all,
                     treat_none=treat_none)
