"""The Drift page driven headless by ``streamlit.testing``: a calm station raises no alarm, a station whose scores
moved on its last two days does, and days are plant days."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from inspect_app.records import Decision, Inspection
from inspect_app.storage import Database, Repository
from inspect_app.ui import app
from inspect_app.ui import drift as drift_page

APP_FILE = Path(app.__file__).resolve()
TIMEOUT_S = 60
ZONE = "America/Chicago"


@pytest.fixture(autouse=True)
def setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "true")
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", ZONE)
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _part(rng: random.Random, station: str, at: datetime, i: int, shifted: bool) -> Inspection:
    """A part with the seeded plant's score mix: ~3 % NG, ~3 % REVIEW, OK scores near 0.08 (wider when shifted)."""
    u = rng.random()
    ng_rate = 0.12 if shifted else 0.03
    if u < ng_rate:
        decision, score, defect = Decision.NG, rng.uniform(0.6, 1.0), "scratch"
    elif u < ng_rate + 0.03:
        decision, score, defect = Decision.REVIEW, rng.uniform(0.4, 0.6), None
    else:
        decision, score, defect = Decision.OK, min(abs(rng.gauss(0.08, 0.16 if shifted else 0.07)), 0.39), None
    return Inspection(station=station, line="line-1", source="/in", image_path=f"/in/{station}/{i}.png",
                      decision=decision, created_at=at, content_hash=f"{station}-{i}", model_version="m1",
                      defect_class=defect, score=score)


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """14 days, 400 parts a day at "calm" and "moved"; "moved" shifts over the last 48 hours."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    rows = []
    for station in ("calm", "moved"):
        for i in range(14 * 400):
            at = now - timedelta(days=14) + timedelta(seconds=i * 86_400 / 400 + 30)
            rows.append(_part(rng, station, at, i, shifted=station == "moved" and now - at < timedelta(hours=48)))
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    with Database.open(url) as db:
        Repository(db).add_inspections(rows)
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)


def _open() -> AppTest:
    at = AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S).run()
    at.switch_page("views/drift.py")
    at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_only_the_moved_station_alarms(plant: None) -> None:
    at = _open()
    assert at.title[0].value == drift_page.PAGE_TITLE
    assert len(at.error) == 1 and "Drift alarm at moved:" in at.error[0].value
    summary = at.dataframe[0].value.set_index("Station")
    assert summary.loc["calm", "Alarm days"] == "0" and summary.loc["moved", "Alarm days"] != "0"
    assert ZONE in at.caption[0].value


def test_one_station_shows_its_days_in_the_plant_zone(plant: None) -> None:
    at = _open()
    at.sidebar.selectbox(key="drift_station").set_value("calm")
    at = at.run()
    assert not at.exception and not at.error
    assert at.success and "No drift alarm" in at.success[0].value
    days = at.dataframe[1].value
    title = f"Day ({ZONE})"
    assert title in days.columns and not days["Alarm"].any()
    today = datetime.now(UTC).astimezone(drift_page.plant_zone()).date().isoformat()
    assert days[title].iloc[-1] == today
    assert all(isinstance(v, str) and "." in v for v in days["PSI"])  # formatted, not raw floats
