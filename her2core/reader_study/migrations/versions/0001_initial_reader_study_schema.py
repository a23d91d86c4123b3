"""initial reader-study schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23

Tables for studies, cases (with truth), readers, fixed per-reader queues, and the
append-only serves / reads / audit_events (plus queue_items, fixed at creation), which
triggers protect from UPDATE and DELETE on SQLite and PostgreSQL.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("reads", "serves", "audit_events", "queue_items")


def _create_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for what in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{what.lower()} BEFORE {what} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {what} refused'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION her2_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END "
            "$$ LANGUAGE plpgsql"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION her2_append_only()"
            )


def _drop_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        elif dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS her2_append_only()")


def upgrade() -> None:
    op.create_table('studies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('design', sa.String(length=20), nullable=False),
    sa.Column('washout_days', sa.Float(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('ask_her2_low', sa.Boolean(), nullable=False),
    sa.Column('owner_code_hash', sa.String(length=300), nullable=False),
    sa.Column('cohort_root', sa.Text(), nullable=True),
    sa.Column('model_info', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=50), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_study_id'), ['study_id'], unique=False)

    op.create_table('readers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('years', sa.Float(), nullable=True),
    sa.Column('code_hash', sa.String(length=300), nullable=False),
    sa.Column('order_seed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'name', name='uq_readers_study_name'),
    sa.UniqueConstraint('study_id', 'number', name='uq_readers_study_number')
    )
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_readers_study_id'), ['study_id'], unique=False)

    op.create_table('study_cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.String(length=200), nullable=False),
    sa.Column('her2', sa.Integer(), nullable=False),
    sa.Column('her2_low', sa.Integer(), nullable=True),
    sa.Column('model_output', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'case_id', name='uq_study_cases_study_case')
    )
    with op.batch_alter_table('study_cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_cases_study_id'), ['study_id'], unique=False)

    op.create_table('queue_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=False),
    sa.Column('study_case_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('session', sa.Integer(), nullable=False),
    sa.Column('arm', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], ),
    sa.ForeignKeyConstraint(['study_case_id'], ['study_cases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('reader_id', 'position', name='uq_queue_reader_position'),
    sa.UniqueConstraint('reader_id', 'study_case_id', 'arm', name='uq_queue_reader_case_arm')
    )
    with op.batch_alter_table('queue_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queue_items_reader_id'), ['reader_id'], unique=False)

    op.create_table('reads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=False),
    sa.Column('queue_item_id', sa.Integer(), nullable=False),
    sa.Column('study_case_id', sa.Integer(), nullable=False),
    sa.Column('arm', sa.String(length=20), nullable=False),
    sa.Column('session', sa.Integer(), nullable=False),
    sa.Column('call_positive', sa.Boolean(), nullable=False),
    sa.Column('her2_low_call', sa.Boolean(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('served_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('saved_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('time_on_case_s', sa.Float(), nullable=False),
    sa.Column('shown', sa.JSON(), nullable=False),
    sa.Column('supersedes_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['queue_item_id'], ['queue_items.id'], ),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], ),
    sa.ForeignKeyConstraint(['study_case_id'], ['study_cases.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], ),
    sa.ForeignKeyConstraint(['supersedes_id'], ['reads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('supersedes_id', name='uq_reads_supersedes')
    )
    with op.batch_alter_table('reads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reads_queue_item_id'), ['queue_item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reads_reader_id'), ['reader_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reads_study_id'), ['study_id'], unique=False)
        batch_op.create_index('uq_reads_first_per_item', ['queue_item_id'], unique=True,
                              sqlite_where=sa.text('supersedes_id IS NULL'),
                              postgresql_where=sa.text('supersedes_id IS NULL'))

    op.create_table('serves',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('queue_item_id', sa.Integer(), nullable=False),
    sa.Column('served_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['queue_item_id'], ['queue_items.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('queue_item_id', name='uq_serves_queue_item')
    )
    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table('serves')
    with op.batch_alter_table('reads', schema=None) as batch_op:
        batch_op.drop_index('uq_reads_first_per_item')
        batch_op.drop_index(batch_op.f('ix_reads_study_id'))
        batch_op.drop_index(batch_op.f('ix_reads_reader_id'))
        batch_op.drop_index(batch_op.f('ix_reads_queue_item_id'))

    op.drop_table('reads')
    with op.batch_alter_table('queue_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queue_items_reader_id'))

    op.drop_table('queue_items')
    with op.batch_alter_table('study_cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_cases_study_id'))

    op.drop_table('study_cases')
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_readers_study_id'))

    op.drop_table('readers')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_study_id'))

    op.drop_table('audit_events')
    op.drop_table('studies')
