"""Initial schema: training runs, model versions and inspections.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types are spelled out here rather than imported from tables.py: a migration must keep describing the schema as it
# was at this revision even after the models move on.
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the three tables with their constraints and the dashboard indexes."""
    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("data_dir", sa.Text(), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("started_at", _TZ, nullable=True),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_training_runs"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="ck_training_runs_status"
        ),
    )
    op.create_index("ix_training_runs_status_created_at", "training_runs", ["status", "created_at"])

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("backbone", sa.String(200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("data_fingerprint", sa.String(128), nullable=True),
        sa.Column("training_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("name", name="uq_model_versions_name"),
        sa.CheckConstraint("status IN ('candidate', 'active', 'retired')", name="ck_model_versions_status"),
        sa.ForeignKeyConstraint(
            ["training_run_id"],
            ["training_runs.id"],
            name="fk_model_versions_training_run_id_training_runs",
            ondelete="SET NULL",
        ),
    )
    # At most one active model; partial unique indexes exist on both SQLite and PostgreSQL.
    op.create_index(
        "uq_model_versions_one_active",
        "model_versions",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )

    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("station", sa.String(100), nullable=False),
        sa.Column("line", sa.String(100), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("model_version", sa.String(200), nullable=True),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("defect_class", sa.String(100), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("heatmap_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inspections"),
        sa.UniqueConstraint(
            "content_hash", "model_version", "station", name="uq_inspections_content_hash_model_version_station"
        ),
        sa.CheckConstraint("decision IN ('OK', 'REVIEW', 'NG', 'ERROR')", name="ck_inspections_decision"),
    )
    op.create_index("ix_inspections_created_at", "inspections", ["created_at"])
    op.create_index("ix_inspections_station_created_at", "inspections", ["station", "created_at"])
    op.create_index("ix_inspections_decision_created_at", "inspections", ["decision", "created_at"])


def downgrade() -> None:
    """Drop everything ``upgrade`` created, children first."""
    op.drop_index("ix_inspections_decision_created_at", table_name="inspections")
    op.drop_index("ix_inspections_station_created_at", table_name="inspections")
    op.drop_index("ix_inspections_created_at", table_name="inspections")
    op.drop_table("inspections")
    op.drop_index("uq_model_versions_one_active", table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_index("ix_training_runs_status_created_at", table_name="training_runs")
    op.drop_table("training_runs")
