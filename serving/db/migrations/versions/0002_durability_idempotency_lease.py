"""Durability: idempotent case creation and a leased scoring queue on the cases table.

- ``idempotency_key`` and ``request_sha256``: a retried upload carrying the same
  ``Idempotency-Key`` header finds the case its first attempt created. The unique constraint on
  ``(requester_id, idempotency_key)`` is what makes two racing identical requests create one case.
- ``scoring_claimed_at`` and ``scoring_lease_until``: a scoring worker claims a case for a while;
  a worker that crashes mid-way leaves a lease that expires, and the case is scored again.

Revision ID: 0002_durability
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_durability"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("scoring_claimed_at", Timestamp, nullable=True))
        batch.add_column(sa.Column("scoring_lease_until", Timestamp, nullable=True))
        batch.create_unique_constraint(
            "uq_cases_requester_idempotency_key", ["requester_id", "idempotency_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_constraint("uq_cases_requester_idempotency_key", type_="unique")
        for column in (
            "scoring_lease_until",
            "scoring_claimed_at",
            "request_sha256",
            "idempotency_key",
        ):
            batch.drop_column(column)
