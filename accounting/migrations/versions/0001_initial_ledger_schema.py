"""The first ledger schema: clusters, accounts, users, job attempts, watermarks, allocations.

Times are integer seconds since the epoch (UTC).

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 15:00:59.345161
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.create_table(
        "clusters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("scheduler", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
        sa.UniqueConstraint("name", name=op.f("uq_clusters_name")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("starts", sa.BigInteger(), nullable=False),
        sa.Column("ends", sa.BigInteger(), nullable=False),
        sa.Column("core_hours", sa.Float(), nullable=False),
        sa.Column("gpu_hours", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_allocations_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
        sa.UniqueConstraint("account_id", "starts", name=op.f("uq_allocations_account_id")),
    )
    op.create_table(
        "job_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("array_index", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("partition", sa.String(length=128), nullable=True),
        sa.Column("qos", sa.String(length=128), nullable=True),
        sa.Column("submit_at", sa.BigInteger(), nullable=True),
        sa.Column("eligible_at", sa.BigInteger(), nullable=True),
        sa.Column("start_at", sa.BigInteger(), nullable=True),
        sa.Column("end_at", sa.BigInteger(), nullable=True),
        sa.Column("elapsed_s", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("exit_signal", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("node_list", sa.Text(), nullable=True),
        sa.Column("node_count", sa.Integer(), nullable=True),
        sa.Column("alloc_cpus", sa.Integer(), nullable=True),
        sa.Column("alloc_gpus", sa.Integer(), nullable=True),
        sa.Column("tres", sa.Text(), nullable=True),
        sa.Column("req_walltime_s", sa.BigInteger(), nullable=True),
        sa.Column("req_mem_mb", sa.BigInteger(), nullable=True),
        sa.Column("max_rss_mb", sa.Float(), nullable=True),
        sa.Column("cpu_time_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_job_attempts_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_job_attempts_cluster_id_clusters")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_job_attempts_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_attempts")),
        sa.UniqueConstraint(
            "cluster_id",
            "job_id",
            "array_index",
            "attempt",
            name=op.f("uq_job_attempts_cluster_id"),
        ),
    )
    op.create_table(
        "sync_watermarks",
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("read_until", sa.BigInteger(), nullable=False),
        sa.Column("synced_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_sync_watermarks_cluster_id_clusters")
        ),
        sa.PrimaryKeyConstraint("cluster_id", "source", name=op.f("pk_sync_watermarks")),
    )


def downgrade() -> None:
    op.drop_table("sync_watermarks")
    op.drop_table("job_attempts")
    op.drop_table("allocations")
    op.drop_table("users")
    op.drop_table("clusters")
    op.drop_table("accounts")
