"""Usage is the scheduler's own charge (cpus x elapsed_s), no longer cpus x (end - start):
the monthly rollup of a ledger already at 0003 is recomputed from its attempts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 12:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The schema is unchanged (elapsed_s was always stored); only the rollup's sums change,
    # rebuilt by the code that keeps them (one copy of the arithmetic), as 0003 fills them.
    from hpcbridge.ledger.rollup import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    """Nothing to undo in the schema; the rollup keeps the charged sums until the next write
    of each month recomputes it by the older rule."""
