"""DCE kinetics inside the ROI: time-intensity curve type and early enhancement rate.

Paper 002 measured both with perfusion software in a ROI on the dynamic series:
EER = (SI_post - SI_pre) / SI_pre, SI_post "the signal intensity 2 min after
enhancement, or the highest peak within 2 min", and the curve type from the
delayed phase: persistent (type I, the signal keeps rising), plateau (type II,
it stays level after the initial rise), washout (type III, it falls after the
peak). Here, on a case's ``DCE_phases`` (phase 0 = pre-contrast) and its ROI:

* the curve is the **mean signal of the ROI** in every phase (the whole ROI, not
  the paper's small hot-spot ROI; the mask is resampled nearest-neighbour onto the
  phases' grid by physical coordinates when it lies on another grid);
* phase times: the ``DCE_phases.json`` sidecar (``{"phase_times_s": [...]}``,
  seconds, any origin; times are taken relative to the pre-contrast phase, i.e.
  the injection is taken to be at phase 0) when the case has one, else the **phase
  index** (the time spacing of a 4-D NIfTI is not used: tools write TR or 1 there);
* initial phase (BI-RADS: the first 2 minutes after injection): with times, the
  post-contrast phases at most :data:`INITIAL_WINDOW_S` (120 s) after phase 0 (the
  first post-contrast phase when none is that early), SI_post their highest
  signal; with the phase index only, phase 1;
* delayed phase: the last phase, when it comes after the initial one; its change
  from SI_post, (SI_last - SI_post) / SI_post, classifies the curve (BI-RADS
  delayed-phase descriptors with the usual +-10 % threshold of Kuhl et al. 1999):
  > +10 % persistent, < -10 % washout, otherwise plateau; with a single
  post-contrast phase there is no delayed phase and no curve type;
* the BI-RADS initial-phase rate is also given (enhancement at SI_post: < 50 %
  slow, 50-100 % medium, > 100 % fast).

:func:`time_intensity_curve` works on a curve (numbers), :func:`roi_kinetics` on an
Image and its mask, :func:`case_kinetics` on a cohort case, :func:`cohort_kinetics`
gives the cohort-format columns ``dce_curve`` / ``dce_eer`` of many cases (a case
without DCE_phases or ROI is missing there, and so imputed and flagged like any
missing predictor by the models).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from her2core.errors import CohortError, GeometryError, Her2Error, MaskError

log = logging.getLogger(__name__)

__all__ = ["INITIAL_WINDOW_S", "CURVE_THRESHOLD", "KineticCurve", "time_intensity_curve",
           "roi_signal", "roi_kinetics", "read_phase_times", "case_kinetics", "cohort_kinetics"]

#: BI-RADS initial phase: the first two minutes after the injection
INITIAL_WINDOW_S = 120.0
#: delayed-phase change (fraction of SI_post) beyond which the curve rises / washes out
CURVE_THRESHOLD = 0.10
#: BI-RADS initial-phase rate thresholds on the enhancement at SI_post
RATE_THRESHOLDS = (0.5, 1.0)


@dataclass
class KineticCurve:
    """Kinetics of one ROI (see the module doc for the definitions)."""
    signal: list[float]             # mean ROI signal of each phase (phase 0 = pre-contrast)
    times_s: list[float] | None     # phase times relative to phase 0 (None: phase index used)
    time_source: str                # "phase times (DCE_phases.json)" or "phase index"
    initial_phase: int              # the phase whose signal is SI_post
    delayed_phase: int | None       # the last phase, when after the initial phase
    eer: float                      # (SI_post - SI_pre) / SI_pre
    delayed_change: float | None    # (SI_delayed - SI_post) / SI_post
    curve: str | None               # persistent | plateau | washout (None: no delayed phase)
    initial_rate: str               # slow | medium | fast (BI-RADS initial phase)
    n_voxels: int = 0               # ROI voxels averaged

    def as_dict(self) -> dict:
        return asdict(self)


def time_intensity_curve(signal: Sequence[float], times_s: Sequence[float] | None = None, *,
                         window_s: float = INITIAL_WINDOW_S,
                         threshold: float = CURVE_THRESHOLD) -> KineticCurve:
    """EER and curve type of one time-intensity curve (phase 0 = pre-contrast).

    ``times_s``: the phases' times in seconds (any origin, increasing); None = phase index
    (initial phase = phase 1, delayed phase = the last phase).
    """
    si = np.asarray(signal, dtype=float).ravel()
    if si.size < 2:
        raise ValueError(f"a time-intensity curve needs a pre-contrast and at least one "
                         f"post-contrast phase, got {si.size} phase(s)")
    if not np.all(np.isfinite(si)):
        raise ValueError("the curve holds a non-finite signal value")
    pre = float(si[0])
    if pre <= 0:
        raise ValueError(f"the pre-contrast signal is {pre:g} (<= 0): no relative enhancement "
                         "can be computed (is phase 0 the pre-contrast phase, or a subtraction?)")
    if times_s is not None:
        t = np.asarray(times_s, dtype=float).ravel()
        if t.size != si.size:
            raise ValueError(f"{t.size} phase times for {si.size} phases")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise ValueError("phase times must be finite and strictly increasing")
        rel = t - t[0]
        early = [k for k in range(1, si.size) if rel[k] <= window_s + 1e-9] or [1]
        source = "phase times (DCE_phases.json)"
        times = [float(v) for v in rel]
    else:
        early = [1]
        source = "phase index"
        times = None
    k_post = max(early, key=lambda k: (si[k], -k))   # the peak of the initial phase
    post = float(si[k_post])
    eer = (post - pre) / pre
    last = si.size - 1
    delayed = last if last > max(early) else None
    change = curve = None
    if delayed is not None:
        change = (float(si[delayed]) - post) / post if post > 0 else math.nan
        if not math.isfinite(change):
            change = None
        elif change > threshold:
            curve = "persistent"
        elif change < -threshold:
            curve = "washout"
        else:
            curve = "plateau"
    lo, hi = RATE_THRESHOLDS
    rate = "slow" if eer < lo else ("medium" if eer <= hi else "fast")
    return KineticCurve(signal=[float(v) for v in si], times_s=times, time_source=source,
                        initial_phase=int(k_post), delayed_phase=delayed, eer=float(eer),
                        delayed_change=change, curve=curve, initial_rate=rate)


def roi_signal(phases, mask) -> tuple[np.ndarray, int]:
    """(mean signal of the ROI in each phase, ROI voxel count) of a 4-D Image and its mask."""
    from her2core.imaging.ops import resample_to_reference
    if not getattr(phases, "is_phases", False):
        raise Her2Error("DCE_phases is not a 4-D image of phases", file=getattr(phases, "source", None))
    if mask.ndim != 3:
        raise MaskError(f"the ROI is {mask.ndim}-D, DCE_phases needs a 3-D ROI", file=mask.source)
    grid = phases.spatial_template()
    if mask.grid_differences(grid):
        try:
            mask = resample_to_reference(mask, grid, is_mask=True)
        except GeometryError as err:
            raise err.with_context(file=mask.source) from None
        log.info("ROI resampled (nearest neighbour) onto the DCE_phases grid")
    roi = np.asarray(mask.array) > 0
    n = int(roi.sum())
    if n == 0:
        raise MaskError("the ROI has no voxel on the DCE_phases grid", file=mask.source,
                        hint="the mask belongs to another image or lies outside DCE_phases")
    arr = np.asarray(phases.array)
    sig = np.array([float(arr[k][roi].astype(np.float64).mean()) for k in range(arr.shape[0])])
    return sig, n


def roi_kinetics(phases, mask, times_s: Sequence[float] | None = None, **kwargs) -> KineticCurve:
    """:func:`time_intensity_curve` of the ROI's mean signal on a DCE_phases Image."""
    sig, n = roi_signal(phases, mask)
    if times_s is not None and len(times_s) != len(sig):
        raise CohortError(f"{len(times_s)} phase times for {len(sig)} phases",
                          file=getattr(phases, "source", None))
    try:
        kc = time_intensity_curve(sig, times_s, **kwargs)
    except ValueError as exc:
        raise Her2Error(f"no kinetics: {exc}", file=getattr(phases, "source", None)) from None
    kc.n_voxels = n
    return kc


def read_phase_times(path, *, n_phases: int | None = None, case_id: str | None = None) -> list[float]:
    """The phase times of a ``DCE_phases.json`` sidecar ({"phase_times_s": [...]}), checked."""
    path = Path(path)
    rel = f"cases/{case_id}/{path.name}" if case_id else path.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CohortError(f"not readable JSON: {exc}", case_id=case_id, file=rel) from None
    times = data.get("phase_times_s") if isinstance(data, dict) else None
    if not isinstance(times, list) or not times or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in times):
        raise CohortError("needs \"phase_times_s\": a list of numbers (seconds, one per phase)",
                          case_id=case_id, file=rel)
    t = [float(v) for v in times]
    if not all(math.isfinite(v) for v in t) or any(b <= a for a, b in zip(t, t[1:])):
        raise CohortError(f"phase_times_s {t} must be finite and strictly increasing",
                          case_id=case_id, file=rel)
    if n_phases is not None and len(t) != int(n_phases):
        raise CohortError(f"phase_times_s has {len(t)} time(s) but DCE_phases holds {n_phases} "
                          "phases", case_id=case_id, file=rel)
    return t


def case_kinetics(files, *, case_id: str | None = None) -> KineticCurve:
    """Kinetics of one cohort case (:class:`her2core.cohort.CaseFiles`): its DCE_phases inside
    its ROI (``mask``), with the sidecar's phase times when it has one."""
    from her2core.imaging import load_image
    cid = case_id or getattr(files, "case_id", None)
    if files.DCE_phases is None:
        raise CohortError("no DCE_phases: no time-intensity curve", case_id=cid)
    if files.mask is None:
        raise MaskError("no ROI (mask): no time-intensity curve", case_id=cid)
    phases = load_image(files.DCE_phases, sequence="DCE_phases", case_id=cid)
    mask = load_image(files.mask, sequence="mask", modality="SEG", expected_ndim=3, case_id=cid)
    times = None
    sidecar = getattr(files, "DCE_phases_times", None)
    if sidecar is not None:
        times = read_phase_times(sidecar, n_phases=phases.n_phases, case_id=cid)
    try:
        return roi_kinetics(phases, mask, times)
    except Her2Error as err:
        raise err.with_context(case_id=cid) from None


def cohort_kinetics(cohort, case_ids=None):
    """``dce_curve`` / ``dce_eer`` of cohort cases that have DCE_phases and a ROI.

    Returns (DataFrame indexed by case_id with columns dce_curve, dce_eer, dce_time_source:
    missing where a case has no DCE_phases or ROI or its curve fails, list of Her2Error for
    the cases that have DCE_phases but failed).
    """
    import pandas as pd
    ids = [str(c) for c in (cohort.case_ids if case_ids is None else case_ids)]
    rows, errors = {}, []
    n_done = 0
    for cid in ids:
        row = {"dce_curve": np.nan, "dce_eer": np.nan, "dce_time_source": np.nan}
        try:
            files = cohort.files(cid)
        except Her2Error as err:
            errors.append(err)
            rows[cid] = row
            continue
        if files.DCE_phases is not None:
            try:
                kc = case_kinetics(files, case_id=cid)
                row = {"dce_curve": kc.curve if kc.curve else np.nan, "dce_eer": kc.eer,
                       "dce_time_source": kc.time_source}
                n_done += 1
            except Her2Error as err:
                errors.append(err)
                log.warning("kinetics skipped: %s", err)
            except Exception as exc:  # noqa: BLE001 - one odd case must not stop the rest
                err = Her2Error(f"kinetics failed: {type(exc).__name__}: {exc}", case_id=cid,
                                file=f"cases/{cid}/")
                errors.append(err)
                log.warning("%s", err)
        rows[cid] = row
    df = pd.DataFrame.from_dict(rows, orient="index",
                                columns=["dce_curve", "dce_eer", "dce_time_source"])
    df.index.name = "case_id"
    df["dce_eer"] = df["dce_eer"].astype(float)
    df["dce_curve"] = df["dce_curve"].astype(object)
    log.info("DCE kinetics computed for %d of %d case(s)", n_done, len(ids))
    return df, errors
