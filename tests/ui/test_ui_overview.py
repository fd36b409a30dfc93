"""Overview page (``ui.overview``) driven by ``streamlit.testing`` on the seeded plant of ``test_ui_pages``: the
bucket follows the period, the line × station heat map and the stations table's line column, formatted tables, step
control limits in UTC, and thumbnails of the latest NG parts served through ``ui.files``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from inspect_app.records import Decision, Inspection
from inspect_app.storage import Database, Repository
from inspect_app.ui import common, overview, overview_drill
from tests.ui import test_ui_pages as pages

# The seeded plant (signed-in users, runs, schedules) and the cache reset of the page tests.
plant = pages.plant
_open, _run = pages._open, pages._run

RAW_FLOAT = re.compile(r"^-?\d+\.\d{3,}$")


def _table_cells(at: AppTest) -> list[str]:
    return [str(v) for frame in at.dataframe for v in frame.value.to_numpy().ravel()]


def test_bucket_follows_the_period_unless_picked_for_that_period(plant: dict) -> None:
    at = _open()
    assert at.radio(key=common.bucket_key("Last 24 hours")).value == "hour"
    at.sidebar.selectbox(key="period").select("Last 30 days")
    at = _run(at)
    assert at.radio(key=common.bucket_key("Last 30 days")).value == "day"
    assert any("per day" in s.value for s in at.subheader)
    at.radio(key=common.bucket_key("Last 30 days")).set_value("shift")
    at.sidebar.selectbox(key="period").select("All time")
    at = _run(at)
    assert at.radio(key=common.bucket_key("All time")).value == "day"
    at.sidebar.selectbox(key="period").select("Last 30 days")
    at = _run(at)
    assert at.radio(key=common.bucket_key("Last 30 days")).value == "shift"  # the choice made for this period


def test_heat_map_and_station_table_by_line(plant: dict) -> None:
    now = datetime.now(UTC)
    with Database.open(plant["url"]) as db:
        Repository(db).add_inspections([
            Inspection(station="cell-c", line="line-2", source="/in", image_path=f"/in/l2-{i}.png",
                       decision=Decision.NG if i < 3 else Decision.OK, created_at=now - timedelta(minutes=5 + i),
                       content_hash=f"l2-{i}", model_version="m1", defect_class="dent", score=0.9)
            for i in range(4)
        ])
    at = _open()
    assert any(s.value == "Defect rate by line and station" for s in at.subheader)
    table = next(d.value for d in at.dataframe if "Line" in d.value.columns and "Defect rate" in d.value.columns)
    assert list(table.columns[:2]) == ["Line", "Station"]
    assert list(zip(table["Line"], table["Station"], table["Defect rate"], strict=True)) == [
        ("line-2", "cell-c", "75.0 %"), ("line-1", "cell-b", "50.0 %"), ("line-1", "cell-a", "20.0 %"),
    ]
    heat = overview.heat_frame(overview.dashboard_queries.station_comparison(Database.open(plant["url"])))
    whole = heat[heat["Station"] == overview.LINE_TOTAL].set_index("Line")["Label"].to_dict()
    assert whole == {"line-1": f"{100 * 3 / 9:.1f} %", "line-2": "75.0 %"}


def test_tables_show_formatted_values(plant: dict) -> None:
    at = _open()
    cells = _table_cells(at)
    assert cells and "None" not in cells and "nan" not in cells and "NaT" not in cells
    assert not [c for c in cells if RAW_FLOAT.match(c) and len(c.split(".")[1]) > 3]
    latest = next(d.value for d in at.dataframe if overview.time_title() in d.value.columns)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", t) for t in latest[overview.time_title()])
    assert set(latest["Score"]) == {"0.900", "0.800", "0.950"}


def test_format_helpers() -> None:
    assert common.format_time(datetime(2026, 12, 1, 21, 9, 1, tzinfo=UTC)) == "2026-12-01 21:09 UTC"
    assert common.format_time(datetime(2026, 12, 1, 22, 9, tzinfo=UTC).astimezone()) == "2026-12-01 22:09 UTC"
    assert common.format_time(None) == "" and common.format_count(None) == "" and common.format_percent(None) == ""
    assert common.format_count(166624) == "166,624" and common.format_percent(0.12345) == "12.3 %"
    assert common.format_number(342.2254) == "342.23"


def test_p_chart_limits_are_steps_on_a_utc_axis() -> None:
    start = datetime(2026, 12, 1, 21, tzinfo=UTC)
    chart = {"center": 0.1, "points": [
        {"bucket": start + timedelta(hours=h), "n": 100, "ng": 10, "p": 0.1, "lcl": 0.01, "ucl": 0.19,
         "out_of_control": False} for h in range(3)]}
    frame = overview.p_chart_frame(chart, "hour")
    # Every bucket's limits span exactly its own hour: a step, not a slope between neighbours.
    assert list(frame["End"] - frame["Start"]) == [timedelta(hours=1)] * 3
    assert list(frame["End"][:-1]) == list(frame["Start"][1:])
    assert frame[overview.time_title()].iloc[0] == "2026-12-01 21:00 UTC"
    assert overview.time_axis("Start").to_dict()["scale"] == {"type": "utc"}
    assert overview.time_axis("Start").to_dict()["title"] == "Time (UTC)"


def test_latest_ng_thumbnails_are_served_only_inside_the_roots(plant: dict, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    inside = plant["tmp"] / "evidence-ng.png"
    Image.fromarray(np.full((24, 24, 3), 200, dtype=np.uint8)).save(inside)
    outside = tmp_path.parent / "outside-ng.png"
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(outside)
    with Database.open(plant["url"]) as db:
        Repository(db).add_inspections([
            Inspection(station="cell-a", line="line-1", source="/in", image_path=str(path), decision=Decision.NG,
                       created_at=now - timedelta(seconds=s), content_hash=f"thumb{s}", model_version="m1",
                       defect_class="scratch", score=0.9)
            for s, path in ((1, inside), (2, outside))
        ])
    at = _open()
    images = at.get("image")
    assert len(images) == 1  # the file inside the served roots; the one outside is refused by ui.files
    assert any("outside the" in c.value for c in at.caption)


def test_day_buckets_start_at_the_plant_midnight(plant: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # 03:00 and 07:00 UTC on one date are 21:00 the day before and 01:00 that day in Chicago (CST, UTC-6).
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", "America/Chicago")
    day = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    parts = [day.replace(hour=3), day.replace(hour=7)]
    with Database.open(plant["url"]) as db:
        Repository(db).add_inspections([
            Inspection(station="cell-a", line="line-1", source="/in", image_path=f"/in/chicago-{at.hour}.png",
                       decision=Decision.NG, created_at=at, content_hash=f"chicago-{at.hour}", model_version="m1",
                       defect_class="dent", score=0.9)
            for at in parts
        ])
    at = _open()
    at.sidebar.selectbox(key="period").select("Last 30 days")
    at = _run(at)
    assert at.radio(key=common.bucket_key("Last 30 days")).value == "day"
    labels = [f"{(day - timedelta(days=1)):%Y-%m-%d} America/Chicago", f"{day:%Y-%m-%d} America/Chicago"]
    picker = at.selectbox(key=overview_drill.DRILL_BUCKET_KEY)
    assert set(labels) <= set(picker.options)
    for label, part in zip(labels, parts, strict=True):
        at.selectbox(key=overview_drill.DRILL_BUCKET_KEY).select(label)
        at = _run(at)
        table = next(d.value for d in at.dataframe if common.time_title() in d.value.columns)
        assert list(table["Image"]) == [f"/in/chicago-{part.hour}.png"]
