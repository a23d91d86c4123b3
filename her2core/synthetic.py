"""Synthetic cohorts with a known ground truth, in the layout of cohort-format.md.

Every case is drawn from a latent HER2 status (and, among HER2-negatives, a
latent HER2-low / HER2-zero status). Clinical columns are drawn with the
HER2-dependent rates reported in the seed papers; image phenotypes (size, rim
enhancement, internal heterogeneity, peritumoral T2 halo = oedema, margin
irregularity, DCE kinetics) follow the clinical draws, so images and table carry
the same, known signal.

Rates (positive vs negative) and their sources:

- paper 000 Table 2/3: age 54.7 +- 10.9 vs 55.1 +- 11.2; size 27 +- 11 vs
  25 +- 10 mm; washout 40.4 % vs 27.8 %; peritumoral oedema 77.0 % vs 65.5 %;
  microcalcification 60.7 % vs 42.2 %; abnormal axillary nodes 63.0 % vs 44.0 %;
  irregular shape 84.0 % vs 80.8 %.
- paper 002 Table 1: ER+ 46 % vs 80 %; PR+ 39 % vs 74 %; Ki-67 >= 20 % 89 % vs
  66 %; multifocal 54 % vs 30 %; grade I/II/III 2.3/57.0/40.6 % vs 6.4/63.9/29.7 %;
  intratumoral oedema 40.6 % vs 28.2 %; NME 28.9 % vs 12.8 %; ADCmin 1.00 vs 0.96;
  EER 0.62 vs 0.64; rim enhancement 4.9 % in negatives (positives not legible:
  12 % assumed here).
- paper 002 Table 2 (HER2-low vs HER2-zero): ER+ 82.9 % vs 70.4 %; PR+ 76.7 % vs
  66.4 %; Ki-67 high 63.4 % vs 75.2 %; multifocal 35.5 % vs 22.4 %; grade
  7.3/64.8/27.9 vs 2.4/61.6/36.0 %; irregular shape 76.4 % vs 56.8 %;
  EER 0.65 vs 0.60; ADCmin 0.94 vs 1.00. HER2-low is 75 % of HER2-negatives.
- paper 002 Tables 1 and 2, the further predictors (drawn after every column above,
  so a seed gives the other columns the same values as before they existed): N
  category, distribution quadrant, T2 signal, FGT, BPE, mass margin and accompanying
  signs with each group's rates (``_CAT_002``, ``_BIN_002``); lesion_number is the
  multifocal draw, internal_enhancement is rim where rim_enhancement is 1, else
  homogeneous with Table 1 / 2's rate. The DCE curve type and early enhancement rate
  computed from the images (dce_curve, dce_eer) follow the drawn kinetics and eer
  (each case writes DCE_phases.json with the phases' times); the synthetic lesions
  enhance more than paper 002's (dce_eer about 4 x eer), with the same group ratio.

``signal`` scales every positive/negative (and low/zero) difference around its
midpoint: 1 reproduces the papers, 0 removes all signal, 2 doubles it;
``low_signal`` (default ``signal``) scales the low/zero differences on their own, and
``low_fraction`` sets the share of HER2-low among the negatives.
``random_labels=True`` writes labels drawn independently of everything else
(the null test: no model should beat AUC 0.5 on such a cohort).

Images are written with SimpleITK directly (int16 MRI, uint8 PNG ultrasound).
Geometry differs per centre (spacing, direction, scanner gain/offset) so that
multi-centre handling is exercised; anatomy (chest wall posterior, i.e. +y in
LPS) is placed in physical space, so a flipped direction flips the array.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

__all__ = [
    "Centre", "DEFAULT_CENTRES", "SynthCase", "make_cohort", "synth_case",
    "clinical_rates", "draw_clinical",
]


# ---------------------------------------------------------------- centres
@dataclass(frozen=True)
class Centre:
    """Acquisition centre: grid and scanner differences."""
    name: str
    spacing: tuple[float, float, float]          # (x, y, z) mm of the DCE/T1 grid
    direction: tuple[float, ...]                 # row-major 3x3, SimpleITK convention
    gain: float = 1.0                            # MRI intensity scale
    offset: float = 0.0                          # MRI intensity offset
    t2_inplane_factor: float = 1.0               # T2 spacing / DCE spacing in-plane (own grid if != 1)
    us_gain: float = 1.0
    us_fov_mm: float = 60.0                      # field of view of the US image (PNG stores no spacing)


DEFAULT_CENTRES: tuple[Centre, ...] = (
    Centre("A", (1.6, 1.6, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), gain=1.0, offset=0.0),      # LPS axial
    Centre("B", (1.9, 1.9, 3.5), (-1, 0, 0, 0, -1, 0, 0, 0, 1), gain=1.45, offset=120.0,  # RAS (flipped)
           t2_inplane_factor=1.25, us_gain=0.8),
    Centre("C", (1.75, 1.75, 2.5), (0, -1, 0, 1, 0, 0, 0, 0, 1), gain=0.7, offset=-40.0,    # rotated in-plane (PRS)
           us_gain=1.15),
)


# ---------------------------------------------------------------- clinical rates
#: (negative, positive) probabilities; *_low/_zero refine the negatives.
_BINARY = {
    "er": (0.80, 0.46), "pr": (0.74, 0.39), "ki67_high": (0.66, 0.89),
    "multifocal": (0.30, 0.54), "aln_abnormal": (0.44, 0.63),
    "washout": (0.278, 0.404), "peritumoral_edema": (0.655, 0.77),
    "intratumoral_edema": (0.282, 0.406), "microcalcification": (0.422, 0.607),
    "nme": (0.128, 0.289), "irregular": (0.808, 0.84), "rim_enhancement": (0.049, 0.12),
}
#: HER2-negatives: (zero, low) probabilities; the mixture (25 % zero) matches the negatives above.
_LOW_ZERO = {
    "er": (0.704, 0.829), "pr": (0.664, 0.767), "ki67_high": (0.752, 0.634),
    "multifocal": (0.224, 0.355), "irregular": (0.70, 0.844),
}
_GRADE = {"pos": (0.023, 0.570, 0.406), "low": (0.073, 0.648, 0.279),
          "zero": (0.024, 0.616, 0.360)}
_CONT = {  # (negative mean, positive mean, sd)
    "age": (55.1, 54.7, 11.0), "size": (25.0, 27.0, 10.0), "adc": (0.96, 1.00, 0.16),
    "eer": (0.64, 0.62, 0.14),
}
_CONT_LOW_ZERO = {"adc": (1.00, 0.94), "eer": (0.60, 0.65)}  # (zero, low)
LOW_FRACTION = 0.75   # HER2-low among HER2-negatives (002: 369 / 494)
POS_3PLUS = 0.75      # IHC 3+ among positives, the rest 2+ amplified
LOW_1PLUS = 0.6       # IHC 1+ among HER2-low, the rest 2+ not amplified


def _shift(p_neg: float, p_pos: float, signal: float) -> tuple[float, float]:
    mid = 0.5 * (p_neg + p_pos)
    lo, hi = mid + signal * (p_neg - mid), mid + signal * (p_pos - mid)
    return float(np.clip(lo, 0.005, 0.995)), float(np.clip(hi, 0.005, 0.995))


def clinical_rates(group: str, signal: float = 1.0, low_signal: float | None = None) -> dict[str, float]:
    """Probability of each binary finding for group "pos", "low" or "zero".

    ``low_signal`` scales the HER2-low vs HER2-zero differences (default ``signal``)."""
    ls = signal if low_signal is None else low_signal
    out = {}
    for k, (pn, pp) in _BINARY.items():
        neg, pos = _shift(pn, pp, signal)
        if group == "pos":
            out[k] = pos
        else:
            if k in _LOW_ZERO:
                pz, pl = _LOW_ZERO[k]
                # low/zero pair shifted so that its mixture equals the negative rate
                z, l_ = _shift(pz, pl, ls)
                base = neg - ((1 - LOW_FRACTION) * z + LOW_FRACTION * l_)
                out[k] = float(np.clip((l_ if group == "low" else z) + base, 0.005, 0.995))
            else:
                out[k] = neg
    return out


def _group_mean(key: str, group: str, signal: float, low_signal: float | None = None) -> float:
    ls = signal if low_signal is None else low_signal
    neg, pos, _ = _CONT[key]
    neg_s, pos_s = 0.5 * (neg + pos) + signal * (neg - 0.5 * (neg + pos)), \
        0.5 * (neg + pos) + signal * (pos - 0.5 * (neg + pos))
    if group == "pos":
        return pos_s
    if key in _CONT_LOW_ZERO:
        z, l_ = _CONT_LOW_ZERO[key]
        mid = 0.5 * (z + l_)
        z_s, l_s = mid + ls * (z - mid), mid + ls * (l_ - mid)
        mix = (1 - LOW_FRACTION) * z_s + LOW_FRACTION * l_s
        return neg_s - mix + (l_s if group == "low" else z_s)
    return neg_s


def draw_clinical(rng: np.random.Generator, group: str, signal: float = 1.0,
                  low_signal: float | None = None) -> dict[str, Any]:
    """One clinical row (without case_id / labels / centre) for latent group pos|low|zero.

    ``low_signal`` scales the HER2-low vs HER2-zero differences (default ``signal``).
    Paper 002's further predictors (n_category ... internal_enhancement) are drawn after
    every other column, so the same rng gives the other columns the values it gave
    before they existed."""
    ls = signal if low_signal is None else low_signal
    r = clinical_rates(group, signal, ls)
    b = {k: int(rng.random() < p) for k, p in r.items()}
    age = float(np.clip(rng.normal(_group_mean("age", group, signal), _CONT["age"][2]), 25, 90))
    g = np.asarray(_GRADE[group])
    gmid = np.asarray(_GRADE["low"]) * LOW_FRACTION + np.asarray(_GRADE["zero"]) * (1 - LOW_FRACTION)
    g = np.clip(gmid + (signal if group == "pos" else ls) * (g - gmid), 1e-3, None)
    grade = int(rng.choice([1, 2, 3], p=g / g.sum()))
    size = float(np.clip(rng.normal(_group_mean("size", group, signal), _CONT["size"][2]), 6, 70))
    ki67 = float(rng.uniform(20, 90) if b["ki67_high"] else rng.uniform(1, 19.5))
    if b["washout"]:
        curve = "washout"
    else:
        curve = "plateau" if rng.random() < 0.55 else "persistent"
    aln_d = float(rng.normal(16, 4) if b["aln_abnormal"] else rng.normal(8, 2))
    row = {
        "age": round(age), "menopausal": int(rng.random() < 1 / (1 + np.exp(-(age - 50) / 3))),
        "er": b["er"], "pr": b["pr"], "ki67": round(ki67, 1), "grade": grade,
        "tumor_size_mm": round(size, 1), "multifocal": b["multifocal"],
        "aln_abnormal": b["aln_abnormal"], "aln_diameter_mm": round(max(aln_d, 3.0), 1),
        "enhancement_curve": curve, "peritumoral_edema": b["peritumoral_edema"],
        "intratumoral_edema": b["intratumoral_edema"], "rim_enhancement": b["rim_enhancement"],
        "microcalcification": b["microcalcification"], "nme": b["nme"],
        "mass_shape": "irregular" if b["irregular"] else "round_oval",
        "adc_min": round(float(np.clip(rng.normal(_group_mean("adc", group, signal, ls), _CONT["adc"][2]), 0.4, 2.5)), 3),
        "eer": round(float(np.clip(rng.normal(_group_mean("eer", group, signal, ls), _CONT["eer"][2]), 0.1, 1.5)), 3),
    }
    row.update(_draw_002(rng, group, signal, ls, b))
    return row


# ---------------------------------------------------------------- paper 002's further predictors
#: paper 002 Table 1 (HER2-positive) and Table 2 (HER2-low, HER2-zero): level probabilities,
#: in the order of the cohort schema's levels. Where the paper groups BI-RADS levels
#: (FGT fatty-or-scattered, BPE minimal-or-mild, margin irregular-or-spiculated) the
#: group's share is split by the fixed fractions of _SPLIT (no HER2 effect inside a group).
_CAT_002 = {
    "n_category": {"pos": (61.72, 35.94, 2.34, 0.0), "low": (55.8, 37.9, 4.1, 2.2),
                   "zero": (64.8, 30.4, 2.4, 2.4)},
    # upper_left, lower_left, upper_right, lower_right, central_left, central_right
    "quadrant": {"pos": (19.5, 12.5, 33.6, 12.5, 12.5, 9.4),
                 "low": (30.6, 11.1, 27.9, 9.0, 11.1, 10.3),
                 "zero": (38.4, 11.2, 28.8, 11.2, 4.8, 5.6)},
    "t2_signal": {"pos": (12.5, 78.9, 6.3, 2.3), "low": (12.2, 75.3, 9.5, 3.0),
                  "zero": (9.6, 77.6, 10.4, 2.4)},
    "fgt": {"pos": (14.1, 85.9), "low": (11.7, 88.3), "zero": (16.0, 84.0)},
    "bpe": {"pos": (89.1, 10.9), "low": (87.0, 13.0), "zero": (88.8, 11.2)},
    "mass_margin": {"pos": (0.8, 99.2), "low": (1.1, 98.9), "zero": (4.8, 95.2)},
}
#: grouped levels -> shares of each BI-RADS level inside its group (assumed)
_SPLIT = {"fgt": ((0.2, 0.8), (0.8, 0.2)), "bpe": ((0.55, 0.45), (0.7, 0.3)),
          "mass_margin": ((1.0,), (0.7, 0.3))}
#: 0/1 and pattern rates: accompanying signs (Table 1: 43.0 % vs 22.7 %; Table 2: 28.5 % vs
#: 18.4 %); homogeneous internal enhancement among non-rim masses (Table 1: 0.8 / 96.9 %;
#: Table 2: 2.98 / 96.75 % vs 5.6 / 92.0 %)
_BIN_002 = {"accompanying_signs": {"pos": 0.430, "low": 0.285, "zero": 0.184},
            "homogeneous": {"pos": 0.008, "low": 0.031, "zero": 0.061}}


def _scaled(table: dict, group: str, signal: float, low_signal: float) -> np.ndarray:
    """A group's probabilities with the positive / negative differences scaled by ``signal``
    and the low / zero differences by ``low_signal`` (around their midpoints; the negatives'
    mixture shifts as a whole), clipped and normalised."""
    pos, low, zero = (np.asarray(table[g], float) for g in ("pos", "low", "zero"))
    tot = lambda v: v / v.sum() if v.ndim else v  # noqa: E731
    pos, low, zero = tot(pos), tot(low), tot(zero)
    neg = LOW_FRACTION * low + (1 - LOW_FRACTION) * zero
    mid = 0.5 * (pos + neg)
    if group == "pos":
        p = mid + signal * (pos - mid)
    else:
        shift = (mid + signal * (neg - mid)) - neg
        mid_lz = 0.5 * (low + zero)
        p = mid_lz + low_signal * ((low if group == "low" else zero) - mid_lz) + shift
    p = np.clip(p, 1e-3, 0.999)
    return p / p.sum() if p.ndim else p


def _draw_002(rng, group: str, signal: float, low_signal: float, b: dict) -> dict[str, Any]:
    from her2core.cohort import CLINICAL_BY_NAME
    out: dict[str, Any] = {}
    for name in ("n_category", "quadrant", "t2_signal", "fgt", "bpe", "mass_margin"):
        p = _scaled(_CAT_002[name], group, signal, low_signal)
        if name in _SPLIT:   # grouped levels -> BI-RADS levels
            p = np.concatenate([share * np.asarray(sub) for share, sub in zip(p, _SPLIT[name])])
        levels = CLINICAL_BY_NAME[name].levels
        out[name] = levels[int(rng.choice(len(levels), p=p / p.sum()))]
    acc = _scaled({g: np.float64(v) for g, v in _BIN_002["accompanying_signs"].items()},
                  group, signal, low_signal)
    out["accompanying_signs"] = int(rng.random() < float(acc))
    hom = _scaled({g: np.float64(v) for g, v in _BIN_002["homogeneous"].items()}, group, signal,
                  low_signal)
    homogeneous = rng.random() < float(hom)
    out["lesion_number"] = "multiple" if b["multifocal"] else "single"
    out["internal_enhancement"] = "rim" if b["rim_enhancement"] else \
        ("homogeneous" if homogeneous else "heterogeneous")
    order = [f.name for f in CLINICAL_BY_NAME.values() if f.name in out]   # the schema's order
    return {k: out[k] for k in order}


# ---------------------------------------------------------------- phenotypes
@dataclass
class Phenotype:
    """True image phenotype of one tumour (0..1 scales unless stated)."""
    size_mm: float = 25.0
    rim: float = 0.1             # rim enhancement strength
    edema: float = 0.1           # peritumoral T2 halo
    heterogeneity: float = 0.4   # internal enhancement heterogeneity
    irregularity: float = 0.3    # margin irregularity
    kinetics: str = "plateau"    # persistent | plateau | washout
    eer: float = 0.6             # early enhancement rate
    calcification: int = 0

    def clipped(self) -> "Phenotype":
        c = lambda v: float(np.clip(v, 0.0, 1.0))  # noqa: E731
        kin = self.kinetics if self.kinetics in _KINETICS else "plateau"
        return Phenotype(float(np.clip(self.size_mm, 3.0, 80.0)), c(self.rim), c(self.edema),
                         c(self.heterogeneity), c(self.irregularity), kin,
                         float(np.clip(self.eer, 0.05, 2.0)), int(bool(self.calcification)))


_KINETIC_TIMES_S = (0.0, 90.0, 180.0, 360.0)   # the phases of _KINETICS (DCE_phases.json)
_KINETICS = {  # relative enhancement at (pre, 1.5 min, 3 min, 6 min)
    "persistent": (0.0, 0.60, 0.85, 1.00),
    "plateau": (0.0, 0.92, 1.00, 0.97),
    "washout": (0.0, 1.00, 0.82, 0.65),
}


def phenotype_from_row(row: dict, group: str, rng: np.random.Generator, signal: float,
                       low_signal: float | None = None) -> Phenotype:
    """Continuous phenotype consistent with the clinical row (plus a weak direct group effect;
    ``low_signal``, default ``signal``, scales it for HER2-low / HER2-zero)."""
    s = signal if group == "pos" or low_signal is None else low_signal
    het_mean = {"pos": 0.40, "low": 0.52, "zero": 0.48}[group]
    het_mean = 0.48 + s * (het_mean - 0.48)
    return Phenotype(
        size_mm=row["tumor_size_mm"],
        rim=rng.normal(0.75 if row["rim_enhancement"] else 0.12, 0.08),
        edema=rng.normal(0.75 if row["peritumoral_edema"] else 0.12, 0.08),
        heterogeneity=rng.normal(het_mean, 0.1),
        irregularity=rng.normal(0.65 if row["mass_shape"] == "irregular" else 0.15, 0.08),
        kinetics=row["enhancement_curve"], eer=row["eer"],
        calcification=row["microcalcification"],
    ).clipped()


# ---------------------------------------------------------------- drawing helpers
def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    sd = n.std()
    return n / sd if sd > 0 else n


def _harmonics(rng, k: int = 5) -> list[tuple[float, float, float, float]]:
    return [(rng.normal(0, 1) / (i + 1) ** 0.5, rng.uniform(0, 2 * np.pi), i + 2,
             rng.uniform(0, 2 * np.pi)) for i in range(k)]


def _radius_field(theta, phi, harm, irregularity) -> np.ndarray:
    r = np.ones_like(theta)
    for amp, ph, freq, ph2 in harm:
        r = r + 0.30 * irregularity * amp * np.sin(freq * theta + ph) * np.cos((freq - 1) * phi + ph2)
    # spiculation: sharp high-frequency bumps grow with irregularity
    r = r + 0.35 * irregularity ** 2 * np.abs(np.sin(7 * theta + harm[0][1])) ** 8
    return np.clip(r, 0.45, 1.8)


def _geometry(centre: Centre, shape_xyz: tuple[int, int, int], spacing=None):
    sx, sy, sz = spacing or centre.spacing
    nx, ny, nz = shape_xyz
    d = np.asarray(centre.direction, float).reshape(3, 3)
    # origin so that the FOV centre sits at physical (0, 0, 0)
    half = np.array([(nx - 1) * sx, (ny - 1) * sy, (nz - 1) * sz]) / 2
    origin = -d @ half
    return (sx, sy, sz), tuple(float(v) for v in origin), d


def _physical_grid(shape_xyz, spacing, origin, d) -> np.ndarray:
    nx, ny, nz = shape_xyz
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i * spacing[0], j * spacing[1], k * spacing[2]], axis=-1)  # (z,y,x,3)
    return idx @ d.T + np.asarray(origin)  # physical LPS, (z, y, x, 3)


def _tumour_field(pts, centre_mm, radius_mm, harm, irregularity, squash=(1.0, 0.85, 0.75)):
    """Signed normalised distance: <1 inside the tumour, 1 at the border."""
    rel = (pts - np.asarray(centre_mm)) / np.asarray(squash)
    rho = np.linalg.norm(rel, axis=-1) + 1e-9
    theta = np.arctan2(rel[..., 1], rel[..., 0])
    phi = np.arccos(np.clip(rel[..., 2] / rho, -1, 1))
    return rho / (radius_mm * _radius_field(theta, phi, harm, irregularity))


def _sitk(arr: np.ndarray, spacing, origin, d: np.ndarray, *, dtype=None):
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(arr.astype(dtype) if dtype is not None else arr)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(float(v) for v in d.ravel()))
    return img


def _sitk_4d(arr_tzyx: np.ndarray, spacing, origin, d: np.ndarray, dt_s: float = 90.0):
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(arr_tzyx.astype(np.int16), isVector=False)
    img.SetSpacing(tuple(float(s) for s in spacing) + (dt_s,))
    img.SetOrigin(tuple(float(o) for o in origin) + (0.0,))
    d4 = np.eye(4)
    d4[:3, :3] = d
    img.SetDirection(tuple(float(v) for v in d4.ravel()))
    return img


# ---------------------------------------------------------------- MRI
def _mri_images(rng, ph: Phenotype, centre: Centre, shape_xyz, reader2: bool):
    """Return dict name -> SimpleITK image for T1, T2, DCE, DCE_phases, mask(, mask_reader2)."""
    spacing, origin, d = _geometry(centre, shape_xyz)
    pts = _physical_grid(shape_xyz, spacing, origin, d)
    nx, ny, nz = shape_xyz
    fov = np.array([nx * spacing[0], ny * spacing[1], nz * spacing[2]])
    # the drawn tumour fits the field of view; the table keeps the true size
    radius = float(min(ph.size_mm / 2, 0.22 * fov[:2].min(), 0.30 * fov[2] / 0.75))
    # never below ~20 voxels, so every mask passes a min-voxels check
    radius = max(radius, 2.5 * max(spacing[0], spacing[1]), 1.2 * spacing[2] / 0.75)
    c_mm = (rng.uniform(-0.06, 0.06) * fov[0], rng.uniform(-0.12, 0.0) * fov[1], rng.uniform(-0.04, 0.04) * fov[2])
    harm = _harmonics(rng)
    zyx = (nz, ny, nx)

    def draw(pts_, with_r2=False):
        f = _tumour_field(pts_, c_mm, radius, harm, ph.irregularity)
        out = {"f": f}
        if with_r2:
            h2 = [(a + rng.normal(0, 0.25), p, q, p2) for a, p, q, p2 in harm]
            out["f2"] = _tumour_field(pts_, c_mm, radius * rng.normal(1.0, 0.05), h2,
                                      ph.irregularity)
        return out

    fields = draw(pts, reader2)
    f = fields["f"]
    inside = f < 1.0
    for _ in range(6):  # spiky shapes at the minimum radius can still be tiny
        if inside.sum() >= 20:
            break
        radius *= 1.2
        fields = draw(pts, reader2)
        f = fields["f"]
        inside = f < 1.0
    # anatomy in physical space: chest wall posterior (+y in LPS), skin anterior
    y = pts[..., 1]
    ymax = 0.5 * fov[1]
    chest = y > 0.32 * ymax
    tissue = _smooth_noise(rng, zyx, (0.6, 2.5, 2.5))
    fg = 1.0 / (1.0 + np.exp(-4.0 * (tissue - 0.3)))  # fibroglandular islands
    het = _smooth_noise(rng, zyx, 1.0)

    # --- T1 (pre-contrast, fat bright, tumour intermediate)
    t1 = 700 - 300 * fg - 350 * inside + 40 * tissue
    t1 = np.where(chest, 380 + 30 * tissue, t1)
    # --- DCE phases: background parenchymal enhancement + tumour kinetics
    curve = np.asarray(_KINETICS[ph.kinetics])
    shell = np.clip(1.0 - np.abs(f - 0.88) / 0.14, 0, 1)  # rim band just inside the border
    core = inside * (1.0 - ph.rim * 0.7 * (1 - shell))     # rim: weaker centre
    core = core * (1.0 + 0.45 * ph.heterogeneity * het)
    amp = 900.0 * ph.eer / 0.6
    phases = []
    for k, c in enumerate(curve):
        bpe = 60 * fg * min(1.0, 0.3 * k)
        phases.append(t1 + amp * c * np.clip(core, 0, None) + bpe)
    phases = np.stack(phases)  # (t, z, y, x)
    # --- T2: tumour intermediate, oedema halo bright outside the border
    halo = np.clip(1.0 - (f - 1.0) / 0.45, 0, 1) * (f >= 1.0)
    t2 = 450 + 250 * fg + 60 * tissue - 120 * inside + 900 * ph.edema * halo
    t2 = t2 + 200 * inside * (0.5 * het * ph.heterogeneity)
    t2 = np.where(chest, 300 + 30 * tissue, t2)

    def scanner(a, sigma):
        a = a * centre.gain * rng.normal(1.0, 0.03) + centre.offset
        a = a + rng.normal(0, sigma, a.shape)
        return np.clip(np.rint(a), -32000, 32000)

    out_arrays = {
        "T1": scanner(t1, 18),
        "DCE_phases": scanner(phases, 18),
    }
    out_arrays["DCE"] = out_arrays["DCE_phases"][1]
    imgs = {
        "T1": _sitk(out_arrays["T1"], spacing, origin, d, dtype=np.int16),
        "DCE": _sitk(out_arrays["DCE"], spacing, origin, d, dtype=np.int16),
        "DCE_phases": _sitk_4d(out_arrays["DCE_phases"], spacing, origin, d),
        "mask": _sitk(inside.astype(np.uint8), spacing, origin, d),
    }
    if reader2:
        imgs["mask_reader2"] = _sitk((fields["f2"] < 1.0).astype(np.uint8), spacing, origin, d)
    # T2 on its own grid when the centre says so (same FOV, coarser in-plane)
    if centre.t2_inplane_factor != 1.0:
        fct = centre.t2_inplane_factor
        shape2 = (max(8, int(round(nx / fct))), max(8, int(round(ny / fct))), nz)
        sp2 = (spacing[0] * nx / shape2[0], spacing[1] * ny / shape2[1], spacing[2])
        _, origin2, _ = _geometry(centre, shape2, sp2)
        pts2 = _physical_grid(shape2, sp2, origin2, d)
        t2 = _sample_at(t2, pts2, spacing, origin, d)
        imgs["T2"] = _sitk(scanner(t2, 15), sp2, origin2, d, dtype=np.int16)
    else:
        imgs["T2"] = _sitk(scanner(t2, 15), spacing, origin, d, dtype=np.int16)
    return imgs, {"tumour_centre_mm": [round(float(v), 3) for v in c_mm],
                  "drawn_radius_mm": round(radius, 3),
                  "mask_voxels": int(inside.sum()),
                  "phase_times_s": list(_KINETIC_TIMES_S)}


def _sample_at(arr_zyx, pts, spacing, origin, d):
    """Sample arr (on the grid spacing/origin/d) at physical points pts, linear interpolation."""
    rel = (pts - np.asarray(origin)) @ d  # into index * spacing (d orthonormal)
    idx = rel / np.asarray(spacing)
    coords = np.stack([idx[..., 2], idx[..., 1], idx[..., 0]])
    return ndimage.map_coordinates(arr_zyx, coords, order=1, mode="nearest")


# ---------------------------------------------------------------- ultrasound
def _us_images(rng, ph: Phenotype, centre: Centre, size_px: int):
    """Return (US uint8 array, mask uint8 0/255 array) of shape (size_px, size_px)."""
    n = size_px
    sp = centre.us_fov_mm / n
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    cy, cx = n * rng.uniform(0.38, 0.5), n * rng.uniform(0.4, 0.6)
    radius_px = float(np.clip(ph.size_mm / 2 / sp, 4, 0.2 * n))
    harm = _harmonics(rng)
    theta = np.arctan2(yy - cy, xx - cx)
    rho = np.hypot((yy - cy) / 0.75, xx - cx)  # wider than tall (parallel to skin)
    f = rho / (radius_px * _radius_field(theta, np.full_like(theta, np.pi / 2), harm, ph.irregularity))
    inside = f < 1.0
    depth = yy / n
    tissue = 0.55 + 0.2 * _smooth_noise(rng, (n, n), (1.5, 6.0))  # layered parenchyma
    tissue = tissue * (1.0 - 0.35 * depth)                          # depth attenuation
    img = np.where(inside, 0.12 + 0.10 * ph.heterogeneity * _smooth_noise(rng, (n, n), 1.5), tissue)
    # echogenic halo (oedema / desmoplasia) just outside the margin
    img = img + 0.25 * ph.edema * np.clip(1 - np.abs(f - 1.08) / 0.1, 0, 1)
    # posterior features below the lesion: enhancement (round) or shadowing (irregular)
    below = (yy > cy) & (np.abs(xx - cx) < radius_px * 0.8) & ~inside
    post = 0.25 * (0.5 - ph.irregularity)
    img = img + post * below * np.exp(-(yy - cy) / (n * 0.5))
    if ph.calcification:
        for _ in range(int(rng.integers(3, 7))):
            r = rng.uniform(0, 0.7) * radius_px
            a = rng.uniform(0, 2 * np.pi)
            py, px = int(cy + r * np.sin(a) * 0.75), int(cx + r * np.cos(a))
            img[max(py - 1, 0):py + 1, max(px - 1, 0):px + 1] = 0.95
    speckle = rng.rayleigh(1.0, (n, n)) / np.sqrt(np.pi / 2)
    img = img * speckle * centre.us_gain
    us = np.clip(np.rint(img * 200), 0, 255).astype(np.uint8)
    return us, (inside * 255).astype(np.uint8), {"us_centre_px": [round(cx, 2), round(cy, 2)],
                                                  "us_radius_px": round(radius_px, 2)}


# ---------------------------------------------------------------- public API
@dataclass
class SynthCase:
    """One generated case: SimpleITK images, clinical row and ground truth."""
    case_id: str
    row: dict[str, Any]
    truth: dict[str, Any]
    sitk_images: dict[str, Any] = field(default_factory=dict)  # MRI: SimpleITK images
    us: np.ndarray | None = None
    us_mask: np.ndarray | None = None

    @property
    def images(self) -> dict[str, Any]:
        """Images as her2core.imaging.Image (needs her2core.imaging)."""
        from her2core.imaging import Image  # imported lazily: the generator does not need it
        out = {}
        for name, img in self.sitk_images.items():
            modality = "SEG" if name.startswith("mask") else "MR"
            out[name] = Image.from_sitk(img, sequence=name, modality=modality, source=None)
        if self.us is not None:
            out["US"] = Image.from_sitk(self._us_sitk(self.us), sequence="US", modality="US", source=None)
            out["US_mask"] = Image.from_sitk(self._us_sitk(self.us_mask), sequence="mask",
                                             modality="SEG", source=None)
        return out

    @staticmethod
    def _us_sitk(arr):
        import SimpleITK as sitk
        return sitk.GetImageFromArray(arr)

    def phase_times_s(self) -> list[float] | None:
        """Seconds of each DCE phase after phase 0 (pre-contrast), None without phases."""
        mri = self.truth.get("mri") or {}
        if mri.get("phase_times_s"):
            return [float(v) for v in mri["phase_times_s"]]
        if mri.get("phase_minutes"):
            return [round(60.0 * float(v), 3) for v in mri["phase_minutes"]]
        return None

    def write(self, case_dir: str | Path) -> list[Path]:
        import SimpleITK as sitk
        case_dir = Path(case_dir)
        case_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, img in self.sitk_images.items():
            p = case_dir / f"{name}.nii.gz"
            sitk.WriteImage(img, str(p), useCompression=True)
            written.append(p)
        times = self.phase_times_s()
        if "DCE_phases" in self.sitk_images and times:
            from her2core.cohort import PHASE_TIMES_NAME
            p = case_dir / PHASE_TIMES_NAME      # the phases' times (cohort-format sidecar)
            p.write_text(json.dumps({"phase_times_s": times}) + "\n", encoding="utf-8")
            written.append(p)
        if self.us is not None:
            from PIL import Image as PILImage
            for name, arr in (("US", self.us), ("US_mask", self.us_mask)):
                p = case_dir / f"{name}.png"
                PILImage.fromarray(arr, mode="L").save(p, optimize=False)
                written.append(p)
        return written


_GROUPS = ("pos", "low", "zero")


def _draw_group(rng, prevalence: float, low_fraction: float = LOW_FRACTION) -> str:
    if rng.random() < prevalence:
        return "pos"
    return "low" if rng.random() < low_fraction else "zero"


def _ihc(rng, group: str) -> str:
    if group == "pos":
        return "3+" if rng.random() < POS_3PLUS else "2+"
    if group == "low":
        return "1+" if rng.random() < LOW_1PLUS else "2+"
    return "0"


def synth_case(*, seed: int = 0, index: int = 0, group: str | None = None,
               prevalence: float = 0.35, centre: Centre | str = "A",
               modalities: str = "mri", shape: tuple[int, int, int] = (48, 48, 12),
               us_size: int = 128, signal: float = 1.0, random_labels: bool = False,
               reader2: bool = False, case_id: str | None = None,
               size_mm: float | None = None, rim: float | None = None,
               edema: float | None = None, heterogeneity: float | None = None,
               irregularity: float | None = None, kinetics: str | None = None,
               low_signal: float | None = None, low_fraction: float = LOW_FRACTION) -> SynthCase:
    """Generate one case, deterministically for (seed, index).

    group: latent status "pos" | "low" | "zero" (drawn with ``prevalence`` if None; a
    negative is HER2-low with probability ``low_fraction``).
    low_signal: scales the HER2-low vs HER2-zero differences (default ``signal``).
    size_mm, rim, edema, heterogeneity, irregularity, kinetics override the
    phenotype (the clinical row is updated to match: tumor_size_mm,
    rim_enhancement = rim >= 0.5, peritumoral_edema = edema >= 0.5, mass_shape,
    enhancement_curve); every other draw stays the same for the same seed.
    """
    if modalities not in ("mri", "us", "both", "none"):
        raise ValueError(f"modalities must be mri, us, both or none, not {modalities!r}")
    if isinstance(centre, str):
        by_name = {c.name: c for c in DEFAULT_CENTRES}
        if centre not in by_name:
            raise ValueError(f"unknown centre {centre!r}; known: {sorted(by_name)}")
        centre = by_name[centre]
    if group is not None and group not in _GROUPS:
        raise ValueError(f"group must be one of {_GROUPS}, not {group!r}")
    root = np.random.SeedSequence([int(seed), int(index)])
    r_lab, r_clin, r_ph, r_img, r_us, r_rand = (np.random.default_rng(s) for s in root.spawn(6))
    if not 0.0 <= float(low_fraction) <= 1.0:
        raise ValueError(f"low_fraction must be within 0..1, not {low_fraction!r}")
    g = group or _draw_group(r_lab, prevalence, low_fraction)
    ihc = _ihc(r_lab, g)
    row = draw_clinical(r_clin, g, signal, low_signal)
    ph = phenotype_from_row(row, g, r_ph, signal, low_signal)
    if size_mm is not None:
        ph.size_mm = float(size_mm)
        row["tumor_size_mm"] = round(float(size_mm), 1)
    if rim is not None:
        ph.rim = float(rim)
        row["rim_enhancement"] = int(rim >= 0.5)
    if edema is not None:
        ph.edema = float(edema)
        row["peritumoral_edema"] = int(edema >= 0.5)
    if heterogeneity is not None:
        ph.heterogeneity = float(heterogeneity)
    if irregularity is not None:
        ph.irregularity = float(irregularity)
        row["mass_shape"] = "irregular" if irregularity >= 0.4 else "round_oval"
    if kinetics is not None:
        ph.kinetics = kinetics
        row["enhancement_curve"] = kinetics
    ph = ph.clipped()
    if random_labels:  # labels independent of everything drawn above
        g_label = _draw_group(r_rand, prevalence, low_fraction)
        ihc = _ihc(r_rand, g_label)
    else:
        g_label = g
    cid = case_id or f"syn-{index:04d}"
    out_row = {"case_id": cid, "her2": int(g_label == "pos"), "her2_ihc": ihc,
               "center": centre.name, **row,
               "synthetic_size_mm": round(ph.size_mm, 2), "synthetic_rim": round(ph.rim, 4),
               "synthetic_edema": round(ph.edema, 4),
               "synthetic_heterogeneity": round(ph.heterogeneity, 4),
               "synthetic_irregularity": round(ph.irregularity, 4)}
    truth = {"case_id": cid, "latent_group": g, "label_group": g_label,
             "phenotype": asdict(ph), "centre": centre.name}
    case = SynthCase(cid, out_row, truth)
    if modalities in ("mri", "both"):
        case.sitk_images, info = _mri_images(r_img, ph, centre, tuple(shape), reader2)
        truth["mri"] = info
    if modalities in ("us", "both"):
        case.us, case.us_mask, info = _us_images(r_us, ph, centre, us_size)
        truth["us"] = info
    return case


def make_cohort(out: str | Path, *, n: int = 40, seed: int = 0, centres: int | list[Centre] = 2,
                prevalence: float = 0.35, modalities: str = "mri",
                shape: tuple[int, int, int] = (48, 48, 12), us_size: int = 128,
                signal: float = 1.0, random_labels: bool = False, reader2_fraction: float = 0.25,
                overwrite: bool = False, low_signal: float | None = None,
                low_fraction: float = LOW_FRACTION) -> Path:
    """Write a synthetic cohort (cohort.csv, cases/<id>/..., truth.json) under ``out``.

    Cases are assigned to centres in turn (case i -> centre i mod k). The same
    arguments give byte-identical files. ``low_signal`` scales the HER2-low vs
    HER2-zero differences (default ``signal``); ``low_fraction`` is the share of
    HER2-low among the negatives (paper 002: 0.75).
    """
    import pandas as pd
    out = Path(out)
    if n < 1:
        raise ValueError("n must be at least 1")
    cen = list(DEFAULT_CENTRES[:centres]) if isinstance(centres, int) else list(centres)
    if not cen or (isinstance(centres, int) and not 1 <= centres <= len(DEFAULT_CENTRES)):
        raise ValueError(f"centres must be 1..{len(DEFAULT_CENTRES)}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True)")
    if overwrite and (out / "truth.json").is_file() and (out / "cases").is_dir():
        # a previous synthetic cohort: drop its cases so no stale folder survives
        import shutil
        shutil.rmtree(out / "cases")
    out.mkdir(parents=True, exist_ok=True)
    pick = np.random.default_rng(np.random.SeedSequence([int(seed), 10**6]))
    r2 = pick.random(n) < reader2_fraction
    rows, truths = [], []
    for i in range(n):
        case = synth_case(seed=seed, index=i, prevalence=prevalence, centre=cen[i % len(cen)],
                          modalities=modalities, shape=shape, us_size=us_size, signal=signal,
                          random_labels=random_labels, reader2=bool(r2[i]),
                          low_signal=low_signal, low_fraction=low_fraction)
        if modalities != "none":
            case.write(out / "cases" / case.case_id)
        rows.append(case.row)
        truths.append(case.truth)
    from her2core.cohort import write_cohort
    write_cohort(out, pd.DataFrame(rows), overwrite=True)
    meta = {"generator": "her2core.synthetic", "n": n, "seed": seed,
            "centres": [asdict(c) for c in cen], "prevalence": prevalence,
            "modalities": modalities, "shape_xyz": list(shape), "us_size": us_size,
            "signal": signal, "random_labels": random_labels,
            "low_signal": signal if low_signal is None else low_signal,
            "low_fraction": low_fraction,
            "note": "synthetic data: no patient, labels are a known ground truth",
            "cases": truths}
    (out / "truth.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    log.info("wrote synthetic cohort of %d cases to %s", n, out)
    return out


# ================================================================ clinical-size cases
# Breast MRI at the size it is acquired: 448 x 448 x 100 voxels of 0.75 x 0.75 x 1.5 mm
# (axial, LPS, both breasts), 6 DCE phases, T2 on its own 3 mm grid, an ultrasound image.
# Anatomy is drawn in physical millimetres (scaled to the field of view, so a coarse
# grid for tests shows the same body): both breasts (skin, subcutaneous and
# retromammary fat, fibroglandular tissue with ductal texture, nipple, vessels), the
# chest wall (pectoralis, ribs, lungs, heart), a lesion with the case's phenotype.

#: bump when the drawing changes: cached cases of another version are regenerated
CLINICAL_VERSION = 1
CLINICAL_SHAPE = (448, 448, 100)            # x, y, z voxels
CLINICAL_SPACING = (0.75, 0.75, 1.5)        # x, y, z mm
CLINICAL_PHASES = 6                         # pre-contrast + 5 post-contrast
CLINICAL_PHASE_MIN = 1.5                    # minutes between phases
_REF_FOV = np.array([336.0, 336.0, 150.0])  # mm: the anatomy below is drawn for this FOV

#: relative lesion enhancement at (0, 1.5, 3, 6, 9) minutes; the first four are _KINETICS
_KINETIC_KNOTS = {k: v + (v[-1] + (v[-1] - v[-2]) * 0.5,) for k, v in _KINETICS.items()}

#: tissue signal (arbitrary scanner units) on T1 (no fat saturation), DCE before
#: contrast (fat-saturated T1 gradient echo) and T2 (TSE, no fat saturation)
_TISSUE = {            # T1     DCE    T2
    "fat":          (1000.0, 110.0, 640.0),
    "fgt":          (330.0, 320.0, 270.0),
    "skin":         (520.0, 300.0, 360.0),
    "muscle":       (380.0, 270.0, 170.0),
    "bone":         (560.0, 190.0, 380.0),
    "lung":         (22.0, 18.0, 18.0),
    "heart":        (420.0, 330.0, 110.0),
    "mediastinum":  (470.0, 150.0, 300.0),
    "vessel":       (380.0, 300.0, 140.0),
}
_TUMOUR = (360.0, 330.0, 430.0)


def default_cache_dir() -> Path:
    """``HER2_CACHE`` if set, else ``~/.cache/her2`` (generated demo data lives here)."""
    import os
    return Path(os.environ.get("HER2_CACHE") or (Path.home() / ".cache" / "her2"))


def _sig(v, width):
    """Logistic step of ``v`` (mm) with ``width`` (mm), float32."""
    out = np.asarray(v, np.float32) / np.float32(width)
    np.clip(out, -30, 30, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out


def _upsample(a: np.ndarray, shape) -> np.ndarray:
    """Linear interpolation of a coarse noise field to ``shape`` (separable, float32)."""
    for ax, n in enumerate(shape):
        m = a.shape[ax]
        if m == n:
            continue
        pos = np.linspace(0, m - 1, n, dtype=np.float64)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, m - 1)
        w = (pos - i0).astype(np.float32)
        sh = [1] * a.ndim
        sh[ax] = n
        w = w.reshape(sh)
        a = np.take(a, i0, axis=ax) * (1 - w) + np.take(a, i1, axis=ax) * w
    return a.astype(np.float32, copy=False)


def _coarse_noise(rng, shape_zyx, spacing_zyx, sigma_mm, step_mm):
    """Smooth unit-variance noise with ``sigma_mm`` (z, y, x), drawn on a grid of
    ``step_mm`` and interpolated to ``shape_zyx`` (cheap at clinical size)."""
    fov = np.asarray(shape_zyx) * np.asarray(spacing_zyx)
    small = tuple(int(max(4, np.ceil(f / step_mm))) for f in fov)
    sig = tuple(float(s) / step_mm for s in sigma_mm)
    n = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), sig, mode="wrap")
    n /= max(float(n.std()), 1e-6)
    return _upsample(n, shape_zyx)


def _kinetic(kind: str, t_min: float) -> float:
    knots = np.array([0.0, 1.5, 3.0, 6.0, 9.0])
    return float(np.interp(t_min, knots, _KINETIC_KNOTS[kind]))


def _vessels(rng, shape_zyx, spacing, origin, breasts, y_cw_fn, scale) -> np.ndarray:
    """A few tortuous vessels per breast (from the chest wall towards the nipple), uint8."""
    nz, ny, nx = shape_zyx
    out = np.zeros(shape_zyx, np.uint8)
    sx, sy, sz = spacing
    for xb, w0, d0, zc in breasts:
        for _ in range(int(rng.integers(2, 5))):
            n = 300
            t = np.linspace(0, 1, n)
            x0 = xb + rng.uniform(-0.9, 0.9) * w0
            z0 = zc + rng.uniform(-0.5, 0.5) * 40 * scale[2]
            x1 = xb + rng.uniform(-0.2, 0.2) * w0
            z1 = zc + rng.uniform(-0.2, 0.2) * 20 * scale[2]
            wob = np.cumsum(rng.normal(0, 1.0, (n, 2)), axis=0)
            wob -= np.linspace(0, 1, n)[:, None] * wob[-1]   # pinned at both ends
            xs = x0 + (x1 - x0) * t + wob[:, 0] * 0.8 * scale[0]
            zs = z0 + (z1 - z0) * t + wob[:, 1] * 0.5 * scale[2]
            depth = t * rng.uniform(0.55, 0.85) * d0
            ys = y_cw_fn(xs, zs) - depth
            r_mm = rng.uniform(0.9, 1.6) * (1 - 0.5 * t)
            for xm, ym, zm, rm in zip(xs, ys, zs, r_mm):
                i, j, k = (xm - origin[0]) / sx, (ym - origin[1]) / sy, (zm - origin[2]) / sz
                ri, rj, rk = max(rm / sx, 0.5), max(rm / sy, 0.5), max(rm / sz, 0.5)
                i0, i1 = int(max(0, np.floor(i - ri))), int(min(nx, np.ceil(i + ri) + 1))
                j0, j1 = int(max(0, np.floor(j - rj))), int(min(ny, np.ceil(j + rj) + 1))
                k0, k1 = int(max(0, np.floor(k - rk))), int(min(nz, np.ceil(k + rk) + 1))
                if i0 >= i1 or j0 >= j1 or k0 >= k1:
                    continue
                kk, jj, ii = np.ogrid[k0:k1, j0:j1, i0:i1]
                ball = ((ii - i) / ri) ** 2 + ((jj - j) / rj) ** 2 + ((kk - k) / rk) ** 2 <= 1
                out[k0:k1, j0:j1, i0:i1] |= ball.astype(np.uint8)
    return out


def _clinical_mri(rng, ph: Phenotype, shape_xyz, spacing, phases: int, gain: float, offset: float):
    """SimpleITK images T1, T2 (own grid, 2x slice thickness), DCE, DCE_phases, mask."""
    nx, ny, nz = (int(v) for v in shape_xyz)
    sx, sy, sz = (float(v) for v in spacing)
    zyx = (nz, ny, nx)
    fov = np.array([nx * sx, ny * sy, nz * sz])
    scale = fov / _REF_FOV
    d = np.eye(3)
    origin = -np.array([(nx - 1) * sx, (ny - 1) * sy, (nz - 1) * sz]) / 2
    x = (origin[0] + np.arange(nx) * sx).astype(np.float32)[None, None, :]
    y = (origin[1] + np.arange(ny) * sy).astype(np.float32)[None, :, None]
    z = (origin[2] + np.arange(nz) * sz).astype(np.float32)[:, None, None]
    info: dict[str, Any] = {}

    # ---- chest wall: an arc convex anteriorly (sternum most anterior), y = posterior
    y0 = rng.normal(-14.0, 4.0) * scale[1]
    curv = rng.normal(60.0, 6.0) * scale[1]

    def y_cw_fn(xm, zm):
        return y0 + curv * (np.asarray(xm) / (160 * scale[0])) ** 2 + 5 * scale[1] * (np.asarray(zm) / (75 * scale[2])) ** 2

    y_cw = y_cw_fn(x, z).astype(np.float32)            # (nz, 1, nx)
    depth = (y_cw - y).astype(np.float32)               # mm anterior of the chest wall
    # ---- breasts: half-ellipsoids on the chest wall, tapering towards head and feet
    size = rng.uniform(0.8, 1.15)
    breasts, r = [], None
    for side in (-1.0, 1.0):                            # -x = patient right
        xb = side * rng.normal(88.0, 4.0) * scale[0]
        w0 = rng.normal(70.0, 4.0) * scale[0] * size
        d0 = rng.normal(88.0, 7.0) * scale[1] * size
        zc = rng.normal(0.0, 6.0) * scale[2]
        rz = rng.normal(80.0, 4.0) * scale[2]
        tz = np.sqrt(np.clip(1 - ((z - zc) / rz) ** 2, 0, 1)).astype(np.float32)
        w = w0 * (0.5 + 0.5 * tz)
        dd = np.maximum(d0 * tz, 1e-3)
        # nipple: a small bump at the apex
        nip = 1 + 0.07 * np.exp(-((x - xb) / (9 * scale[0])) ** 2 - ((z - zc) / (9 * scale[2])) ** 2)
        rb = np.sqrt(((x - xb) / w) ** 2 + (np.maximum(depth, 0) / (dd * nip)) ** 2).astype(np.float32)
        rb[np.broadcast_to(depth < 0, rb.shape)] = 9.0
        r = rb if r is None else np.minimum(r, rb)
        breasts.append((float(xb), float(w0), float(d0), float(zc)))
    scale_mm = float(np.mean([b[1] for b in breasts] + [b[2] for b in breasts]) / 2)
    surf = (1.0 - r) * scale_mm                          # ~ mm inside the breast surface
    del r
    wobble = _coarse_noise(rng, zyx, (sz, sy, sx), (20, 20, 20), 6.0)
    surf += 0.8 * wobble
    presternal = np.where(np.abs(x) < 150 * scale[0], np.minimum(12 * scale[1] - depth, depth), -50.0)
    surf = np.maximum(surf, presternal)
    del presternal
    body_front = _sig(surf, 0.4)
    interior = _sig(surf - 2.2, 0.4)                     # inside the skin
    skin = body_front - interior
    del body_front
    # ---- fibroglandular tissue: ductal texture (elongated antero-posteriorly), denser
    #      centrally, absent in the subcutaneous and retromammary fat
    density = int(rng.choice(4, p=[0.1, 0.4, 0.4, 0.1]))          # BI-RADS a..d
    fine = _coarse_noise(rng, zyx, (sz, sy, sx), (2.5, 5.0, 2.0), 1.0 * float(scale.min()) + 0.5)
    coarse = _coarse_noise(rng, zyx, (sz, sy, sx), (14, 18, 14), 4.0)
    bias = 2.2 - 3.2 * (1 - np.clip(surf / (0.55 * scale_mm), 0, 1)) - 2.0 * _sig(6 * scale[1] - depth, 1.5)
    thr = (1.25, 0.65, 0.15, -0.45)[density]
    fgt = _sig(0.9 * fine + 0.9 * coarse + bias - thr, 0.22) * interior
    del fine, coarse, bias
    fat = interior - fgt
    # ---- chest wall and thorax (posterior of the chest wall)
    back = -depth                                           # mm posterior of the chest wall
    thorax = _sig((1 - np.sqrt((x / (168 * scale[0])) ** 2 + ((y - 175 * scale[1]) / (215 * scale[1])) ** 2)) * 150, 0.6)
    thorax = thorax * _sig(back, 0.5)
    m_thick = (11 + 4 * np.clip(np.abs(x) / (120 * scale[0]), 0, 1)) * scale[1]
    lateral = _sig(np.abs(x) - 22 * scale[0], 2.0)
    muscle = thorax * _sig(m_thick - back, 0.6) * lateral
    ribz = 0.5 + 0.5 * np.cos(2 * np.pi * (z - rng.uniform(0, 25)) / (24 * scale[2]))
    bone = thorax * _sig(back - m_thick, 0.6) * _sig(m_thick + 9 * scale[1] - back, 0.6) \
        * _sig(ribz - 0.55, 0.08)
    bone = bone + thorax * _sig(m_thick - back, 0.6) * (1 - lateral) * 0.9      # sternum
    deep_ = thorax * _sig(back - m_thick - 9 * scale[1], 0.8)
    hx, hy, hz = 28 * scale[0], y0 + 85 * scale[1], -20 * scale[2]
    heart = deep_ * _sig((1 - np.sqrt(((x - hx) / (70 * scale[0])) ** 2 + ((y - hy) / (55 * scale[1])) ** 2
                               + ((z - hz) / (65 * scale[2])) ** 2)) * 60, 0.6)
    lungs = deep_ * _sig(np.abs(x) - 35 * scale[0], 3.0) - heart
    np.clip(lungs, 0, None, out=lungs)
    medi = np.clip(deep_ - heart - lungs, 0, None)
    muscle = np.clip(muscle - bone, 0, None)
    del deep_, thorax, lateral, ribz
    vessel = _vessels(rng, zyx, (sx, sy, sz), origin, breasts, y_cw_fn, scale).astype(np.float32)
    vessel *= interior
    fat -= np.minimum(fat, vessel)
    del interior

    # ---- lesion: in one breast, among the fibroglandular tissue
    side = int(rng.integers(2))
    xb, w0, d0, zc = breasts[side]
    radius = float(np.clip(ph.size_mm / 2, 2.5 * max(sx, sy), 0.32 * d0))
    c_mm = np.array([xb + rng.uniform(-0.3, 0.3) * w0, 0.0, zc + rng.uniform(-0.25, 0.25) * 50 * scale[2]])
    c_mm[1] = float(y_cw_fn(c_mm[0], c_mm[2])) - rng.uniform(0.38, 0.55) * d0
    harm = _harmonics(rng)
    reach = radius * 1.9 * 1.8 + 4 * max(sx, sy, sz)
    lo = np.floor((c_mm - reach - origin) / [sx, sy, sz]).astype(int)
    hi = np.ceil((c_mm + reach - origin) / [sx, sy, sz]).astype(int) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [nx, ny, nz])
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    kk, jj, ii = np.meshgrid(np.arange(lo[2], hi[2]), np.arange(lo[1], hi[1]), np.arange(lo[0], hi[0]),
                             indexing="ij")
    pts = np.stack([origin[0] + ii * sx, origin[1] + jj * sy, origin[2] + kk * sz], axis=-1)
    del kk, jj, ii
    f = _tumour_field(pts, c_mm, radius, harm, ph.irregularity)
    for _ in range(6):                                   # never a tiny mask
        if (f < 1).sum() >= 20:
            break
        radius *= 1.2
        f = _tumour_field(pts, c_mm, radius, harm, ph.irregularity)
    del pts
    t_in = _sig((1 - f) * radius, 0.35)                 # soft tumour fraction (partial volume)
    inside = f < 1.0
    shell = np.clip(1.0 - np.abs(f - 0.86) / 0.14, 0, 1)
    het = _smooth_noise(rng, f.shape, (0.8, 1.6, 1.6))
    core = (1.0 - ph.rim * 0.75 * (1 - shell)) * (1.0 + 0.45 * ph.heterogeneity * het)
    core = np.clip(core, 0, None) * t_in
    halo = np.clip(1.0 - (f - 1.0) / 0.45, 0, 1) * (f >= 1.0)
    for frac in (fat, fgt, skin, vessel):
        frac[box] *= (1 - t_in)
    info.update(tumour_centre_mm=[round(float(v), 3) for v in c_mm], drawn_radius_mm=round(radius, 3),
                side="left" if side else "right", density="abcd"[density])

    # ---- contrast per sequence
    fractions = {"fat": fat, "fgt": fgt, "skin": skin, "muscle": muscle, "bone": bone,
                 "lung": lungs, "heart": heart, "mediastinum": medi, "vessel": vessel}
    coil = (1 + 0.18 * np.exp(-((y - (y0 - 50 * scale[1])) / (110 * scale[1])) ** 2)
            * (1 + 0.05 * np.cos(2 * np.pi * x / fov[0]))).astype(np.float32)
    coil = coil * (1 - 0.08 * (z / (fov[2] / 2)) ** 2)    # full (z, y, x) profile
    bpe = float(rng.choice([0.06, 0.14, 0.28], p=[0.45, 0.4, 0.15]))
    info.update(bpe=bpe)

    def render(col: int, extra=None):
        out = np.zeros(zyx, np.float32)
        for name, frac in fractions.items():
            out += np.float32(_TISSUE[name][col]) * frac
        out[box] += np.float32(_TUMOUR[col]) * t_in
        if extra is not None:
            extra(out)
        out *= coil
        return out

    def scanner(a, sigma):
        a *= np.float32(gain * rng.normal(1.0, 0.02))
        a += rng.standard_normal(a.shape, dtype=np.float32) * np.float32(sigma)
        np.abs(a, out=a)                                  # magnitude image
        a += np.float32(offset)
        return np.clip(np.rint(a), -32000, 32000).astype(np.int16)

    def _sitk_img(arr, sp, org):
        return _sitk(arr, sp, org, d)

    imgs = {}
    imgs["T1"] = _sitk_img(scanner(render(0, lambda o: o.__setitem__(box, o[box] - 60 * halo * ph.edema)), 14),
                           (sx, sy, sz), origin)
    amp = 950.0 * ph.eer / 0.6
    times = [k * CLINICAL_PHASE_MIN for k in range(phases)]
    stack = np.empty((phases,) + zyx, np.int16)
    pre = render(1)                                   # with the coil profile
    fgt_c, blood_c = fgt * coil, (heart + np.float32(0.45) * vessel) * coil
    wall_c = (np.float32(0.12 * _TISSUE["muscle"][1]) * muscle) * coil
    skin_c = (np.float32(0.25 * _TISSUE["skin"][1]) * skin) * coil
    for k, t in enumerate(times):
        o = pre.copy()
        if t > 0:
            o += np.float32(bpe * _TISSUE["fgt"][1] * min(1.0, t / 6.0)) * fgt_c
            o += np.float32(1300.0 * (0.35 + 0.65 * np.exp(-t / 4.0))) * blood_c
            o += np.float32(min(1.0, t / 4.0)) * wall_c
            o += np.float32(min(1.0, t / 5.0)) * skin_c
            o[box] += np.float32(amp * _kinetic(ph.kinetics, t)) * core * coil[box]
        stack[k] = scanner(o, 12)
    del pre, fgt_c, blood_c, wall_c, skin_c, o
    imgs["DCE"] = _sitk_img(stack[min(1, phases - 1)], (sx, sy, sz), origin)
    imgs["DCE_phases"] = _sitk_4d(stack, (sx, sy, sz), origin, d, dt_s=CLINICAL_PHASE_MIN * 60)
    del stack

    def t2_extra(o):
        o[box] += np.float32(200) * t_in * 0.5 * het * ph.heterogeneity
        o[box] += np.float32(900 * ph.edema) * halo * (fgt[box] + fat[box] > 0.2)
    t2 = render(2, t2_extra)
    # T2 on its own grid: slices twice as thick (pairs averaged, as a thick-slice TSE)
    nz2 = nz // 2
    t2 = 0.5 * (t2[0:2 * nz2:2] + t2[1:2 * nz2:2])
    origin2 = origin + np.array([0, 0, sz / 2])
    imgs["T2"] = _sitk_img(scanner(t2, 10), (sx, sy, 2 * sz), origin2)
    mask = np.zeros(zyx, np.uint8)
    mask[box] = inside
    imgs["mask"] = _sitk_img(mask, (sx, sy, sz), origin)
    info["mask_voxels"] = int(inside.sum())
    info["phase_minutes"] = times
    return imgs, info


def clinical_case(*, seed: int = 0, index: int = 0, group: str | None = None,
                  prevalence: float = 0.35, centre: str = "A",
                  shape: tuple[int, int, int] = CLINICAL_SHAPE,
                  spacing: tuple[float, float, float] = CLINICAL_SPACING,
                  phases: int = CLINICAL_PHASES, us_size: int = 512, signal: float = 1.0,
                  case_id: str | None = None, size_mm: float | None = None,
                  rim: float | None = None, edema: float | None = None,
                  heterogeneity: float | None = None, irregularity: float | None = None,
                  kinetics: str | None = None) -> SynthCase:
    """One breast MRI case at clinical size (+ ultrasound), deterministic for (seed, index).

    The clinical row, labels and phenotype are those of :func:`synth_case` with the
    same arguments (same draws); the images show both breasts and the chest wall at
    ``shape`` voxels of ``spacing`` mm (default 448 x 448 x 100 of 0.75 x 0.75 x 1.5:
    T1, DCE = first post-contrast phase, DCE_phases with ``phases`` time points
    1.5 min apart, T2 on its own grid of 3 mm slices, the lesion mask on the DCE
    grid), and a ``us_size`` pixel ultrasound image of the lesion with its mask.
    """
    if not 2 <= int(phases) <= 12:
        raise ValueError("phases must be 2..12")
    if min(shape) < 8:
        raise ValueError("shape must be at least 8 voxels along every axis")
    base = synth_case(seed=seed, index=index, group=group, prevalence=prevalence, centre="A",
                      modalities="none", signal=signal, case_id=case_id, size_mm=size_mm, rim=rim,
                      edema=edema, heterogeneity=heterogeneity, irregularity=irregularity,
                      kinetics=kinetics)
    ph = Phenotype(**base.truth["phenotype"])
    r_img, r_us = (np.random.default_rng(s) for s in
                   np.random.SeedSequence([int(seed), int(index), 448]).spawn(2))
    gains = {"A": (1.0, 0.0), "B": (1.3, 60.0), "C": (0.8, -20.0)}
    gain, offset = gains.get(centre, (1.0, 0.0))
    base.row["center"] = centre
    base.truth["centre"] = centre
    base.sitk_images, info = _clinical_mri(r_img, ph, shape, spacing, int(phases), gain, offset)
    base.truth["mri"] = info
    us_centre = Centre("US", (1, 1, 1), (1, 0, 0, 0, 1, 0, 0, 0, 1), us_fov_mm=45.0)
    base.us, base.us_mask, us_info = _us_images(r_us, ph, us_centre, int(us_size))
    base.truth["us"] = us_info
    base.truth["clinical_size"] = {"shape_xyz": list(shape), "spacing_mm": list(spacing),
                                   "phases": int(phases), "version": CLINICAL_VERSION}
    return base


#: latent groups of the demo cases in turn: every phenotype family shows up in four cases
_DEMO_GROUPS = ("pos", "zero", "low", "pos")


def clinical_demo_cases(cache_dir: str | Path | None = None, *, n: int = 4, seed: int = 0,
                        shape: tuple[int, int, int] = CLINICAL_SHAPE,
                        spacing: tuple[float, float, float] = CLINICAL_SPACING,
                        phases: int = CLINICAL_PHASES, us_size: int = 512,
                        progress=None) -> Path:
    """A cohort of ``n`` clinical-size cases, generated on first use into a cache folder.

    The cohort (cohort-format.md: cohort.csv, cases/<id>/T1, T2, DCE, DCE_phases,
    mask .nii.gz, US.png, US_mask.png, truth.json) lies in
    ``<cache_dir or default_cache_dir()>/clinical_demo/v<version>-s<seed>-n<n>-<shape>``
    and is reused while its ``stamp.json`` names the current generator version and
    arguments; it is built in a temporary sibling folder and renamed into place, so
    several processes may ask at once and a half-written cohort is never used.
    Same arguments give byte-identical files. ``progress(done, total, message)``
    is called after each case. Returns the cohort folder.
    """
    import os
    import shutil
    import tempfile
    import pandas as pd
    if n < 1:
        raise ValueError("n must be at least 1")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = f"v{CLINICAL_VERSION}-s{int(seed)}-n{int(n)}-{'x'.join(str(int(v)) for v in shape)}"
    if tuple(spacing) != CLINICAL_SPACING or phases != CLINICAL_PHASES or us_size != 512:
        tag += "-" + "x".join(f"{float(v):g}" for v in spacing) + f"-p{int(phases)}-u{int(us_size)}"
    final = root / "clinical_demo" / tag
    stamp = {"generator": "her2core.synthetic.clinical_case", "version": CLINICAL_VERSION,
             "seed": int(seed), "n": int(n), "shape_xyz": [int(v) for v in shape],
             "spacing_mm": [float(v) for v in spacing], "phases": int(phases),
             "us_size": int(us_size)}
    if _stamp_ok(final, stamp):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{tag}.", dir=final.parent))
    try:
        rows, truths = [], []
        for i in range(n):
            case = clinical_case(seed=seed, index=i, group=_DEMO_GROUPS[i % len(_DEMO_GROUPS)],
                                 centre="AB"[i % 2], shape=shape, spacing=spacing, phases=phases,
                                 us_size=us_size, case_id=f"clin-{i:03d}")
            case.write(tmp / "cases" / case.case_id)
            rows.append(case.row)
            truths.append(case.truth)
            if progress is not None:
                progress(i + 1, n, f"clinical-size demo case {i + 1}/{n} written")
        from her2core.cohort import write_cohort
        write_cohort(tmp, pd.DataFrame(rows), overwrite=True)
        meta = dict(stamp, note="synthetic data: no patient, labels are a known ground truth",
                    cases=truths)
        (tmp / "truth.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n",
                                        encoding="utf-8")
        (tmp / "stamp.json").write_text(json.dumps(stamp, sort_keys=True) + "\n", encoding="utf-8")
        if final.exists() and not _stamp_ok(final, stamp):
            shutil.rmtree(final, ignore_errors=True)      # an older or broken version
        try:
            os.rename(tmp, final)
        except OSError:
            if not _stamp_ok(final, stamp):               # not another process's finished copy
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("clinical-size demo cohort of %d cases in %s", n, final)
    return final


def _stamp_ok(folder: Path, stamp: dict) -> bool:
    try:
        return json.loads((folder / "stamp.json").read_text(encoding="utf-8")) == stamp
    except (OSError, ValueError):
        return False
