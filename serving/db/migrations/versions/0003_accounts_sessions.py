"""Accounts and access: users, sign-in sessions and API tokens, failed sign-ins, case centres.

- ``users``: one row per person (login = ``id``), role, centre, argon2 password hash, active flag.
- ``auth_tokens``: browser sessions and API bearer tokens; only the SHA-256 of each token is
  stored, so a copy of the database signs nobody in. Revoked or expired rows stop working.
- ``login_failures``: failed sign-ins by login and client address, counted over a window to rate
  limit guessing; kept in the database so the limit holds across workers and restarts.
- ``cases.centre``: the resource centre a case was sent to; experts see their centre's cases.
  Cases made before this revision belong to the demo's only centre (``crd-lyon``).

Revision ID: 0003_accounts
Revises: 0002_durability
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_accounts"
down_revision: str | None = "0002_durability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("organisation", sa.String(160), nullable=False),
        sa.Column("centre", sa.String(64), nullable=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("rpps", sa.String(11), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("disabled_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_auth_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_auth_tokens"),
    )
    op.create_index("ix_auth_tokens_user_id", "auth_tokens", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_login", "login_failures", ["login"])
    op.create_index("ix_login_failures_client", "login_failures", ["client"])
    op.create_index("ix_login_failures_at", "login_failures", ["at"])
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("centre", sa.String(64), nullable=False, server_default="crd-lyon")
        )
        batch.create_index("ix_cases_centre", ["centre"])


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_centre")
        batch.drop_column("centre")
    op.drop_table("login_failures")
    op.drop_table("auth_tokens")
    op.drop_table("users")
