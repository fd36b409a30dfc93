"""The plant: lines and stations, hourly rollups, reviews, dataset snapshots, schedules, audit log, users, and a
partial index for the review queue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 00:00:00

The rollups are filled from the inspections already recorded, so an upgraded database answers the dashboard at once.
The audit log is made append-only by triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from tables.py, so this revision keeps describing the schema as it was here.
_TZ = sa.DateTime(timezone=True)
_BINS = 10
_UNCLASSIFIED = "(unclassified)"
_APPEND_ONLY_MESSAGE = "audit_log is append-only"


def _counter(name: str) -> sa.Column:
    """A NOT NULL integer counter column."""
    return sa.Column(name, sa.Integer(), nullable=False)


def _hour_sql(dialect: str) -> str:
    """SQL for "hours since the Unix epoch" of ``created_at`` (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""
    if dialect == "sqlite":
        return "CAST(strftime('%s', created_at) AS INTEGER) / 3600"
    return "CAST(floor(extract(epoch FROM created_at) / 3600) AS BIGINT)"


def _bin_sql(dialect: str) -> str:
    """SQL for the score bin, matching the repository's Python ``min(max(floor(score * 10), 0), 9)``."""
    raw = "CAST(score * 10 AS INTEGER)" if dialect == "sqlite" else "CAST(floor(score * 10) AS INTEGER)"
    return f"(CASE WHEN {raw} < 0 THEN 0 WHEN {raw} > {_BINS - 1} THEN {_BINS - 1} ELSE {raw} END)"


def _backfill(dialect: str) -> None:
    """Fill the rollups and the station registry from the inspections recorded before this revision."""
    hour = _hour_sql(dialect)
    score_bin = _bin_sql(dialect)
    bins = ", ".join(f"score_bin_{k}" for k in range(_BINS))
    bin_sums = ", ".join(
        f"SUM(CASE WHEN score IS NOT NULL AND {score_bin} = {k} THEN 1 ELSE 0 END)" for k in range(_BINS)
    )
    op.execute(
        "INSERT INTO inspection_hourly "
        f"(hour, station, line, total, ok, review, ng, errors, scored, score_sum, {bins}) "
        f"SELECT {hour}, station, line, COUNT(*), "
        "SUM(CASE WHEN decision = 'OK' THEN 1 ELSE 0 END), SUM(CASE WHEN decision = 'REVIEW' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN decision = 'NG' THEN 1 ELSE 0 END), SUM(CASE WHEN decision = 'ERROR' THEN 1 ELSE 0 END), "
        "COUNT(score), COALESCE(SUM(score), 0), "
        f"{bin_sums} FROM inspections GROUP BY {hour}, station, line"
    )
    op.execute(
        f"INSERT INTO defect_hourly (hour, station, line, defect_class, ng) "
        f"SELECT {hour}, station, line, COALESCE(defect_class, '{_UNCLASSIFIED}'), COUNT(*) FROM inspections "
        f"WHERE decision = 'NG' GROUP BY {hour}, station, line, COALESCE(defect_class, '{_UNCLASSIFIED}')"
    )
    op.execute(
        "INSERT INTO lines (name, created_at) SELECT line, MIN(created_at) FROM inspections GROUP BY line"
    )
    # A station that changed lines keeps the line of its first inspection.
    op.execute(
        "INSERT INTO stations (name, line_id, created_at) "
        "SELECT i.station, l.id, i.created_at FROM inspections i JOIN lines l ON l.name = i.line "
        "WHERE i.id IN (SELECT MIN(id) FROM inspections GROUP BY station)"
    )


def _append_only_triggers(dialect: str) -> None:
    """Refuse UPDATE and DELETE on the audit log inside the database, whoever connects."""
    if dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"
            )
        return
    op.execute(
        "CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()"
    )


def upgrade() -> None:
    """Create the new tables, fill the rollups and the station registry, and protect the audit log."""
    dialect = op.get_bind().dialect.name
    op.create_table(
        "lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lines"),
        sa.UniqueConstraint("name", name="uq_lines_name"),
    )
    op.create_table(
        "stations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stations"),
        sa.UniqueConstraint("name", name="uq_stations_name"),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name="fk_stations_line_id_lines", ondelete="RESTRICT"),
    )
    op.create_index("ix_stations_line_id", "stations", ["line_id"])

    op.create_table(
        "inspection_hourly",
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("station", sa.String(100), nullable=False),
        sa.Column("line", sa.String(100), nullable=False),
        *(_counter(name) for name in ("total", "ok", "review", "ng", "errors", "scored")),
        sa.Column("score_sum", sa.Double(), nullable=False),
        *(_counter(f"score_bin_{k}") for k in range(_BINS)),
        sa.PrimaryKeyConstraint("hour", "station", "line", name="pk_inspection_hourly"),
    )
    op.create_table(
        "defect_hourly",
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("station", sa.String(100), nullable=False),
        sa.Column("line", sa.String(100), nullable=False),
        sa.Column("defect_class", sa.String(100), nullable=False),
        _counter("ng"),
        sa.PrimaryKeyConstraint("hour", "station", "line", "defect_class", name="pk_defect_hourly"),
    )

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("defect_class", sa.String(100), nullable=True),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.UniqueConstraint("inspection_id", name="uq_reviews_inspection_id"),
        sa.CheckConstraint("verdict IN ('OK', 'NG')", name="ck_reviews_verdict"),
        sa.ForeignKeyConstraint(
            ["inspection_id"], ["inspections.id"], name="fk_reviews_inspection_id_inspections", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_reviews_created_at", "reviews", ["created_at"])

    op.create_table(
        "dataset_snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.Column("manifest_path", sa.Text(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_snapshots"),
        sa.UniqueConstraint("fingerprint", name="uq_dataset_snapshots_fingerprint"),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_run_at", _TZ, nullable=True),
        sa.Column("next_run_at", _TZ, nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint("role IN ('viewer', 'operator', 'engineer', 'admin')", name="ck_users_role"),
    )
    op.create_index(
        "ix_inspections_review_queue",
        "inspections",
        ["created_at", "id"],
        sqlite_where=sa.text("decision = 'REVIEW'"),
        postgresql_where=sa.text("decision = 'REVIEW'"),
    )
    _backfill(dialect)
    _append_only_triggers(dialect)


def downgrade() -> None:
    """Drop everything ``upgrade`` created; inspections and the 0001 tables are left untouched."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_refuse_change()")
    op.drop_index("ix_inspections_review_queue", table_name="inspections")
    op.drop_table("users")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("schedules")
    op.drop_table("dataset_snapshots")
    op.drop_index("ix_reviews_created_at", table_name="reviews")
    op.drop_table("reviews")
    op.drop_table("defect_hourly")
    op.drop_table("inspection_hourly")
    op.drop_index("ix_stations_line_id", table_name="stations")
    op.drop_table("stations")
    op.drop_table("lines")
