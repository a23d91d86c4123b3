"""The same store on PostgreSQL (skipped when PostgreSQL is not installed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from her2core.reader_study.db import open_database
from her2core.reader_study.models import Base
from her2core.reader_study.service import ReaderStudyError, ReaderStudyService

from .conftest import READERS, make_cases


@pytest.fixture
def pg_svc(pg_url, clock, monkeypatch):
    monkeypatch.setenv("HER2_DB_URL", pg_url)  # also checks the env-var path
    db = open_database()
    assert db.dialect == "postgresql" and db.engine.dialect.driver == "psycopg"
    yield ReaderStudyService(db, clock=clock)
    db.dispose()


def test_pg_migrations_triggers_and_flow(pg_svc, clock):
    svc = pg_svc
    with svc.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []
    created = svc.create_study("PG", make_cases(6), READERS, seed=9,
                               model_info={"bundle_checksum": "sha256:pg"})
    rng = np.random.default_rng(0)
    for name in ("Alice", "Bob", "Chen"):
        r = svc.sign_in("PG", created.reader_codes[name])
        while (nxt := svc.next_case(r)).status == "case":
            clock.advance(seconds=4)
            p = nxt.case.model_output["p_her2"] if nxt.case.model_output else rng.uniform()
            rec = svc.save_read(r, nxt.case.queue_item_id, call_positive=p > 0.5,
                                confidence=abs(p - 0.5) * 200)
            assert rec.time_on_case_s == 4.0
    assert nxt.status == "done"
    with pytest.raises(ReaderStudyError, match="already has a saved read"):
        svc.save_read(r, _item_of(svc, rec.read_id), call_positive=True, confidence=1)
    corr = svc.correct_read(r, rec.read_id, call_positive=True, confidence=99)
    owner = svc.owner_sign_in("PG", created.owner_code)
    tab = svc.reads_table(owner)
    assert len(tab) == 36 and corr.read_id in set(tab["read_id"]) and rec.read_id not in set(tab["read_id"])
    res = svc.analyze(owner)
    assert res["mrmc"]["jackknife"]["n_cases"] == 6
    assert json.loads(tab["shown"].iloc[-1])["correction"]["of_read"] == rec.read_id
    for stmt in ("UPDATE reads SET confidence = 1", "DELETE FROM reads", "DELETE FROM serves"):
        with pytest.raises(DBAPIError, match="append-only"):
            with svc.db.engine.begin() as c:
                c.execute(text(stmt))


def _item_of(svc, read_id):
    with svc.db.engine.connect() as c:
        return c.execute(text("SELECT queue_item_id FROM reads WHERE id = :i"), {"i": read_id}).scalar()
