"""Agreement between two readers' ROIs: overlap of one case, per-feature ICC over cases.

* :func:`mask_agreement` - Dice, Jaccard and the two sizes (mm^3, or mm^2 in 2-D) of two
  masks on one grid.
* :func:`reader_features` - the radiomics features (her2core.features.radiomics, the
  cohort's parameter files) of one ROI, the values the ICC filter compares.
* :func:`reader_icc` - the per-feature ICC between reader 1 and reader 2 over the cases
  both read (rows matched by case id), with the same vectorised ICC the ICC filter of
  :mod:`her2core.selection` uses (papers 000 and 003: ICC(3,1) >= 0.9 keeps a feature).
  One case alone has no ICC (it needs at least two cases; :data:`MIN_ICC_CASES` for a
  figure worth reading).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from her2core.errors import GeometryError, MaskError

from .image import Image

#: fewer two-reader cases than this: the ICC is shown as not yet meaningful
MIN_ICC_CASES = 5


def _binary(mask) -> np.ndarray:
    return np.asarray(getattr(mask, "array", mask)) > 0


def mask_agreement(mask1, mask2, spacing=None) -> dict[str, Any]:
    """Dice, Jaccard, voxel counts and sizes of two masks (Images or arrays) on one grid."""
    a, b = _binary(mask1), _binary(mask2)
    if a.shape != b.shape:
        raise GeometryError(f"the two ROIs are on different grids ({a.shape} vs {b.shape})",
                            hint="draw both readers' ROIs on the same sequence")
    if not a.any() or not b.any():
        raise MaskError("one of the two ROIs is empty", hint="both readers need an ROI")
    sp = spacing if spacing is not None else getattr(mask1, "spacing", None)
    unit = float(np.prod(sp)) if sp is not None else 1.0
    inter = int(np.count_nonzero(a & b))
    union = int(np.count_nonzero(a | b))
    n1, n2 = int(a.sum()), int(b.sum())
    return {"dice": 2.0 * inter / (n1 + n2), "jaccard": inter / union,
            "voxels_1": n1, "voxels_2": n2, "size_1": n1 * unit, "size_2": n2 * unit,
            "size_unit": "mm2" if a.ndim == 2 else "mm3",
            "size_difference_pct": 100.0 * (n2 - n1) / n1}


def reader_features(image: Image, mask: Image, params: str = "mri", *,
                    case_id: str | None = None) -> dict[str, float]:
    """The radiomics features of one reader's ROI (see module docstring)."""
    from her2core.features.radiomics import extract_radiomics
    return extract_radiomics(image, mask, params, case_id=case_id)


def reader_icc(first: pd.DataFrame, second: pd.DataFrame, kind: str = "ICC(3,1)") -> pd.DataFrame:
    """Per-feature ICC between two readers over the cases both read.

    ``first`` / ``second``: features (columns) by case id (index), reader 1 and reader 2.
    Returns a frame indexed by feature with ``icc`` and ``n_cases`` (NaN ICC below two
    cases or for a constant feature), sorted by ICC.
    """
    from her2core.selection import _icc_columns
    cases = [c for c in first.index if c in second.index]
    cols = [c for c in first.columns if c in second.columns]
    a = first.loc[cases, cols].to_numpy(float)
    b = second.loc[cases, cols].to_numpy(float)
    values = _icc_columns(a, b, kind) if len(cases) >= 2 else np.full(len(cols), np.nan)
    out = pd.DataFrame({"icc": values, "n_cases": len(cases)}, index=pd.Index(cols, name="feature"))
    return out.sort_values("icc", na_position="last")


__all__ = ["MIN_ICC_CASES", "mask_agreement", "reader_features", "reader_icc"]
