"""The scheduler with an injected clock: fires when due, once for missed nights, never stacked, new-data option."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspect_app.config.policy import FinetuneSpec
from inspect_app.errors import ConfigError
from inspect_app.lifecycle.scheduler import Scheduler, read_finetune_pipeline, schedule_config, split_schedule_config
from inspect_app.records import Decision, Inspection, Review, RunStatus
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore

T0 = datetime(2025, 6, 1, 1, 0, tzinfo=UTC)  # 01:00; the nightly schedule is due at 02:00


class Clock:
    """A settable clock: the scheduler reads it like ``utcnow``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "good").mkdir(parents=True)
    (folder / "good" / "a.png").write_bytes(b"x")
    old = (T0 - timedelta(days=30)).timestamp()
    os.utime(folder / "good" / "a.png", (old, old))
    return folder


def test_nightly_schedule_fires_at_two_once_and_missed_nights_are_not_stacked(
    lifecycle_db_url: str, tmp_path: Path
) -> None:
    with Database.open(lifecycle_db_url) as db:
        clock = Clock(T0)
        ScheduleStore(db).add("nightly", "0 2 * * *", schedule_config(_data_dir(tmp_path), FinetuneSpec()), now=T0)
        scheduler, queue = Scheduler(db, clock), RunQueue(db)

        assert scheduler.tick() == []  # 01:00: not due
        clock.now = T0.replace(hour=2, second=30)
        [run_id] = scheduler.tick()
        run = queue.get(run_id)
        assert (run.status, run.schedule, run.created_at) == (RunStatus.QUEUED, "nightly", clock.now)
        assert FinetuneSpec.from_dict(run.config) == FinetuneSpec()
        assert run.data_dir == str((tmp_path / "data").resolve())
        assert scheduler.tick() == []  # same minute: fired already

        # The next night's run is due while the first is still queued: not stacked on top of it.
        clock.now = T0.replace(hour=2) + timedelta(days=1)
        assert scheduler.tick() == []
        assert ScheduleStore(db).get("nightly").next_run_at == T0.replace(hour=2) + timedelta(days=2)

        # The first run ends; the scheduler was down for three nights: one run, and the next one is tomorrow.
        queue.claim("w1", clock.now)
        queue.finish(run_id, "w1", RunStatus.SUCCEEDED, clock.now)
        clock.now = T0.replace(hour=5) + timedelta(days=4)
        assert len(scheduler.tick()) == 1
        assert scheduler.tick() == []
        schedule = ScheduleStore(db).get("nightly")
        assert (schedule.last_run_at, schedule.next_run_at) == (clock.now, T0.replace(hour=2) + timedelta(days=5))
        assert len(queue.list(schedule="nightly")) == 2


def test_only_if_new_data_waits_for_a_review(sqlite_db: Database, tmp_path: Path) -> None:
    clock = Clock(T0)
    config = schedule_config(_data_dir(tmp_path), FinetuneSpec(), only_if_new_data=True)
    ScheduleStore(sqlite_db).add("nightly", "0 2 * * *", config, now=T0)
    scheduler, queue, repo = Scheduler(sqlite_db, clock), RunQueue(sqlite_db), Repository(sqlite_db)
    clock.now = T0.replace(hour=2)
    [first] = scheduler.tick()  # never ran: there is new data by definition
    queue.cancel(first)

    clock.now += timedelta(days=1)
    assert scheduler.tick() == []  # nothing reviewed since
    assert ScheduleStore(sqlite_db).get("nightly").last_run_at == T0.replace(hour=2)

    repo.add_inspections([Inspection(station="s1", line="l1", source="/in", image_path="/in/x.png",
                                     decision=Decision.NG, created_at=clock.now, content_hash="h1", score=0.9)])
    inspection_id = repo.inspection_id("h1", None, "s1")
    repo.add_review(Review(inspection_id=inspection_id, verdict=Decision.NG, reviewer="ann", defect_class="scratch",
                           created_at=clock.now + timedelta(hours=3)))
    clock.now += timedelta(days=1)
    assert len(scheduler.tick()) == 1


def test_disabled_schedules_do_not_fire(sqlite_db: Database, tmp_path: Path) -> None:
    store = ScheduleStore(sqlite_db)
    store.add("nightly", "0 2 * * *", schedule_config(_data_dir(tmp_path), FinetuneSpec()), now=T0)
    store.update("nightly", enabled=False)
    assert Scheduler(sqlite_db, Clock(T0 + timedelta(days=2))).tick() == []


def test_nightly_pipeline_file_declares_a_valid_schedule(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo_root)
    name, cron, config = read_finetune_pipeline(repo_root / "pipelines" / "nightly_finetune.yaml")
    data_dir, only_new, spec = split_schedule_config(config)
    assert (name, cron, only_new) == ("nightly-finetune", "0 2 * * *", True)
    assert data_dir == str((repo_root / "sample_data" / "train").resolve())
    assert spec.promotion.false_reject_rate == 0.01 and spec.model_prefix == "nightly-finetune"


def test_pipeline_file_errors_name_the_bad_part(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("kind: finetune\nschedule: {cron: '0 2 * * *', every: 2}\ndata: {dir: d}\n")
    with pytest.raises(ConfigError, match=r"schedule\.every"):
        read_finetune_pipeline(path)
    path.write_text("kind: finetune\nschedule: {cron: '0 2 * * *'}\ndata: {dir: d}\ntrain: {epochz: 2}\n")
    with pytest.raises(ConfigError, match="epochz"):
        read_finetune_pipeline(path)


def test_the_scheduler_loop_runs_the_alarm_checks_on_their_interval(db: Database) -> None:
    from inspect_app.config.alarms import load_alarm_settings
    from inspect_app.storage.alarms import AlarmStore
    from inspect_app.storage.live_stats import record_pipeline_status

    # A pipeline that went silent 20 minutes ago: pipeline_down after 10 minutes without reports.
    record_pipeline_status(db, "cam", "cell-a", "line-1", {"frames": 3, "elapsed_s": 1}, host="st-a",
                           now=T0 - timedelta(minutes=20))
    clock = Clock(T0)
    scheduler = Scheduler(db, clock=clock, alarms=load_alarm_settings(pipeline_down_minutes=10), alarm_every_s=60)
    first = scheduler.check_alarms_if_due()
    assert first is not None and [a.kind for a in first.raised] == ["pipeline_down"]
    clock.now = T0 + timedelta(seconds=30)
    assert scheduler.check_alarms_if_due() is None  # not yet due again
    clock.now = T0 + timedelta(seconds=61)
    again = scheduler.check_alarms_if_due()
    assert again is not None and again.raised == []  # once per episode
    assert [a.kind for a in AlarmStore(db).recent()] == ["pipeline_down"]
    assert Scheduler(db, clock=clock).check_alarms_if_due() is None  # no alarm settings: no checks
    with pytest.raises(ValueError, match="alarm_every_s 0"):
        Scheduler(db, alarm_every_s=0)
