"""Model lifecycle: run-queue columns on training runs and champion/challenger comparisons.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 03:30:00

``training_runs`` gains what a queue needs (the worker holding a run, its heartbeat, progress, attempts and a cancel
flag), the schedule that queued it and its data fingerprint. ``model_comparisons`` keeps every champion/challenger
evaluation, promoted or not.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from tables.py, so this revision keeps describing the schema as it was here.
_TZ = sa.DateTime(timezone=True)
_RUN_COLUMNS = ("worker", "heartbeat_at", "progress", "attempts", "cancel_requested", "schedule", "data_fingerprint")


def upgrade() -> None:
    """Add the queue columns and the comparisons table."""
    # Plain ADD COLUMN on both backends; server defaults fill the rows recorded before this revision.
    op.add_column("training_runs", sa.Column("worker", sa.String(200), nullable=True))
    op.add_column("training_runs", sa.Column("heartbeat_at", _TZ, nullable=True))
    op.add_column("training_runs", sa.Column("progress", sa.JSON(), nullable=True))
    op.add_column("training_runs", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("training_runs", sa.Column("cancel_requested", sa.Boolean(), nullable=False,
                                             server_default=sa.false()))
    op.add_column("training_runs", sa.Column("schedule", sa.String(200), nullable=True))
    op.add_column("training_runs", sa.Column("data_fingerprint", sa.String(128), nullable=True))
    op.create_table(
        "model_comparisons",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("training_run_id", sa.Integer(), nullable=True),
        sa.Column("candidate", sa.String(200), nullable=False),
        sa.Column("champion", sa.String(200), nullable=True),
        sa.Column("promoted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_comparisons"),
        sa.ForeignKeyConstraint(
            ["training_run_id"], ["training_runs.id"], name="fk_model_comparisons_training_run_id_training_runs",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_model_comparisons_candidate", "model_comparisons", ["candidate"])


def downgrade() -> None:
    """Drop the comparisons table and the queue columns."""
    op.drop_index("ix_model_comparisons_candidate", table_name="model_comparisons")
    op.drop_table("model_comparisons")
    # Plain ALTER TABLE DROP COLUMN (SQLite >= 3.35), not a batch rebuild: rebuilding training_runs would drop the
    # table, and with foreign keys on, SQLite would null every model version's training_run_id on the way.
    for name in reversed(_RUN_COLUMNS):
        op.drop_column("training_runs", name)
