"""Resume tokens: a page reload resumes the reader's session

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

``resume_tokens`` (reader_id, token_hash = SHA-256 of a random URL token, created_at,
revoked_at): the reading screen keeps the token in its URL so that a reload signs the reader
back in without the access code. Not append-only (sign-out sets revoked_at).
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('resume_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('resume_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resume_tokens_reader_id'), ['reader_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('resume_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resume_tokens_reader_id'))
    op.drop_table('resume_tokens')
