"""A ``version`` on each case: every human action on a case is one compare-and-set on it.

Two people acting on one case at the same moment (a senior rewriting the report while another
validates it, two readers starting the review) must not both succeed. Each action reads the case,
checks the workflow rules, then bumps ``version`` with ``UPDATE ... WHERE id = ? AND version = ?``;
the loser finds no row to update and gets 409. This works the same on SQLite, which has no row
locks, and on PostgreSQL (see docs/access.md, "Two people acting on one case at once").

Revision ID: 0006_case_version
Revises: 0005_shadow_scores
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_case_version"
down_revision: str | None = "0005_shadow_scores"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("version")
