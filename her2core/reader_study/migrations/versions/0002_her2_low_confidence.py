"""HER2-low reads carry a confidence

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

``reads.her2_low_confidence`` (0-100, nullable): the reader's confidence in the HER2-low /
HER2-zero call, so that the HER2-low task gets a rating, AUCs and an MRMC analysis
(rating = 50 + c/2 for a HER2-low call, 50 - c/2 for HER2-zero). Existing reads keep NULL.
Adding a nullable column touches no existing row, so the append-only triggers stay as they are.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reads", sa.Column("her2_low_confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reads") as batch:
        batch.drop_column("her2_low_confidence")
