"""Aggregations for the dashboard and the CLI, computed in SQL and portable across SQLite and PostgreSQL.

Every filter takes ``since`` (inclusive) and ``until`` (exclusive) as timezone-aware datetimes, and optional
``station`` / ``line`` names; ``None`` means "no filter".
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal_column, select

from inspect_app.records import Decision, Inspection, InspectionSummary
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import InspectionRow

logger = logging.getLogger(__name__)

BUCKETS = ("hour", "day")
# Key used in per-class counts for NG rows whose model gave no class (for example anomaly models).
UNCLASSIFIED = "(unclassified)"

# Bucket formats per dialect. They are inlined as SQL literals, not bound, because PostgreSQL only accepts a GROUP BY
# expression that is textually equal to the selected one, and two bound parameters never are. The values are fixed
# here and chosen by a validated key, so nothing user-supplied reaches the SQL text.
_SQLITE_FORMATS = {"hour": "'%Y-%m-%d %H:00:00'", "day": "'%Y-%m-%d 00:00:00'"}
_POSTGRES_UNITS = {"hour": "'hour'", "day": "'day'"}


def _check_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes, which would silently be read as UTC."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware datetime")


def _filters(
    since: datetime | None, until: datetime | None, station: str | None, line: str | None
) -> list[ColumnElement[bool]]:
    """WHERE conditions shared by every aggregation."""
    _check_aware("since", since)
    _check_aware("until", until)
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(InspectionRow.created_at >= since)
    if until is not None:
        conditions.append(InspectionRow.created_at < until)
    if station is not None:
        conditions.append(InspectionRow.station == station)
    if line is not None:
        conditions.append(InspectionRow.line == line)
    return conditions


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """``SUM(CASE WHEN condition THEN 1 ELSE 0 END)``, 0 over no rows; portable where ``FILTER`` is not."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _class_counts_stmt(conditions: list[ColumnElement[bool]]) -> Any:
    """NG rows per defect class, most frequent first, ties by name."""
    defect_class = func.coalesce(InspectionRow.defect_class, UNCLASSIFIED).label("defect_class")
    count = func.count().label("n")
    return (
        select(defect_class, count)
        .where(InspectionRow.decision == Decision.NG.value, *conditions)
        .group_by(defect_class)
        .order_by(count.desc(), defect_class)
    )


def summary(
    db: Database,
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> InspectionSummary:
    """Decision counts and NG counts per defect class over the filtered inspections."""
    conditions = _filters(since, until, station, line)
    decision = InspectionRow.decision
    totals = select(
        func.count(),
        _count_if(decision == Decision.OK.value),
        _count_if(decision == Decision.REVIEW.value),
        _count_if(decision == Decision.NG.value),
        _count_if(decision == Decision.ERROR.value),
    ).where(*conditions)
    with db.session() as session:
        total, ok, review, ng, errors = session.execute(totals).one()
        per_class = {name: int(n) for name, n in session.execute(_class_counts_stmt(conditions))}
    return InspectionSummary(
        total=int(total), ok=int(ok), review=int(review), ng=int(ng), errors=int(errors), per_class=per_class
    )


def _bucket_expression(dialect: str, bucket: str) -> ColumnElement[Any]:
    """SQL expression giving the UTC start of the bucket each row falls in."""
    if dialect == "sqlite":
        # SQLite stores naive UTC text (see tables.UTCDateTime), so strftime works on UTC directly.
        return func.strftime(literal_column(_SQLITE_FORMATS[bucket]), InspectionRow.created_at)
    if dialect == "postgresql":
        # timestamptz → UTC wall time first, so buckets do not depend on the session's TimeZone setting.
        utc_time = func.timezone(literal_column("'UTC'"), InspectionRow.created_at)
        return func.date_trunc(literal_column(_POSTGRES_UNITS[bucket]), utc_time)
    raise NotImplementedError(
        f"time bucketing is not implemented for dialect {dialect!r}; supported: sqlite, postgresql"
    )


def _as_utc(value: datetime | str) -> datetime:
    """A bucket start as returned by the driver (text on SQLite, naive timestamp on PostgreSQL) → aware UTC."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def defect_rate_over_time(
    db: Database,
    bucket: str = "hour",
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> list[dict[str, Any]]:
    """Inspections and NG share per time bucket, oldest first; buckets without inspections are left out.

    Args:
        db: the database.
        bucket: ``"hour"`` or ``"day"`` (UTC).
        since: inclusive lower bound.
        until: exclusive upper bound.
        station: only this station.
        line: only this line.

    Returns:
        One dict per bucket: ``bucket`` (aware UTC start), ``total`` (all rows, errors included), ``decided``
        (rows with a decision), ``ng`` and ``rate`` (``ng / decided``, 0.0 when nothing was decided — the same
        definition as ``InspectionSummary.defect_rate``).

    Raises:
        ValueError: ``bucket`` is not one of ``BUCKETS``, or a bound is a naive datetime.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; allowed: {', '.join(repr(b) for b in BUCKETS)}")
    conditions = _filters(since, until, station, line)
    start = _bucket_expression(db.dialect, bucket).label("bucket")
    decision = InspectionRow.decision
    stmt = (
        select(
            start,
            func.count().label("total"),
            _count_if(decision != Decision.ERROR.value).label("decided"),
            _count_if(decision == Decision.NG.value).label("ng"),
        )
        .where(*conditions)
        .group_by(start)
        .order_by(start)
    )
    with db.session() as session:
        rows = session.execute(stmt).all()
    result = []
    for row in rows:
        decided, ng = int(row.decided), int(row.ng)
        result.append(
            {
                "bucket": _as_utc(row.bucket),
                "total": int(row.total),
                "decided": decided,
                "ng": ng,
                "rate": ng / decided if decided else 0.0,
            }
        )
    return result


def defect_class_counts(
    db: Database,
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> list[tuple[str, int]]:
    """NG inspections per defect class, most frequent first (the input of a Pareto chart)."""
    conditions = _filters(since, until, station, line)
    with db.session() as session:
        return [(name, int(n)) for name, n in session.execute(_class_counts_stmt(conditions))]


def stations(db: Database) -> list[str]:
    """Names of every station that recorded an inspection, sorted."""
    stmt = select(InspectionRow.station).distinct().order_by(InspectionRow.station)
    with db.session() as session:
        return list(session.scalars(stmt))


def latest_ng(
    db: Database, limit: int = 20, station: str | None = None, since: datetime | None = None
) -> list[Inspection]:
    """The most recent NG inspections, newest first, optionally one station and from ``since`` on."""
    return Repository(db).list_inspections(limit=limit, decision=Decision.NG, station=station, since=since)
