"""Schedules in the database: validated cron expressions, enable/disable, edit, remove, and firing claims.

A schedule fires when its ``next_run_at`` has passed. The scheduler moves ``next_run_at`` to the next occurrence
*after now* with a conditional UPDATE on the value it read, so two schedulers never fire the same occurrence and a
scheduler that was down for days fires once, not once per missed occurrence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from croniter import croniter
from sqlalchemy import delete, select, update

from inspect_app.config.policy import FinetuneSpec
from inspect_app.errors import ConfigError, StorageError
from inspect_app.records import AuditEvent, Schedule, utcnow
from inspect_app.storage.audit import write_audit
from inspect_app.storage.checks import require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.tables import ScheduleRow

logger = logging.getLogger(__name__)

SCHEDULE_KINDS = ("train",)
CRON_HELP = "five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *' for 02:00 every night (UTC)"


def check_cron(cron: str) -> str:
    """The expression stripped, or ``ConfigError`` naming it and the expected form."""
    text = str(cron).strip()
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ConfigError(f"cron expression {cron!r} is not valid; expected {CRON_HELP}")
    return text


def schedule_config(data_dir: str | Path, spec: FinetuneSpec, only_if_new_data: bool = False) -> dict[str, Any]:
    """A schedule's stored config, the form ``lifecycle.scheduler`` fires: run spec, data folder, new-data flag."""
    return {"data_dir": str(Path(data_dir).resolve()), "only_if_new_data": bool(only_if_new_data), **spec.to_dict()}


def next_fire(cron: str, after: datetime) -> datetime:
    """First occurrence of ``cron`` strictly after ``after``, in UTC."""
    if after.tzinfo is None:
        raise ValueError(f"after {after.isoformat()!r} is naive; pass a timezone-aware UTC datetime")
    return croniter(check_cron(cron), after.astimezone(UTC)).get_next(datetime).astimezone(UTC)


def _from_row(row: ScheduleRow) -> Schedule:
    """Record for a ``ScheduleRow``."""
    return Schedule(
        name=row.name, kind=row.kind, cron=row.cron, config=dict(row.config), enabled=row.enabled,
        last_run_at=row.last_run_at, next_run_at=row.next_run_at, created_at=row.created_at,
    )


class ScheduleStore:
    """Schedule CRUD over one ``Database``.

    Args:
        db: the open, migrated database.
    """

    def __init__(self, db: Database) -> None:
        """Bind to a database."""
        self.db = db

    def add(
        self, name: str, cron: str, config: dict[str, Any], kind: str = "train", enabled: bool = True,
        now: datetime | None = None, audit: Callable[[Schedule], AuditEvent] | None = None,
    ) -> Schedule:
        """Create a schedule whose first firing is the next occurrence after ``now``.

        ``audit`` builds the audit entry from the new schedule; it is written in the same transaction.

        Raises:
            ConfigError: bad cron expression or kind (named, with the allowed form).
            StorageError: the name is taken.
        """
        if kind not in SCHEDULE_KINDS:
            raise ConfigError(f"schedule kind {kind!r} is not one of {list(SCHEDULE_KINDS)}")
        now = now or utcnow()
        cron = check_cron(cron)
        schedule = Schedule(name=name, kind=kind, cron=cron, config=dict(config), enabled=enabled,
                            next_run_at=next_fire(cron, now), created_at=now)
        for field in ("created_at", "last_run_at", "next_run_at"):
            require_aware(field, getattr(schedule, field))
        with self.db.session() as session:
            if session.scalar(select(ScheduleRow.id).where(ScheduleRow.name == name)) is not None:
                raise StorageError(f"schedule {name!r} already exists")
            session.add(ScheduleRow(
                name=schedule.name, kind=schedule.kind, cron=schedule.cron, config=dict(schedule.config),
                enabled=schedule.enabled, last_run_at=schedule.last_run_at, next_run_at=schedule.next_run_at,
                created_at=schedule.created_at,
            ))
            if audit is not None:
                write_audit(session, audit(schedule))
        logger.info("schedule %r added (%s), first run %s", name, cron, schedule.next_run_at)
        return schedule

    def get(self, name: str) -> Schedule:
        """The schedule called ``name``.

        Raises:
            LookupError: no such schedule (the known names are listed).
        """
        with self.db.session() as session:
            row = session.scalar(select(ScheduleRow).where(ScheduleRow.name == name))
            if row is None:
                known = session.scalars(select(ScheduleRow.name).order_by(ScheduleRow.name)).all()
                raise LookupError(f"schedule {name!r} not found; known: {list(known)}")
            return _from_row(row)

    def list(self, enabled_only: bool = False) -> list[Schedule]:
        """Schedules by name, optionally only the enabled ones."""
        stmt = select(ScheduleRow).order_by(ScheduleRow.name)
        if enabled_only:
            stmt = stmt.where(ScheduleRow.enabled.is_(True))
        with self.db.session() as session:
            return [_from_row(row) for row in session.scalars(stmt)]

    def update(
        self, name: str, cron: str | None = None, config: dict[str, Any] | None = None, enabled: bool | None = None,
        now: datetime | None = None, audit: AuditEvent | None = None,
    ) -> Schedule:
        """Change a schedule's cron, config and/or enabled flag; a new cron or re-enabling recomputes the next run.

        ``audit`` is written in the same transaction as the change.

        Raises:
            LookupError: no such schedule.
            ConfigError: bad cron expression.
        """
        now = now or utcnow()
        current = self.get(name)
        values: dict[str, Any] = {}
        if cron is not None:
            values["cron"] = check_cron(cron)
        if config is not None:
            values["config"] = dict(config)
        if enabled is not None:
            values["enabled"] = enabled
        if cron is not None or (enabled and not current.enabled):
            values["next_run_at"] = next_fire(values.get("cron", current.cron), now)
        if values or audit is not None:
            with self.db.session() as session:
                if values:
                    session.execute(update(ScheduleRow).where(ScheduleRow.name == name).values(**values))
                if audit is not None:
                    write_audit(session, audit)
        return self.get(name)

    def remove(self, name: str, audit: AuditEvent | None = None) -> None:
        """Delete a schedule (its runs stay); ``audit`` is written in the same transaction.

        Raises:
            LookupError: no such schedule.
        """
        self.get(name)
        with self.db.session() as session:
            session.execute(delete(ScheduleRow).where(ScheduleRow.name == name))
            if audit is not None:
                write_audit(session, audit)

    def take_firing(self, name: str, expected_next: datetime | None, now: datetime) -> Schedule | None:
        """Claim the firing due at ``expected_next``: move ``next_run_at`` past ``now`` and stamp ``last_run_at``.

        Returns:
            The updated schedule, or ``None`` when another scheduler moved it first.
        """
        schedule = self.get(name)
        if schedule.next_run_at != expected_next:
            return None
        condition = (
            ScheduleRow.next_run_at.is_(None) if expected_next is None else ScheduleRow.next_run_at == expected_next
        )
        stmt = (
            update(ScheduleRow)
            .where(ScheduleRow.name == name, condition)
            .values(last_run_at=now, next_run_at=next_fire(schedule.cron, now))
            .returning(ScheduleRow.id)
        )
        with self.db.session() as session:
            if session.scalar(stmt) is None:
                return None
        return self.get(name)

    def skip_firing(self, name: str, expected_next: datetime | None, now: datetime) -> bool:
        """Move ``next_run_at`` past ``now`` without stamping ``last_run_at`` (a firing skipped, e.g. no new data)."""
        schedule = self.get(name)
        condition = (
            ScheduleRow.next_run_at.is_(None) if expected_next is None else ScheduleRow.next_run_at == expected_next
        )
        stmt = (
            update(ScheduleRow)
            .where(ScheduleRow.name == name, condition)
            .values(next_run_at=next_fire(schedule.cron, now))
            .returning(ScheduleRow.id)
        )
        with self.db.session() as session:
            return session.scalar(stmt) is not None
