"""Nomogram scales from a fitted logistic model, as R rms ``nomogram``.

For a model lp = b0 + sum_j f_j(x_j), where f_j is b_j * x_j for a continuous
predictor and the dummy coefficient of the level (0 for the reference level)
for a categorical one:
* each predictor's contribution is shifted so that its smallest value over
  its axis (the training range for a continuous predictor, all levels for a
  categorical one) is 0;
* the predictor with the widest contribution range R_max spans 0..max_points
  (100), so points_j(x) = (f_j(x) - min f_j) * 100 / R_max;
* total points T = sum_j points_j, and lp = b0 + sum_j min f_j + T * R_max / 100,
  probability = 1 / (1 + exp(-lp)).
These are exactly rms's scales (tests/reference/make_rms_nomogram.R).

A patient whose continuous value lies outside the training range of its
axis gets extrapolated points (possibly < 0 or > 100) and the predictor is
listed in ``out_of_range``; an unknown category raises ValueError.

Everything here is plain dataclasses that round-trip through JSON
(``to_dict`` / ``from_dict``) so that model bundles can store them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class NomogramVariable:
    name: str
    kind: str  # "continuous" or "categorical"
    coef: float = 0.0  # continuous: coefficient per unit
    low: float | None = None  # continuous: axis (training) range
    high: float | None = None
    column: str | None = None  # continuous: model column name
    levels: list[str] = field(default_factory=list)  # categorical: level names
    level_coefs: list[float] = field(default_factory=list)  # 0 for the reference
    level_columns: list[str | None] = field(default_factory=list)  # dummy column or None
    #: continuous 0/1 predictor (drawn as two labelled ticks, no / yes). None: not
    #: recorded (older bundles): a cohort-format binary field on a 0..1 axis counts.
    binary: bool | None = None

    @property
    def is_binary(self) -> bool:
        if self.kind != "continuous":
            return False
        if self.binary is not None:
            return bool(self.binary)
        from her2core.cohort import BINARY_COLUMNS
        return self.low == 0 and self.high == 1 and self.name in BINARY_COLUMNS

    def contribution(self, value) -> float:
        if self.kind == "continuous":
            return self.coef * float(value)
        key = str(value)
        if key not in self.levels:
            raise ValueError(f"{self.name}: unknown category {value!r}; "
                             f"expected one of {self.levels}")
        return self.level_coefs[self.levels.index(key)]

    def contribution_range(self) -> tuple[float, float]:
        if self.kind == "continuous":
            a, b = self.coef * self.low, self.coef * self.high
            return min(a, b), max(a, b)
        return min(self.level_coefs), max(self.level_coefs)


@dataclass
class Nomogram:
    intercept: float
    variables: list[NomogramVariable]
    max_points: float = 100.0
    outcome: str = "probability of HER2-positive"

    # ---- construction ---------------------------------------------------
    @classmethod
    def from_coefficients(cls, intercept: float, coefs: dict[str, float],
                          ranges: dict[str, tuple[float, float]] | None = None,
                          categorical: dict[str, dict[str, str | None]] | None = None,
                          max_points: float = 100.0, binary=None, **kw) -> "Nomogram":
        """Build from model coefficients.

        ``coefs``: {model column: coefficient}. ``categorical``: {variable:
        {level: dummy column in ``coefs``, or None for the reference level}};
        a dummy column absent from ``coefs`` counts as coefficient 0.
        Every column of ``coefs`` not used by a categorical variable is a
        continuous predictor and needs ``ranges[column] = (low, high)``; those named in
        ``binary`` are 0/1 predictors (their axis is two ticks, no and yes)."""
        ranges = dict(ranges or {})
        binary = None if binary is None else set(binary)
        categorical = dict(categorical or {})
        cat_vars: dict[str, NomogramVariable] = {}
        col_to_var: dict[str, str] = {}
        for var, levels in categorical.items():
            if not levels:
                raise ValueError(f"categorical variable {var} has no levels")
            names, cfs, cols = [], [], []
            for level, col in levels.items():
                names.append(str(level))
                cols.append(col)
                cfs.append(float(coefs.get(col, 0.0)) if col is not None else 0.0)
                if col is not None:
                    col_to_var[col] = var
            cat_vars[var] = NomogramVariable(name=var, kind="categorical", levels=names,
                                             level_coefs=cfs, level_columns=cols)
        # predictors in the order of ``coefs``; a categorical variable where its
        # first dummy column appears
        variables: list[NomogramVariable] = []
        placed: set[str] = set()
        for col, b in coefs.items():
            if col in col_to_var:
                var = col_to_var[col]
                if var not in placed:
                    variables.append(cat_vars[var])
                    placed.add(var)
                continue
            if col not in ranges:
                raise ValueError(f"continuous predictor {col} needs a range (low, high)")
            lo, hi = (float(v) for v in ranges[col])
            if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
                raise ValueError(f"range of {col} must be finite with low <= high, got {lo}, {hi}")
            variables.append(NomogramVariable(name=col, kind="continuous", coef=float(b),
                                              low=lo, high=hi, column=col,
                                              binary=None if binary is None else col in binary))
        variables += [v for k, v in cat_vars.items() if k not in placed]
        if not variables:
            raise ValueError("a nomogram needs at least one predictor")
        return cls(intercept=float(intercept), variables=variables,
                   max_points=float(max_points), **kw)

    @classmethod
    def from_sklearn(cls, model, feature_names, X_train,
                     categorical: dict[str, dict[str, str | None]] | None = None,
                     **kw) -> "Nomogram":
        """Build from a fitted ``LogisticRegression`` or a Pipeline whose steps
        are linear scalers (StandardScaler / MinMaxScaler / MaxAbsScaler /
        RobustScaler / 'passthrough') followed by a LogisticRegression. The
        scalers are folded into the coefficients so that the axes are in the
        original units. Ranges come from ``X_train`` (min, max per column)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        feature_names = [str(f) for f in feature_names]
        steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
        lr = steps[-1][1]
        if not isinstance(lr, LogisticRegression):
            raise ValueError("the last step must be a fitted LogisticRegression, got "
                             f"{type(lr).__name__}")
        coef = np.asarray(lr.coef_, dtype=float)
        if coef.shape[0] != 1:
            raise ValueError("only binary logistic models can be drawn as a nomogram")
        w = coef[0].copy()
        b0 = float(np.ravel(lr.intercept_)[0])
        # fold linear transforms x' = (x - shift) / scale, last to first
        for name, step in reversed(steps[:-1]):
            shift, scale = _linear_params(step, len(w), name)
            b0 -= float(np.sum(w * shift / scale))
            w = w / scale
        if len(w) != len(feature_names):
            raise ValueError(f"{len(feature_names)} feature names for {len(w)} coefficients")
        Xa = np.asarray(X_train[feature_names] if hasattr(X_train, "columns") else X_train,
                        dtype=float)
        ranges = {f: (float(np.nanmin(Xa[:, i])), float(np.nanmax(Xa[:, i])))
                  for i, f in enumerate(feature_names)}
        return cls.from_coefficients(b0, dict(zip(feature_names, w.tolist())), ranges,
                                     categorical, **kw)

    # ---- scales ----------------------------------------------------------
    @property
    def _ranges(self) -> list[tuple[float, float]]:
        return [v.contribution_range() for v in self.variables]

    @property
    def lp_per_point(self) -> float:
        """Linear-predictor units per point (R_max / max_points)."""
        rmax = max(hi - lo for lo, hi in self._ranges)
        if rmax <= 0:
            raise ValueError("every coefficient is zero: the nomogram has no scale")
        return rmax / self.max_points

    @property
    def lp_at_zero_points(self) -> float:
        return self.intercept + sum(lo for lo, _ in self._ranges)

    def variable(self, name: str) -> NomogramVariable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)

    def points_for(self, name: str, value) -> float:
        v = self.variable(name)
        lo = v.contribution_range()[0]
        return (v.contribution(value) - lo) / self.lp_per_point

    def max_total_points(self) -> float:
        return sum(hi - lo for lo, hi in self._ranges) / self.lp_per_point

    def total_points_to_lp(self, points):
        return self.lp_at_zero_points + np.asarray(points, dtype=float) * self.lp_per_point

    def total_points_to_probability(self, points):
        """Probability for a total number of points (scalar or array)."""
        p = 1.0 / (1.0 + np.exp(-self.total_points_to_lp(points)))
        return float(p) if np.ndim(p) == 0 else p

    def probability_to_total_points(self, p):
        p = np.asarray(p, dtype=float)
        lp = np.log(p / (1 - p))
        out = (lp - self.lp_at_zero_points) / self.lp_per_point
        return float(out) if np.ndim(out) == 0 else out

    def axis(self, name: str, n_ticks: int = 6) -> list[dict]:
        """[{"value", "points"}] ticks for drawing one predictor's axis: the levels of a
        categorical predictor, "no" / "yes" (at 0 / 1) of a binary one, round values over
        the training range of a continuous one."""
        v = self.variable(name)
        if v.kind == "categorical":
            return [{"value": lev, "points": self.points_for(name, lev)} for lev in v.levels]
        if v.is_binary:
            return [{"value": lab, "points": self.points_for(name, x)}
                    for lab, x in (("no", 0.0), ("yes", 1.0))]
        vals = _nice_ticks(v.low, v.high, n_ticks)
        return [{"value": x, "points": self.points_for(name, x)} for x in vals]

    def probability_axis(self, probabilities=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)) -> list[dict]:
        tmax = self.max_total_points()
        out = []
        for p in probabilities:
            t = self.probability_to_total_points(p)
            if 0 <= t <= tmax:
                out.append({"probability": float(p), "total_points": t})
        return out

    # ---- patients ----------------------------------------------------------
    def patient_points(self, row) -> dict:
        """Points per predictor, total points, linear predictor and probability
        of one patient. ``row`` is a mapping (dict / pandas Series) with the
        variable names (a categorical variable by its level, or by its dummy
        columns set to 0/1). Predictors outside the axis range are listed in
        ``out_of_range`` (their points are extrapolated)."""
        row = dict(row.items()) if hasattr(row, "items") else dict(row)
        pts: dict[str, float] = {}
        out_of_range: list[str] = []
        for v in self.variables:
            if v.kind == "continuous":
                key = v.column or v.name
                if key not in row or row[key] is None or _isnan(row[key]):
                    raise ValueError(f"patient has no value for {key}")
                x = float(row[key])
                if x < v.low or x > v.high:
                    out_of_range.append(v.name)
                pts[v.name] = self.points_for(v.name, x)
            else:
                level = row.get(v.name)
                if level is None or _isnan(level):
                    level = _level_from_dummies(v, row)
                pts[v.name] = self.points_for(v.name, _match_level(v, level))
        total = float(sum(pts.values()))
        lp = float(self.total_points_to_lp(total))
        return {"points": pts, "total_points": total, "linear_predictor": lp,
                "probability": float(1 / (1 + math.exp(-lp))), "out_of_range": out_of_range}

    # ---- JSON ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Nomogram":
        d = dict(d)
        d["variables"] = [NomogramVariable(**v) for v in d["variables"]]
        return cls(**d)


def _isnan(x) -> bool:
    try:
        return isinstance(x, float) and math.isnan(x)
    except TypeError:
        return False


def _match_level(v: NomogramVariable, level) -> str:
    if str(level) in v.levels:
        return str(level)
    # 1 vs "1", 1.0 vs "1"
    try:
        f = float(level)
        for lev in v.levels:
            try:
                if float(lev) == f:
                    return lev
            except ValueError:
                continue
    except (TypeError, ValueError):
        pass
    raise ValueError(f"{v.name}: unknown category {level!r}; expected one of {v.levels}")


def _level_from_dummies(v: NomogramVariable, row: dict) -> str:
    on = [lev for lev, col in zip(v.levels, v.level_columns)
          if col is not None and col in row and float(row[col]) == 1.0]
    if len(on) > 1:
        raise ValueError(f"{v.name}: several dummy columns set ({on})")
    if on:
        return on[0]
    refs = [lev for lev, col in zip(v.levels, v.level_columns) if col is None]
    present = [col for col in v.level_columns if col is not None and col in row]
    if refs and present:
        return refs[0]
    raise ValueError(f"patient has no value for {v.name}")


def _linear_params(step, k: int, name: str):
    """(shift, scale) with transform(x) = (x - shift) / scale."""
    if step is None or step == "passthrough":
        return np.zeros(k), np.ones(k)
    cls = type(step).__name__
    if cls == "StandardScaler":
        shift = step.mean_ if step.with_mean else np.zeros(k)
        scale = step.scale_ if step.with_std else np.ones(k)
    elif cls == "MinMaxScaler":
        # x' = x * scale_ + min_  ->  shift = -min_/scale_, scale = 1/scale_
        shift, scale = -step.min_ / step.scale_, 1 / step.scale_
    elif cls == "MaxAbsScaler":
        shift, scale = np.zeros(k), step.scale_
    elif cls == "RobustScaler":
        shift = step.center_ if step.with_centering else np.zeros(k)
        scale = step.scale_ if step.with_scaling else np.ones(k)
    else:
        raise ValueError(f"pipeline step {name!r} ({cls}) is not a linear scaler: a nomogram "
                         "needs a logistic model on the original predictors")
    shift = np.asarray(shift, dtype=float)
    scale = np.asarray(scale, dtype=float)
    scale = np.where(scale == 0, 1.0, scale)
    return shift, scale


def _nice_ticks(lo: float, hi: float, n: int) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    inner = [float(round(t, 12)) for t in np.arange(start, hi + step * 1e-9, step)
             if lo + 0.3 * step < t < hi - 0.3 * step]
    return [float(lo)] + inner + [float(hi)]
