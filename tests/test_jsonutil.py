import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from her2core.jsonutil import jsonable


@dataclass
class R:
    auc: float
    ci: tuple


def test_jsonable_plain_values_from_numpy_torch_dataclasses():
    obj = {1: np.float32(0.5), "nan": float("nan"), "inf": np.inf, "i": np.int64(3),
           "b": np.bool_(True), "arr": np.array([[1, 2]]), "p": Path("/a/b"),
           "r": R(0.75, (0.6, 0.9)), "t": torch.tensor(2.5), "tl": torch.tensor([1, 2]),
           "s": {7}}
    out = jsonable(obj)
    assert out == {"1": 0.5, "nan": None, "inf": None, "i": 3, "b": True, "arr": [[1, 2]],
                   "p": "/a/b", "r": {"auc": 0.75, "ci": [0.6, 0.9]}, "t": 2.5, "tl": [1, 2],
                   "s": [7]}
    assert type(out["b"]) is bool and type(out["i"]) is int
    json.dumps(out, allow_nan=False)
    assert jsonable(object(), unknown=lambda o: "x") == "x"
