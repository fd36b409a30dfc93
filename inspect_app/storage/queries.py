"""Aggregations for the dashboard and the CLI, computed in SQL and portable across SQLite and PostgreSQL.

Every filter takes ``since`` (inclusive) and ``until`` (exclusive) as timezone-aware datetimes, and optional
``station`` / ``line`` names; ``None`` means "no filter".

Counts come from the hourly rollups (``inspection_hourly``, ``defect_hourly``) for every whole UTC hour inside the
window, and from the raw ``inspections`` rows only for the partial hours at its two ends, so a 90-day query over
millions of inspections reads a few thousand rollup rows and the answer is still exact to the second. Rollups survive
``retention.purge``, so periods whose rows were purged keep their counts (the partial end hours then read as empty).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, exists, func, literal_column, select

from inspect_app.records import Decision, Inspection, InspectionSummary, ReviewItem
from inspect_app.storage.db import Database
from inspect_app.storage.inspections import InspectionRepository, inspection_from_row
from inspect_app.storage.tables import (
    SCORE_BIN_COLUMNS,
    SCORE_BINS,
    UNCLASSIFIED,
    DefectHourlyRow,
    InspectionHourlyRow,
    InspectionRow,
    LineRow,
    ReviewRow,
    StationRow,
)

logger = logging.getLogger(__name__)

BUCKETS = ("hour", "shift", "day")
GROUPS = ("station", "line")
# Shifts: SHIFT_HOURS-long blocks starting at SHIFT_START_HOUR UTC (06-14, 14-22, 22-06 by default).
SHIFT_START_HOUR = 6
SHIFT_HOURS = 8
_BUCKET_HOURS = {"hour": (1, 0), "shift": (SHIFT_HOURS, SHIFT_START_HOUR), "day": (24, 0)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOURLY: Table = InspectionHourlyRow.__table__  # type: ignore[assignment]
_DEFECTS: Table = DefectHourlyRow.__table__  # type: ignore[assignment]
_INSPECTIONS: Table = InspectionRow.__table__  # type: ignore[assignment]
_COUNTERS = ("total", "ok", "review", "ng", "errors", "scored", "score_sum", *SCORE_BIN_COLUMNS)

__all__ = [
    "BUCKETS",
    "GROUPS",
    "UNCLASSIFIED",
    "defect_class_counts",
    "defect_rate_over_time",
    "latest_ng",
    "lines",
    "p_chart",
    "pareto",
    "review_queue",
    "review_queue_size",
    "score_distribution",
    "stations",
    "summary",
]


# --- windows: whole hours from the rollups, partial hours from the raw rows -------------------------------------------


def _check_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes, which would silently be read as UTC."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware datetime")


def _hour_of(moment: datetime) -> int:
    """Hours since the epoch of the hour ``moment`` falls in."""
    return int(moment.timestamp() // 3600)


def _hour_start(hour: int) -> datetime:
    """Aware UTC start of an epoch hour."""
    return _EPOCH + timedelta(hours=hour)


@dataclass(frozen=True)
class _Window:
    """A [since, until) window split into whole rollup hours and raw pieces that each lie within one hour.

    Attributes:
        full: ``(first_hour, end_hour)`` (either side ``None`` = unbounded) read from the rollups, or ``None``.
        raw: ``(start, end, hour)`` pieces read from ``inspections``.
    """

    full: tuple[int | None, int | None] | None
    raw: tuple[tuple[datetime, datetime, int], ...]


def _window(since: datetime | None, until: datetime | None) -> _Window:
    """Split a time window for the rollups (see ``_Window``)."""
    _check_aware("since", since)
    _check_aware("until", until)
    if since is not None and until is not None and since >= until:
        return _Window(None, ())
    first = None
    if since is not None:
        first = _hour_of(since) + (0 if _hour_start(_hour_of(since)) == since else 1)
    end = None if until is None else _hour_of(until)
    if first is not None and end is not None and first > end:  # since and until inside one hour
        return _Window(None, ((since, until, end),))  # type: ignore[arg-type]
    raw = []
    if since is not None and first is not None and since < _hour_start(first):
        raw.append((since, _hour_start(first), first - 1))
    if until is not None and end is not None and _hour_start(end) < until:
        raw.append((_hour_start(end), until, end))
    full = None if first is not None and end is not None and first >= end else (first, end)
    return _Window(full, tuple(raw))


def _bucket_of(hour: int, bucket: str) -> int:
    """Epoch hour at which the bucket containing ``hour`` starts (Python twin of ``_bucket_sql``)."""
    size, offset = _BUCKET_HOURS[bucket]
    return ((hour - offset) // size) * size + offset


def _bucket_sql(bucket: str) -> ColumnElement[Any]:
    """SQL for the bucket start of a rollup row's ``hour``: integer arithmetic, identical on both backends.

    Inlined as literal SQL because PostgreSQL only accepts a GROUP BY expression that is textually equal to the
    selected one, which bound parameters never are; the numbers come from ``_BUCKET_HOURS``, never from a caller.
    """
    size, offset = _BUCKET_HOURS[bucket]
    if size == 1:
        return literal_column("hour")
    # Epoch hours are positive, so integer division is floor division on both backends.
    return literal_column(f"(((hour - {offset}) / {size}) * {size} + {offset})")


def _check_bucket(bucket: str) -> None:
    """Reject unknown bucket names, naming the allowed ones."""
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; allowed: {', '.join(repr(b) for b in BUCKETS)}")


def _check_group(by: str | None) -> None:
    """Reject unknown breakdowns, naming the allowed ones."""
    if by is not None and by not in GROUPS:
        raise ValueError(f"unknown breakdown {by!r}; allowed: None, {', '.join(repr(g) for g in GROUPS)}")


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """``SUM(CASE WHEN condition THEN 1 ELSE 0 END)``, 0 over no rows; portable where ``FILTER`` is not."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _raw_score_bin(dialect: str) -> ColumnElement[Any]:
    """SQL for the score bin of a raw row, matching ``repository.score_bin``."""
    scaled = f"score * {SCORE_BINS}"
    raw = f"CAST({scaled} AS INTEGER)" if dialect == "sqlite" else f"CAST(floor({scaled}) AS INTEGER)"
    top = SCORE_BINS - 1
    return literal_column(f"(CASE WHEN {raw} < 0 THEN 0 WHEN {raw} > {top} THEN {top} ELSE {raw} END)")


def _raw_counters(dialect: str) -> dict[str, ColumnElement[Any]]:
    """Raw-row aggregates with the same meaning as the ``inspection_hourly`` counters."""
    decision = InspectionRow.decision
    score_bin = _raw_score_bin(dialect)
    measures: dict[str, ColumnElement[Any]] = {
        "total": func.count(),
        "ok": _count_if(decision == Decision.OK.value),
        "review": _count_if(decision == Decision.REVIEW.value),
        "ng": _count_if(decision == Decision.NG.value),
        "errors": _count_if(decision == Decision.ERROR.value),
        "scored": func.count(InspectionRow.score),
        "score_sum": func.coalesce(func.sum(InspectionRow.score), 0.0),
    }
    for k, name in enumerate(SCORE_BIN_COLUMNS):
        measures[name] = _count_if(and_(InspectionRow.score.is_not(None), score_bin == k))
    return measures


def _equal_filters(table: Any, station: str | None, line: str | None) -> list[ColumnElement[bool]]:
    """Station / line equality conditions on a table with ``station`` and ``line`` columns."""
    conditions = []
    if station is not None:
        conditions.append(table.c.station == station)
    if line is not None:
        conditions.append(table.c.line == line)
    return conditions


def _hours_filter(table: Table, full: tuple[int | None, int | None]) -> list[ColumnElement[bool]]:
    """Conditions selecting the rollup rows of whole hours ``[first, end)``."""
    first, end = full
    conditions = []
    if first is not None:
        conditions.append(table.c.hour >= first)
    if end is not None:
        conditions.append(table.c.hour < end)
    return conditions


def _collect(
    db: Database,
    window: _Window,
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
            bucket_col = _bucket_sql(bucket).label("bucket") if bucket else None
            key_cols = [k.label(f"key_{i}") for i, (k, _) in enumerate(keys)]
            group_cols = ([bucket_col] if bucket_col is not None else []) + key_cols
            stmt = select(*group_cols, *(m.label(name) for name, m in rollup_measures.items())).where(
                *_hours_filter(rollup, window.full), *_equal_filters(rollup, station, line)
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
                *_equal_filters(_INSPECTIONS, station, line),
                *raw_conditions,
            )
            if key_cols:
                stmt = stmt.group_by(*key_cols)
            for row in session.execute(stmt).mappings():
                if not key_cols and not row["total" if "total" in raw_measures else next(iter(raw_measures))]:
                    continue
                key = (_bucket_of(hour, bucket) if bucket else None, *(row[f"key_{i}"] for i in range(len(keys))))
                add(key, dict(row))
    return result


def _hourly_sums() -> dict[str, ColumnElement[Any]]:
    """SUM of every ``inspection_hourly`` counter."""
    return {name: func.sum(_HOURLY.c[name]) for name in _COUNTERS}


def _group_keys(by: str | None) -> list[tuple[ColumnElement[Any], ColumnElement[Any]]]:
    """(rollup column, raw column) pairs for a breakdown by station or line."""
    if by is None:
        return []
    return [(_HOURLY.c[by], _INSPECTIONS.c[by])]


# --- the dashboard's queries --------------------------------------------------------------------------------------


def summary(
    db: Database,
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> InspectionSummary:
    """Decision counts and NG counts per defect class over the filtered inspections."""
    window = _window(since, until)
    totals = _collect(
        db, window, rollup=_HOURLY, rollup_measures=_hourly_sums(), raw_measures=_raw_counters(db.dialect),
        keys=[], bucket=None, station=station, line=line,
    ).get((None,), dict.fromkeys(_COUNTERS, 0))
    return InspectionSummary(
        total=int(totals["total"]),
        ok=int(totals["ok"]),
        review=int(totals["review"]),
        ng=int(totals["ng"]),
        errors=int(totals["errors"]),
        per_class=dict(defect_class_counts(db, since=since, until=until, station=station, line=line)),
    )


def defect_rate_over_time(
    db: Database,
    bucket: str = "hour",
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
    by: str | None = None,
) -> list[dict[str, Any]]:
    """Inspections and NG share per time bucket, oldest first; buckets without inspections are left out.

    Args:
        db: the database.
        bucket: ``"hour"``, ``"shift"`` (``SHIFT_HOURS`` from ``SHIFT_START_HOUR`` UTC) or ``"day"`` (UTC).
        since: inclusive lower bound.
        until: exclusive upper bound.
        station: only this station.
        line: only this line.
        by: ``None`` for plant totals, or ``"station"`` / ``"line"`` for one series per station or line.

    Returns:
        One dict per bucket (and per station or line with ``by``, which adds that key): ``bucket`` (aware UTC start),
        ``total`` (all rows, errors included), ``decided`` (rows with a decision), ``ng`` and ``rate``
        (``ng / decided``, 0.0 when nothing was decided — the same definition as ``InspectionSummary.defect_rate``).

    Raises:
        ValueError: ``bucket`` or ``by`` is unknown, or a bound is a naive datetime.
    """
    _check_bucket(bucket)
    _check_group(by)
    rows = _collect(
        db, _window(since, until), rollup=_HOURLY, rollup_measures=_hourly_sums(),
        raw_measures=_raw_counters(db.dialect), keys=_group_keys(by), bucket=bucket, station=station, line=line,
    )
    result = []
    for key in sorted(rows):
        values = rows[key]
        total, errors, ng = int(values["total"]), int(values["errors"]), int(values["ng"])
        decided = total - errors
        item: dict[str, Any] = {"bucket": _hour_start(int(key[0]))}
        if by is not None:
            item[by] = key[1]
        item.update({"total": total, "decided": decided, "ng": ng, "rate": ng / decided if decided else 0.0})
        result.append(item)
    return result


def defect_class_counts(
    db: Database,
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> list[tuple[str, int]]:
    """NG inspections per defect class, most frequent first, ties by name (the input of a Pareto chart)."""
    counts = _collect(
        db, _window(since, until), rollup=_DEFECTS, rollup_measures={"ng": func.sum(_DEFECTS.c.ng)},
        raw_measures={"ng": func.count()},
        keys=[(_DEFECTS.c.defect_class, func.coalesce(InspectionRow.defect_class, UNCLASSIFIED))],
        bucket=None, station=station, line=line, raw_conditions=[InspectionRow.decision == Decision.NG.value],
    )
    pairs = [(str(key[1]), int(values["ng"])) for key, values in counts.items() if values["ng"]]
    return sorted(pairs, key=lambda item: (-item[1], item[0]))


def pareto(
    db: Database,
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> list[dict[str, Any]]:
    """Pareto of defect classes: ``defect_class``, ``ng``, ``share`` and ``cumulative`` share, largest first."""
    counts = defect_class_counts(db, since=since, until=until, station=station, line=line)
    total = sum(n for _, n in counts)
    running = 0
    result = []
    for name, n in counts:
        running += n
        result.append({"defect_class": name, "ng": n, "share": n / total, "cumulative": running / total})
    return result


def p_chart(
    db: Database,
    bucket: str = "day",
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> dict[str, Any]:
    """p-chart of the NG fraction: centre line and 3-sigma control limits per bucket.

    The centre line is the pooled fraction ``p̄ = Σ ng / Σ decided``; each bucket with ``n`` decided parts gets
    ``p̄ ± 3·sqrt(p̄(1 − p̄)/n)``, clipped to [0, 1], so limits widen where fewer parts were inspected.

    Returns:
        ``{"center": p̄, "points": [{"bucket", "n", "ng", "p", "lcl", "ucl", "out_of_control"}, ...]}``; buckets
        without decided parts are left out.
    """
    series = [r for r in defect_rate_over_time(db, bucket, since, until, station, line) if r["decided"]]
    decided = sum(r["decided"] for r in series)
    center = sum(r["ng"] for r in series) / decided if decided else 0.0
    points = []
    for r in series:
        sigma = math.sqrt(center * (1.0 - center) / r["decided"])
        lcl, ucl = max(0.0, center - 3 * sigma), min(1.0, center + 3 * sigma)
        points.append(
            {
                "bucket": r["bucket"], "n": r["decided"], "ng": r["ng"], "p": r["rate"], "lcl": lcl, "ucl": ucl,
                "out_of_control": not lcl <= r["rate"] <= ucl,
            }
        )
    return {"center": center, "points": points}


def score_distribution(
    db: Database,
    bucket: str = "day",
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> list[dict[str, Any]]:
    """Defect-score histogram per bucket (for drift): ``SCORE_BINS`` equal bins over [0, 1].

    Returns:
        One dict per bucket, oldest first: ``bucket``, ``n`` (scored rows), ``mean`` score and ``bins`` (counts, bin
        ``k`` holding scores in ``[k/SCORE_BINS, (k+1)/SCORE_BINS)``, scores ≥ 1 in the last bin).
    """
    _check_bucket(bucket)
    rows = _collect(
        db, _window(since, until), rollup=_HOURLY, rollup_measures=_hourly_sums(),
        raw_measures=_raw_counters(db.dialect), keys=[], bucket=bucket, station=station, line=line,
    )
    result = []
    for key in sorted(rows):
        values = rows[key]
        n = int(values["scored"])
        if not n:
            continue
        result.append(
            {
                "bucket": _hour_start(int(key[0])),
                "n": n,
                "mean": float(values["score_sum"]) / n,
                "bins": [int(values[name]) for name in SCORE_BIN_COLUMNS],
            }
        )
    return result


def stations(db: Database) -> list[str]:
    """Names of every registered station (each one that ever recorded an inspection), sorted."""
    with db.session() as session:
        return list(session.scalars(select(StationRow.name).order_by(StationRow.name)))


def lines(db: Database) -> list[str]:
    """Names of every registered production line, sorted."""
    with db.session() as session:
        return list(session.scalars(select(LineRow.name).order_by(LineRow.name)))


def latest_ng(
    db: Database, limit: int = 20, station: str | None = None, since: datetime | None = None
) -> list[Inspection]:
    """The most recent NG inspections (with their heatmap paths), newest first, optionally one station and from
    ``since`` on."""
    return InspectionRepository(db).list_inspections(limit=limit, decision=Decision.NG, station=station, since=since)


def _queue_conditions(station: str | None) -> list[ColumnElement[bool]]:
    """REVIEW inspections that nobody has reviewed yet, optionally one station."""
    reviewed = exists().where(ReviewRow.inspection_id == InspectionRow.id)
    conditions = [InspectionRow.decision == Decision.REVIEW.value, ~reviewed]
    if station is not None:
        conditions.append(InspectionRow.station == station)
    return conditions


def review_queue(db: Database, limit: int = 50, station: str | None = None) -> list[ReviewItem]:
    """REVIEW inspections without a review yet, newest first, with the ids that ``ReviewRepository.add_review`` takes.

    Raises:
        ValueError: ``limit`` is not a positive integer.
    """
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit {limit!r} must be a positive integer")
    stmt = (
        select(InspectionRow)
        .where(*_queue_conditions(station))
        .order_by(InspectionRow.created_at.desc(), InspectionRow.id.desc())
        .limit(limit)
    )
    with db.session() as session:
        return [ReviewItem(inspection_id=row.id, inspection=inspection_from_row(row)) for row in session.scalars(stmt)]


def review_queue_size(db: Database, station: str | None = None) -> int:
    """How many REVIEW inspections wait for a person's verdict."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(InspectionRow).where(*_queue_conditions(station))))
