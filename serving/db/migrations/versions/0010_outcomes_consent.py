"""Closing the loop: a coded diagnosis on each report, outcomes, and the patient's reuse consent.

- ``reports.diagnosis_code``: the expert's structured diagnosis beside the free text, one key of
  ``pipeline.diagnosis`` (each maps to a SNOMED CT code and, where one exists, a classifier
  class). Reports written before this revision keep NULL.
- ``outcomes``: what a lesion turned out to be, recorded later by the centre (coded diagnosis,
  date, and how it was confirmed: histology, consultation or follow-up). Several rows per case
  are allowed (a follow-up, then a histology); the reference is chosen by source, histology first.
- ``cases.reuse_consent``: the patient agreed that their photos may be reused to improve the
  tool; default no, so every case created before this revision is not exportable.

Revision ID: 0010_outcomes_consent
Revises: 0009_score_domain
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_outcomes_consent"
down_revision: str | None = "0009_score_domain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("diagnosis_code", sa.String(32), nullable=True))
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("reuse_consent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "case_id",
            sa.Integer(),
            sa.ForeignKey("cases.id", ondelete="CASCADE", name="fk_outcomes_case_id_cases"),
            nullable=False,
        ),
        sa.Column("diagnosis_code", sa.String(32), nullable=False),
        sa.Column("outcome_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("recorded_by_id", sa.String(64), nullable=False),
        sa.Column("recorded_by_name", sa.String(120), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outcomes"),
    )
    op.create_index("ix_outcomes_case_id", "outcomes", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_outcomes_case_id", table_name="outcomes")
    op.drop_table("outcomes")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("reuse_consent")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("diagnosis_code")
