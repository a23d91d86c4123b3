"""SQLAlchemy 2.0 ORM for reader studies.

The schema itself is created by the Alembic migrations in ``migrations/`` (a test checks
that they produce exactly this metadata). ``reads`` and ``serves`` are append-only:
the service never updates or deletes them and, on SQLite and PostgreSQL, triggers raise on
any UPDATE or DELETE. A correction is a new read whose ``supersedes_id`` names the old one.

Truth (``StudyCase.her2`` / ``her2_low``) lives only in ``study_cases`` and is never copied
into a reader-facing object.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    design: Mapped[str] = mapped_column(String(20), nullable=False)  # sequential | two_sessions
    washout_days: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    seed: Mapped[int] = mapped_column(Integer, nullable=False)
    ask_her2_low: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    owner_code_hash: Mapped[str] = mapped_column(String(300), nullable=False)
    cohort_root: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_info: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    cases: Mapped[list["StudyCase"]] = relationship(back_populates="study", order_by="StudyCase.id")
    readers: Mapped[list["Reader"]] = relationship(back_populates="study", order_by="Reader.number")


class StudyCase(Base):
    __tablename__ = "study_cases"
    __table_args__ = (UniqueConstraint("study_id", "case_id", name="uq_study_cases_study_case"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), nullable=False, index=True)
    case_id: Mapped[str] = mapped_column(String(200), nullable=False)
    her2: Mapped[int] = mapped_column(Integer, nullable=False)             # truth, 1 = positive
    her2_low: Mapped[int | None] = mapped_column(Integer, nullable=True)   # 1 low / 0 zero / None
    model_output: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # shown in aided arm

    study: Mapped[Study] = relationship(back_populates="cases")


class Reader(Base):
    __tablename__ = "readers"
    __table_args__ = (UniqueConstraint("study_id", "name", name="uq_readers_study_name"),
                      UniqueConstraint("study_id", "number", name="uq_readers_study_number"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), nullable=False, index=True)
    number: Mapped[int] = mapped_column(Integer, nullable=False)  # 1.. within the study; code prefix
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    level: Mapped[str] = mapped_column(String(20), nullable=False)  # junior | senior
    years: Mapped[float | None] = mapped_column(Float, nullable=True)
    code_hash: Mapped[str] = mapped_column(String(300), nullable=False)
    order_seed: Mapped[int] = mapped_column(Integer, nullable=False)

    study: Mapped[Study] = relationship(back_populates="readers")


class QueueItem(Base):
    """One step of a reader's worklist: (position, session, arm, case). Fixed at creation."""
    __tablename__ = "queue_items"
    __table_args__ = (UniqueConstraint("reader_id", "position", name="uq_queue_reader_position"),
                      UniqueConstraint("reader_id", "study_case_id", "arm", name="uq_queue_reader_case_arm"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), nullable=False, index=True)
    study_case_id: Mapped[int] = mapped_column(ForeignKey("study_cases.id"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)   # 0-based, global order
    session: Mapped[int] = mapped_column(Integer, nullable=False)    # 1 or 2
    arm: Mapped[str] = mapped_column(String(20), nullable=False)     # unaided | aided


class Serve(Base):
    """Append-only: when a queue item was first shown (time on case runs from here)."""
    __tablename__ = "serves"
    __table_args__ = (UniqueConstraint("queue_item_id", name="uq_serves_queue_item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_item_id: Mapped[int] = mapped_column(ForeignKey("queue_items.id"), nullable=False)
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Read(Base):
    """Append-only read. The effective read of a (reader, case, arm) is the one no other
    read supersedes (the latest in its correction chain)."""
    __tablename__ = "reads"
    __table_args__ = (
        UniqueConstraint("supersedes_id", name="uq_reads_supersedes"),
        # one original (non-correction) read per queue item, even with concurrent saves
        Index("uq_reads_first_per_item", "queue_item_id", unique=True,
              sqlite_where=text("supersedes_id IS NULL"),
              postgresql_where=text("supersedes_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), nullable=False, index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), nullable=False, index=True)
    queue_item_id: Mapped[int] = mapped_column(ForeignKey("queue_items.id"), nullable=False, index=True)
    study_case_id: Mapped[int] = mapped_column(ForeignKey("study_cases.id"), nullable=False)
    arm: Mapped[str] = mapped_column(String(20), nullable=False)
    session: Mapped[int] = mapped_column(Integer, nullable=False)
    call_positive: Mapped[bool] = mapped_column(Boolean, nullable=False)
    her2_low_call: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    her2_low_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # 0002
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    time_on_case_s: Mapped[float] = mapped_column(Float, nullable=False)
    shown: Mapped[dict] = mapped_column(JSON, nullable=False)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("reads.id"), nullable=True)


class AuditEvent(Base):
    """Append-only log of owner operations (create, export, analyse)."""
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), nullable=True, index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(50), nullable=False)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class ResumeToken(Base):
    """A random token that resumes one reader's session after a page reload (0003).

    Only its SHA-256 is stored; the token itself lives in the reader's browser URL and
    identifies neither the patient nor the reader (it is not the access code). Revoked at
    sign-out; a token older than the service's ``resume_max_age`` is refused."""
    __tablename__ = "resume_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), nullable=False, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


APPEND_ONLY_TABLES = ("reads", "serves", "audit_events")
