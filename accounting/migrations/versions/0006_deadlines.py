"""Project deadlines, and priority changes a deadline makes: ``priority_changes`` gains the
cause of a change and the account a deadline change was made for; campaign and scenario are
left empty by such changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("priority_changes") as batch:
        batch.add_column(
            sa.Column("cause", sa.String(length=16), server_default="rerank", nullable=False)
        )
        batch.add_column(sa.Column("account", sa.String(length=128), nullable=True))
        batch.alter_column("campaign", existing_type=sa.String(length=255), nullable=True)
        batch.alter_column("scenario", existing_type=sa.String(length=255), nullable=True)
    op.create_table(
        "project_deadlines",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("due", sa.BigInteger(), nullable=False),
        sa.Column("set_at", sa.BigInteger(), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_project_deadlines_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_project_deadlines")),
    )


def downgrade() -> None:
    op.drop_table("project_deadlines")
    op.execute("DELETE FROM priority_changes WHERE cause <> 'rerank'")
    with op.batch_alter_table("priority_changes") as batch:
        batch.alter_column("scenario", existing_type=sa.String(length=255), nullable=False)
        batch.alter_column("campaign", existing_type=sa.String(length=255), nullable=False)
        batch.drop_column("account")
        batch.drop_column("cause")
