"""The Training page, driven headless by ``streamlit.testing`` against a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from inspect_app.records import ModelVersion, RunStatus
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore

PAGE = Path(__file__).resolve().parents[2] / "inspect_app" / "ui" / "pages" / "training.py"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty SQLite file selected through ``INSPECT_DATABASE_URL``; Streamlit caches cleared around the test."""
    value = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    monkeypatch.setenv("INSPECT_DATABASE_URL", value)
    st.cache_resource.clear()
    yield value
    st.cache_resource.clear()


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_queue_a_run_then_cancel_it(url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    at = _run(AppTest.from_file(str(PAGE), default_timeout=60))
    assert "No fine-tuning runs yet." in [i.value for i in at.info]
    at.text_input(key="data_dir").input(str(data))
    at.number_input(key="epochs").set_value(2)
    at.button[0].click()  # the form's submit button
    _run(at)
    with Database.open(url) as db:
        [run] = RunQueue(db).list()
    assert run.status is RunStatus.QUEUED and run.config["train"]["epochs"] == 2 and run.data_dir == str(data)
    assert any(f"Queued training run {run.id}" in s.value for s in at.success)

    _run(at)
    at.button(key="cancel").click()
    _run(at)
    with Database.open(url) as db:
        assert RunQueue(db).get(run.id).status is RunStatus.CANCELLED


def test_missing_data_folder_is_named(url: str, tmp_path: Path) -> None:
    at = _run(AppTest.from_file(str(PAGE), default_timeout=60))
    at.text_input(key="data_dir").input(str(tmp_path / "nope"))
    at.button[0].click()
    _run(at)
    assert any("nope" in e.value for e in at.error)


def test_add_and_disable_a_schedule(url: str, tmp_path: Path) -> None:
    at = _run(AppTest.from_file(str(PAGE), default_timeout=60))
    at.text_input(key="schedule_name").input("nightly")
    at.text_input(key="schedule_data").input(str(tmp_path))
    next(b for b in at.button if b.label == "Add schedule").click()
    _run(at)
    with Database.open(url) as db:
        schedule = ScheduleStore(db).get("nightly")
    assert (schedule.cron, schedule.enabled, schedule.config["only_if_new_data"]) == ("0 2 * * *", True, True)
    _run(at)
    at.button(key="disable").click()
    _run(at)
    with Database.open(url) as db:
        assert ScheduleStore(db).get("nightly").enabled is False


def test_bad_cron_is_reported_not_raised(url: str, tmp_path: Path) -> None:
    at = _run(AppTest.from_file(str(PAGE), default_timeout=60))
    at.text_input(key="schedule_name").input("bad")
    at.text_input(key="schedule_cron").input("every night")
    at.text_input(key="schedule_data").input(str(tmp_path))
    next(b for b in at.button if b.label == "Add schedule").click()
    _run(at)
    assert any("'every night' is not valid" in e.value for e in at.error)


def test_promote_and_roll_back_from_the_page(url: str) -> None:
    with Database.open(url) as db:
        repo = Repository(db)
        for name in ("m1", "m2"):
            repo.add_model_version(ModelVersion(name=name, kind="classifier", backbone="b", path=f"/m/{name}",
                                                classes=("good", "scratch")))
        repo.promote("m1")
    at = _run(AppTest.from_file(str(PAGE), default_timeout=60))
    at.selectbox(key="model_pick").set_value("m2")
    at.button(key="promote").click()
    _run(at)
    with Database.open(url) as db:
        assert Repository(db).active_model().name == "m2"
    at.button(key="rollback").click()
    _run(at)
    with Database.open(url) as db:
        assert Repository(db).active_model().name == "m1"
        assert Repository(db).list_audit(action="model.promote")[0].actor == "dashboard"
