"""The owner's report (her2core.reader_study.report), sample-size planning from the study's own
variance components, interim analyses that say what is missing, and resume tokens."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from her2core.reader_study import mrmc, report
from her2core.reader_study.service import AccessDenied, ReaderStudyError

from .conftest import READERS, make_cases
from .test_plots import _result


def _study(svc, **kw):
    return svc.create_study("R1", make_cases(8), READERS, seed=3, ask_her2_low=True, **kw)


def _read(svc, session, n=None):
    k = 0
    while (nxt := svc.next_case(session)).status == "case" and (n is None or k < n):
        pos = bool(k % 2)
        svc.save_read(session, nxt.case.queue_item_id, call_positive=pos, confidence=(30 + 7 * k) % 100,
                      her2_low_call=None if pos else bool(k % 3), her2_low_confidence=None if pos else 60)
        k += 1


def test_interim_analysis_of_two_reads_says_what_is_missing_and_writes_the_report(svc, tmp_path):
    made = _study(svc)
    _read(svc, svc.sign_in("R1", made.reader_codes["Alice"]), n=2)
    owner = svc.owner_sign_in("R1", made.owner_code)
    res = svc.analyze(owner)
    assert not res["study"]["complete"]
    miss = report.missing_table(res)
    # 8 cases x 2 arms per reader; Alice read one case unaided and aided
    assert miss.set_index("reader")[["unaided", "aided"]].to_dict("index") == {
        "Alice": {"unaided": 7, "aided": 7}, "Bob": {"unaided": 8, "aided": 8},
        "Chen": {"unaided": 8, "aided": 8}}
    notes = report.interim_notes(res)
    assert notes[0].startswith("Interim analysis of 2 saved reads: 46 reads are still missing")
    assert any("MRMC (jackknife) not computed yet: only 1 reader(s)" in n for n in notes)
    files = report.write_report(res, tmp_path / "rep")
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "Interim: what is missing" in html and "46 reads are still missing" in html
    assert (tmp_path / "rep" / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert pd.read_csv(files["reads_still_missing"])["aided"].tolist() == [7, 8, 8]
    with pytest.raises(ReaderStudyError, match="no OR analysis yet"):
        report.sample_size_plan(res, effect=0.05, readers=[3])


def test_complete_study_report_tables_match_the_analysis(svc):
    made = _study(svc)
    for name in made.reader_codes:
        _read(svc, svc.sign_in("R1", made.reader_codes[name]))
    res = svc.analyze(svc.owner_sign_in("R1", made.owner_code))
    assert res["study"]["complete"] and report.missing_table(res).empty
    assert not [n for n in report.interim_notes(res) if n.startswith("Interim")]
    titles = [t for t, _ in report.report_tables(res)]
    assert any(t.startswith("The model alone vs the readers") for t in titles)
    assert any(t.startswith("MRMC of HER2-low") for t in titles)
    st = report.standalone_table(res)
    row = st[(st["arm"] == "aided") & (st["analysis"] == "1T-RRRC")].iloc[0]
    assert_allclose(row["model AUC"], round(res["standalone"]["aided"]["1T-RRRC"]["model_auc"], 3))
    m = report.mrmc_table(res)
    rr = m[(m["covariance"] == "jackknife") & (m["analysis"] == "RRRC")].iloc[0]
    assert_allclose(rr["p"], round(res["mrmc"]["jackknife"]["rrrc"]["p_value"], 4))
    html = report.report_html(res)
    assert html.count("<img") == 2 and "Reader study report: R1" in html


def test_sample_size_plan_uses_the_studys_variance_components():
    """The Van Dyke study as the pilot: same numbers as mrmc.sample_size / or_power on its OR
    jackknife components (those are checked against RJafroc SsPowerGivenJK in
    test_mrmc_designs)."""
    res = _result()
    pilot = res["mrmc"]["jackknife"]
    plan = report.sample_size_plan(res, effect=0.05, readers=[5, 10], target_power=0.8)
    ref = mrmc.sample_size(0.05, [5, 10], pilot=pilot, target_power=0.8)
    assert plan["cases"].tolist() == [r["cases"] for r in ref]
    assert (plan["power"] >= 0.8).all()
    comps = dict(var_tr=pilot["var_tr"], cov1=pilot["cov1"], cov2=pilot["cov2"],
                 cov3=pilot["cov3"], var_error=pilot["var_error"], pilot_cases=pilot["n_cases"])
    below = mrmc.or_power(0.05, 10, int(plan["cases"].iloc[1]) - 1, **comps).power
    assert below < 0.8
    grid = report.power_grid(res, effect=0.05, readers=[5, 10], cases=[100, 200])
    assert_allclose(grid.loc[10, "200 cases"], mrmc.or_power(0.05, 10, 200, **comps).power)
    assert grid.loc[10, "200 cases"] > grid.loc[5, "100 cases"]
    with pytest.raises(ReaderStudyError, match="AUC difference"):
        report.sample_size_plan(res, effect=5, readers=[5])


def test_resume_token_signs_the_reader_back_in_until_sign_out(svc, clock):
    made = _study(svc)
    r = svc.sign_in("R1", made.reader_codes["Bob"])
    token = svc.resume_token(r)
    assert made.reader_codes["Bob"] not in token and "Bob" not in token and len(token) >= 32
    back = svc.resume(token)
    assert (back.reader_id, back.reader_name, back.study_name) == (r.reader_id, "Bob", "R1")
    assert svc.next_case(back).status == "case"           # a valid session for the service
    # only the hash is stored
    with svc.db.engine.connect() as c:
        from sqlalchemy import text
        stored = c.execute(text("SELECT token_hash FROM resume_tokens")).scalars().all()
    assert stored and token not in stored
    svc.end_resume(token)
    with pytest.raises(AccessDenied):
        svc.resume(token)
    with pytest.raises(AccessDenied):
        svc.resume("not-a-token")
    old = svc.resume_token(r)
    clock.advance(days=31)
    with pytest.raises(AccessDenied, match="expired"):
        svc.resume(old)
