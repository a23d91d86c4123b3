from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from numpy.testing import assert_allclose
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError, IntegrityError

from her2core.reader_study import export as ex
from her2core.metrics import auc as auc_of
from her2core.reader_study import mrmc
from her2core.reader_study.db import current_revision, open_database, sqlite_url
from her2core.reader_study.models import Base
from her2core.reader_study.service import (AccessDenied, ReaderStudyError, ReaderStudyService,
                                           hash_code, queue_order, verify_code)

from .conftest import READERS, make_cases


def _create(svc, **kw):
    args = dict(cases=make_cases(12), readers=READERS, seed=42,
                model_info={"bundle_checksum": "sha256:abc"})
    args.update(kw)
    return svc.create_study("S1", **args)


def _answer(view, rng, truth_by_case=None, ask_low=False):
    """A plausible read: aided reads agree with the model output more often."""
    if view.model_output is not None:
        p = view.model_output["p_her2"]
    else:
        p = rng.uniform(0, 1)
    call = bool(p > 0.5)
    low = (bool(rng.integers(0, 2)) if not call else None) if ask_low else None
    return dict(call_positive=call, confidence=float(round(abs(p - 0.5) * 200)), her2_low_call=low)


def _read_all(svc, session, clock, rng, ask_low=False, limit=None):
    n = 0
    while True:
        nxt = svc.next_case(session)
        if nxt.status != "case":
            return nxt
        clock.advance(seconds=7)
        svc.save_read(session, nxt.case.queue_item_id, **_answer(nxt.case, rng, ask_low=ask_low))
        n += 1
        if limit is not None and n >= limit:
            return nxt


# ----------------------------------------------------------------------------- schema

def test_migrations_match_orm_metadata(svc):
    with svc.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []
    assert current_revision(svc.db.engine) == "0003"


def test_migration_downgrade_and_upgrade_again(tmp_path):
    from alembic import command
    from sqlalchemy import inspect

    from her2core.reader_study.db import alembic_config, make_engine, upgrade
    engine = make_engine(sqlite_url(tmp_path / "m.db"))
    upgrade(engine)
    with engine.begin() as c:
        command.downgrade(alembic_config(c), "base")
    assert inspect(engine).get_table_names() == ["alembic_version"]
    upgrade(engine)
    assert current_revision(engine) == "0003"
    assert "her2_low_confidence" in {c["name"] for c in inspect(engine).get_columns("reads")}
    with engine.connect() as c:
        assert len(c.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all()) == 8
    engine.dispose()


def test_sqlite_pragmas(svc):
    with svc.db.engine.connect() as c:
        got = [c.execute(text(f"PRAGMA {p}")).scalar()
               for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")]
    assert got == ["wal", 2, 1, 30000]  # synchronous 2 = FULL


def test_reads_are_append_only_in_sqlite(svc, clock):
    created = _create(svc)
    r = svc.sign_in("S1", created.reader_codes["Alice"])
    nxt = svc.next_case(r)
    svc.save_read(r, nxt.case.queue_item_id, call_positive=True, confidence=80)
    for stmt in ("UPDATE reads SET confidence = 1", "DELETE FROM reads",
                 "UPDATE serves SET served_at = NULL", "DELETE FROM queue_items"):
        with pytest.raises(DatabaseError, match="append-only"):
            with svc.db.engine.begin() as c:
                c.execute(text(stmt))
    with svc.db.engine.connect() as c:
        assert c.execute(text("SELECT confidence FROM reads")).scalar() == 80


def test_foreign_keys_enforced(svc):
    with pytest.raises(IntegrityError):
        with svc.db.engine.begin() as c:
            c.execute(text("INSERT INTO serves (queue_item_id, served_at) VALUES (999, '2026-01-01')"))


# ----------------------------------------------------------------------------- access

def test_codes_hashed_and_checked(svc, db_path):
    created = _create(svc)
    assert set(created.reader_codes) == {"Alice", "Bob", "Chen"}
    raw = db_path.read_bytes() + (db_path.parent / (db_path.name + "-wal")).read_bytes()
    for code in [created.owner_code, *created.reader_codes.values()]:
        assert code.encode() not in raw and code.split("-", 1)[1].encode() not in raw
    r = svc.sign_in("S1", created.reader_codes["Bob"].lower())  # case-insensitive
    assert (r.reader_name, r.reader_number) == ("Bob", 2)
    with pytest.raises(AccessDenied):
        svc.sign_in("S1", created.reader_codes["Bob"][:-1] + "X")
    with pytest.raises(AccessDenied):
        svc.sign_in("S1", created.owner_code)
    with pytest.raises(AccessDenied):
        svc.sign_in("nope", created.reader_codes["Bob"])
    with pytest.raises(AccessDenied):
        svc.owner_sign_in("S1", created.reader_codes["Alice"])
    assert svc.owner_sign_in("S1", created.owner_code).study_name == "S1"
    h = hash_code("R1-AAAA-BBBB-CCCC")
    assert h.startswith("scrypt$16384$8$1$") and verify_code("r1-aaaa-bbbb-cccc", h)
    assert h != hash_code("R1-AAAA-BBBB-CCCC")  # salted
    with pytest.raises(AccessDenied):
        svc.reads_table(r)  # a reader session is not an owner session
    # sessions cannot be forged or re-targeted
    from her2core.reader_study.service import OwnerSession, ReaderSession
    with pytest.raises(AccessDenied):
        svc.next_case(ReaderSession(r.study_id, "S1", r.reader_id, 2, "Bob"))
    with pytest.raises(AccessDenied):
        svc.next_case(dataclasses.replace(r, reader_id=r.reader_id - 1))
    with pytest.raises(AccessDenied):
        svc.reads_table(OwnerSession(r.study_id, "S1"))


def test_reader_cannot_touch_other_readers_items(svc):
    created = _create(svc)
    a = svc.sign_in("S1", created.reader_codes["Alice"])
    b = svc.sign_in("S1", created.reader_codes["Bob"])
    na = svc.next_case(a)
    with pytest.raises(AccessDenied):
        svc.save_read(b, na.case.queue_item_id, call_positive=True, confidence=50)
    rec = svc.save_read(a, na.case.queue_item_id, call_positive=True, confidence=50)
    with pytest.raises(AccessDenied):
        svc.correct_read(b, rec.read_id, call_positive=False, confidence=50)
    assert svc.my_reads(b) == []


def test_case_view_never_holds_truth_and_model_only_after_unaided(svc):
    created = _create(svc)
    r = svc.sign_in("S1", created.reader_codes["Chen"])
    nxt = svc.next_case(r)
    view = nxt.case
    fields = {f.name for f in dataclasses.fields(view)}
    assert not fields & {"her2", "her2_low", "truth", "label"}
    assert view.arm == "unaided" and view.model_output is None
    assert not svc.model_output_allowed(r, view.case_id)
    # the aided step of the same case cannot be saved before the unaided one
    svc.save_read(r, view.queue_item_id, call_positive=False, confidence=30)
    assert svc.model_output_allowed(r, view.case_id)
    aided = svc.next_case(r).case
    assert aided.arm == "aided" and aided.case_id == view.case_id
    p = {c["case_id"]: c["model_output"]["p_her2"] for c in make_cases(12)}[view.case_id]
    assert aided.model_output == {"p_her2": p, "model_info": {"bundle_checksum": "sha256:abc"}}
    for rv in svc.my_reads(r):
        assert not {f.name for f in dataclasses.fields(rv)} & {"her2", "her2_low", "truth"}


# ----------------------------------------------------------------------------- queue

def test_sequential_queue_is_seeded_and_paired(svc):
    created = _create(svc)
    st = svc.study_status(svc.owner_sign_in("S1", created.owner_code))
    assert (st.n_cases, st.n_positive, st.seed, st.design) == (12, 6, 42, "sequential")
    q = svc.queue_table(svc.owner_sign_in("S1", created.owner_code))
    df = q.rename(columns={"reader_number": "reader", "reader": "name", "case_id": "case"})
    assert len(df) == 72 and set(df["session"]) == {1}
    orders = {}
    for rd, g in df.groupby("reader"):
        assert list(g["arm"]) == ["unaided", "aided"] * 12
        assert list(g["case"].iloc[::2]) == list(g["case"].iloc[1::2])
        assert sorted(g["case"].iloc[::2]) == [f"C{i:03d}" for i in range(12)]
        orders[rd] = list(g["case"].iloc[::2])
    assert orders[1] != orders[2] != orders[3]
    # the order is the recorded seed's permutation
    from her2core.reader_study.service import _order_seed
    perm = queue_order(_order_seed(42, 1), 1, 12)
    assert orders[1] == [f"C{i:03d}" for i in perm]


def test_two_sessions_washout(svc, clock):
    created = _create(svc, design="two_sessions", washout_days=14)
    r = svc.sign_in("S1", created.reader_codes["Alice"])
    rng = np.random.default_rng(0)
    first = svc.next_case(r).case
    assert (first.session, first.arm) == (1, "unaided")
    nxt = _read_all(svc, r, clock, rng)
    assert nxt.status == "washout" and nxt.done == 12 and nxt.total == 24
    assert nxt.available_at == clock.t + pd.Timedelta(days=14).to_pytimedelta()
    assert svc.progress(r).status == "washout"
    clock.advance(days=13, hours=23)
    assert svc.next_case(r).status == "washout"
    clock.advance(hours=1)
    nxt = svc.next_case(r)
    assert nxt.status == "case" and nxt.case.arm == "aided" and nxt.case.session == 2
    assert nxt.case.model_output is not None
    nxt = _read_all(svc, r, clock, rng)
    assert nxt.status == "done" and svc.progress(r).status == "done"


def test_design_validation(svc):
    with pytest.raises(ReaderStudyError, match="washout"):
        _create(svc, design="two_sessions", washout_days=0)
    with pytest.raises(ReaderStudyError, match="design"):
        _create(svc, design="crossover")
    bad = make_cases(4)
    bad[1]["her2"] = None
    with pytest.raises(ReaderStudyError, match="case C001"):
        _create(svc, cases=bad)
    with pytest.raises(ReaderStudyError, match="junior or senior"):
        _create(svc, readers=[{"name": "X", "level": "expert"}])
    _create(svc)
    with pytest.raises(ReaderStudyError, match="already exists"):
        _create(svc)


# ----------------------------------------------------------------------------- reads

def test_time_on_case_and_shown(svc, clock):
    created = _create(svc)
    r = svc.sign_in("S1", created.reader_codes["Alice"])
    v = svc.next_case(r).case
    clock.advance(seconds=30)
    assert svc.next_case(r).case.served_at == v.served_at  # re-serving keeps the first time
    clock.advance(seconds=12.5)
    rec = svc.save_read(r, v.queue_item_id, call_positive=True, confidence=70, notes="spiculated",
                        client_shown={"images": ["DCE", "T2"]})
    assert rec.time_on_case_s == 42.5
    a = svc.next_case(r).case
    clock.advance(seconds=5)
    svc.save_read(r, a.queue_item_id, call_positive=True, confidence=90)
    df = svc.reads_table(svc.owner_sign_in("S1", created.owner_code))
    shown = [json.loads(x) for x in df["shown"]]
    assert shown[0]["model_output"] is None and shown[0]["client"] == {"images": ["DCE", "T2"]}
    assert shown[1]["model_output"]["model_info"]["bundle_checksum"] == "sha256:abc"
    assert_allclose(df["time_on_case_s"], [42.5, 5.0])
    assert list(df["rating"]) == [85.0, 95.0]
    assert df["notes"].iloc[0] == "spiculated"


def test_save_validation(svc):
    created = _create(svc, ask_her2_low=True)
    r = svc.sign_in("S1", created.reader_codes["Alice"])
    v = svc.next_case(r).case
    assert v.ask_her2_low
    with pytest.raises(ReaderStudyError, match="0-100"):
        svc.save_read(r, v.queue_item_id, call_positive=True, confidence=101)
    with pytest.raises(ReaderStudyError, match="HER2-low"):
        svc.save_read(r, v.queue_item_id, call_positive=False, confidence=50)
    with pytest.raises(ReaderStudyError, match="HER2-low"):
        svc.save_read(r, v.queue_item_id, call_positive=True, confidence=50, her2_low_call=True)
    with pytest.raises(ReaderStudyError, match="HER2-low confidence must lie in 0-100"):
        svc.save_read(r, v.queue_item_id, call_positive=False, confidence=50, her2_low_call=True,
                      her2_low_confidence=120)
    svc.save_read(r, v.queue_item_id, call_positive=False, confidence=50, her2_low_call=True,
                  her2_low_confidence=80)
    owner = svc.owner_sign_in("S1", created.owner_code)
    eff = svc.reads_table(owner)
    assert eff["her2_low_confidence"].iloc[0] == 80 and eff["her2_low_rating"].iloc[0] == 90
    with pytest.raises(ReaderStudyError, match="already has a saved read"):
        svc.save_read(r, v.queue_item_id, call_positive=False, confidence=60, her2_low_call=False)
    # a step not yet served cannot be saved
    with svc.db.engine.connect() as c:
        later = c.execute(text("SELECT id FROM queue_items WHERE reader_id = :r AND position = 5"),
                          {"r": r.reader_id}).scalar()
    with pytest.raises(ReaderStudyError, match="not been shown"):
        svc.save_read(r, later, call_positive=True, confidence=50)


def test_corrections_append_and_analysis_uses_latest(svc, clock):
    created = _create(svc)
    owner = svc.owner_sign_in("S1", created.owner_code)
    r = svc.sign_in("S1", created.reader_codes["Bob"])
    v = svc.next_case(r).case
    first = svc.save_read(r, v.queue_item_id, call_positive=True, confidence=20)
    clock.advance(seconds=3)
    second = svc.correct_read(r, first.read_id, call_positive=False, confidence=60, reason="typo")
    assert second.supersedes_id == first.read_id
    with pytest.raises(ReaderStudyError, match="already been corrected"):
        svc.correct_read(r, first.read_id, call_positive=True, confidence=10)
    third = svc.correct_read(r, second.read_id, call_positive=False, confidence=65)
    eff = svc.reads_table(owner)
    assert list(eff["read_id"]) == [third.read_id]
    assert eff["confidence"].iloc[0] == 65 and not eff["call_positive"].iloc[0]
    full = svc.reads_table(owner, effective_only=False)
    assert list(full["read_id"]) == [first.read_id, second.read_id, third.read_id]
    assert list(full["superseded"]) == [True, True, False]
    assert list(full["confidence"]) == [20, 60, 65]  # nothing overwritten
    views = {v.read_id: v for v in svc.my_reads(r)}
    assert views[third.read_id].correctable and not views[first.read_id].correctable
    # once the aided step has been served, the unaided read is frozen
    a = svc.next_case(r).case
    assert a.arm == "aided"
    with pytest.raises(ReaderStudyError, match="after the model output was shown"):
        svc.correct_read(r, third.read_id, call_positive=True, confidence=90)
    aid = svc.save_read(r, a.queue_item_id, call_positive=True, confidence=70)
    svc.correct_read(r, aid.read_id, call_positive=True, confidence=75)


def test_resume_after_restart(db_path, clock):
    db = open_database(sqlite_url(db_path))
    s1 = ReaderStudyService(db, clock=clock)
    created = s1.create_study("S1", make_cases(6), READERS[:2], seed=7)
    r = s1.sign_in("S1", created.reader_codes["Alice"])
    rng = np.random.default_rng(1)
    _read_all(s1, r, clock, rng, limit=5)
    pending = s1.next_case(r).case
    db.dispose()  # "server restart": nothing kept in memory
    db2 = open_database(sqlite_url(db_path))
    s2 = ReaderStudyService(db2, clock=clock)
    r2 = s2.sign_in("S1", created.reader_codes["Alice"])
    again = s2.next_case(r2).case
    assert again == pending and again.position == 6
    p = s2.progress(r2)
    assert (p.done, p.total, p.done_unaided, p.done_aided) == (5, 12, 3, 2)
    db2.dispose()


def test_full_study_analysis_and_exports(svc, clock):
    created = _create(svc, ask_her2_low=True)
    rng = np.random.default_rng(5)
    for name in ("Alice", "Bob", "Chen"):
        r = svc.sign_in("S1", created.reader_codes[name])
        assert _read_all(svc, r, clock, rng, ask_low=True).status == "done"
    owner = svc.owner_sign_in("S1", created.owner_code)
    st = svc.study_status(owner)
    assert st.n_reads == 72 and all(p.status == "done" for p in st.readers)
    res = svc.analyze(owner)
    assert res["study"]["complete"] and res["study"]["n_reads_effective"] == 72
    jk = res["mrmc"]["jackknife"]
    # recompute from the MRMCaov export: same numbers
    d = pd.read_csv(pd.io.common.StringIO(svc.export(owner, "mrmcaov")))
    assert list(d.columns) == ["reader", "treatment", "case", "truth", "rating"]
    assert len(d) == 72 and set(d["treatment"]) == {"unaided", "aided"}
    cube, truth, trs, rds, _ = mrmc.ratings_cube(d, treatments=["unaided", "aided"])
    ref = mrmc.or_analysis(cube, truth, treatments=trs, readers=rds)
    assert_allclose(jk["rrrc"]["p_value"], ref.rrrc.p_value, rtol=1e-12)
    assert_allclose(jk["auc_mean"], ref.auc_mean, rtol=1e-12)
    # aided reads follow the model: their AUC equals the model's AUC for every reader
    p = {c["case_id"]: c["model_output"]["p_her2"] for c in make_cases(12)}
    t = {c["case_id"]: c["her2"] for c in make_cases(12)}
    ids = sorted(p)
    model_auc = auc_of([t[i] for i in ids], [p[i] for i in ids])
    aided = [x for x in res["per_reader"] if x["arm"] == "aided"]
    assert_allclose([x["auc"] for x in aided], model_auc, rtol=1e-12)
    assert set(res["groups"]) == {"junior", "senior"}
    assert all(x["time_on_case_s"]["median"] == 7.0 for x in res["per_reader"])
    # HER2-low vs zero: scored on truly negative cases called negative, per reader and arm
    eff = svc.reads_table(owner)
    for h in res["her2_low"]:
        g = eff[(eff["reader"] == h["reader"]) & (eff["arm"] == h["arm"]) & (eff["her2"] == 0)
                & eff["her2_low_call"].notna()]
        assert h["n_cases"] == len(g) > 0
        tp = int(((g["her2_low"] == 1) & (g["her2_low_call"] == True)).sum())  # noqa: E712
        assert h["sensitivity"]["k"] == tp and h["sensitivity"]["n"] == int((g["her2_low"] == 1).sum())
    assert res["groups"]["senior"]["mrmc"].get("error")  # one senior reader: no OR analysis
    # iMRMC export round trip
    back = ex.read_imrmc(svc.export(owner, "imrmc"))
    assert len(back) == 72 and back["truth"].sum() == 36
    merged = back.merge(d.astype({"case": str}), on=["reader", "treatment", "case"])
    assert_allclose(merged["rating_x"], merged["rating_y"])
    assert (merged["truth_x"] == merged["truth_y"]).all()
    csv = pd.read_csv(pd.io.common.StringIO(svc.export(owner, "csv")))
    assert len(csv) == 72 and "her2_low_call" in csv.columns
    with svc.db.engine.connect() as c:
        actions = c.execute(text("SELECT action FROM audit_events ORDER BY id")).scalars().all()
    assert actions == ["create_study", "analyze", "export", "export", "export"]
