"""Crash safety and concurrent writers on the SQLite store (separate processes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from her2core.reader_study.db import open_database, sqlite_url
from her2core.reader_study.service import ReaderStudyService

from .conftest import READERS, make_cases

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("rs_worker.py")


def _spawn(url, study, code, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, str(WORKER), url, study, code, *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_ids(db):
    with db.engine.connect() as c:
        return set(c.execute(text("SELECT id FROM reads")).scalars())


def test_kill_9_mid_loop_loses_no_acknowledged_read(tmp_path):
    url = sqlite_url(tmp_path / "crash.db")
    db = open_database(url)
    created = ReaderStudyService(db).create_study("crash", make_cases(200), READERS[:1], seed=3)
    db.dispose()
    proc = _spawn(url, "crash", created.reader_codes["Alice"])
    acked = []
    try:
        for line in proc.stdout:
            if line.startswith("READ "):
                acked.append(int(line.split()[1]))
                if len(acked) >= 40:
                    os.kill(proc.pid, signal.SIGKILL)  # mid-loop, possibly mid-transaction
                    break
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    db = open_database(url)
    try:
        assert db.integrity_check() == "ok"
        stored = _read_ids(db)
        assert set(acked) <= stored
        assert len(stored) < 400  # it really was interrupted
        # and the reader resumes at the first step without a read
        svc = ReaderStudyService(db)
        r = svc.sign_in("crash", created.reader_codes["Alice"])
        assert svc.progress(r).done == len(stored)
        assert svc.next_case(r).case.position == len(stored) + 1
    finally:
        db.dispose()


def test_three_readers_writing_at_once_lose_nothing(tmp_path):
    url = sqlite_url(tmp_path / "conc.db")
    db = open_database(url)
    created = ReaderStudyService(db).create_study("conc", make_cases(10), READERS, seed=4)
    db.dispose()
    go = tmp_path / "go"
    procs = [_spawn(url, "conc", created.reader_codes[r["name"]], str(go)) for r in READERS]
    for p in procs:  # all signed in and waiting
        assert p.stdout.readline().strip() == "READY", p.stderr.read()
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out)
    acked = [int(line.split()[1]) for out in outs for line in out.splitlines() if line.startswith("READ ")]
    assert len(acked) == 60 and len(set(acked)) == 60
    db = open_database(url)
    try:
        assert db.integrity_check() == "ok"
        assert _read_ids(db) == set(acked)
        with db.engine.connect() as c:
            per = dict(c.execute(text("SELECT reader_id, count(*) FROM reads GROUP BY reader_id")).all())
            dup = c.execute(text("SELECT count(*) FROM (SELECT queue_item_id FROM reads "
                                 "GROUP BY queue_item_id HAVING count(*) > 1)")).scalar()
        assert sorted(per.values()) == [20, 20, 20] and dup == 0
    finally:
        db.dispose()


def test_threads_sharing_one_service_lose_nothing(tmp_path):
    """The app shares one service (one engine) between Streamlit sessions (threads)."""
    import threading

    svc = ReaderStudyService.open(sqlite_url(tmp_path / "threads.db"))
    created = svc.create_study("thr", make_cases(8), READERS, seed=5)
    errors = []

    def work(name):
        try:
            r = svc.sign_in("thr", created.reader_codes[name])
            while (nxt := svc.next_case(r)).status == "case":
                svc.save_read(r, nxt.case.queue_item_id, call_positive=True, confidence=50)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(r["name"],)) for r in READERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert errors == []
        with svc.db.engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM reads")).scalar() == 48
        assert svc.db.integrity_check() == "ok"
    finally:
        svc.db.dispose()
