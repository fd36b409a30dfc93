"""Schedules in the database: cron validation, edits, and firing claims that never fire one occurrence twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inspect_app.errors import ConfigError, StorageError
from inspect_app.storage import Database
from inspect_app.storage.schedules import ScheduleStore, check_cron, next_fire

T0 = datetime(2025, 6, 1, 1, 0, tzinfo=UTC)


def test_check_cron_names_the_bad_expression() -> None:
    assert check_cron(" 0 2 * * * ") == "0 2 * * *"
    for bad in ("61 2 * * *", "every night", "0 2 * *"):
        with pytest.raises(ConfigError, match="is not valid; expected five fields"):
            check_cron(bad)
    assert next_fire("0 2 * * *", T0) == T0.replace(hour=2)
    assert next_fire("0 2 * * *", T0.replace(hour=2)) == T0.replace(hour=2) + timedelta(days=1)


def test_add_get_update_remove(db: Database) -> None:
    store = ScheduleStore(db)
    added = store.add("nightly", "0 2 * * *", {"data_dir": "/d"}, now=T0)
    assert added.next_run_at == T0.replace(hour=2)
    assert store.get("nightly") == added
    with pytest.raises(StorageError, match="already exists"):
        store.add("nightly", "0 3 * * *", {}, now=T0)
    with pytest.raises(ConfigError, match="kind 'purge'"):
        store.add("x", "0 3 * * *", {}, kind="purge")
    changed = store.update("nightly", cron="30 3 * * *", enabled=False, now=T0)
    assert (changed.cron, changed.enabled, changed.next_run_at) == ("30 3 * * *", False, T0.replace(hour=3, minute=30))
    assert store.list(enabled_only=True) == []
    assert store.update("nightly", enabled=True, now=T0 + timedelta(days=1)).next_run_at == T0.replace(
        hour=3, minute=30) + timedelta(days=1)
    store.remove("nightly")
    with pytest.raises(LookupError, match="'nightly' not found"):
        store.get("nightly")


def test_take_firing_is_won_once_and_skips_missed_occurrences(db: Database) -> None:
    store = ScheduleStore(db)
    due = store.add("nightly", "0 2 * * *", {}, now=T0).next_run_at
    late = T0 + timedelta(days=3, hours=4)  # three nightly occurrences missed
    fired = store.take_firing("nightly", due, late)
    assert fired is not None
    assert fired.last_run_at == late
    assert fired.next_run_at == datetime(2025, 6, 5, 2, 0, tzinfo=UTC)
    assert store.take_firing("nightly", due, late) is None  # a second scheduler loses


def test_list_is_by_name_and_can_keep_only_the_enabled(db: Database) -> None:
    store = ScheduleStore(db)
    store.add("weekly", "0 3 * * 0", {"epochs": 3}, enabled=False, now=T0)
    store.add("nightly", "0 2 * * *", {"epochs": 1}, now=T0)
    assert [(s.name, s.enabled, s.config) for s in store.list()] == [
        ("nightly", True, {"epochs": 1}), ("weekly", False, {"epochs": 3})]
    assert [s.name for s in store.list(enabled_only=True)] == ["nightly"]
