"""Database connection for reader studies: SQLite by default, PostgreSQL on request.

URL: the ``url`` argument, else the environment variable ``HER2_DB_URL``, else the SQLite
file ``her2_reader_study.db`` in the per-user data folder (:func:`user_data_dir`:
``$XDG_DATA_HOME/her2-workbench``, by default ``~/.local/share/her2-workbench``; on macOS
``~/Library/Application Support/her2-workbench``, on Windows ``%LOCALAPPDATA%\her2-workbench``),
never the working directory. PostgreSQL URLs may be given as
``postgresql://...``; they are run with the psycopg 3 driver (``postgresql+psycopg``).

SQLite settings, applied on every connection:

* ``journal_mode=WAL``: readers do not block the writer and vice versa;
* ``synchronous=FULL``: every commit is fsynced to the WAL before it returns, so a read
  whose save returned survives a process kill *and* an OS crash / power loss (NORMAL in
  WAL mode only survives process kills; the cost of FULL, one fsync per read, is
  negligible at human reading speed);
* ``foreign_keys=ON`` and ``busy_timeout=30000`` ms (concurrent writers wait rather than
  fail);
* transactions start with ``BEGIN IMMEDIATE`` (the write lock is taken at the start, so two
  writers never deadlock upgrading a read lock).

The schema is brought to the newest Alembic revision on :func:`open_database`
(``alembic upgrade head`` run programmatically); the database state is the only state.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

ENV_URL = "HER2_DB_URL"
DEFAULT_SQLITE_FILE = "her2_reader_study.db"
PACKAGE_DIR = Path(__file__).resolve().parent
SQLITE_BUSY_TIMEOUT_MS = 30000


APP_DIR_NAME = "her2-workbench"


def user_data_dir() -> Path:
    """The per-user data folder of the workbench (not created here)."""
    import sys
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APP_DIR_NAME


def default_url() -> str:
    """SQLite file in :func:`user_data_dir` (the folder is created)."""
    folder = user_data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return sqlite_url(folder / DEFAULT_SQLITE_FILE)


def resolve_url(url: str | None = None) -> str:
    """The database URL: ``url``, else ``$HER2_DB_URL``, else :func:`default_url`."""
    url = url or os.environ.get(ENV_URL) or default_url()
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling is off)
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str | None = None) -> Engine:
    url = resolve_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _sqlite_setup(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config(str(PACKAGE_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run ``alembic upgrade <revision>`` on ``engine``."""
    if not log.isEnabledFor(logging.DEBUG):  # alembic's per-plugin INFO lines are noise here
        logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # several app processes may open a fresh database at once: one migrates
            conn.execute(text("SELECT pg_advisory_xact_lock(724513001)"))
        # (SQLite: the BEGIN IMMEDIATE of this transaction already serialises them)
        command.upgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class Database:
    """An engine plus a session factory; ``session()`` is one transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._factory = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on error."""
        with self._factory() as s:
            with s.begin():
                yield s

    def integrity_check(self) -> str:
        if self.dialect != "sqlite":
            return "ok"
        with self.engine.connect() as conn:
            return conn.execute(text("PRAGMA integrity_check")).scalar_one()

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str | None = None, *, migrate: bool = True) -> Database:
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    log.debug("reader-study database %s opened", engine.url.render_as_string(hide_password=True))
    return Database(engine)
