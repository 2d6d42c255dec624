"""The job steps of each attempt, from sacct (``hpcbridge ledger steps`` reads them).

A new table only: existing attempts keep their rows, and the next sync over their window
fills in their steps.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 22:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_steps",
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("array_index", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("exit_signal", sa.Integer(), nullable=True),
        sa.Column("start_at", sa.BigInteger(), nullable=True),
        sa.Column("end_at", sa.BigInteger(), nullable=True),
        sa.Column("elapsed_s", sa.BigInteger(), nullable=True),
        sa.Column("node_list", sa.Text(), nullable=True),
        sa.Column("alloc_cpus", sa.Integer(), nullable=True),
        sa.Column("alloc_gpus", sa.Integer(), nullable=True),
        sa.Column("tres", sa.Text(), nullable=True),
        sa.Column("max_rss_mb", sa.Float(), nullable=True),
        sa.Column("cpu_time_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_job_steps_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint(
            "cluster_id", "job_id", "array_index", "attempt", "step_id", name=op.f("pk_job_steps")
        ),
    )


def downgrade() -> None:
    op.drop_table("job_steps")
