"""What the photo-modality check said about each scored photo, and photos left unscored.

The classifier reads dermoscopic images only; a clinical photo (or a picture that is not a photo
of a lesion) now gets a ``scores`` row with no probability at all: ``p_malignant``,
``uncertainty``, ``predicted_class`` and ``probabilities`` become nullable, and every row says
which ``domain`` the check saw, why a photo was left unscored (``domain_reason``), the check's
version (``modality_version``) and, for dermoscopic photos, how far from the training images the
photo lies (``ood_distance``) and whether that is past the threshold (``ood``). Rows written
before this revision keep NULL in the new columns: they were scored before the check existed.

Revision ID: 0009_score_domain
Revises: 0006_case_version
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_score_domain"
down_revision: str | None = "0006_case_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.alter_column("p_malignant", existing_type=sa.Float(), nullable=True)
        batch.alter_column("uncertainty", existing_type=sa.Float(), nullable=True)
        batch.alter_column("predicted_class", existing_type=sa.String(16), nullable=True)
        batch.alter_column("probabilities", existing_type=sa.JSON(), nullable=True)
        batch.add_column(sa.Column("domain", sa.String(16), nullable=True))
        batch.add_column(sa.Column("domain_reason", sa.String(32), nullable=True))
        batch.add_column(sa.Column("modality_version", sa.String(32), nullable=True))
        batch.add_column(sa.Column("ood", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("ood_distance", sa.Float(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM scores WHERE p_malignant IS NULL")
    with op.batch_alter_table("scores") as batch:
        for column in ("ood_distance", "ood", "modality_version", "domain_reason", "domain"):
            batch.drop_column(column)
        batch.alter_column("probabilities", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("predicted_class", existing_type=sa.String(16), nullable=False)
        batch.alter_column("uncertainty", existing_type=sa.Float(), nullable=False)
        batch.alter_column("p_malignant", existing_type=sa.Float(), nullable=False)
