"""Paths of the reference data used by the metric tests.

SHARED: ../shared/reference beside the checkout (pROC aSAH, dcurves and
Hosmer-Lemeshow oracles, each with EXPECTED.md). VENDORED: tests/reference,
the R scripts of this project and the values they produced, plus small copies
of aSAH.csv (pROC, GPL>=3), df_binary.csv and df_case_control.csv (dcurves,
Apache-2.0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / "../shared/reference").resolve()
VENDORED = REPO / "tests" / "reference"


def shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared reference {p} not present")
    return p


def asah() -> tuple[pd.DataFrame, np.ndarray]:
    d = pd.read_csv(VENDORED / "aSAH.csv")
    return d, (d["outcome"] == "Poor").to_numpy().astype(int)


def df_binary() -> tuple[pd.DataFrame, np.ndarray]:
    d = pd.read_csv(VENDORED / "df_binary.csv")
    return d, d["cancer"].astype(str).str.upper().eq("TRUE").to_numpy().astype(int)
