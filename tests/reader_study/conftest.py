from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from her2core.reader_study.db import open_database, sqlite_url
from her2core.reader_study.service import ReaderStudyService


class FakeClock:
    def __init__(self):
        self.t = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.t

    def advance(self, **kw):
        self.t += timedelta(**kw)


def make_cases(n=12, seed=0, with_low=True):
    rng = np.random.default_rng(seed)
    her2 = np.array([1, 0] * (n // 2) + [0] * (n % 2))
    cases = []
    for i, h in enumerate(her2):
        p = float(np.clip(0.5 + (0.25 if h else -0.25) + rng.normal(0, 0.2), 0.01, 0.99))
        cases.append({"case_id": f"C{i:03d}", "her2": int(h),
                      "her2_low": (None if h else int(i % 3 != 0)) if with_low else None,
                      "model_output": {"p_her2": round(p, 4)}})
    return cases


READERS = [
    {"name": "Alice", "level": "senior", "years": 18},
    {"name": "Bob", "level": "junior", "years": 6},
    {"name": "Chen", "level": "junior", "years": 3},
]


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "rs.db"


@pytest.fixture
def svc(db_path, clock):
    db = open_database(sqlite_url(db_path))
    yield ReaderStudyService(db, clock=clock)
    db.dispose()
