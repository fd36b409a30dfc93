"""The rollup-plus-raw reader behind every dashboard figure: time windows, buckets and the shared aggregation.

Counts come from the hourly rollups (``inspection_hourly``, ``defect_hourly``) for every whole UTC hour inside the
window, and from the raw ``inspections`` rows only for the partial hours at its two ends, so a 90-day query over
millions of inspections reads a few thousand rollup rows and the answer is still exact to the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, func, literal_column, select

from inspect_app.records import Decision
from inspect_app.storage.db import Database
from inspect_app.storage.tables import (
    SCORE_BIN_COLUMNS,
    SCORE_BINS,
    DefectHourlyRow,
    InspectionHourlyRow,
    InspectionRow,
)

BUCKETS = ("hour", "shift", "day")
GROUPS = ("station", "line")
# Shifts: SHIFT_HOURS-long blocks starting at SHIFT_START_HOUR UTC (06-14, 14-22, 22-06 by default).
SHIFT_START_HOUR = 6
SHIFT_HOURS = 8
_BUCKET_HOURS = {"hour": (1, 0), "shift": (SHIFT_HOURS, SHIFT_START_HOUR), "day": (24, 0)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOURLY: Table = InspectionHourlyRow.__table__  # type: ignore[assignment]
DEFECTS: Table = DefectHourlyRow.__table__  # type: ignore[assignment]
INSPECTIONS: Table = InspectionRow.__table__  # type: ignore[assignment]
COUNTERS = ("total", "ok", "review", "ng", "errors", "scored", "score_sum", *SCORE_BIN_COLUMNS)


def _check_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes, which would silently be read as UTC."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware datetime")


def hour_of(moment: datetime) -> int:
    """Hours since the epoch of the hour ``moment`` falls in."""
    return int(moment.timestamp() // 3600)


def hour_start(hour: int) -> datetime:
    """Aware UTC start of an epoch hour."""
    return _EPOCH + timedelta(hours=hour)


@dataclass(frozen=True)
class Window:
    """A [since, until) window split into whole rollup hours and raw pieces that each lie within one hour.

    Attributes:
        full: ``(first_hour, end_hour)`` (either side ``None`` = unbounded) read from the rollups, or ``None``.
        raw: ``(start, end, hour)`` pieces read from ``inspections``.
    """

    full: tuple[int | None, int | None] | None
    raw: tuple[tuple[datetime, datetime, int], ...]


def split_window(since: datetime | None, until: datetime | None) -> Window:
    """Split a time window for the rollups (see ``Window``)."""
    _check_aware("since", since)
    _check_aware("until", until)
    if since is not None and until is not None and since >= until:
        return Window(None, ())
    first = None
    if since is not None:
        first = hour_of(since) + (0 if hour_start(hour_of(since)) == since else 1)
    end = None if until is None else hour_of(until)
    if first is not None and end is not None and first > end:  # since and until inside one hour
        return Window(None, ((since, until, end),))  # type: ignore[arg-type]
    raw = []
    if since is not None and first is not None and since < hour_start(first):
        raw.append((since, hour_start(first), first - 1))
    if until is not None and end is not None and hour_start(end) < until:
        raw.append((hour_start(end), until, end))
    full = None if first is not None and end is not None and first >= end else (first, end)
    return Window(full, tuple(raw))


def bucket_of(hour: int, bucket: str) -> int:
    """Epoch hour at which the bucket containing ``hour`` starts (Python twin of ``bucket_sql``)."""
    size, offset = _BUCKET_HOURS[bucket]
    return ((hour - offset) // size) * size + offset


def bucket_sql(bucket: str) -> ColumnElement[Any]:
    """SQL for the bucket start of a rollup row's ``hour``: integer arithmetic, identical on both backends.

    Inlined as literal SQL because PostgreSQL only accepts a GROUP BY expression that is textually equal to the
    selected one, which bound parameters never are; the numbers come from ``_BUCKET_HOURS``, never from a caller.
    """
    size, offset = _BUCKET_HOURS[bucket]
    if size == 1:
        return literal_column("hour")
    # Epoch hours are positive, so integer division is floor division on both backends.
    return literal_column(f"(((hour - {offset}) / {size}) * {size} + {offset})")


def check_bucket(bucket: str) -> None:
    """Reject unknown bucket names, naming the allowed ones."""
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; allowed: {', '.join(repr(b) for b in BUCKETS)}")


def check_group(by: str | None) -> None:
    """Reject unknown breakdowns, naming the allowed ones."""
    if by is not None and by not in GROUPS:
        raise ValueError(f"unknown breakdown {by!r}; allowed: None, {', '.join(repr(g) for g in GROUPS)}")


def count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """``SUM(CASE WHEN condition THEN 1 ELSE 0 END)``, 0 over no rows; portable where ``FILTER`` is not."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def raw_score_bin(dialect: str) -> ColumnElement[Any]:
    """SQL for the score bin of a raw row, matching ``inspections.score_bin``."""
    scaled = f"score * {SCORE_BINS}"
    raw = f"CAST({scaled} AS INTEGER)" if dialect == "sqlite" else f"CAST(floor({scaled}) AS INTEGER)"
    top = SCORE_BINS - 1
    return literal_column(f"(CASE WHEN {raw} < 0 THEN 0 WHEN {raw} > {top} THEN {top} ELSE {raw} END)")


def raw_counters(dialect: str) -> dict[str, ColumnElement[Any]]:
    """Raw-row aggregates with the same meaning as the ``inspection_hourly`` counters."""
    decision = InspectionRow.decision
    score_bin = raw_score_bin(dialect)
    measures: dict[str, ColumnElement[Any]] = {
        "total": func.count(),
        "ok": count_if(decision == Decision.OK.value),
        "review": count_if(decision == Decision.REVIEW.value),
        "ng": count_if(decision == Decision.NG.value),
        "errors": count_if(decision == Decision.ERROR.value),
        "scored": func.count(InspectionRow.score),
        "score_sum": func.coalesce(func.sum(InspectionRow.score), 0.0),
    }
    for k, name in enumerate(SCORE_BIN_COLUMNS):
        measures[name] = count_if(and_(InspectionRow.score.is_not(None), score_bin == k))
    return measures


def equal_filters(table: Any, station: str | None, line: str | None) -> list[ColumnElement[bool]]:
    """Station / line equality conditions on a table with ``station`` and ``line`` columns."""
    conditions = []
    if station is not None:
        conditions.append(table.c.station == station)
    if line is not None:
        conditions.append(table.c.line == line)
    return conditions


def hours_filter(table: Table, full: tuple[int | None, int | None]) -> list[ColumnElement[bool]]:
    """Conditions selecting the rollup rows of whole hours ``[first, end)``."""
    first, end = full
    conditions = []
    if first is not None:
        conditions.append(table.c.hour >= first)
    if end is not None:
        conditions.append(table.c.hour < end)
    return conditions


def collect(
    db: Database,
    window: Window,
    *,
    rollup: Table,
    rollup_measures: dict[str, ColumnElement[Any]],
    raw_measures: dict[str, ColumnElement[Any]],
    keys: Sequence[tuple[ColumnElement[Any], ColumnElement[Any]]],
    bucket: str | None,
    station: str | None,
    line: str | None,
    raw_conditions: Sequence[ColumnElement[bool]] = (),
) -> dict[tuple, dict[str, float]]:
    """Aggregate rollup rows over whole hours plus raw rows over partial hours, summed per group key.

    Keys of the result are ``(bucket_hour_or_None, *key values)``; values are the measures by name.
    """
    result: dict[tuple, dict[str, float]] = {}

    def add(key: tuple, values: dict[str, Any]) -> None:
        target = result.get(key)
        if target is None:
            result[key] = {name: values[name] for name in rollup_measures}
            return
        for name in rollup_measures:
            target[name] += values[name]

    with db.session() as session:
        if window.full is not None:
            bucket_col = bucket_sql(bucket).label("bucket") if bucket else None
            key_cols = [k.label(f"key_{i}") for i, (k, _) in enumerate(keys)]
            group_cols = ([bucket_col] if bucket_col is not None else []) + key_cols
            stmt = select(*group_cols, *(m.label(name) for name, m in rollup_measures.items())).where(
                *hours_filter(rollup, window.full), *equal_filters(rollup, station, line)
            )
            if group_cols:
                stmt = stmt.group_by(*group_cols)
            for row in session.execute(stmt).mappings():
                if not group_cols and row[next(iter(rollup_measures))] is None:
                    continue  # SUM over no rows
                key = (row["bucket"] if bucket else None, *(row[f"key_{i}"] for i in range(len(keys))))
                add(key, dict(row))
        for start, end, hour in window.raw:
            key_cols = [k.label(f"key_{i}") for i, (_, k) in enumerate(keys)]
            stmt = select(*key_cols, *(m.label(name) for name, m in raw_measures.items())).where(
                InspectionRow.created_at >= start,
                InspectionRow.created_at < end,
                *equal_filters(INSPECTIONS, station, line),
                *raw_conditions,
            )
            if key_cols:
                stmt = stmt.group_by(*key_cols)
            for row in session.execute(stmt).mappings():
                if not key_cols and not row["total" if "total" in raw_measures else next(iter(raw_measures))]:
                    continue
                key = (bucket_of(hour, bucket) if bucket else None, *(row[f"key_{i}"] for i in range(len(keys))))
                add(key, dict(row))
    return result


def hourly_sums() -> dict[str, ColumnElement[Any]]:
    """SUM of every ``inspection_hourly`` counter."""
    return {name: func.sum(HOURLY.c[name]) for name in COUNTERS}


def group_keys(by: str | None) -> list[tuple[ColumnElement[Any], ColumnElement[Any]]]:
    """(rollup column, raw column) pairs for a breakdown by station or line."""
    if by is None:
        return []
    return [(HOURLY.c[by], INSPECTIONS.c[by])]



__all__ = [
    "BUCKETS",
    "COUNTERS",
    "DEFECTS",
    "GROUPS",
    "HOURLY",
    "INSPECTIONS",
    "SHIFT_HOURS",
    "SHIFT_START_HOUR",
    "Window",
    "bucket_of",
    "bucket_sql",
    "check_bucket",
    "check_group",
    "collect",
    "count_if",
    "equal_filters",
    "group_keys",
    "hour_of",
    "hour_start",
    "hourly_sums",
    "hours_filter",
    "raw_counters",
    "raw_score_bin",
    "split_window",
]
