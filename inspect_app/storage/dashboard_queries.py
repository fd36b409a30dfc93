"""Dashboard aggregations beyond ``storage.queries``: station comparison, live figures, audit samples, reviewed
training labels and recent reviews. (The Review page's queue is ``review_queries``; score drift, its math over
``queries.score_distribution``, is ``app.drift``.)

Like ``queries``, everything is computed through SQLAlchemy on the existing tables and runs on SQLite and PostgreSQL;
time bounds are timezone-aware, ``since`` inclusive and ``until`` exclusive.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select

from inspect_app.records import GOOD_CLASS, Decision, ReviewItem, utcnow
from inspect_app.storage import rollup_window
from inspect_app.storage.db import Database
from inspect_app.storage.inspections import inspection_from_row
from inspect_app.storage.tables import InspectionRow, ReviewRow

logger = logging.getLogger(__name__)

# The audit sample draws from at most this many newest unreviewed OK parts: bounded work on a large table.
AUDIT_POOL_LIMIT = 20_000

__all__ = [
    "ReviewedPart",
    "audit_sample",
    "live_figures",
    "recent_reviews",
    "reviewed_labels",
    "reviewed_parts",
    "station_comparison",
]


def _check_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes by name."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware datetime")


def station_comparison(
    db: Database, since: datetime | None = None, until: datetime | None = None, line: str | None = None
) -> list[dict[str, Any]]:
    """Inspected, decided, OK, REVIEW, NG, errors and defect rate per line and station, worst defect rate first.

    One grouped read of the hourly rollups for the whole hours plus the raw rows of the partial end hours (the same
    split as every ``queries`` figure), so a year over millions of inspections costs a few thousand rollup rows.
    A station that moved between lines gets one row per line.
    """
    # The shared rollup-plus-raw reader, grouped by two keys (the Overview's queries group by one).
    grouped = rollup_window.collect(
        db, rollup_window.split_window(since, until), rollup=rollup_window.HOURLY,
        rollup_measures=rollup_window.hourly_sums(), raw_measures=rollup_window.raw_counters(db.dialect),
        keys=rollup_window.group_keys("line") + rollup_window.group_keys("station"),
        bucket=None, station=None, line=line,
    )
    result = []
    for (_, line_name, station), values in grouped.items():
        total, ng = int(values["total"]), int(values["ng"])
        decided = total - int(values["errors"])
        if not total:
            continue
        result.append({"line": line_name, "station": station, "total": total, "decided": decided,
                       "ok": int(values["ok"]), "review": int(values["review"]), "ng": ng,
                       "errors": int(values["errors"]), "rate": ng / decided if decided else 0.0})
    return sorted(result, key=lambda r: (-r["rate"], r["line"], r["station"]))


def live_figures(
    db: Database, window: timedelta = timedelta(minutes=1), station: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Throughput and latency of the last ``window`` of inspections (what the Live page shows).

    Returns:
        ``frames`` (rows in the window), ``fps`` (frames per second over the window), ``errors`` (unreadable or
        failed frames), ``ng``, ``latency_mean_ms`` and ``latency_p95_ms`` (``None`` without latencies) and
        ``last_at`` (newest row's time or ``None``).
    """
    _check_aware("now", now)
    if window <= timedelta(0):
        raise ValueError(f"window {window!r} must be positive")
    end = now or utcnow()
    conditions = [InspectionRow.created_at >= end - window, InspectionRow.created_at <= end]
    if station is not None:
        conditions.append(InspectionRow.station == station)
    stmt = select(InspectionRow.decision, InspectionRow.latency_ms, InspectionRow.created_at).where(*conditions)
    with db.session() as session:
        rows = session.execute(stmt).all()
    latencies = sorted(r.latency_ms for r in rows if r.latency_ms is not None)
    p95 = None
    if latencies:
        # Nearest-rank percentile: an observed latency, never an interpolated one.
        p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)]
    return {
        "frames": len(rows),
        "fps": len(rows) / window.total_seconds(),
        "errors": sum(1 for r in rows if r.decision == Decision.ERROR.value),
        "ng": sum(1 for r in rows if r.decision == Decision.NG.value),
        "latency_mean_ms": sum(latencies) / len(latencies) if latencies else None,
        "latency_p95_ms": p95,
        "last_at": max((r.created_at for r in rows), default=None),
    }


def audit_sample(
    db: Database,
    size: int,
    since: datetime | None = None,
    station: str | None = None,
    seed: int = 0,
) -> list[ReviewItem]:
    """A random sample of OK parts nobody reviewed yet, newest first, to audit the model's OK calls.

    The same ``seed`` gives the same sample while the pool is unchanged, so the page does not reshuffle on rerun.

    Raises:
        ValueError: ``size`` is not a positive integer or ``since`` is naive.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"audit sample size {size!r} must be a positive integer")
    _check_aware("since", since)
    reviewed = exists().where(ReviewRow.inspection_id == InspectionRow.id)
    conditions = [InspectionRow.decision == Decision.OK.value, ~reviewed]
    if since is not None:
        conditions.append(InspectionRow.created_at >= since)
    if station is not None:
        conditions.append(InspectionRow.station == station)
    pool_stmt = select(InspectionRow.id).where(*conditions).order_by(InspectionRow.id.desc()).limit(AUDIT_POOL_LIMIT)
    with db.session() as session:
        pool = list(session.scalars(pool_stmt))
        chosen = random.Random(seed).sample(pool, min(size, len(pool)))
        if not chosen:
            return []
        rows = session.scalars(select(InspectionRow).where(InspectionRow.id.in_(chosen)))
        items = [ReviewItem(inspection_id=row.id, inspection=inspection_from_row(row)) for row in rows]
    return sorted(items, key=lambda item: (item.inspection.created_at, item.inspection_id), reverse=True)


def recent_reviews(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """Newest reviews with the inspection they judged: what the model said and what the person said."""
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit {limit!r} must be a positive integer")
    stmt = (
        select(ReviewRow, InspectionRow)
        .join(InspectionRow, InspectionRow.id == ReviewRow.inspection_id)
        .order_by(ReviewRow.created_at.desc(), ReviewRow.id.desc())
        .limit(limit)
    )
    with db.session() as session:
        return [
            {
                "inspection_id": inspection.id,
                "at": review.created_at,
                "reviewer": review.reviewer,
                "model_decision": inspection.decision,
                "model_class": inspection.defect_class,
                "score": inspection.score,
                "verdict": review.verdict,
                "defect_class": review.defect_class,
                "changed": review.verdict != inspection.decision
                or (review.verdict == Decision.NG.value and review.defect_class != inspection.defect_class),
                "image_path": inspection.image_path,
            }
            for review, inspection in session.execute(stmt).all()
        ]


def reviewed_labels(db: Database, since: datetime | None = None) -> list[tuple[str, str]]:
    """(image path, class label) of every reviewed part, the person's verdict winning over the model's.

    OK verdicts are labelled ``GOOD_CLASS``; NG verdicts carry the reviewer's defect class. Oldest first.
    """
    return [(part.image_path, part.label) for part in reviewed_parts(db, since=since)]


@dataclass(frozen=True)
class ReviewedPart:
    """One reviewed part as a training row needs it: where its picture may be, and the person's label."""

    image_path: str
    heatmap_path: str | None
    content_hash: str | None
    label: str


def reviewed_parts(db: Database, since: datetime | None = None) -> list[ReviewedPart]:
    """Every reviewed part with its evidence paths, content hash and label (as ``reviewed_labels``). Oldest first."""
    _check_aware("since", since)
    stmt = select(
        InspectionRow.image_path, InspectionRow.heatmap_path, InspectionRow.content_hash, ReviewRow.verdict,
        ReviewRow.defect_class,
    ).join(ReviewRow, ReviewRow.inspection_id == InspectionRow.id)
    if since is not None:
        stmt = stmt.where(ReviewRow.created_at >= since)
    stmt = stmt.order_by(ReviewRow.created_at, ReviewRow.id)
    with db.session() as session:
        return [
            ReviewedPart(path, heatmap, digest, GOOD_CLASS if verdict == Decision.OK.value else (defect or "defect"))
            for path, heatmap, digest, verdict, defect in session.execute(stmt).all()
        ]
