"""Alembic environment for the reader-study schema.

Uses the connection handed over in ``config.attributes["connection"]`` (what
her2core.reader_study.db.upgrade does); otherwise opens one from HER2_DB_URL.
"""
from __future__ import annotations

from alembic import context

from her2core.reader_study.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from her2core.reader_study.db import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported for the reader-study schema")
run_migrations_online()
