"""Fine-tuning schedules: add, pause or resume, remove; each audited."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from inspect_app.app.access import authorize
from inspect_app.config.policy import FinetuneSpec
from inspect_app.records import AuditEvent, Schedule, User
from inspect_app.storage.db import Database
from inspect_app.storage.schedules import ScheduleStore, schedule_config

__all__ = ["add_schedule", "remove_schedule", "set_schedule_enabled"]


def add_schedule(
    db: Database,
    user: User | None,
    name: str,
    cron: str,
    data_dir: str,
    spec: FinetuneSpec | None = None,
    only_if_new_data: bool = False,
    now: datetime | None = None,
) -> Schedule:
    """Create an enabled fine-tuning schedule through ``ScheduleStore`` (the store ``lifecycle.scheduler`` fires).

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        ValueError: empty name or a missing data folder (named).
        ConfigError: the cron expression is not valid for croniter (named, with the expected form).
        StorageError: the name is taken.
    """
    user = authorize(user, "schedule")
    if not name or not name.strip():
        raise ValueError(f"schedule name {name!r} must be non-empty")
    if not data_dir or not Path(data_dir).is_dir():
        raise ValueError(f"schedule data folder {data_dir!r} does not exist")
    spec = spec or FinetuneSpec(model_prefix=name.strip())
    return ScheduleStore(db).add(
        name.strip(), cron, schedule_config(data_dir, spec, only_if_new_data), now=now,
        audit=lambda schedule: AuditEvent(
            actor=user.username, action="schedule.add", target=f"schedule:{schedule.name}",
            details={"cron": schedule.cron, "data_dir": schedule.config["data_dir"],
                     "only_if_new_data": bool(only_if_new_data)}),
    )


def set_schedule_enabled(db: Database, user: User | None, name: str, enabled: bool) -> Schedule:
    """Pause or resume a schedule through ``ScheduleStore.update`` (resuming recomputes its next run), audited.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no schedule is called ``name``.
    """
    user = authorize(user, "schedule")
    action = "schedule.enable" if enabled else "schedule.disable"
    return ScheduleStore(db).update(name, enabled=bool(enabled),
                                    audit=AuditEvent(actor=user.username, action=action, target=f"schedule:{name}"))


def remove_schedule(db: Database, user: User | None, name: str) -> None:
    """Delete a schedule through ``ScheduleStore.remove`` (its runs stay), audited.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no schedule is called ``name``.
    """
    user = authorize(user, "schedule")
    ScheduleStore(db).remove(name, audit=AuditEvent(actor=user.username, action="schedule.remove",
                                                   target=f"schedule:{name}"))
