"""Reader-study service: the only API the app pages and the CLI use (never imports streamlit).

Who may see what is decided here, not in the pages:

* an **owner** (``owner_sign_in(study, owner_code)`` -> :class:`OwnerSession`) creates the
  study, follows progress, exports and analyses; only owner calls return truth;
* a **reader** (``sign_in(study, code)`` -> :class:`ReaderSession`) sees only their own
  queue and reads: :meth:`ReaderStudyService.next_case` returns a :class:`CaseView` with no
  truth, no other reader's data, and model output only for an aided step whose unaided read
  of the same case is saved (:meth:`ReaderStudyService.model_output_allowed`).

Access codes are made with :mod:`secrets` and stored only as salted scrypt hashes. A code
reads ``R<number>-XXXX-XXXX-XXXX`` (reader) or ``OWNER-XXXX-XXXX-XXXX-XXXX`` (owner); the
prefix only says which hash to check.

Every read is committed in its own transaction before :meth:`next_case` can move on, and
the next case is derived from the database alone (first queue position without a read),
so a reader resumes exactly where they stopped after a closed browser or a server restart.
Reads are never updated: :meth:`correct_read` appends a new read with ``supersedes_id``;
the analysis uses the read that nothing supersedes. An unaided read can no longer be
corrected once the aided step of that case has been served (the reader has seen the model).

Time on case runs from the first time the step was served (``serves`` row, written once)
to the commit of the read; it includes any break taken while the case was open.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from her2core.errors import Her2Error
from her2core.reader_study.db import Database, open_database
from her2core.reader_study.models import (AuditEvent, QueueItem, Read, Reader, ResumeToken,
                                          Serve, Study, StudyCase)

log = logging.getLogger(__name__)

DESIGNS = ("sequential", "two_sessions")
LEVELS = ("junior", "senior")
ARMS = ("unaided", "aided")
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


class ReaderStudyError(Her2Error):
    """A reader-study request that cannot be honoured (bad input, wrong state)."""


class AccessDenied(ReaderStudyError):
    """Unknown study, wrong code, or a request outside the caller's rights."""


# --------------------------------------------------------------------------- codes

def new_code(prefix: str, groups: int = 3) -> str:
    body = "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(groups))
    return f"{prefix}-{body}"


def normalise_code(code: str) -> str:
    return "".join(str(code).split()).upper()


def hash_code(code: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """Salted scrypt hash, stored as ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(normalise_code(code).encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(dk)}"


def verify_code(code: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, dk = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(normalise_code(code).encode(), salt=base64.b64decode(salt),
                             n=int(n), r=int(r), p=int(p), dklen=32)
        return hmac.compare_digest(got, base64.b64decode(dk))
    except (ValueError, TypeError):
        return False


# --------------------------------------------------------------------------- value objects

# Sessions carry an HMAC tag made with a per-process key, so that only sign_in /
# owner_sign_in can make them (a page cannot build one from, say, a query parameter).
# They live in server memory (e.g. Streamlit session state) and end with the process;
# the reader then signs in again and resumes from the database.
_SESSION_KEY = secrets.token_bytes(32)


def _tag(*parts) -> str:
    msg = "\x1f".join(str(p) for p in parts).encode()
    return hmac.new(_SESSION_KEY, msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ReaderSession:
    study_id: int
    study_name: str
    reader_id: int
    reader_number: int
    reader_name: str
    tag: str = field(default="", repr=False)

    def _valid(self) -> bool:
        return hmac.compare_digest(self.tag, _tag("reader", self.study_id, self.reader_id))


@dataclass(frozen=True)
class OwnerSession:
    study_id: int
    study_name: str
    tag: str = field(default="", repr=False)

    def _valid(self) -> bool:
        return hmac.compare_digest(self.tag, _tag("owner", self.study_id))


@dataclass(frozen=True)
class CreatedStudy:
    study_id: int
    name: str
    owner_code: str
    reader_codes: dict  # reader name -> access code (shown once, never stored)


@dataclass(frozen=True)
class CaseView:
    """What a reader may be shown for one step. Never holds truth."""
    queue_item_id: int
    case_id: str
    arm: str                 # unaided | aided
    session: int
    position: int            # 1-based step number
    total: int
    ask_her2_low: bool
    served_at: datetime
    model_output: dict | None  # only for an aided step after the unaided read is saved
    cohort_root: str | None


@dataclass(frozen=True)
class NextCase:
    status: str                       # "case" | "washout" | "done"
    case: CaseView | None = None
    available_at: datetime | None = None
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class ReadReceipt:
    read_id: int
    saved_at: datetime
    time_on_case_s: float
    supersedes_id: int | None = None


@dataclass(frozen=True)
class ReadView:
    """A reader's own read, as they may see it again (no truth)."""
    read_id: int
    case_id: str
    arm: str
    session: int
    call_positive: bool
    her2_low_call: bool | None
    confidence: float
    notes: str | None
    saved_at: datetime
    time_on_case_s: float
    supersedes_id: int | None
    superseded: bool
    correctable: bool
    her2_low_confidence: float | None = None


@dataclass(frozen=True)
class ReaderProgress:
    reader_number: int
    reader_name: str
    level: str
    years: float | None
    done: int
    total: int
    done_unaided: int
    done_aided: int
    status: str                   # "reading" | "washout" | "done"
    available_at: datetime | None
    last_saved_at: datetime | None


@dataclass(frozen=True)
class StudyStatus:
    study_id: int
    name: str
    design: str
    washout_days: float
    seed: int
    ask_her2_low: bool
    n_cases: int
    n_positive: int
    n_reads: int
    n_corrections: int
    readers: list = field(default_factory=list)  # ReaderProgress


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _order_seed(seed: int, number: int) -> int:
    h = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def queue_order(order_seed: int, session: int, n: int) -> list[int]:
    """The case permutation used for one reader and session (reproducible from the seed)."""
    return [int(i) for i in np.random.default_rng([order_seed, session]).permutation(n)]


# --------------------------------------------------------------------------- service

class ReaderStudyService:
    """All reader-study operations; state lives only in the database."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = _now,
                 resume_max_age: timedelta = timedelta(days=30)):
        self.db = db
        self._clock = clock
        self.resume_max_age = resume_max_age

    @classmethod
    def open(cls, url: str | None = None, **kw) -> "ReaderStudyService":
        return cls(open_database(url), **kw)

    def now(self) -> datetime:
        return _utc(self._clock())

    # ---------------------------------------------------------------- owner: set-up
    def create_study(self, name: str, cases: Iterable[dict], readers: Iterable[dict], *,
                     design: str = "sequential", washout_days: float = 0.0,
                     seed: int | None = None, ask_her2_low: bool = False,
                     model_info: dict | None = None, cohort_root: str | None = None
                     ) -> CreatedStudy:
        """Create a fully crossed study.

        ``cases``: dicts with case_id, her2 (0/1), optional her2_low (0/1/None) and
        model_output (dict shown in the aided arm, e.g. {"p_her2": 0.83}).
        ``readers``: dicts with name, level ("junior"/"senior"), optional years.
        Returns the owner code and one code per reader; they are not stored in clear.
        """
        name = str(name).strip()
        if not name:
            raise ReaderStudyError("the study needs a name")
        if design not in DESIGNS:
            raise ReaderStudyError(f"unknown design {design!r}", hint=f"use one of {', '.join(DESIGNS)}")
        washout_days = float(washout_days or 0.0)
        if design == "two_sessions" and washout_days <= 0:
            raise ReaderStudyError("a two-session design needs a washout > 0 days")
        if design == "sequential" and washout_days:
            raise ReaderStudyError("a sequential design has no washout", hint="set washout_days=0")
        cases = [dict(c) for c in cases]
        readers = [dict(r) for r in readers]
        if not cases:
            raise ReaderStudyError("the study has no cases")
        if not readers:
            raise ReaderStudyError("the study has no readers")
        seen = set()
        for c in cases:
            cid = str(c.get("case_id", "")).strip()
            if not cid:
                raise ReaderStudyError("a case without case_id")
            if cid in seen:
                raise ReaderStudyError("case listed twice", case_id=cid)
            seen.add(cid)
            c["case_id"] = cid
            try:
                her2 = int(c.get("her2"))
            except (TypeError, ValueError):
                her2 = None
            if her2 not in (0, 1):
                raise ReaderStudyError(f"her2 truth must be 0 or 1, got {c.get('her2')!r}", case_id=cid,
                                       hint="cases without truth cannot be in a reader study")
            c["her2"] = her2
            low = c.get("her2_low")
            if low is not None and not (isinstance(low, float) and math.isnan(low)):
                if int(low) not in (0, 1):
                    raise ReaderStudyError(f"her2_low must be 0, 1 or empty, got {low!r}", case_id=cid)
                c["her2_low"] = int(low)
            else:
                c["her2_low"] = None
        names = set()
        for r in readers:
            rn = str(r.get("name", "")).strip()
            if not rn:
                raise ReaderStudyError("a reader without a name")
            if rn in names:
                raise ReaderStudyError(f"reader {rn!r} listed twice")
            names.add(rn)
            r["name"] = rn
            lv = str(r.get("level", "")).strip().lower()
            if lv not in LEVELS:
                raise ReaderStudyError(f"reader {rn!r}: level must be junior or senior, got {r.get('level')!r}")
            r["level"] = lv
            yrs = r.get("years")
            r["years"] = None if yrs is None or (isinstance(yrs, float) and math.isnan(yrs)) else float(yrs)
        n_pos = sum(c["her2"] for c in cases)
        if n_pos == 0 or n_pos == len(cases):
            log.warning("study %s: all cases have the same truth; AUC will be undefined", name)
        seed = int(seed) if seed is not None else secrets.randbelow(2 ** 31)

        owner_code = new_code("OWNER", 4)
        reader_codes: dict[str, str] = {}
        now = self.now()
        with self.db.session() as s:
            if s.scalar(select(Study.id).where(Study.name == name)) is not None:
                raise ReaderStudyError(f"a study named {name!r} already exists")
            study = Study(name=name, created_at=now, design=design, washout_days=washout_days,
                          seed=seed, ask_her2_low=bool(ask_her2_low),
                          owner_code_hash=hash_code(owner_code), cohort_root=cohort_root,
                          model_info=model_info)
            s.add(study)
            s.flush()
            sc_rows = [StudyCase(study_id=study.id, case_id=c["case_id"], her2=c["her2"],
                                 her2_low=c["her2_low"], model_output=c.get("model_output"))
                       for c in cases]
            s.add_all(sc_rows)
            s.flush()
            n = len(sc_rows)
            for number, r in enumerate(readers, start=1):
                code = new_code(f"R{number}")
                reader_codes[r["name"]] = code
                oseed = _order_seed(seed, number)
                rd = Reader(study_id=study.id, number=number, name=r["name"], level=r["level"],
                            years=r["years"], code_hash=hash_code(code), order_seed=oseed)
                s.add(rd)
                s.flush()
                items = []
                if design == "sequential":
                    for i, k in enumerate(queue_order(oseed, 1, n)):
                        items.append(QueueItem(reader_id=rd.id, study_case_id=sc_rows[k].id,
                                               position=2 * i, session=1, arm="unaided"))
                        items.append(QueueItem(reader_id=rd.id, study_case_id=sc_rows[k].id,
                                               position=2 * i + 1, session=1, arm="aided"))
                else:
                    for i, k in enumerate(queue_order(oseed, 1, n)):
                        items.append(QueueItem(reader_id=rd.id, study_case_id=sc_rows[k].id,
                                               position=i, session=1, arm="unaided"))
                    for i, k in enumerate(queue_order(oseed, 2, n)):
                        items.append(QueueItem(reader_id=rd.id, study_case_id=sc_rows[k].id,
                                               position=n + i, session=2, arm="aided"))
                s.add_all(items)
            s.add(AuditEvent(study_id=study.id, at=now, actor="owner", action="create_study",
                             detail={"design": design, "washout_days": washout_days, "seed": seed,
                                     "n_cases": n, "n_readers": len(readers),
                                     "ask_her2_low": bool(ask_her2_low), "model_info": model_info}))
            study_id = study.id
        log.info("reader study %s created: %d cases, %d readers, design %s", name, len(cases),
                 len(readers), design)
        return CreatedStudy(study_id, name, owner_code, reader_codes)

    def list_studies(self) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(Study.name).order_by(Study.name)))

    # ---------------------------------------------------------------- sign-in
    def _study(self, s: Session, study_name: str) -> Study:
        study = s.scalar(select(Study).where(Study.name == str(study_name).strip()))
        if study is None:
            raise AccessDenied("unknown study or wrong access code")
        return study

    def owner_sign_in(self, study_name: str, owner_code: str) -> OwnerSession:
        with self.db.session() as s:
            study = self._study(s, study_name)
            if not verify_code(owner_code, study.owner_code_hash):
                raise AccessDenied("unknown study or wrong access code")
            return OwnerSession(study.id, study.name, _tag("owner", study.id))

    def sign_in(self, study_name: str, code: str) -> ReaderSession:
        code_n = normalise_code(code)
        prefix = code_n.split("-", 1)[0]
        with self.db.session() as s:
            study = self._study(s, study_name)
            if not (prefix.startswith("R") and prefix[1:].isdigit()):
                raise AccessDenied("unknown study or wrong access code")
            rd = s.scalar(select(Reader).where(Reader.study_id == study.id,
                                               Reader.number == int(prefix[1:])))
            if rd is None or not verify_code(code_n, rd.code_hash):
                raise AccessDenied("unknown study or wrong access code")
            return ReaderSession(study.id, study.name, rd.id, rd.number, rd.name,
                                 _tag("reader", study.id, rd.id))

    # ---------------------------------------------------------------- resume after a reload
    @staticmethod
    def _token_hash(token: str) -> str:
        return hashlib.sha256(str(token).strip().encode()).hexdigest()

    def resume_token(self, reader: ReaderSession) -> str:
        """A new random token that :meth:`resume` turns back into this reader's session
        (kept in the reading screen's URL, so a reload carries on). It is not the access
        code and says nothing about the reader or the cases; only its SHA-256 is stored."""
        token = secrets.token_urlsafe(24)
        with self.db.session() as s:
            rd, _ = self._reader(s, reader)
            s.add(ResumeToken(reader_id=rd.id, token_hash=self._token_hash(token),
                              created_at=self.now()))
        return token

    def resume(self, token: str) -> ReaderSession:
        """The reader session of a live resume token (AccessDenied if unknown, revoked or
        older than ``resume_max_age``)."""
        if not token or len(str(token)) > 200:
            raise AccessDenied("unknown or expired resume link; please sign in again")
        with self.db.session() as s:
            row = s.scalar(select(ResumeToken).where(
                ResumeToken.token_hash == self._token_hash(token)))
            if (row is None or row.revoked_at is not None
                    or self.now() - _utc(row.created_at) > self.resume_max_age):
                raise AccessDenied("unknown or expired resume link; please sign in again")
            rd = s.get(Reader, row.reader_id)
            study = s.get(Study, rd.study_id)
            return ReaderSession(study.id, study.name, rd.id, rd.number, rd.name,
                                 _tag("reader", study.id, rd.id))

    def end_resume(self, token: str) -> None:
        """Revoke a resume token (sign-out): the link no longer signs anyone in."""
        if not token:
            return
        with self.db.session() as s:
            row = s.scalar(select(ResumeToken).where(
                ResumeToken.token_hash == self._token_hash(token)))
            if row is not None and row.revoked_at is None:
                row.revoked_at = self.now()

    # ---------------------------------------------------------------- reader side
    def _reader(self, s: Session, reader: ReaderSession) -> tuple[Reader, Study]:
        if not isinstance(reader, ReaderSession) or not reader._valid():
            raise AccessDenied("a reader session from sign_in is required")
        rd = s.get(Reader, reader.reader_id)
        if rd is None or rd.study_id != reader.study_id:
            raise AccessDenied("reader session does not match the database")
        return rd, s.get(Study, rd.study_id)

    @staticmethod
    def _has_read(item_id):
        return exists().where(Read.queue_item_id == item_id)

    def _unaided_read_exists(self, s: Session, reader_id: int, study_case_id: int) -> bool:
        return s.scalar(select(func.count(Read.id)).where(
            Read.reader_id == reader_id, Read.study_case_id == study_case_id,
            Read.arm == "unaided")) > 0

    def _washout_until(self, s: Session, rd: Reader, study: Study) -> datetime | None:
        if study.design != "two_sessions":
            return None
        last = s.scalar(select(func.max(Read.saved_at)).where(
            Read.reader_id == rd.id, Read.session == 1))
        if last is None:
            return None
        return _utc(last) + timedelta(days=study.washout_days)

    def _counts(self, s: Session, rd: Reader) -> tuple[int, int]:
        total = s.scalar(select(func.count(QueueItem.id)).where(QueueItem.reader_id == rd.id))
        done = s.scalar(select(func.count(func.distinct(Read.queue_item_id))).where(
            Read.reader_id == rd.id))
        return done, total

    def next_case(self, reader: ReaderSession) -> NextCase:
        """The step to show now (serving it if not served yet), a washout wait, or done.

        The same reader open in two sessions at once can race to serve one step: the
        losing transaction (unique serve per queue item) is retried and reads the winner's
        row, so both sessions show the same step (PostgreSQL; SQLite serialises writers)."""
        from sqlalchemy.exc import IntegrityError
        for attempt in range(3):
            try:
                return self._next_case_once(reader)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _next_case_once(self, reader: ReaderSession) -> NextCase:
        with self.db.session() as s:
            rd, study = self._reader(s, reader)
            done, total = self._counts(s, rd)
            item = s.scalar(select(QueueItem).where(
                QueueItem.reader_id == rd.id, ~self._has_read(QueueItem.id)
            ).order_by(QueueItem.position).limit(1))
            if item is None:
                return NextCase("done", done=done, total=total)
            now = self.now()
            if item.session == 2:
                until = self._washout_until(s, rd, study)
                if until is not None and now < until:
                    return NextCase("washout", available_at=until, done=done, total=total)
            serve = s.scalar(select(Serve).where(Serve.queue_item_id == item.id))
            if serve is None:
                serve = Serve(queue_item_id=item.id, served_at=now)
                s.add(serve)
            sc = s.get(StudyCase, item.study_case_id)
            model_output = None
            if item.arm == "aided" and self._unaided_read_exists(s, rd.id, sc.id):
                model_output = self._model_payload(study, sc)
            view = CaseView(queue_item_id=item.id, case_id=sc.case_id, arm=item.arm,
                            session=item.session, position=item.position + 1, total=total,
                            ask_her2_low=study.ask_her2_low, served_at=_utc(serve.served_at),
                            model_output=model_output, cohort_root=study.cohort_root)
        return NextCase("case", case=view, done=done, total=total)

    @staticmethod
    def _model_payload(study: Study, sc: StudyCase) -> dict | None:
        """What the aided arm shows: the case's model output plus the model's identity
        (None when the study has no model output for this case)."""
        if not sc.model_output:
            return None
        out = dict(sc.model_output)
        if study.model_info:
            out["model_info"] = dict(study.model_info)
        return out

    def model_output_allowed(self, reader: ReaderSession, case_id: str) -> bool:
        """True only once this reader's unaided read of ``case_id`` is saved."""
        with self.db.session() as s:
            rd, study = self._reader(s, reader)
            sc = s.scalar(select(StudyCase).where(StudyCase.study_id == study.id,
                                                  StudyCase.case_id == str(case_id)))
            if sc is None:
                return False
            return self._unaided_read_exists(s, rd.id, sc.id)

    @staticmethod
    def _validate_low_confidence(her2_low_call, her2_low_confidence, case_id):
        if her2_low_confidence is None:
            return None
        if her2_low_call is None:
            raise ReaderStudyError("a HER2-low confidence needs a HER2-low / HER2-zero call",
                                   case_id=case_id)
        try:
            c = float(her2_low_confidence)
        except (TypeError, ValueError):
            raise ReaderStudyError(f"HER2-low confidence must be a number 0-100, got "
                                   f"{her2_low_confidence!r}", case_id=case_id) from None
        if not (0.0 <= c <= 100.0):
            raise ReaderStudyError(f"HER2-low confidence must lie in 0-100, got "
                                   f"{her2_low_confidence!r}", case_id=case_id)
        return c

    def _validate_answer(self, study: Study, call_positive, confidence, her2_low_call, case_id):
        if not isinstance(call_positive, (bool, np.bool_)):
            raise ReaderStudyError("the call must be HER2-positive (True) or HER2-negative (False)",
                                   case_id=case_id)
        try:
            conf = float(confidence)
        except (TypeError, ValueError):
            raise ReaderStudyError(f"confidence must be a number 0-100, got {confidence!r}",
                                   case_id=case_id) from None
        if not (0.0 <= conf <= 100.0):
            raise ReaderStudyError(f"confidence must lie in 0-100, got {confidence!r}", case_id=case_id)
        if study.ask_her2_low and not call_positive:
            if not isinstance(her2_low_call, (bool, np.bool_)):
                raise ReaderStudyError("this study asks HER2-low (True) or HER2-zero (False) "
                                       "for a HER2-negative call", case_id=case_id)
        elif her2_low_call is not None:
            raise ReaderStudyError("HER2-low/zero is only asked for HER2-negative calls in studies "
                                   "that ask it", case_id=case_id)
        return bool(call_positive), conf, None if her2_low_call is None else bool(her2_low_call)

    def save_read(self, reader: ReaderSession, queue_item_id: int, *, call_positive: bool,
                  confidence: float, her2_low_call: bool | None = None, notes: str | None = None,
                  client_shown: dict | None = None,
                  her2_low_confidence: float | None = None) -> ReadReceipt:
        """Save the read of a served step, in its own committed transaction.

        ``her2_low_confidence`` (0-100): confidence in the HER2-low / zero call (optional)."""
        with self.db.session() as s:
            rd, study = self._reader(s, reader)
            item = s.get(QueueItem, int(queue_item_id))
            if item is None or item.reader_id != rd.id:
                raise AccessDenied("this case is not in your worklist")
            sc = s.get(StudyCase, item.study_case_id)
            call, conf, low = self._validate_answer(study, call_positive, confidence,
                                                    her2_low_call, sc.case_id)
            low_conf = self._validate_low_confidence(low, her2_low_confidence, sc.case_id)
            if s.scalar(select(func.count(Read.id)).where(Read.queue_item_id == item.id)):
                raise ReaderStudyError("this step already has a saved read", case_id=sc.case_id,
                                       hint="use a correction instead")
            serve = s.scalar(select(Serve).where(Serve.queue_item_id == item.id))
            if serve is None:
                raise ReaderStudyError("this case has not been shown yet", case_id=sc.case_id)
            model_output = None
            if item.arm == "aided":
                if not self._unaided_read_exists(s, rd.id, sc.id):
                    raise ReaderStudyError("the unaided read of this case must be saved first",
                                           case_id=sc.case_id)
                model_output = self._model_payload(study, sc)
            now = self.now()
            served_at = _utc(serve.served_at)
            row = Read(study_id=study.id, reader_id=rd.id, queue_item_id=item.id,
                       study_case_id=sc.id, arm=item.arm, session=item.session,
                       call_positive=call, her2_low_call=low, confidence=conf,
                       her2_low_confidence=low_conf,
                       notes=(notes or None), served_at=served_at, saved_at=now,
                       time_on_case_s=max(0.0, (now - served_at).total_seconds()),
                       shown={"case_id": sc.case_id, "arm": item.arm, "session": item.session,
                              "position": item.position + 1, "model_output": model_output,
                              "client": _json_safe(client_shown)},
                       supersedes_id=None)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise ReaderStudyError("this step already has a saved read", case_id=sc.case_id) from None
            receipt = ReadReceipt(row.id, now, row.time_on_case_s)
        return receipt

    def correct_read(self, reader: ReaderSession, read_id: int, *, call_positive: bool,
                     confidence: float, her2_low_call: bool | None = None,
                     notes: str | None = None, reason: str | None = None,
                     her2_low_confidence: float | None = None) -> ReadReceipt:
        """Append a correction of one of the reader's own effective reads."""
        with self.db.session() as s:
            rd, study = self._reader(s, reader)
            old = s.get(Read, int(read_id))
            if old is None or old.reader_id != rd.id:
                raise AccessDenied("this read is not yours")
            sc = s.get(StudyCase, old.study_case_id)
            if s.scalar(select(func.count(Read.id)).where(Read.supersedes_id == old.id)):
                raise ReaderStudyError("this read has already been corrected", case_id=sc.case_id,
                                       hint="correct the latest version")
            if old.arm == "unaided" and self._aided_served(s, rd.id, sc.id):
                raise ReaderStudyError("the unaided read cannot be corrected after the model "
                                       "output was shown", case_id=sc.case_id)
            call, conf, low = self._validate_answer(study, call_positive, confidence,
                                                    her2_low_call, sc.case_id)
            low_conf = self._validate_low_confidence(low, her2_low_confidence, sc.case_id)
            now = self.now()
            shown = dict(old.shown or {})
            shown["correction"] = {"of_read": old.id, "reason": reason}
            row = Read(study_id=study.id, reader_id=rd.id, queue_item_id=old.queue_item_id,
                       study_case_id=sc.id, arm=old.arm, session=old.session,
                       call_positive=call, her2_low_call=low, confidence=conf,
                       her2_low_confidence=low_conf,
                       notes=(notes if notes is not None else old.notes),
                       served_at=_utc(old.served_at), saved_at=now,
                       time_on_case_s=old.time_on_case_s, shown=shown, supersedes_id=old.id)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise ReaderStudyError("this read has already been corrected", case_id=sc.case_id) from None
            receipt = ReadReceipt(row.id, now, row.time_on_case_s, old.id)
        return receipt

    def _aided_served(self, s: Session, reader_id: int, study_case_id: int) -> bool:
        return s.scalar(select(func.count(Serve.id)).join(QueueItem, QueueItem.id == Serve.queue_item_id)
                        .where(QueueItem.reader_id == reader_id,
                               QueueItem.study_case_id == study_case_id,
                               QueueItem.arm == "aided")) > 0

    def my_reads(self, reader: ReaderSession) -> list[ReadView]:
        with self.db.session() as s:
            rd, _ = self._reader(s, reader)
            newer = aliased(Read)
            rows = s.execute(
                select(Read, StudyCase.case_id,
                       exists().where(newer.supersedes_id == Read.id).label("superseded"))
                .join(StudyCase, StudyCase.id == Read.study_case_id)
                .where(Read.reader_id == rd.id).order_by(Read.id)).all()
            out = []
            for r, case_id, superseded in rows:
                correctable = not superseded and not (
                    r.arm == "unaided" and self._aided_served(s, rd.id, r.study_case_id))
                out.append(ReadView(r.id, case_id, r.arm, r.session, r.call_positive, r.her2_low_call,
                                    r.confidence, r.notes, _utc(r.saved_at), r.time_on_case_s,
                                    r.supersedes_id, bool(superseded), bool(correctable),
                                    r.her2_low_confidence))
            return out

    def progress(self, reader: ReaderSession) -> ReaderProgress:
        with self.db.session() as s:
            rd, study = self._reader(s, reader)
            return self._progress(s, rd, study)

    def _progress(self, s: Session, rd: Reader, study: Study) -> ReaderProgress:
        done, total = self._counts(s, rd)
        by_arm = dict(s.execute(select(Read.arm, func.count(func.distinct(Read.queue_item_id)))
                                .where(Read.reader_id == rd.id).group_by(Read.arm)).all())
        last = s.scalar(select(func.max(Read.saved_at)).where(Read.reader_id == rd.id))
        status, avail = "reading", None
        if done >= total:
            status = "done"
        else:
            nxt = s.scalar(select(QueueItem).where(QueueItem.reader_id == rd.id,
                                                   ~self._has_read(QueueItem.id))
                           .order_by(QueueItem.position).limit(1))
            if nxt is not None and nxt.session == 2:
                until = self._washout_until(s, rd, study)
                if until is not None and self.now() < until:
                    status, avail = "washout", until
        return ReaderProgress(rd.number, rd.name, rd.level, rd.years, done, total,
                              by_arm.get("unaided", 0), by_arm.get("aided", 0), status, avail,
                              _utc(last))

    # ---------------------------------------------------------------- owner side
    def _owner(self, s: Session, owner: OwnerSession) -> Study:
        if not isinstance(owner, OwnerSession) or not owner._valid():
            raise AccessDenied("an owner session from owner_sign_in is required")
        study = s.get(Study, owner.study_id)
        if study is None or study.name != owner.study_name:
            raise AccessDenied("owner session does not match the database")
        return study

    def study_status(self, owner: OwnerSession) -> StudyStatus:
        with self.db.session() as s:
            study = self._owner(s, owner)
            n_cases = s.scalar(select(func.count(StudyCase.id)).where(StudyCase.study_id == study.id))
            n_pos = s.scalar(select(func.count(StudyCase.id)).where(StudyCase.study_id == study.id,
                                                                     StudyCase.her2 == 1))
            n_reads = s.scalar(select(func.count(Read.id)).where(Read.study_id == study.id))
            n_corr = s.scalar(select(func.count(Read.id)).where(Read.study_id == study.id,
                                                                 Read.supersedes_id.is_not(None)))
            readers = [self._progress(s, rd, study) for rd in
                       s.scalars(select(Reader).where(Reader.study_id == study.id).order_by(Reader.number))]
            return StudyStatus(study.id, study.name, study.design, study.washout_days, study.seed,
                               study.ask_her2_low, n_cases, n_pos, n_reads, n_corr, readers)

    def reads_table(self, owner: OwnerSession, *, effective_only: bool = True):
        """All reads of the study with truth (owner only), as a pandas DataFrame.

        ``effective_only``: keep only reads that no other read supersedes."""
        import pandas as pd

        with self.db.session() as s:
            study = self._owner(s, owner)
            newer = aliased(Read)
            q = (select(Read, Reader, StudyCase,
                        exists().where(newer.supersedes_id == Read.id).label("superseded"))
                 .join(Reader, Reader.id == Read.reader_id)
                 .join(StudyCase, StudyCase.id == Read.study_case_id)
                 .where(Read.study_id == study.id).order_by(Read.id))
            rows = []
            for r, rd, sc, superseded in s.execute(q).all():
                if effective_only and superseded:
                    continue
                rows.append({
                    "study": study.name, "read_id": r.id, "reader": rd.name,
                    "reader_number": rd.number, "level": rd.level, "years": rd.years,
                    "case_id": sc.case_id, "her2": sc.her2, "her2_low": sc.her2_low,
                    "arm": r.arm, "session": r.session, "call_positive": bool(r.call_positive),
                    "her2_low_call": r.her2_low_call, "confidence": r.confidence,
                    "her2_low_confidence": r.her2_low_confidence,
                    "notes": r.notes, "served_at": _utc(r.served_at).isoformat(),
                    "saved_at": _utc(r.saved_at).isoformat(), "time_on_case_s": r.time_on_case_s,
                    "supersedes_id": r.supersedes_id, "superseded": bool(superseded),
                    "shown": json.dumps(r.shown, sort_keys=True),
                })
        cols = ["study", "read_id", "reader", "reader_number", "level", "years", "case_id", "her2",
                "her2_low", "arm", "session", "call_positive", "her2_low_call", "confidence",
                "her2_low_confidence", "notes",
                "served_at", "saved_at", "time_on_case_s", "supersedes_id", "superseded", "shown"]
        df = pd.DataFrame(rows, columns=cols)
        from her2core.reader_study.mrmc import confidence_to_rating
        df.insert(cols.index("confidence") + 1, "rating",
                  confidence_to_rating(df["call_positive"].astype(bool), df["confidence"].astype(float))
                  if len(df) else pd.Series(dtype=float))
        # HER2-low rating: from the low / zero call and its confidence (a call without a
        # confidence counts as confidence 50)
        low = df["her2_low_call"].notna()
        df["her2_low_rating"] = np.nan
        if low.any():
            conf = df.loc[low, "her2_low_confidence"].astype(float).fillna(50.0)
            df.loc[low, "her2_low_rating"] = confidence_to_rating(
                df.loc[low, "her2_low_call"].astype(bool), conf)
        return df

    def queue_table(self, owner: OwnerSession):
        """Every reader's fixed worklist (the recorded randomised order), owner only."""
        import pandas as pd

        with self.db.session() as s:
            study = self._owner(s, owner)
            rows = s.execute(
                select(Reader.number, Reader.name, Reader.order_seed, QueueItem.position,
                       QueueItem.session, QueueItem.arm, StudyCase.case_id)
                .join(QueueItem, QueueItem.reader_id == Reader.id)
                .join(StudyCase, StudyCase.id == QueueItem.study_case_id)
                .where(Reader.study_id == study.id)
                .order_by(Reader.number, QueueItem.position)).all()
        return pd.DataFrame(rows, columns=["reader_number", "reader", "order_seed", "position",
                                           "session", "arm", "case_id"])

    def readers_info(self, owner: OwnerSession) -> list[dict]:
        with self.db.session() as s:
            study = self._owner(s, owner)
            return [{"name": r.name, "number": r.number, "level": r.level, "years": r.years}
                    for r in s.scalars(select(Reader).where(Reader.study_id == study.id)
                                       .order_by(Reader.number))]

    def log_event(self, owner: OwnerSession, action: str, detail: dict | None = None) -> None:
        with self.db.session() as s:
            study = self._owner(s, owner)
            s.add(AuditEvent(study_id=study.id, at=self.now(), actor="owner", action=action,
                             detail=_json_safe(detail)))

    def export(self, owner: OwnerSession, fmt: str = "csv") -> str:
        """Effective reads as text: "csv" (all columns), "imrmc" or "mrmcaov"."""
        from her2core.reader_study import export as ex

        df = self.reads_table(owner)
        text = ex.export_reads(df, fmt, study_name=owner.study_name)
        self.log_event(owner, "export", {"format": fmt, "n_reads": int(len(df))})
        return text

    def analyze(self, owner: OwnerSession, *, alpha: float = 0.05,
                cov_methods: Sequence[str] = ("jackknife", "delong")) -> dict[str, Any]:
        """Per-reader accuracy, junior vs senior, aided - unaided, OR MRMC (see mrmc.py)."""
        from her2core import __version__
        from her2core.reader_study.mrmc import analyze_reads

        df = self.reads_table(owner)
        if df.empty:
            raise ReaderStudyError("no reads saved yet", hint="analyse once readers have read cases")
        reads = df.rename(columns={"case_id": "case", "her2": "truth"})
        with self.db.session() as s:
            study = self._owner(s, owner)
            model_scores = {sc.case_id: float(sc.model_output["p_her2"])
                            for sc in s.scalars(select(StudyCase).where(StudyCase.study_id == study.id))
                            if isinstance(sc.model_output, dict)
                            and sc.model_output.get("p_her2") is not None}
        result = analyze_reads(reads, readers_info=self.readers_info(owner), alpha=alpha,
                               cov_methods=cov_methods, model_scores=model_scores or None)
        st = self.study_status(owner)
        complete = {(r, a) for r, a in zip(df["reader"], df["arm"])}
        result["study"] = {"name": st.name, "design": st.design, "washout_days": st.washout_days,
                           "seed": st.seed, "n_cases": st.n_cases, "n_positive": st.n_positive,
                           "n_reads_effective": int(len(df)), "n_reads_total": st.n_reads,
                           "n_corrections": st.n_corrections,
                           "complete": all(r.done >= r.total for r in st.readers),
                           "reader_arms_with_reads": len(complete),
                           # reads still to come, per reader and arm (an interim analysis)
                           "missing": [{"reader": r.reader_name, "level": r.level,
                                        "unaided": st.n_cases - r.done_unaided,
                                        "aided": st.n_cases - r.done_aided, "status": r.status}
                                       for r in st.readers]}
        result["provenance"] = {"her2core": __version__, "generated_at": self.now().isoformat(),
                                "method": "Obuchowski-Rockette with Hillis df; empirical AUC"}
        self.log_event(owner, "analyze", {"alpha": alpha, "n_reads": int(len(df))})
        return result


def _json_safe(obj):
    if obj is None:
        return None
    try:
        return json.loads(json.dumps(obj, default=str))
    except (TypeError, ValueError):
        return {"repr": repr(obj)}
