"""Row-level reads behind the dashboard's aggregates: the parts behind a chart point or a Pareto bar, and the model
versions a failed run left behind.

Read-only, through SQLAlchemy on the existing tables and indexes (SQLite and PostgreSQL); time bounds are
timezone-aware, ``since`` inclusive and ``until`` exclusive, like ``queries``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from inspect_app.records import Decision, Inspection, ModelStatus, RunStatus
from inspect_app.storage.db import Database
from inspect_app.storage.inspections import inspection_from_row
from inspect_app.storage.tables import InspectionRow, ModelVersionRow, TrainingRunRow

__all__ = ["PARTS_LIMIT", "failed_run_candidates", "parts_behind"]

# Parts listed behind one chart point: a page of thumbnails and rows, not the whole bucket.
PARTS_LIMIT = 50
# Runs whose candidate must not be promoted by hand: they never finished their checks.
UNFINISHED_RUNS = (RunStatus.FAILED.value, RunStatus.CANCELLED.value)


def _check_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes by name."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware datetime")


def parts_behind(
    db: Database,
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    line: str | None = None,
    defect_class: str | None = None,
    decision: Decision = Decision.NG,
    limit: int = PARTS_LIMIT,
) -> list[Inspection]:
    """The newest parts with ``decision`` in the window (and station, line, defect class when given), newest first.

    What a click on a defect-rate point (its bucket's window) or a Pareto bar (its class) lists; the
    ``(decision, created_at)`` index bounds the read.

    Raises:
        ValueError: a bound is naive, ``until`` is not after ``since``, or ``limit`` is not a positive integer.
    """
    _check_aware("since", since)
    _check_aware("until", until)
    if since is not None and until is not None and until <= since:
        raise ValueError(f"until {until.isoformat()!r} must be after since {since.isoformat()!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit {limit!r} must be a positive integer")
    stmt = select(InspectionRow).where(InspectionRow.decision == Decision(decision).value)
    if since is not None:
        stmt = stmt.where(InspectionRow.created_at >= since)
    if until is not None:
        stmt = stmt.where(InspectionRow.created_at < until)
    for column, value in ((InspectionRow.station, station), (InspectionRow.line, line),
                          (InspectionRow.defect_class, defect_class)):
        if value is not None:
            stmt = stmt.where(column == value)
    stmt = stmt.order_by(InspectionRow.created_at.desc(), InspectionRow.id.desc()).limit(limit)
    with db.session() as session:
        return [inspection_from_row(row) for row in session.scalars(stmt)]


def failed_run_candidates(db: Database) -> set[str]:
    """Names of candidate versions whose training run failed or was cancelled (older runs left them behind)."""
    stmt = (
        select(ModelVersionRow.name)
        .join(TrainingRunRow, TrainingRunRow.id == ModelVersionRow.training_run_id)
        .where(ModelVersionRow.status == ModelStatus.CANDIDATE.value, TrainingRunRow.status.in_(UNFINISHED_RUNS))
    )
    with db.session() as session:
        return set(session.scalars(stmt))
