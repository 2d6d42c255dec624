"""Workflow records (stage -> job ids) for ``hpcbridge workflow --ledger``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", name=op.f("pk_workflows")),
    )


def downgrade() -> None:
    op.drop_table("workflows")
