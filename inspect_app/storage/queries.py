"""The Overview's figures: decision counts, defect rates over time, Pareto, p-chart, score histograms, and the plant's
stations and lines; computed in SQL and portable across SQLite and PostgreSQL.

Every filter takes ``since`` (inclusive) and ``until`` (exclusive) as timezone-aware datetimes, and optional
``station`` / ``line`` names; ``None`` means "no filter". Counts are read through ``rollup_window`` (hourly rollups for
whole hours, raw rows for the partial end hours). Rollups survive ``retention.purge``, so periods whose rows were
purged keep their counts (the partial end hours then read as empty). The Review page's queue is ``review_queries``.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from inspect_app.records import Decision, Inspection, InspectionSummary
from inspect_app.storage.db import Database
from inspect_app.storage.inspections import InspectionRepository
from inspect_app.storage.rollup_window import (
    BUCKETS,
    COUNTERS,
    DEFECTS,
    GROUPS,
    HOURLY,
    SHIFT_HOURS,
    SHIFT_START_HOUR,
    check_bucket,
    check_group,
    collect,
    group_keys,
    hour_of,
    hour_start,
    hourly_sums,
    raw_counters,
    split_window,
)
from inspect_app.storage.tables import SCORE_BIN_COLUMNS, UNCLASSIFIED, InspectionRow, LineRow, StationRow

logger = logging.getLogger(__name__)

__all__ = [
    "BUCKETS",
    "GROUPS",
    "SHIFT_HOURS",
    "SHIFT_START_HOUR",
    "UNCLASSIFIED",
    "defect_class_counts",
    "defect_rate_over_time",
    "first_hour",
    "latest_ng",
    "lines",
    "p_chart",
    "p_chart_of",
    "pareto",
    "rates_in_windows",
    "score_distribution",
    "stations",
    "summary",
]


def summary(
    db: Database,
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
) -> InspectionSummary:
    """Decision counts and NG counts per defect class over the filtered inspections."""
    window = split_window(since, until)
    totals = collect(
        db, window, rollup=HOURLY, rollup_measures=hourly_sums(), raw_measures=raw_counters(db.dialect),
        keys=[], bucket=None, station=station, line=line,
    ).get((None,), dict.fromkeys(COUNTERS, 0))
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
    check_bucket(bucket)
    check_group(by)
    rows = collect(
        db, split_window(since, until), rollup=HOURLY, rollup_measures=hourly_sums(),
        raw_measures=raw_counters(db.dialect), keys=group_keys(by), bucket=bucket, station=station, line=line,
    )
    result = []
    for key in sorted(rows):
        values = rows[key]
        total, errors, ng = int(values["total"]), int(values["errors"]), int(values["ng"])
        decided = total - errors
        item: dict[str, Any] = {"bucket": hour_start(int(key[0]))}
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
    counts = collect(
        db, split_window(since, until), rollup=DEFECTS, rollup_measures={"ng": func.sum(DEFECTS.c.ng)},
        raw_measures={"ng": func.count()},
        keys=[(DEFECTS.c.defect_class, func.coalesce(InspectionRow.defect_class, UNCLASSIFIED))],
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
    """p-chart of the NG fraction per UTC bucket (see ``p_chart_of``)."""
    return p_chart_of(defect_rate_over_time(db, bucket, since, until, station, line))


def p_chart_of(series: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """p-chart of the NG fraction over buckets with ``decided`` and ``ng`` counts: centre line and 3-sigma limits.

    The centre line is the pooled fraction ``p̄ = Σ ng / Σ decided``; each bucket with ``n`` decided parts gets
    ``p̄ ± 3·sqrt(p̄(1 − p̄)/n)``, clipped to [0, 1], so limits widen where fewer parts were inspected.

    Returns:
        ``{"center": p̄, "points": [{"bucket", "n", "ng", "p", "lcl", "ucl", "out_of_control"}, ...]}`` (plus the
        bucket's ``end`` where the series has one); buckets without decided parts are left out.
    """
    decided_rows = [r for r in series if r["decided"]]
    decided = sum(r["decided"] for r in decided_rows)
    center = sum(r["ng"] for r in decided_rows) / decided if decided else 0.0
    points = []
    for r in decided_rows:
        sigma = math.sqrt(center * (1.0 - center) / r["decided"])
        lcl, ucl = max(0.0, center - 3 * sigma), min(1.0, center + 3 * sigma)
        point = {"bucket": r["bucket"], "n": r["decided"], "ng": r["ng"], "p": r["rate"], "lcl": lcl, "ucl": ucl,
                 "out_of_control": not lcl <= r["rate"] <= ucl}
        if "end" in r:
            point["end"] = r["end"]
        points.append(point)
    return {"center": center, "points": points}


def rates_in_windows(
    db: Database,
    windows: Sequence[tuple[datetime, datetime]],
    station: str | None = None,
    line: str | None = None,
) -> list[dict[str, Any]]:
    """Inspections and NG share in each of ``windows`` (sorted, non-overlapping ``[start, end)``, aware), exact to
    the second: plant days or shifts, whose edges need not be UTC days.

    Whole hours come from the rollups and partial hours from raw rows; the span is cut at every edge that is not on a
    whole UTC hour (half-hour zones), so each hour read lies in one window. Parts between windows are not counted.

    Returns:
        One dict per window, in order: ``bucket`` (its start), ``end``, ``total``, ``decided``, ``ng``, ``rate``.

    Raises:
        ValueError: a bound is naive, a window ends before it starts or overlaps the one before.
    """
    for start, end in windows:
        split_window(start, end)  # names a naive bound
        if end < start:
            raise ValueError(f"window {start.isoformat()} .. {end.isoformat()} ends before it starts")
    for (_, before), (after, _) in itertools.pairwise(windows):
        if after < before:
            raise ValueError(f"windows overlap at {after.isoformat()}; they must be sorted and disjoint")
    sums = [{"total": 0, "errors": 0, "ng": 0} for _ in windows]
    if windows:
        starts = [start for start, _ in windows]
        edges = sorted({moment for window in windows for moment in window})
        cuts = [edges[0], *(m for m in edges[1:-1] if hour_start(hour_of(m)) != m), edges[-1]]
        for low, high in itertools.pairwise(cuts):
            rows = collect(
                db, split_window(low, high), rollup=HOURLY, rollup_measures=hourly_sums(),
                raw_measures=raw_counters(db.dialect), keys=[], bucket="hour", station=station, line=line,
            )
            for key, values in rows.items():
                moment = max(hour_start(int(key[0])), low)
                index = bisect.bisect_right(starts, moment) - 1
                if index < 0 or moment >= windows[index][1]:
                    continue  # between two windows
                for name in ("total", "errors", "ng"):
                    sums[index][name] += int(values[name])
    result = []
    for (start, end), counts in zip(windows, sums, strict=True):
        decided = counts["total"] - counts["errors"]
        result.append({"bucket": start, "end": end, "total": counts["total"], "decided": decided,
                       "ng": counts["ng"], "rate": counts["ng"] / decided if decided else 0.0})
    return result


def first_hour(db: Database) -> datetime | None:
    """Start of the earliest UTC hour with inspections (rollups outlive purges), or ``None`` for an empty plant."""
    with db.session() as session:
        hour = session.scalar(select(func.min(HOURLY.c.hour)))
    return None if hour is None else hour_start(int(hour))


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
    check_bucket(bucket)
    rows = collect(
        db, split_window(since, until), rollup=HOURLY, rollup_measures=hourly_sums(),
        raw_measures=raw_counters(db.dialect), keys=[], bucket=bucket, station=station, line=line,
    )
    result = []
    for key in sorted(rows):
        values = rows[key]
        n = int(values["scored"])
        if not n:
            continue
        result.append(
            {
                "bucket": hour_start(int(key[0])),
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
