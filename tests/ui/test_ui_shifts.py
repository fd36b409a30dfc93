"""The Shift report page driven headless by ``streamlit.testing`` against a seeded SQLite file: the last completed
shift, a picked date and shift, and the CSV and PDF downloads the page hands to the browser."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import streamlit as st
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from inspect_app.app import shifts
from inspect_app.config.plant import DEFAULT_SHIFTS
from inspect_app.records import Decision, Inspection
from inspect_app.storage import Database, Repository
from inspect_app.ui import app
from inspect_app.ui import shifts as shifts_page

APP_FILE = Path(app.__file__).resolve()
TIMEOUT_S = 60
ZONE = "Europe/Berlin"


@pytest.fixture(autouse=True)
def setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Anonymous viewing, a plant zone other than UTC, and no caches across tests."""
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "true")
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", ZONE)
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> shifts.ShiftWindow:
    """Parts in the last completed shift (2 NG of 5 at paint-1, 1 of 4 at press-1) and one part before it."""
    window = shifts.last_completed_shift(DEFAULT_SHIFTS, ZoneInfo(ZONE), datetime.now(UTC))
    plan = [("paint-1", "line-B", Decision.NG, "stain"), ("paint-1", "line-B", Decision.NG, "dent"),
            ("paint-1", "line-B", Decision.OK, None), ("paint-1", "line-B", Decision.REVIEW, None),
            ("paint-1", "line-B", Decision.OK, None), ("press-1", "line-A", Decision.NG, "stain"),
            ("press-1", "line-A", Decision.OK, None), ("press-1", "line-A", Decision.OK, None),
            ("press-1", "line-A", Decision.OK, None)]
    rows = [Inspection(station=station, line=line, source="/in", image_path=f"/in/{i}.png", decision=decision,
                       created_at=window.start + timedelta(minutes=7 + 41 * i), content_hash=f"h{i}",
                       model_version="m1", defect_class=defect, score=0.7)
            for i, (station, line, decision, defect) in enumerate(plan)]
    rows.append(Inspection(station="press-1", line="line-A", source="/in", image_path="/in/old.png",
                           decision=Decision.NG, created_at=window.start - timedelta(minutes=1), content_hash="old",
                           model_version="m1", defect_class="crack", score=0.9))
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    with Database.open(url) as db:
        Repository(db).add_inspections(rows)
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    return window


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Every file the page hands to Streamlit's media storage, by MIME type (the bytes a browser would download)."""
    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self: MemoryMediaFileStorage, path_or_data: str | bytes, mimetype: str, *args: object,
               **kwargs: object) -> str:
        if isinstance(path_or_data, bytes):
            seen[mimetype] = path_or_data
        return original(self, path_or_data, mimetype, *args, **kwargs)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return seen


def _open() -> AppTest:
    at = AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S).run()
    at.switch_page("views/shifts.py")
    at = at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_last_completed_shift_report_and_downloads(plant: shifts.ShiftWindow, downloads: dict[str, bytes]) -> None:
    at = _open()
    assert at.title[0].value == shifts_page.PAGE_TITLE
    assert at.subheader[0].value == plant.title
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Parts": "9", "OK": "5", "REVIEW": "1", "NG": "3", "Defect rate": "33.3 %"}
    assert "paint-1" in at.warning[0].value and "40.0 %" in at.warning[0].value
    table = at.dataframe[0].value
    assert list(table["Station"]) == ["paint-1", "press-1"] and list(table["Defect rate"]) == ["40.0 %", "25.0 %"]
    assert ZONE in at.caption[0].value
    assert {b.label for b in at.get("download_button")} == {"Download CSV", "Download PDF"}
    assert downloads["application/pdf"].startswith(b"%PDF-1.4") and len(downloads["application/pdf"]) > 500
    csv_text = downloads["text/csv"].decode()
    assert "line-B,paint-1,5,2,1,2,0,0.4000" in csv_text and "stain,2" in csv_text and "crack" not in csv_text


def test_picked_shift_without_parts_says_so(plant: shifts.ShiftWindow) -> None:
    at = _open()
    at.sidebar.radio(key="shift_mode").set_value(shifts_page.PICK)
    at = at.run()
    day = plant.day - timedelta(days=3)
    at.sidebar.date_input(key="shift_date").set_value(day)
    at.sidebar.selectbox(key="shift_name").set_value("B")
    at = at.run()
    assert not at.exception
    assert at.subheader[0].value == f"Shift B {day.isoformat()} (14:00–22:00)"
    assert at.info[0].value == "No inspections in this shift." and not at.metric


def test_bad_plant_zone_is_one_line(plant: shifts.ShiftWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", "Europe/Berln")
    at = AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert "unknown time zone 'Europe/Berln'" in at.error[0].value
