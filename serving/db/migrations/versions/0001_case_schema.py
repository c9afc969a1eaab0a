"""Case schema: cases, photos, scores, messages, reports, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Timestamps are UTC; the models' UTCDateTime type restores the zone SQLite does not keep.
Timestamp = sa.DateTime(timezone=True)


def _case_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["case_id"], ["cases.id"], name=f"fk_{table}_case_id_cases", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("submitted_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("requester_id", sa.String(64), nullable=False),
        sa.Column("requester_name", sa.String(120), nullable=False),
        sa.Column("requester_organisation", sa.String(160), nullable=False),
        sa.Column("patient_pseudonym", sa.String(40), nullable=False),
        sa.Column("questionnaire", sa.JSON(), nullable=False),
        sa.Column("scoring_state", sa.String(16), nullable=False),
        sa.Column("scoring_attempts", sa.Integer(), nullable=False),
        sa.Column("scoring_error", sa.Text(), nullable=True),
        sa.Column("next_scoring_at", Timestamp, nullable=True),
        sa.Column("scored_at", Timestamp, nullable=True),
        sa.Column("first_read_at", Timestamp, nullable=True),
        sa.Column("closed_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
    )
    for column in ("patient_pseudonym", "requester_id", "scoring_state", "status", "submitted_at"):
        op.create_index(f"ix_cases_{column}", "cases", [column])

    op.create_table(
        "photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("mime", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("thumbnail_sha256", sa.String(64), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=True),
        sa.Column("quality_acceptable", sa.Boolean(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        _case_fk("photos"),
        sa.PrimaryKeyConstraint("id", name="pk_photos"),
    )
    op.create_index("ix_photos_case_id", "photos", ["case_id"])
    op.create_index("ix_photos_sha256", "photos", ["sha256"])

    op.create_table(
        "scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("photo_position", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("p_malignant", sa.Float(), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=False),
        sa.Column("predicted_class", sa.String(16), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("saliency_sha256", sa.String(64), nullable=True),
        sa.Column("superseded", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        _case_fk("scores"),
        sa.ForeignKeyConstraint(
            ["photo_id"], ["photos.id"], name="fk_scores_photo_id_photos", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_scores"),
    )
    op.create_index("ix_scores_case_current", "scores", ["case_id", "superseded"])
    op.create_index("ix_scores_model_version", "scores", ["model_version"])

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("author_id", sa.String(64), nullable=False),
        sa.Column("author_name", sa.String(120), nullable=False),
        sa.Column("author_role", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        _case_fk("messages"),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index("ix_messages_case_id", "messages", ["case_id"])

    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("conduct", sa.String(16), nullable=False),
        sa.Column("interval", sa.Integer(), nullable=True),
        sa.Column("diagnosis", sa.String(300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", sa.String(64), nullable=False),
        sa.Column("author_name", sa.String(120), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("written_at", Timestamp, nullable=False),
        sa.Column("validated_by_id", sa.String(64), nullable=True),
        sa.Column("validated_by_name", sa.String(120), nullable=True),
        sa.Column("validated_at", Timestamp, nullable=True),
        _case_fk("reports"),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.UniqueConstraint("case_id", name="uq_reports_case_id"),
    )

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("actor_role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        _case_fk("events"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_events_case_id", "events", ["case_id"])


def downgrade() -> None:
    for table in ("events", "reports", "messages", "scores", "photos", "cases"):
        op.drop_table(table)
