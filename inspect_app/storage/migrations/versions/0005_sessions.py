"""Dashboard sessions: a per-user session version and the sign-in throttle's failures.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 05:00:00

``users.session_version`` is part of every signed session token; bumping it (sign-out, deactivation) voids the
user's tokens at once. ``sign_in_failures`` keeps recent failed sign-ins per user name and per client, in the
database rather than one process's memory, so that several dashboard processes throttle together.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from tables.py, so this revision keeps describing the schema as it was here.
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add ``users.session_version`` and the ``sign_in_failures`` table."""
    op.add_column("users", sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sign_in_failures"),
        sa.CheckConstraint("kind IN ('user', 'client')", name="ck_sign_in_failures_kind"),
    )
    op.create_index("ix_sign_in_failures_kind_key_at", "sign_in_failures", ["kind", "key", "at"])


def downgrade() -> None:
    """Drop the failures table and ``users.session_version``."""
    op.drop_index("ix_sign_in_failures_kind_key_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    # Plain DROP COLUMN (SQLite >= 3.35) rather than a batch rebuild, as in 0003: users has no dependants to lose.
    op.drop_column("users", "session_version")
