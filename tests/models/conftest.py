import numpy as np
import pandas as pd
import pytest


def make_frame(n=160, seed=0, signal=1.0, n_feat=12, random_labels=False):
    """Synthetic features + clinical table with a known signal.

    resnet18 block: f0000 carries the signal; radiomics block: one feature with signal.
    Clinical: er (protective), age (noise), enhancement_curve (washout more often in
    positives), aln_abnormal with missing values.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.45).astype(int)
    idx = [f"case{i:04d}" for i in range(n)]
    cols = {}
    for seq in ("DCE", "T2"):
        for j in range(n_feat):
            v = rng.normal(size=n)
            if j == 0:
                v = v + signal * 1.2 * (2 * y - 1) * (1 if seq == "DCE" else 0.6)
            cols[f"{seq}__resnet18__f{j:04d}"] = v
    for j in range(5):
        v = rng.normal(size=n) + (signal * 0.8 * (2 * y - 1) if j == 0 else 0)
        cols[f"DCE__radiomics__original_firstorder_f{j}"] = v
    X = pd.DataFrame(cols, index=pd.Index(idx, name="case_id"))
    X["age"] = rng.normal(55, 10, n).round()
    X["er"] = (rng.random(n) < np.where(y == 1, 0.3, 0.8) if signal else rng.random(n) < 0.6).astype(float)
    curve = np.where(rng.random(n) < np.where(y == 1, 0.6, 0.2), "washout",
                     np.where(rng.random(n) < 0.5, "plateau", "persistent"))
    X["enhancement_curve"] = pd.Series(curve, index=X.index, dtype=object)
    aln = (rng.random(n) < 0.5).astype(float)
    aln[rng.random(n) < 0.1] = np.nan
    X["aln_abnormal"] = aln
    if random_labels:
        y = (np.random.default_rng(seed + 99).random(n) < 0.45).astype(int)
    return X, pd.Series(y, index=X.index, name="her2")


@pytest.fixture
def frame():
    return make_frame()


@pytest.fixture
def frame_factory():
    return make_frame
