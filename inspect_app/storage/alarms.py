"""Alarm rows: raise one per episode, extend or clear it, record notification attempts, acknowledge (audited).

The rules that decide *when* an alarm is raised live in ``inspect_app.app.alarms``; this module only keeps the rows.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from inspect_app.errors import StorageError
from inspect_app.records import Alarm, AuditEvent, utcnow
from inspect_app.storage.audit import write_audit
from inspect_app.storage.db import Database
from inspect_app.storage.tables import ALARM_KINDS, AlarmRow

logger = logging.getLogger(__name__)

ACKNOWLEDGE_ACTION = "alarm.acknowledge"

__all__ = ["ACKNOWLEDGE_ACTION", "AlarmStore"]


def _record(row: AlarmRow) -> Alarm:
    return Alarm(
        id=row.id, kind=row.kind, subject=row.subject, station=row.station, line=row.line, rule=row.rule,
        message=row.message, value=row.value, episode_start=row.episode_start, episode_end=row.episode_end,
        raised_at=row.raised_at, cleared_at=row.cleared_at, acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by, notified_at=row.notified_at, notify_attempts=row.notify_attempts,
        notify_error=row.notify_error, deliveries=dict(row.deliveries or {}),
    )


class AlarmStore:
    """Reads and writes of the ``alarms`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def episodes(self, kind: str, subject: str, rule: str | None = None) -> list[Alarm]:
        """Every alarm of ``kind`` on one subject (``rule``: of that rule only), oldest episode first."""
        stmt = select(AlarmRow).where(AlarmRow.kind == kind, AlarmRow.subject == subject)
        if rule is not None:
            stmt = stmt.where(AlarmRow.rule == rule)
        stmt = stmt.order_by(AlarmRow.episode_start)
        with self.db.session() as session:
            return [_record(row) for row in session.scalars(stmt)]

    def uncleared(self, kind: str) -> list[Alarm]:
        """Alarms of ``kind`` whose condition has not been seen to end."""
        stmt = select(AlarmRow).where(AlarmRow.kind == kind, AlarmRow.cleared_at.is_(None)).order_by(AlarmRow.id)
        with self.db.session() as session:
            return [_record(row) for row in session.scalars(stmt)]

    def raise_alarm(self, alarm: Alarm) -> Alarm | None:
        """Insert a new episode; ``None`` when a row for the same episode exists already (another checker).

        Raises:
            ValueError: the kind is not one of ``ALARM_KINDS``.
        """
        if alarm.kind not in ALARM_KINDS:
            raise ValueError(f"alarm kind {alarm.kind!r} is not one of {list(ALARM_KINDS)}")
        row = AlarmRow(
            kind=alarm.kind, subject=alarm.subject, station=alarm.station, line=alarm.line, rule=alarm.rule,
            message=alarm.message, value=alarm.value, episode_start=alarm.episode_start,
            episode_end=alarm.episode_end, raised_at=alarm.raised_at, notify_attempts=0, deliveries={},
        )
        try:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                return _record(row)
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                logger.info("alarm %s/%s on %s from %s exists already", alarm.kind, alarm.rule, alarm.subject,
                            alarm.episode_start.isoformat())
                return None
            raise

    def extend(self, alarm_id: int, episode_end: datetime, value: float | None, message: str) -> None:
        """The episode goes on: move its end, its latest value and message (and it is no longer cleared)."""
        with self.db.session() as session:
            row = session.get(AlarmRow, alarm_id)
            if row is not None:
                row.episode_end, row.value, row.message, row.cleared_at = episode_end, value, message, None

    def clear(self, alarm_id: int, at: datetime) -> None:
        """The condition has ended (the alarm stays open until acknowledged)."""
        with self.db.session() as session:
            row = session.get(AlarmRow, alarm_id)
            if row is not None and row.cleared_at is None:
                row.cleared_at = at

    def unnotified(self) -> list[Alarm]:
        """Open alarms some notifier channel has not taken yet, oldest first (acknowledged ones need no message)."""
        stmt = (select(AlarmRow).where(AlarmRow.notified_at.is_(None), AlarmRow.acknowledged_at.is_(None))
                .order_by(AlarmRow.id))
        with self.db.session() as session:
            return [_record(row) for row in session.scalars(stmt)]

    def record_delivery(self, alarm_id: int, delivered: dict[str, str], error: str | None, done: bool,
                        at: datetime) -> None:
        """Note one notification attempt: channels that took the alarm, the last error, ``done`` when all did."""
        with self.db.session() as session:
            row = session.get(AlarmRow, alarm_id)
            if row is None:
                return
            row.deliveries = {**(row.deliveries or {}), **delivered}
            row.notify_attempts = (row.notify_attempts or 0) + 1
            row.notify_error = error
            if done:
                row.notified_at = at

    def get(self, alarm_id: int) -> Alarm | None:
        """One alarm by id."""
        with self.db.session() as session:
            row = session.get(AlarmRow, alarm_id)
            return None if row is None else _record(row)

    def recent(self, open_only: bool = False, limit: int = 100, station: str | None = None) -> list[Alarm]:
        """Newest alarms first; ``open_only``: not acknowledged yet."""
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit {limit!r} must be a positive integer")
        stmt = select(AlarmRow)
        if open_only:
            stmt = stmt.where(AlarmRow.acknowledged_at.is_(None))
        if station is not None:
            stmt = stmt.where(AlarmRow.station == station)
        stmt = stmt.order_by(AlarmRow.raised_at.desc(), AlarmRow.id.desc()).limit(limit)
        with self.db.session() as session:
            return [_record(row) for row in session.scalars(stmt)]

    def last(self) -> Alarm | None:
        """The most recently raised alarm, acknowledged or not."""
        found = self.recent(limit=1)
        return found[0] if found else None

    def acknowledge(self, alarm_id: int, actor: str, at: datetime | None = None) -> Alarm:
        """Mark an alarm as taken by ``actor`` and write the audit entry in the same transaction.

        Raises:
            LookupError: no alarm has ``alarm_id``.
            ValueError: the alarm was acknowledged already (by whom and when named).
        """
        at = at or utcnow()
        with self.db.session() as session:
            row = session.get(AlarmRow, int(alarm_id), with_for_update=True)
            if row is None:
                raise LookupError(f"alarm {alarm_id!r} not found")
            if row.acknowledged_at is not None:
                raise ValueError(f"alarm {alarm_id} was acknowledged already by {row.acknowledged_by} at "
                                 f"{row.acknowledged_at:%Y-%m-%d %H:%M} UTC")
            row.acknowledged_at, row.acknowledged_by = at, actor
            write_audit(session, AuditEvent(
                actor=actor, action=ACKNOWLEDGE_ACTION, target=f"alarm:{row.id}", at=at,
                details={"kind": row.kind, "subject": row.subject, "rule": row.rule},
            ))
            session.flush()
            return _record(row)
