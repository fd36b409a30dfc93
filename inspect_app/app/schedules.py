"""Fine-tuning schedules: add, register from a pipeline file, pause or resume, remove; each audited."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from inspect_app.app.access import authorize
from inspect_app.config.policy import FinetuneSpec
from inspect_app.records import AuditEvent, Schedule, User
from inspect_app.storage.db import Database
from inspect_app.storage.schedules import ScheduleStore, schedule_config

__all__ = ["add_schedule", "register_schedule", "remove_schedule", "set_schedule_enabled"]


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


def register_schedule(
    db: Database, user: User | None, name: str, cron: str, config: dict[str, Any], now: datetime | None = None
) -> tuple[Schedule, bool]:
    """Create the schedule ``name`` or replace its cron and config (``run`` on a ``kind: finetune`` file), audited.

    ``config`` is a stored schedule config (``storage.schedules.schedule_config``, what
    ``lifecycle.scheduler.read_finetune_pipeline`` returns). Registering the same file again updates the schedule
    rather than failing on the taken name, so a pipeline file stays the one place its schedule is declared.

    Returns:
        The schedule and whether it was created (``False``: an existing one was updated).

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        ValueError: empty name (named).
        ConfigError: the cron expression is not valid for croniter (named, with the expected form).
    """
    user = authorize(user, "schedule")
    if not name or not name.strip():
        raise ValueError(f"schedule name {name!r} must be non-empty")
    name = name.strip()
    store = ScheduleStore(db)
    details = {"cron": cron, "data_dir": config.get("data_dir"), "kind": config.get("kind", "classifier"),
               "only_if_new_data": bool(config.get("only_if_new_data"))}
    if any(s.name == name for s in store.list()):
        event = AuditEvent(actor=user.username, action="schedule.update", target=f"schedule:{name}", details=details)
        return store.update(name, cron=cron, config=config, now=now, audit=event), False
    schedule = store.add(name, cron, config, now=now, audit=lambda added: AuditEvent(
        actor=user.username, action="schedule.add", target=f"schedule:{added.name}", details=details))
    return schedule, True


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
