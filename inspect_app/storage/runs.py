"""The fine-tuning run queue: enqueue, claim, heartbeat, finish, cancel, recover; and what a queued run reads.

Claiming is safe with several workers: PostgreSQL takes the oldest queued row with ``SELECT ... FOR UPDATE SKIP
LOCKED`` (a locked row is passed over, never waited for or taken twice); SQLite, which serialises writers, flips the
oldest queued row to ``running`` with one conditional ``UPDATE ... RETURNING``. Every later write by a worker is
conditional on the run still being ``running`` under that worker's name, so a worker that was declared dead and
comes back cannot overwrite the run's new owner. The reviewed-image reads (``reviewed_images``, ``reviews_since``) are
the queue's inputs: what a run trains on and whether a schedule has anything new to train on. Champion/challenger
verdicts are ``storage.comparisons``; the promotion itself ``Repository.promote``.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from inspect_app.errors import RunStateError
from inspect_app.records import AuditEvent, RunStatus, TrainingRun, utcnow
from inspect_app.storage.audit import write_audit
from inspect_app.storage.checks import require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.tables import InspectionRow, ReviewRow, TrainingRunRow

logger = logging.getLogger(__name__)

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
_T = TrainingRunRow


def _aware(name: str, value: datetime | None) -> datetime:
    """``value`` or now; naive datetimes are refused with the field name."""
    if value is None:
        return utcnow()
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware UTC datetime")
    return value


def _run_to_row(run: TrainingRun) -> TrainingRunRow:
    """New ``TrainingRunRow`` for a record; ``run.id`` is kept when set, else the database assigns one."""
    for name in ("created_at", "started_at", "finished_at"):
        require_aware(name, getattr(run, name))
    row = TrainingRunRow(
        status=RunStatus(run.status).value,
        config=dict(run.config),
        data_dir=run.data_dir,
        model_name=run.model_name,
        metrics=dict(run.metrics),
        log_path=run.log_path,
        error=run.error,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )
    if run.id is not None:
        row.id = run.id
    return row


def run_from_row(row: TrainingRunRow) -> TrainingRun:
    """Record for a ``TrainingRunRow``, queue columns included (the one row → run conversion)."""
    return TrainingRun(
        id=row.id,
        status=RunStatus(row.status),
        config=dict(row.config),
        data_dir=row.data_dir,
        model_name=row.model_name,
        metrics=dict(row.metrics),
        log_path=row.log_path,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        worker=row.worker,
        heartbeat_at=row.heartbeat_at,
        progress=dict(row.progress or {}),
        attempts=row.attempts or 0,
        cancel_requested=bool(row.cancel_requested),
        schedule=row.schedule,
        data_fingerprint=row.data_fingerprint,
    )


class RunQueue:
    """Queue operations on ``training_runs`` through one ``Database``.

    Args:
        db: the open, migrated database.
    """

    def __init__(self, db: Database) -> None:
        """Bind to a database."""
        self.db = db

    # producers ---------------------------------------------------------------------------------------------------

    def enqueue(
        self,
        config: dict[str, Any],
        data_dir: str,
        model_name: str | None = None,
        schedule: str | None = None,
        created_at: datetime | None = None,
        audit: Callable[[int], AuditEvent] | None = None,
    ) -> int:
        """Add a queued run and return its id.

        Args:
            config: the run's settings (training recipe, test set, promotion policy), stored as JSON.
            data_dir: class-folder data set the run trains on.
            model_name: name for the model version it will produce (default chosen by the worker).
            schedule: name of the schedule that queued it, if any.
            created_at: queue time (default now); runs are claimed oldest first.
            audit: builds the audit entry from the new run's id; written in the same transaction.
        """
        row = _T(
            status=RunStatus.QUEUED.value, config=dict(config), data_dir=str(data_dir), model_name=model_name,
            metrics={}, created_at=_aware("created_at", created_at), schedule=schedule, progress={}, attempts=0,
            cancel_requested=False,
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            if audit is not None:
                write_audit(session, audit(row.id))
            logger.info("queued training run %d on %s", row.id, data_dir)
            return row.id

    def add(self, run: TrainingRun) -> int:
        """Record a run as it is (any status, e.g. one imported or seeded) and return its id; ``enqueue`` queues one."""
        row = _run_to_row(run)
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return row.id

    def cancel(
        self, run_id: int, now: datetime | None = None, audit: Callable[[TrainingRun], AuditEvent] | None = None
    ) -> TrainingRun:
        """Cancel a run: a queued one at once, a running one at its worker's next progress report.

        ``audit`` builds the audit entry from the cancelled run; it is written in the same transaction.

        Raises:
            LookupError: no run has ``run_id``.
            RunStateError: the run has already finished (the message names its status).
        """
        now = _aware("now", now)
        with self.db.session() as session:
            row = session.get(_T, run_id, with_for_update=True)
            if row is None:
                raise LookupError(f"training run {run_id!r} not found")
            if row.status == RunStatus.QUEUED.value:
                row.status = RunStatus.CANCELLED.value
                row.finished_at = now
                row.error = "cancelled before it started"
            elif row.status == RunStatus.RUNNING.value:
                row.cancel_requested = True
            else:
                allowed = [RunStatus.QUEUED.value, RunStatus.RUNNING.value]
                raise RunStateError(f"training run {run_id} is {row.status!r}; only runs that are {allowed} can be "
                                    "cancelled")
            session.flush()
            run = run_from_row(row)
            if audit is not None:
                write_audit(session, audit(run))
            return run

    # workers -----------------------------------------------------------------------------------------------------

    def claim(self, worker: str, now: datetime | None = None) -> TrainingRun | None:
        """Take the oldest queued run for ``worker`` and mark it running; ``None`` when the queue is empty."""
        now = _aware("now", now)
        values = {
            "status": RunStatus.RUNNING.value, "worker": worker, "started_at": now, "heartbeat_at": now,
            "attempts": _T.attempts + 1, "progress": {}, "error": None,
        }
        oldest = select(_T.id).where(_T.status == RunStatus.QUEUED.value).order_by(_T.created_at, _T.id).limit(1)
        with self.db.session() as session:
            if session.get_bind().dialect.name == "postgresql":
                run_id = session.scalar(oldest.with_for_update(skip_locked=True))
                if run_id is None:
                    return None
                session.execute(update(_T).where(_T.id == run_id).values(**values))
            else:
                # One statement: SQLite holds the write lock across the sub-select and the update.
                stmt = (
                    update(_T)
                    .where(_T.id == oldest.scalar_subquery(), _T.status == RunStatus.QUEUED.value)
                    .values(**values)
                    .returning(_T.id)
                )
                run_id = session.scalar(stmt)
                if run_id is None:
                    return None
            row = session.get(_T, run_id, populate_existing=True)
            assert row is not None
            logger.info("worker %s claimed training run %d (attempt %d)", worker, run_id, row.attempts)
            return run_from_row(row)

    def heartbeat(
        self, run_id: int, worker: str, progress: dict[str, Any] | None = None, now: datetime | None = None
    ) -> bool:
        """Record that ``worker`` still runs ``run_id`` (and its progress); return whether a cancel was requested.

        Raises:
            RunStateError: the run is no longer running under ``worker`` (it was recovered, cancelled or finished).
        """
        values: dict[str, Any] = {"heartbeat_at": _aware("now", now)}
        if progress is not None:
            values["progress"] = dict(progress)
        stmt = (
            update(_T)
            .where(_T.id == run_id, _T.worker == worker, _T.status == RunStatus.RUNNING.value)
            .values(**values)
            .returning(_T.cancel_requested)
        )
        with self.db.session() as session:
            result = session.execute(stmt).first()
        if result is None:
            raise RunStateError(self._lost_message(run_id, worker))
        return bool(result[0])

    def finish(
        self, run_id: int, worker: str, status: RunStatus | str, now: datetime | None = None, **fields: Any
    ) -> TrainingRun:
        """End a run held by ``worker`` as succeeded, failed or cancelled, with extra columns (metrics, error, ...).

        Raises:
            ValueError: ``status`` is not a finished status, or a field is not a queue-writable column.
            RunStateError: the run is no longer running under ``worker``.
        """
        status = RunStatus(status)
        if status not in FINISHED:
            raise ValueError(f"finish status {status.value!r} is not one of {[s.value for s in FINISHED]}")
        allowed = {"metrics", "error", "model_name", "log_path", "progress", "data_fingerprint"}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ValueError(f"cannot set training-run field(s) {unknown} on finish; allowed: {sorted(allowed)}")
        values = {**fields, "status": status.value, "finished_at": _aware("now", now)}
        stmt = (
            update(_T)
            .where(_T.id == run_id, _T.worker == worker, _T.status == RunStatus.RUNNING.value)
            .values(**values)
            .returning(_T.id)
        )
        with self.db.session() as session:
            if session.scalar(stmt) is None:
                raise RunStateError(self._lost_message(run_id, worker))
            row = session.get(_T, run_id, populate_existing=True)
            assert row is not None
            return run_from_row(row)

    def update_running(self, run_id: int, worker: str, **fields: Any) -> None:
        """Set informational columns (log path, model name, data fingerprint) of a run ``worker`` holds.

        Raises:
            ValueError: a field outside ``log_path``, ``model_name``, ``data_fingerprint``.
            RunStateError: the run is no longer running under ``worker``.
        """
        allowed = {"log_path", "model_name", "data_fingerprint"}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ValueError(f"cannot set training-run field(s) {unknown} while running; allowed: {sorted(allowed)}")
        stmt = (
            update(_T)
            .where(_T.id == run_id, _T.worker == worker, _T.status == RunStatus.RUNNING.value)
            .values(**fields)
            .returning(_T.id)
        )
        with self.db.session() as session:
            if session.scalar(stmt) is None:
                raise RunStateError(self._lost_message(run_id, worker))

    def recover(
        self,
        now: datetime | None = None,
        stale_after: timedelta = timedelta(minutes=5),
        max_attempts: int = 3,
        worker: str | None = None,
    ) -> list[TrainingRun]:
        """Requeue (or fail, after ``max_attempts``) running runs whose worker died.

        A run counts as dead when its heartbeat is older than ``stale_after``, or, when ``worker`` is given, when it is
        held under that name: a worker that starts under the name of one that stopped cannot still be running it.

        Returns:
            The recovered runs as they are now (``queued`` or ``failed``).
        """
        now = _aware("now", now)
        if max_attempts < 1:
            raise ValueError(f"max_attempts {max_attempts!r} must be a positive integer")
        dead = _T.heartbeat_at < now - stale_after
        if worker is not None:
            dead = dead | (_T.worker == worker)
        stmt = select(_T).where(_T.status == RunStatus.RUNNING.value, dead).order_by(_T.id)
        recovered: list[TrainingRun] = []
        with self.db.session() as session:
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            for row in session.scalars(stmt).all():
                reason = (f"worker {row.worker!r} stopped (last heartbeat "
                          f"{row.heartbeat_at.isoformat() if row.heartbeat_at else 'never'})")
                if row.attempts >= max_attempts:
                    values: dict[str, Any] = {
                        "status": RunStatus.FAILED.value, "finished_at": now,
                        "error": f"{reason}; gave up after {row.attempts} attempt(s)",
                    }
                else:
                    values = {
                        "status": RunStatus.QUEUED.value, "worker": None, "started_at": None, "heartbeat_at": None,
                        "progress": {"requeued": reason},
                    }
                # Conditional on the state just read, so two recovering workers on SQLite cannot both act.
                done = session.scalar(
                    update(_T)
                    .where(_T.id == row.id, _T.status == RunStatus.RUNNING.value, _T.worker == row.worker)
                    .values(**values)
                    .returning(_T.id)
                )
                if done is None:
                    continue
                session.refresh(row)
                logger.warning("training run %d: %s; now %s", row.id, reason, row.status)
                recovered.append(run_from_row(row))
        return recovered

    # readers -----------------------------------------------------------------------------------------------------

    def get(self, run_id: int) -> TrainingRun:
        """The run with ``run_id``, queue columns included.

        Raises:
            LookupError: no run has ``run_id``.
        """
        with self.db.session() as session:
            row = session.get(_T, run_id)
            if row is None:
                raise LookupError(f"training run {run_id!r} not found")
            return run_from_row(row)

    def list(
        self, limit: int = 50, status: RunStatus | str | None = None, schedule: str | None = None
    ) -> list[TrainingRun]:
        """Newest runs first, optionally one status and/or one schedule's."""
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit {limit!r} must be a positive integer")
        stmt = select(_T)
        if status is not None:
            stmt = stmt.where(_T.status == RunStatus(status).value)
        if schedule is not None:
            stmt = stmt.where(_T.schedule == schedule)
        stmt = stmt.order_by(_T.created_at.desc(), _T.id.desc()).limit(limit)
        with self.db.session() as session:
            return [run_from_row(row) for row in session.scalars(stmt)]

    def pending_for_schedule(self, schedule: str) -> int:
        """Runs of ``schedule`` still queued or running (a schedule never stacks a second one on top)."""
        stmt = select(func.count()).select_from(_T).where(
            _T.schedule == schedule, _T.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value])
        )
        with self.db.session() as session:
            return int(session.scalar(stmt) or 0)

    def _lost_message(self, run_id: int, worker: str) -> str:
        """Why a worker's conditional write matched nothing: the run's current status and holder."""
        with self.db.session() as session:
            row = session.get(_T, run_id)
        if row is None:
            return f"training run {run_id!r} not found"
        return (f"training run {run_id} is no longer running under worker {worker!r} "
                f"(status {row.status!r}, worker {row.worker!r})")

    # reviewed labels ---------------------------------------------------------------------------------------------

    def reviewed_images(self, until: datetime | None = None) -> builtins.list[dict[str, Any]]:
        """Reviewed inspections (oldest first) as training labels: id, image path, hash, verdict, class, time."""
        stmt = (
            select(ReviewRow.inspection_id, InspectionRow.image_path, InspectionRow.content_hash, ReviewRow.verdict,
                   ReviewRow.defect_class, ReviewRow.created_at)
            .join(InspectionRow, InspectionRow.id == ReviewRow.inspection_id)
            .order_by(ReviewRow.created_at, ReviewRow.id)
        )
        if until is not None:
            stmt = stmt.where(ReviewRow.created_at <= _aware("until", until))
        with self.db.session() as session:
            return [
                {"inspection_id": r[0], "image_path": r[1], "content_hash": r[2], "verdict": r[3],
                 "defect_class": r[4], "reviewed_at": r[5].isoformat()}
                for r in session.execute(stmt)
            ]

    def reviews_since(self, since: datetime | None) -> int:
        """Number of reviews recorded after ``since`` (all of them when ``None``)."""
        stmt = select(func.count()).select_from(ReviewRow)
        if since is not None:
            stmt = stmt.where(ReviewRow.created_at > _aware("since", since))
        with self.db.session() as session:
            return int(session.scalar(stmt) or 0)
