"""Priority changes made by ``hpcbridge priority rerank``: who moved which queued job of
which scenario from which level to which, when and why.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "priority_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.Column("changed_by", sa.String(length=128), nullable=False),
        sa.Column("cluster", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("campaign", sa.String(length=255), nullable=False),
        sa.Column("scenario", sa.String(length=255), nullable=False),
        sa.Column("old_level", sa.String(length=64), nullable=True),
        sa.Column("new_level", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_priority_changes")),
    )
    op.create_index(
        "ix_priority_changes_cluster_job", "priority_changes", ["cluster", "job_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_priority_changes_cluster_job", table_name="priority_changes")
    op.drop_table("priority_changes")
