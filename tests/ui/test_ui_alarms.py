"""The Alarms page and the Overview's last alarm, driven by ``streamlit.testing`` on a real SQLite plant database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspect_app.app import users
from inspect_app.records import Alarm, Decision, Inspection
from inspect_app.storage import Database, Repository
from inspect_app.storage.alarms import ACKNOWLEDGE_ACTION, AlarmStore
from inspect_app.ui import app

APP_FILE = str(Path(app.__file__).resolve())
PASSWORD = "correct-horse-battery"



@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A plant database with a few inspections, two open alarms, a viewer and an operator."""
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    now = datetime.now(UTC)
    with Database.open(url) as db:
        Repository(db).add_inspections([
            Inspection(station="cell-a", line="line-1", source="/in", image_path=f"/in/{i}.png",
                       decision=Decision.NG if i % 3 == 0 else Decision.OK, created_at=now - timedelta(minutes=i),
                       content_hash=f"h{i}", model_version="m1", score=0.5)
            for i in range(6)
        ])
        store = AlarmStore(db)
        for minutes, subject, message in ((30, "cell-a", "cell-a: one point beyond 3σ"),
                                          (5, "cam@cell-b", "pipeline cam at cell-b has not reported for 12 min")):
            kind = "spc" if subject == "cell-a" else "pipeline_down"
            store.raise_alarm(Alarm(kind=kind, subject=subject, station=subject.split("@")[-1], rule="r",
                                    message=message, episode_start=now - timedelta(minutes=minutes),
                                    episode_end=now - timedelta(minutes=minutes),
                                    raised_at=now - timedelta(minutes=minutes)))
        for role in ("viewer", "operator"):
            users.create_user(db, role, role, PASSWORD)
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "false")
    return url


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(user: str, page: str | None = "alarms") -> AppTest:
    at = _run(AppTest.from_file(APP_FILE, default_timeout=60))
    at.sidebar.text_input(key="sign_in_user").input(user)
    at.sidebar.text_input(key="sign_in_password").input(PASSWORD)
    next(b for b in at.sidebar.button if b.label == "Sign in").click()
    at = _run(at)
    if page is not None:
        at.switch_page(f"views/{page}.py")
        at = _run(at)
    return at


def _ids(url: str, open_only: bool) -> list[int]:
    with Database.open(url) as db:
        return [int(a.id) for a in AlarmStore(db).recent(open_only=open_only)]


def test_operator_acknowledges_the_alarm_beside_the_button(plant: str) -> None:
    at = _open("operator")
    assert "Open alarms (2)" in [h.value for h in at.subheader]
    newest, oldest = _ids(plant, open_only=True)  # newest first, as drawn
    at.button(key=f"ack_{oldest}").click()
    at = _run(at)
    assert _ids(plant, open_only=True) == [newest]
    with Database.open(plant) as db:
        alarm = AlarmStore(db).get(oldest)
        (event,) = Repository(db).list_audit(action=ACKNOWLEDGE_ACTION)
    assert alarm.acknowledged_by == "operator" and (event.actor, event.target) == ("operator", f"alarm:{oldest}")
    assert "Open alarms (1)" in [h.value for h in at.subheader]
    history = at.dataframe[0].value
    assert set(history["State"]) == {"active", "acknowledged"}


def test_viewer_sees_the_alarms_without_a_button(plant: str) -> None:
    at = _open("viewer")
    assert "Open alarms (2)" in [h.value for h in at.subheader]
    assert not [b for b in at.button if (b.key or "").startswith("ack_")]
    assert any("needs role operator" in c.value for c in at.caption)


def test_overview_shows_the_last_alarm(plant: str) -> None:
    at = _open("viewer", page=None)
    assert any("Last alarm (active" in w.value and "pipeline cam at cell-b" in w.value for w in at.warning)
