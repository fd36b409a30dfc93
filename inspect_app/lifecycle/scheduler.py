"""The scheduler: turns due cron schedules into queued fine-tuning runs (``inspect-app scheduler``).

A schedule's ``config`` holds the run's ``FinetuneSpec`` plus ``data_dir`` and ``only_if_new_data``. On each tick a
due schedule fires at most once, however many occurrences were missed while nothing ran, and never while a run it
queued earlier is still queued or running. The clock is injected, so tests fire schedules without waiting.

Given alarm settings, the same loop also runs the alarm checks (``app.alarms.check_alarms``) every
``alarm_every_s`` seconds, so a plant that runs the scheduler gets its alarms without a cron entry.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from inspect_app.app.alarms import CheckResult, check_alarms
from inspect_app.config.alarms import AlarmSettings
from inspect_app.config.policy import FinetuneSpec
from inspect_app.errors import ConfigError, StorageError
from inspect_app.records import Schedule, utcnow
from inspect_app.storage.db import Database
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore, schedule_config

# schedule_config lives in storage so the dashboard writes schedules in the form fired here; re-exported for callers.
__all__ = ["Scheduler", "read_finetune_pipeline", "schedule_config", "split_schedule_config"]

logger = logging.getLogger(__name__)

SCHEDULE_KEYS = ("data_dir", "only_if_new_data")


def split_schedule_config(config: dict[str, Any]) -> tuple[str, bool, FinetuneSpec]:
    """(data_dir, only_if_new_data, spec) of a stored schedule config.

    Raises:
        ConfigError: ``data_dir`` is missing or the spec has unknown or bad options.
    """
    if not config.get("data_dir"):
        raise ConfigError(f"schedule config needs 'data_dir'; has {sorted(config)}")
    spec = FinetuneSpec.from_dict({k: v for k, v in config.items() if k not in SCHEDULE_KEYS})
    return str(config["data_dir"]), bool(config.get("only_if_new_data", False)), spec


def newest_file_time(folder: Path) -> datetime | None:
    """Modification time of the newest file under ``folder`` (UTC), ``None`` when it holds none or is missing."""
    newest: float | None = None
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                mtime = os.stat(os.path.join(dirpath, name)).st_mtime
            except OSError:
                continue
            newest = mtime if newest is None else max(newest, mtime)
    return None if newest is None else datetime.fromtimestamp(newest, UTC)


class Scheduler:
    """Fires due schedules into the run queue.

    Args:
        db: the open, migrated database.
        clock: current UTC time (injected by tests).
        alarms: alarm settings (``config.alarms``); ``None``: the loop checks no alarms.
        alarm_every_s: least seconds between two alarm checks of ``run_forever``.
        zone: the plant's time zone (the drift rule's days); ``None``: UTC.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow, alarms: AlarmSettings | None = None,
                 alarm_every_s: float = 60.0, zone: ZoneInfo | None = None) -> None:
        """Bind to a database."""
        if alarm_every_s <= 0:
            raise ValueError(f"alarm_every_s {alarm_every_s!r} must be positive")
        self.db = db
        self.clock = clock
        self.store = ScheduleStore(db)
        self.queue = RunQueue(db)
        self.alarms = alarms
        self.alarm_every = timedelta(seconds=alarm_every_s)
        self.zone = zone
        self._alarms_checked: datetime | None = None

    def check_alarms_if_due(self, now: datetime | None = None) -> CheckResult | None:
        """Run the alarm checks when alarm settings are given and ``alarm_every_s`` has passed; else ``None``.

        A database that does not answer skips this check (logged); the next one is tried at the next interval.
        """
        now = now or self.clock()
        if self.alarms is None or (self._alarms_checked is not None and now - self._alarms_checked < self.alarm_every):
            return None
        self._alarms_checked = now
        try:
            result = check_alarms(self.db, self.alarms, now=now, zone=self.zone)
        except StorageError as exc:
            logger.warning("alarm check skipped, the database did not answer: %s", exc)
            return None
        for failure in result.failures:
            logger.warning("alarm not sent (retried at the next check): %s", failure)
        return result

    def has_new_data(self, schedule: Schedule, data_dir: str) -> bool:
        """New reviews or newer files in the data folder since the schedule last queued a run."""
        since = schedule.last_run_at
        if since is None:
            return True
        if self.queue.reviews_since(since) > 0:
            return True
        newest = newest_file_time(Path(data_dir))
        return newest is not None and newest > since

    def tick(self, now: datetime | None = None) -> list[int]:
        """Fire every due, enabled schedule once; return the ids of the runs queued."""
        now = now or self.clock()
        queued: list[int] = []
        for schedule in self.store.list(enabled_only=True):
            if schedule.next_run_at is None:
                self.store.skip_firing(schedule.name, None, now)
                continue
            if schedule.next_run_at > now:
                continue
            try:
                data_dir, only_new, spec = split_schedule_config(schedule.config)
            except ConfigError as exc:
                logger.error("schedule %r skipped: %s", schedule.name, exc)
                self.store.skip_firing(schedule.name, schedule.next_run_at, now)
                continue
            pending = self.queue.pending_for_schedule(schedule.name)
            if pending:
                logger.info("schedule %r due, but %d run(s) of it still queued or running: not stacking another",
                            schedule.name, pending)
                self.store.skip_firing(schedule.name, schedule.next_run_at, now)
                continue
            if only_new and not self.has_new_data(schedule, data_dir):
                logger.info("schedule %r due, but no new reviewed data since %s: skipped", schedule.name,
                            schedule.last_run_at)
                self.store.skip_firing(schedule.name, schedule.next_run_at, now)
                continue
            if self.store.take_firing(schedule.name, schedule.next_run_at, now) is None:
                continue  # another scheduler fired this occurrence
            run_id = self.queue.enqueue(spec.to_dict(), data_dir, schedule=schedule.name, created_at=now)
            logger.info("schedule %r fired: training run %d queued", schedule.name, run_id)
            queued.append(run_id)
        return queued

    def run_forever(self, stop: threading.Event | None = None, interval_s: float = 30.0) -> None:
        """Tick (and check alarms when due) every ``interval_s`` seconds until ``stop`` is set."""
        stop = stop or threading.Event()
        while not stop.is_set():
            self.tick()
            self.check_alarms_if_due()
            stop.wait(interval_s)


FINETUNE_KIND = "finetune"


def read_finetune_pipeline(path: Path) -> tuple[str, str, dict[str, Any]]:
    """(schedule name, cron, schedule config) declared by a ``kind: finetune`` pipeline file.

    Layout::

        name: nightly-finetune
        kind: finetune
        schedule: {cron: "0 2 * * *", only_if_new_data: true}
        data: {dir: sample_data/train, test_dir: null, test_fraction: 0.2, use_reviews: true, update: false}
        train: {backbone: efficientnet_lite0, epochs: 4, ...}      # TrainConfig options
        # or a good-only model: train: {kind: anomaly, input_size: 224, ...}  (AnomalyConfig options), and
        # data.update: true to add the good images reviewed since the active good-only model was made
        promotion: {false_reject_rate: 0.01, class_tolerance: 0.05, auto_promote: true}

    Relative folders are resolved against the current working directory.

    Raises:
        ConfigError: unknown sections or options, a missing ``schedule.cron`` or ``data.dir`` (each named).
    """
    from inspect_app.config.base import read_yaml

    data = read_yaml(Path(path))
    allowed = {"name", "kind", "description", "schedule", "data", "train", "promotion", "model_prefix"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"pipeline file {str(path)!r} has unknown section(s) {unknown}; allowed: {sorted(allowed)}")
    if data.get("kind") != FINETUNE_KIND:
        raise ConfigError(f"pipeline file {str(path)!r} has kind {data.get('kind')!r}; expected {FINETUNE_KIND!r}")
    schedule = data.get("schedule") or {}
    source = data.get("data") or {}
    if not schedule.get("cron") or not source.get("dir"):
        raise ConfigError(f"pipeline file {str(path)!r} needs schedule.cron and data.dir")
    bad = sorted(set(source) - {"dir", "test_dir", "test_fraction", "use_reviews", "update"})
    bad += sorted(f"schedule.{k}" for k in set(schedule) - {"cron", "only_if_new_data"})
    if bad:
        raise ConfigError(f"pipeline file {str(path)!r} has unknown option(s) {bad}")
    name = str(data.get("name") or Path(path).stem)
    train = dict(data.get("train") or {})
    kind = train.pop("kind", "classifier")
    if kind == "anomaly":
        from inspect_app.engine.anomaly_config import AnomalyConfig

        # Checked here, so a bad option is one line now rather than a failed run at night.
        train = {"anomaly": AnomalyConfig.from_dict(train, where=f"pipeline file {str(path)!r}, train").to_dict()}
    else:
        train = {"train": train}
    spec_values: dict[str, Any] = {
        **train,
        "kind": kind,
        "promotion": data.get("promotion") or {},
        "model_prefix": str(data.get("model_prefix") or name),
        "test_dir": str(Path(source["test_dir"]).resolve()) if source.get("test_dir") else None,
    }
    for key in ("test_fraction", "use_reviews", "update"):
        if key in source:
            spec_values[key] = source[key]
    spec = FinetuneSpec.from_dict(spec_values)
    config = schedule_config(source["dir"], spec, bool(schedule.get("only_if_new_data", False)))
    return name, str(schedule["cron"]), config
