"""SQLAlchemy 2.0 table mappings for the plant database.

Alembic owns the schema (``migrations/versions``); these classes describe it for queries and for the
migration self-check. Only ``storage.repository`` converts between these rows and ``inspect_app.records``.

Why one module over 400 lines: it holds one thing, the schema. Every table, index and constraint side by side is the
plant database at a glance (what a new migration is checked against, what Alembic's autogenerate compares with the
migrated database); split per aggregate, the cross-table constraints and the one ``Base.metadata`` would be spread
over files that always change together.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so that the hand-written migrations and the models agree and later
# migrations can drop constraints by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DECISIONS = ("OK", "REVIEW", "NG", "ERROR")
MODEL_STATUSES = ("candidate", "active", "retired")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
REVIEW_VERDICTS = ("OK", "NG")
USER_ROLES = ("viewer", "operator", "engineer", "admin")
# Revision 0006. "drift" is reserved for the drift alarm rule, so that it needs no migration of its own.
ALARM_KINDS = ("spc", "pipeline_down", "drift")
# Score histogram of the hourly rollup: SCORE_BINS equal bins over [0, 1]; scores outside fall in the end bins.
SCORE_BINS = 10
SCORE_BIN_COLUMNS = tuple(f"score_bin_{k}" for k in range(SCORE_BINS))
# Key used in per-class counts for NG rows whose model gave no class (for example anomaly models).
UNCLASSIFIED = "(unclassified)"


def _in_list(column: str, values: tuple[str, ...]) -> str:
    """SQL text ``column IN ('a', 'b')`` for a check constraint over fixed, trusted literals."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is stored as UTC and always comes back timezone-aware UTC.

    PostgreSQL keeps the instant in ``timestamptz``; SQLite has no time zone type, so the value is stored as naive
    UTC text, which also keeps its lexical order equal to time order for range filters and bucketing.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC, refusing naive datetimes whose instant would be a guess."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"datetime {value.isoformat()!r} is naive; pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach (or convert to) UTC so callers never see a naive timestamp."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table; shares one ``MetaData`` with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy reads this class attribute as is
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        float: Double(),
    }


class TrainingRunRow(Base):
    """One fine-tuning run: queued, run by a worker, finished with metrics or an error."""

    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint(_in_list("status", RUN_STATUSES), name="status"),
        Index(None, "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]]
    data_dir: Mapped[str] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any]]
    log_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # revision 0003: the run queue (see inspect_app.storage.runs).
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None]
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=false())
    schedule: Mapped[str | None] = mapped_column(String(200))
    data_fingerprint: Mapped[str | None] = mapped_column(String(128))


class ModelVersionRow(Base):
    """A trained model registered for use; at most one row is ``active`` at a time."""

    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(_in_list("status", MODEL_STATUSES), name="status"),
        # A partial unique index makes "one active model" a database guarantee, not just a convention.
        Index(
            "uq_model_versions_one_active",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    backbone: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    classes: Mapped[list[str]]
    metrics: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    threshold: Mapped[float]
    data_fingerprint: Mapped[str | None] = mapped_column(String(128))
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class InspectionRow(Base):
    """One decision (or failure) for one image at one station."""

    __tablename__ = "inspections"
    __table_args__ = (
        # Re-inspecting the same file with the same model at the same station is a no-op (ON CONFLICT DO NOTHING).
        # NULLs are distinct in unique constraints on SQLite and PostgreSQL, so failed reads without a hash repeat.
        UniqueConstraint("content_hash", "model_version", "station"),
        CheckConstraint(_in_list("decision", DECISIONS), name="decision"),
        Index(None, "created_at"),
        Index(None, "station", "created_at"),
        Index(None, "decision", "created_at"),
        # Revision 0007: "the latest NG parts of one station" walks only that station's NG rows.
        Index(None, "station", "decision", "created_at"),
        # Revision 0002 (filter columns since 0007). The review queue (a few % of all rows) read, filtered, counted
        # and keyset-paged from the index alone: without it, counting the queue visits every table page that holds a
        # REVIEW row.
        Index(
            "ix_inspections_review_queue",
            "created_at",
            "id",
            "station",
            "defect_class",
            "score",
            sqlite_where=text("decision = 'REVIEW'"),
            postgresql_where=text("decision = 'REVIEW'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime]
    station: Mapped[str] = mapped_column(String(100))
    line: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(Text)
    image_path: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(8))
    defect_class: Mapped[str | None] = mapped_column(String(100))
    score: Mapped[float | None]
    # revision 0004: the model's own unbounded score (good-only models), beside the normalised one.
    raw_score: Mapped[float | None]
    threshold: Mapped[float | None]
    latency_ms: Mapped[float | None]
    heatmap_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


# --- revision 0002: the plant -----------------------------------------------------------------------------------------


class LineRow(Base):
    """A production line; stations belong to one."""

    __tablename__ = "lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime]


class StationRow(Base):
    """An inspection station, registered the first time it writes an inspection."""

    __tablename__ = "stations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime]


class InspectionHourlyRow(Base):
    """Counts per UTC hour, station and line, kept in step with ``inspections`` by the repository.

    The dashboard aggregates these (90 days x 10 stations is ~22k rows) instead of millions of raw rows, and
    ``purge`` keeps them, so defect rates of purged periods stay answerable. ``hour`` is hours since the Unix epoch,
    which makes hour/shift/day bucketing plain integer arithmetic on every backend.
    """

    __tablename__ = "inspection_hourly"

    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    station: Mapped[str] = mapped_column(String(100), primary_key=True)
    line: Mapped[str] = mapped_column(String(100), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    ok: Mapped[int] = mapped_column(Integer)
    review: Mapped[int] = mapped_column(Integer)
    ng: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    scored: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[float]
    score_bin_0: Mapped[int] = mapped_column(Integer)
    score_bin_1: Mapped[int] = mapped_column(Integer)
    score_bin_2: Mapped[int] = mapped_column(Integer)
    score_bin_3: Mapped[int] = mapped_column(Integer)
    score_bin_4: Mapped[int] = mapped_column(Integer)
    score_bin_5: Mapped[int] = mapped_column(Integer)
    score_bin_6: Mapped[int] = mapped_column(Integer)
    score_bin_7: Mapped[int] = mapped_column(Integer)
    score_bin_8: Mapped[int] = mapped_column(Integer)
    score_bin_9: Mapped[int] = mapped_column(Integer)


class DefectHourlyRow(Base):
    """NG counts per UTC hour, station, line and defect class (the Pareto's rollup); kept by ``purge`` too."""

    __tablename__ = "defect_hourly"

    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    station: Mapped[str] = mapped_column(String(100), primary_key=True)
    line: Mapped[str] = mapped_column(String(100), primary_key=True)
    defect_class: Mapped[str] = mapped_column(String(100), primary_key=True)
    ng: Mapped[int] = mapped_column(Integer)


class ReviewRow(Base):
    """A person's verdict on one inspection; at most one per inspection."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(_in_list("verdict", REVIEW_VERDICTS), name="verdict"),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), unique=True)
    verdict: Mapped[str] = mapped_column(String(8))
    defect_class: Mapped[str | None] = mapped_column(String(100))
    reviewer: Mapped[str] = mapped_column(String(100))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class DatasetSnapshotRow(Base):
    """A frozen list of training images; model versions point at it through ``data_fingerprint``."""

    __tablename__ = "dataset_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str] = mapped_column(Text)
    classes: Mapped[list[str]]
    image_count: Mapped[int] = mapped_column(Integer)
    manifest_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class ScheduleRow(Base):
    """A recurring job (fine-tune, inspect, purge) in cron syntax, run by the lifecycle worker."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    cron: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]]
    enabled: Mapped[bool] = mapped_column(Boolean)
    last_run_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class AuditLogRow(Base):
    """One recorded action; the database refuses UPDATE and DELETE on this table (triggers in migration 0002)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]]


class UserRow(Base):
    """A person who signs in; only an Argon2 hash of the password is stored."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in_list("role", USER_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    # revision 0005: bumped at sign-out and deactivation, so that every dashboard session token issued before is void.
    session_version: Mapped[int] = mapped_column(Integer, server_default="0")


# --- revision 0003: model lifecycle -------------------------------------------------------------------------------


class ModelComparisonRow(Base):
    """One champion/challenger evaluation on a frozen test set, kept whether or not the candidate was promoted."""

    __tablename__ = "model_comparisons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    candidate: Mapped[str] = mapped_column(String(200), index=True)
    champion: Mapped[str | None] = mapped_column(String(200))
    promoted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


# --- revision 0005: dashboard sessions ----------------------------------------------------------------------------


class SignInFailureRow(Base):
    """One failed dashboard sign-in, keyed by the user name tried or by the client; read by the sign-in throttle."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (CheckConstraint("kind IN ('user', 'client')", name="kind"), Index(None, "kind", "key", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]


# --- revision 0006: live pipeline figures and alarms --------------------------------------------------------------


class PipelineStatusRow(Base):
    """The latest live figures of one pipeline at one station, replaced at every report (the Live page reads these)."""

    __tablename__ = "pipeline_status"
    __table_args__ = (UniqueConstraint("pipeline", "station"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline: Mapped[str] = mapped_column(String(200))
    station: Mapped[str] = mapped_column(String(100))
    line: Mapped[str] = mapped_column(String(100))
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime]
    last_seen: Mapped[datetime]
    final: Mapped[bool] = mapped_column(Boolean)
    frames: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    skipped: Mapped[int] = mapped_column(BigInteger)
    fps: Mapped[float]
    fps_recent: Mapped[float]
    queue_depth: Mapped[int] = mapped_column(Integer)
    dropped: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[int] = mapped_column(Integer)
    latency_p50_ms: Mapped[float | None]
    latency_p95_ms: Mapped[float | None]
    latency_p99_ms: Mapped[float | None]
    snapshot: Mapped[dict[str, Any]]


class AlarmRow(Base):
    """One alarm episode: raised once, notified until every channel took it, acknowledged by a person."""

    __tablename__ = "alarms"
    __table_args__ = (
        CheckConstraint(_in_list("kind", ALARM_KINDS), name="kind"),
        # One row per episode even when two checkers run at once.
        UniqueConstraint("kind", "subject", "rule", "episode_start"),
        Index(None, "raised_at"),
        Index(None, "acknowledged_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    station: Mapped[str | None] = mapped_column(String(100))
    line: Mapped[str | None] = mapped_column(String(100))
    rule: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None]
    episode_start: Mapped[datetime]
    episode_end: Mapped[datetime]
    raised_at: Mapped[datetime]
    cleared_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    notified_at: Mapped[datetime | None]
    notify_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    notify_error: Mapped[str | None] = mapped_column(Text)
    deliveries: Mapped[dict[str, Any]]
