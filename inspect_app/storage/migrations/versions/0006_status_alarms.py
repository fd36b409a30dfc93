"""Live pipeline figures and alarms in the database.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 11:00:00

``pipeline_status`` holds one row per pipeline and station with the latest live figures it reported, so that a
dashboard on any machine sees every station (they used to be files under ``<home>/stats``). ``alarms`` keeps one
row per alarm episode (p-chart rule, pipeline down, drift) with its notification and acknowledgement.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from tables.py, so this revision keeps describing the schema as it was here.
_TZ = sa.DateTime(timezone=True)
_KINDS = "kind IN ('spc', 'pipeline_down', 'drift')"


def upgrade() -> None:
    """Create ``pipeline_status`` and ``alarms``."""
    op.create_table(
        "pipeline_status",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("station", sa.String(100), nullable=False),
        sa.Column("line", sa.String(100), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("started_at", _TZ, nullable=False),
        sa.Column("last_seen", _TZ, nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("frames", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("fps", sa.Double(), nullable=False),
        sa.Column("fps_recent", sa.Double(), nullable=False),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.Integer(), nullable=False),
        sa.Column("latency_p50_ms", sa.Double(), nullable=True),
        sa.Column("latency_p95_ms", sa.Double(), nullable=True),
        sa.Column("latency_p99_ms", sa.Double(), nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_status"),
        sa.UniqueConstraint("pipeline", "station", name="uq_pipeline_status_pipeline_station"),
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("station", sa.String(100), nullable=True),
        sa.Column("line", sa.String(100), nullable=True),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("episode_start", _TZ, nullable=False),
        sa.Column("episode_end", _TZ, nullable=False),
        sa.Column("raised_at", _TZ, nullable=False),
        sa.Column("cleared_at", _TZ, nullable=True),
        sa.Column("acknowledged_at", _TZ, nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=True),
        sa.Column("notified_at", _TZ, nullable=True),
        sa.Column("notify_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("notify_error", sa.Text(), nullable=True),
        sa.Column("deliveries", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alarms"),
        sa.CheckConstraint(_KINDS, name="ck_alarms_kind"),
        sa.UniqueConstraint("kind", "subject", "rule", "episode_start",
                            name="uq_alarms_kind_subject_rule_episode_start"),
    )
    op.create_index("ix_alarms_raised_at", "alarms", ["raised_at"])
    op.create_index("ix_alarms_acknowledged_at", "alarms", ["acknowledged_at"])


def downgrade() -> None:
    """Drop ``alarms`` and ``pipeline_status``."""
    op.drop_index("ix_alarms_acknowledged_at", table_name="alarms")
    op.drop_index("ix_alarms_raised_at", table_name="alarms")
    op.drop_table("alarms")
    op.drop_table("pipeline_status")
