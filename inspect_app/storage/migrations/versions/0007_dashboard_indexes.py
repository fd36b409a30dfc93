"""Indexes for what the dashboard reads at 10,000,000 inspections.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 13:30:00

``ix_inspections_station_decision_created_at`` answers "the latest NG parts of one station" by walking that
station's NG rows newest first (with only ``(station, created_at)`` and ``(decision, created_at)`` it read every
row of the station until enough were NG). ``ix_inspections_review_queue`` (the waiting REVIEW parts, revision 0002)
now also carries the Review page's filter columns, so that its filtered counts and keyset pages are read from the
index alone instead of one table row per waiting part.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from tables.py, so this revision keeps describing the schema as it was here.
_REVIEW = "decision = 'REVIEW'"
_QUEUE = "ix_inspections_review_queue"
_STATION_NG = "ix_inspections_station_decision_created_at"


def _queue_index(columns: list[str]) -> None:
    """(Re)create the partial index over waiting REVIEW parts with ``columns``."""
    op.create_index(_QUEUE, "inspections", columns, sqlite_where=sa.text(_REVIEW), postgresql_where=sa.text(_REVIEW))


def upgrade() -> None:
    """Add the per-station decision index and widen the review-queue index with the filter columns."""
    op.create_index(_STATION_NG, "inspections", ["station", "decision", "created_at"])
    op.drop_index(_QUEUE, table_name="inspections")
    _queue_index(["created_at", "id", "station", "defect_class", "score"])


def downgrade() -> None:
    """Back to 0006's indexes."""
    op.drop_index(_QUEUE, table_name="inspections")
    _queue_index(["created_at", "id"])
    op.drop_index(_STATION_NG, table_name="inspections")
