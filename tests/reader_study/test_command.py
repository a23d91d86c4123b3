"""`python -m her2core reader-study ...` end to end on a tiny cohort (in-process)."""
from __future__ import annotations

import json
import re

import numpy as np
from pathlib import Path
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.cli import main
from her2core.commands import reader_study as cmd
from her2core.reader_study import mrmc
from her2core.reader_study.service import ReaderStudyService


@pytest.fixture
def setup(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    rng = np.random.default_rng(0)
    rows, preds = ["case_id,her2,her2_ihc"], ["case_id,p_her2,points"]
    for i in range(10):
        h = i % 2
        rows.append(f"K{i:02d},{h},{'3+' if h else ['0', '1+', '2+'][i % 3]}")
        preds.append(f"K{i:02d},{np.clip(0.5 + (0.3 if h else -0.3) + rng.normal(0, 0.3), 0.01, 0.99):.3f},{i * 10}")
    rows.append("K99,,")  # no truth: not in the study
    (cohort / "cohort.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "preds.csv").write_text("\n".join(preds) + "\n")
    (tmp_path / "readers.csv").write_text("name,level,years\nAnn,senior,20\nBen,junior,4\nCat,junior,2\n")
    return tmp_path


DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "assets" / "demo_bundle"


def test_reader_study_command_end_to_end(setup, capsys, monkeypatch):
    t = setup
    db = f"sqlite:///{t / 'rs.db'}"
    assert cmd.NAME == "reader-study"
    rc = main(["reader-study", "create", "--db", db, "--name", "pilot", "--cohort", str(t / "cohort"),
               "--readers", str(t / "readers.csv"), "--predictions", str(t / "preds.csv"),
               "--bundle", str(DEMO_BUNDLE), "--design", "two_sessions", "--washout-days", "0.001",
               "--seed", "11", "--codes-out", str(t / "codes.txt")])
    assert rc == 0
    out = capsys.readouterr().out
    owner = re.search(r"owner code: (\S+)", out).group(1)
    codes = dict(re.findall(r"reader (\w+): (\S+)", out))
    assert set(codes) == {"Ann", "Ben", "Cat"}
    assert (t / "codes.txt").read_text(encoding="utf-8") == out and (t / "codes.txt").stat().st_mode & 0o777 == 0o600

    svc = ReaderStudyService.open(db, clock=lambda: pd.Timestamp("2026-03-01", tz="UTC").to_pydatetime()
                                  + pd.Timedelta(days=svc_days[0]).to_pytimedelta())
    svc_days = [0.0]
    rng = np.random.default_rng(3)
    for name, code in codes.items():
        r = svc.sign_in("pilot", code)
        while True:
            nxt = svc.next_case(r)
            if nxt.status == "washout":
                svc_days[0] += 1
                continue
            if nxt.status == "done":
                break
            mo = nxt.case.model_output
            p = mo["p_her2"] if mo else rng.uniform(0.1, 0.9)
            svc.save_read(r, nxt.case.queue_item_id, call_positive=p > 0.5,
                          confidence=abs(p - 0.5) * 200)
    svc.db.dispose()
    monkeypatch.setenv("HER2_OWNER_CODE", owner)
    assert main(["reader-study", "status", "--db", db, "--study", "pilot"]) == 0
    status = capsys.readouterr().out
    assert "10 cases (5 HER2-positive), 60 reads" in status and status.count("20/20") == 3
    assert main(["reader-study", "--db", db, "export", "--study", "pilot", "--format", "mrmcaov",
                 "--out", str(t / "m.csv")]) == 0
    m = pd.read_csv(t / "m.csv")
    assert len(m) == 60 and set(m["case"]) == {f"K{i:02d}" for i in range(10)}
    assert main(["reader-study", "--db", db, "analyze", "--study", "pilot", "--json", str(t / "a.json"),
                 "--html", str(t / "a.html"), "--pdf", str(t / "a.pdf")]) == 0
    res = json.loads((t / "a.json").read_text(encoding="utf-8"))
    cube, truth, trs, rds, _ = mrmc.ratings_cube(m, treatments=["unaided", "aided"])
    ref = mrmc.or_analysis(cube, truth, treatments=trs, readers=rds)
    assert_allclose(res["mrmc"]["jackknife"]["rrrc"]["value"], ref.rrrc.value, rtol=1e-12)
    assert res["mrmc"]["jackknife"]["note"] is None
    assert res["study"]["design"] == "two_sessions"
    page = (t / "a.html").read_text(encoding="utf-8")
    assert "Reader study report: pilot" in page and "The model alone vs the readers" in page
    assert (t / "a.pdf").read_bytes()[:5] == b"%PDF-"
    # the aided arm showed the model output and the bundle checksum
    full = ReaderStudyService.open(db)
    tab = full.reads_table(full.owner_sign_in("pilot", owner))
    aided = [json.loads(s) for s in tab.loc[tab["arm"] == "aided", "shown"]]
    assert all(a["model_output"]["model_info"]["bundle_checksum"].startswith("sha256:") for a in aided)
    assert all("points" in a["model_output"] for a in aided)
    full.db.dispose()
    # wrong owner code: one-line error, exit code 2
    assert main(["reader-study", "--db", db, "status", "--study", "pilot", "--owner-code", "nope"]) == 2
    assert "wrong access code" in capsys.readouterr().err


def test_create_rejects_bad_readers_csv(setup, capsys):
    t = setup
    (t / "bad.csv").write_text("name,role\nX,boss\n")
    rc = main(["reader-study", "--db", f"sqlite:///{t / 'x.db'}", "create", "--name", "p",
               "--cohort", str(t / "cohort"), "--readers", str(t / "bad.csv")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "level" in err


def test_inputs_accept_uploads_and_name_the_file():
    import io

    from her2core.reader_study.inputs import load_predictions, load_readers
    from her2core.reader_study.service import ReaderStudyError

    assert load_readers(b"name,level,years\nA,senior,3\nB,junior,\n") == [
        {"name": "A", "level": "senior", "years": 3.0}, {"name": "B", "level": "junior", "years": None}]
    f = io.BytesIO(b"case_id,p_her2,note\nX,0.25,spiculated\n")
    f.name = "preds.csv"
    assert load_predictions(f) == {"X": {"p_her2": 0.25, "note": "spiculated"}}
    bad = io.BytesIO(b"case_id,p_her2\nY,1.5\n")
    bad.name = "preds.csv"
    with pytest.raises(ReaderStudyError, match="case Y, file preds.csv"):
        load_predictions(bad)
