"""Shadow scores: a ``role`` on each score, ``champion`` (what the worklist uses) or ``shadow``.

A challenger version may score live cases in the background (shadow mode, see
``docs/governance.md``). Its scores go in the same table, so that one query answers "which models
scored this case, and what did each say", but with ``role = 'shadow'``: the worklist, the case
pages and the priority read only ``champion`` scores (``Case.current_scores``). Existing rows
were all written by the champion, hence the server default.

Revision ID: 0005_shadow_scores
Revises: 0004_audit_trail
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_shadow_scores"
down_revision: str | None = "0004_audit_trail"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.add_column(
            sa.Column("role", sa.String(16), nullable=False, server_default="champion")
        )
        batch.create_index("ix_scores_model_version_role", ["model_version", "role"])


def downgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.drop_index("ix_scores_model_version_role")
        batch.drop_column("role")
