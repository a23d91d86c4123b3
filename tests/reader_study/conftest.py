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


# ----------------------------------------------------------------------------- PostgreSQL
# Optional: a throw-away PostgreSQL server on localhost, started from pg_ctl / initdb when
# they are installed (apt-get install postgresql); the tests that use it are skipped
# otherwise. As root the server runs as the "postgres" system user (runuser).

import os
import shutil
import socket
import subprocess
import uuid


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name):
    """pg_ctl / initdb: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    import glob
    import re
    cands = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    cands.sort(key=lambda p: [int(v) for v in re.findall(r"/postgresql/(\d+)", p)] or [0])
    return cands[-1] if cands else None


@pytest.fixture(scope="session")
def pg_server():
    pg_ctl, initdb = _pg_bin("pg_ctl"), _pg_bin("initdb")
    if not pg_ctl or not initdb:
        pytest.skip("PostgreSQL (pg_ctl, initdb) not installed")
    pytest.importorskip("psycopg")
    import tempfile
    from pathlib import Path

    prefix = []
    # not under pytest's tmp dir: that is private to root and the server user must reach it
    base = Path(tempfile.mkdtemp(prefix="her2-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres system user")
        if not runuser:
            pytest.skip("running as root without runuser")
        prefix = [runuser, "-u", "postgres", "--"]
        os.chown(base, pw.pw_uid, pw.pw_gid)
        base.chmod(0o700)
    port = _free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    try:
        subprocess.run(prefix + [initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8", "--no-sync"], **run)
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-l", str(base / "log.txt"), "-w", "-o",
                                 f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
                                 "start"], **run)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {getattr(exc, 'stderr', exc)}")
    yield f"postgresql://postgres@127.0.0.1:{port}"
    subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    import psycopg

    name = "t_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{pg_server}/{name}"
