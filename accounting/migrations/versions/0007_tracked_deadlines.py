"""Jobs and workflows submitted with a deadline, what was expected of them, and whether they
met it: ``hpcbridge deadlines`` and ``report sla`` read this table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracked_deadlines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("client", sa.String(length=128), nullable=True),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("submitted_at", sa.BigInteger(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("expected_finish", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracked_deadlines")),
        sa.UniqueConstraint("cluster", "kind", "ref", name=op.f("uq_tracked_deadlines_cluster")),
    )


def downgrade() -> None:
    op.drop_table("tracked_deadlines")
