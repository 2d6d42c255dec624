"""The monthly usage rollup (usage_monthly, usage_dirty, usage_longest) and the indexes on
job_attempts that rollup refreshes and reports read through; filled from existing attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_job_attempts_start_bucket", "job_attempts", [sa.text("(start_at / 2097152)")]
    )
    op.create_index(
        "ix_job_attempts_unfinished",
        "job_attempts",
        ["start_at"],
        sqlite_where=sa.text("end_at IS NULL"),
        postgresql_where=sa.text("end_at IS NULL"),
    )
    op.create_table(
        "usage_monthly",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("partition", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("core_seconds", sa.BigInteger(), nullable=False),
        sa.Column("gpu_seconds", sa.BigInteger(), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("wait_s", sa.BigInteger(), nullable=False),
        sa.Column("waited_jobs", sa.BigInteger(), nullable=False),
        sa.Column("cpu_used_s", sa.Float(), nullable=False),
        sa.Column("cpu_available_s", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_monthly")),
    )
    op.create_index("ix_usage_monthly_cluster_month", "usage_monthly", ["cluster_id", "month"])
    op.create_table(
        "usage_dirty",
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_usage_dirty_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("cluster_id", "month", name=op.f("pk_usage_dirty")),
    )
    op.create_table(
        "usage_longest",
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("longest_s", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_usage_longest_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("cluster_id", name=op.f("pk_usage_longest")),
    )
    # Ledgers upgraded with attempts in them get their rollup now, by the code that keeps it
    # (one copy of the arithmetic); it reads only the tables created up to this revision.
    from hpcbridge.ledger.rollup import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("usage_longest")
    op.drop_table("usage_dirty")
    op.drop_index("ix_usage_monthly_cluster_month", table_name="usage_monthly")
    op.drop_table("usage_monthly")
    op.drop_index("ix_job_attempts_unfinished", table_name="job_attempts")
    op.drop_index("ix_job_attempts_start_bucket", table_name="job_attempts")
