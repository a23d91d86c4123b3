"""Several app sessions saving reads to one PostgreSQL at once lose nothing.

The PostgreSQL twins of test_durability.py's SQLite tests: separate processes (app
servers) and threads sharing one service (Streamlit sessions of one server), on a
throw-away local server (conftest.pg_server; skipped when PostgreSQL is absent).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import text

from her2core.reader_study.db import open_database
from her2core.reader_study.service import ReaderStudyService

from .conftest import make_cases

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("rs_worker.py")
READERS6 = [{"name": f"R{i}", "level": "junior" if i % 2 else "senior", "years": 3 + i}
            for i in range(6)]


def _spawn(url, study, code, go):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, str(WORKER), url, study, code, str(go)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _counts(db):
    with db.engine.connect() as c:
        ids = set(c.execute(text("SELECT id FROM reads")).scalars())
        per = dict(c.execute(text("SELECT reader_id, count(*) FROM reads GROUP BY reader_id")).all())
        dup = c.execute(text("SELECT count(*) FROM (SELECT queue_item_id FROM reads "
                             "GROUP BY queue_item_id HAVING count(*) > 1) d")).scalar()
        serves = c.execute(text("SELECT count(*) FROM serves")).scalar()
    return ids, per, dup, serves


def test_six_app_processes_writing_at_once_lose_nothing(pg_url, tmp_path):
    db = open_database(pg_url)
    created = ReaderStudyService(db).create_study("pgconc", make_cases(10), READERS6, seed=4)
    db.dispose()
    go = tmp_path / "go"
    procs = [_spawn(pg_url, "pgconc", created.reader_codes[r["name"]], go) for r in READERS6]
    for p in procs:  # all signed in and waiting: then they start together
        assert p.stdout.readline().strip() == "READY", p.stderr.read()
    go.touch()
    acked = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        acked += [int(line.split()[1]) for line in out.splitlines() if line.startswith("READ ")]
    assert len(acked) == 120 and len(set(acked)) == 120     # 6 readers x 10 cases x 2 arms
    db = open_database(pg_url)
    try:
        ids, per, dup, serves = _counts(db)
        assert ids == set(acked)
        assert sorted(per.values()) == [20] * 6 and dup == 0 and serves == 120
    finally:
        db.dispose()


def test_threads_sharing_one_service_on_postgres_lose_nothing(pg_url):
    """One server process: its Streamlit sessions share one service (one engine pool)."""
    svc = ReaderStudyService.open(pg_url)
    created = svc.create_study("pgthr", make_cases(8), READERS6, seed=5)
    errors, barrier = [], threading.Barrier(len(READERS6))

    def work(name):
        try:
            r = svc.sign_in("pgthr", created.reader_codes[name])
            barrier.wait(timeout=60)
            while (nxt := svc.next_case(r)).status == "case":
                svc.save_read(r, nxt.case.queue_item_id, call_positive=True, confidence=50)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(r["name"],)) for r in READERS6]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    try:
        assert errors == []
        ids, per, dup, serves = _counts(svc.db)
        assert len(ids) == 96 and sorted(per.values()) == [16] * 6 and dup == 0
        owner = svc.owner_sign_in("pgthr", created.owner_code)
        assert len(svc.reads_table(owner)) == 96
    finally:
        svc.db.dispose()


def test_one_reader_open_in_two_sessions_at_once_sees_one_step(pg_url):
    """The same reader signed in twice (two browser tabs) asks for the next step at the same
    moment: both get the same step, no error (the losing serve insert is retried)."""
    svc = ReaderStudyService.open(pg_url)
    created = svc.create_study("pgtwin", make_cases(8), READERS6[:1], seed=2)
    code = created.reader_codes["R0"]
    tabs = [svc.sign_in("pgtwin", code), svc.sign_in("pgtwin", code)]
    try:
        for _ in range(8):                       # every step raced by both tabs
            barrier, seen, errors = threading.Barrier(2), [], []

            def ask(r):
                try:
                    barrier.wait(timeout=30)
                    seen.append(svc.next_case(r).case.queue_item_id)
                except Exception as exc:  # noqa: BLE001 - asserted below
                    errors.append(repr(exc))

            threads = [threading.Thread(target=ask, args=(r,)) for r in tabs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert errors == [] and len(set(seen)) == 1
            svc.save_read(tabs[0], seen[0], call_positive=False, confidence=40)
        ids, per, dup, serves = _counts(svc.db)
        assert len(ids) == 8 and dup == 0 and serves == 8
    finally:
        svc.db.dispose()
