"""The Overview's window (``ui.overview_period``): plant days picked beside the period, the headline figures'
change against the previous window of the same length, and the auto-refresh toggle."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from inspect_app.records import Decision, Inspection, InspectionSummary
from inspect_app.storage import Database, Repository
from inspect_app.ui import overview, overview_period
from tests.ui import test_ui_pages as pages

plant = pages.plant
_open, _run = pages._open, pages._run


def _metrics(at: object) -> dict:
    return {m.label: (m.value, m.delta) for m in at.metric}  # type: ignore[attr-defined]


def test_choose_span_for_periods_and_picked_days(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)
    week = overview_period.choose_span("Last 7 days", (), now)
    assert week.since == now - timedelta(days=7) and week.until is None and week.default_bucket == "day"
    assert week.previous == (now - timedelta(days=14), now - timedelta(days=7))
    assert week.previous_label == "previous 7 days"
    assert overview_period.choose_span("All time", None, now).previous is None
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", "America/Chicago")
    days = overview_period.choose_span("Last 24 hours", (date(2026, 12, 3), date(2026, 12, 1)), now)
    start = datetime(2026, 12, 1, tzinfo=ZoneInfo("America/Chicago"))
    assert (days.since, days.until) == (start, start + timedelta(days=3))
    assert days.previous == (start - timedelta(days=3), start) and days.previous_label == "previous 3 days"
    assert days.period == overview_period.DATES_PERIOD and days.default_bucket == "day"
    one = overview_period.choose_span("Last 24 hours", (date(2026, 12, 1),), now)
    assert one.default_bucket == "hour" and one.previous_label == "previous day"


def test_kpi_deltas_in_points_and_counts() -> None:
    now = InspectionSummary(total=100, ok=90, review=0, ng=10, errors=0, per_class={})
    before = InspectionSummary(total=80, ok=76, review=0, ng=4, errors=0, per_class={})
    deltas = overview_period.kpi_deltas(now, before, "previous 7 days")
    assert deltas["Defect rate %"] == ("+5.0 pp vs previous 7 days", "inverse")
    assert deltas["Inspected"] == ("+20 vs previous 7 days", "off")
    assert deltas["Yield %"][0] == "-5.0 pp vs previous 7 days"
    assert overview_period.kpi_deltas(now, None, "") == {}
    assert overview_period.kpi_deltas(now, InspectionSummary(0, 0, 0, 0, 0, {}), "previous day") == {}


def test_headline_figures_show_the_change_against_the_previous_period(plant: dict) -> None:
    at = _open()
    assert not _metrics(at)["Defect rate %"][1]  # nothing in the 24 hours before
    assert any("No inspections in the previous 24 hours" in c.value for c in at.caption)
    now = datetime.now(UTC)
    with Database.open(plant["url"]) as db:
        Repository(db).add_inspections([
            Inspection(station="cell-a", line="line-1", source="/in", image_path=f"/in/old-{i}.png",
                       decision=Decision.NG if i == 0 else Decision.OK, created_at=now - timedelta(hours=30, minutes=i),
                       content_hash=f"old-{i}", model_version="m1", defect_class="dent" if i == 0 else None, score=0.5)
            for i in range(4)
        ])
    at = _open()
    metrics = _metrics(at)
    assert metrics["Defect rate %"] == (f"{100 * 3 / 9:.1f} %", f"{100 * 3 / 9 - 25:+.1f} pp vs previous 24 hours")
    assert metrics["Inspected"] == ("9", "+5 vs previous 24 hours")


def test_picked_dates_replace_the_period(plant: dict) -> None:
    at = _open()
    today = datetime.now(UTC).date()
    picker = at.sidebar.date_input(key=overview_period.DATES_KEY)
    picker.set_value((today - timedelta(days=1), today + timedelta(days=1)))
    at = _run(at)
    assert _metrics(at)["Inspected"][0] == "9"
    assert at.radio(key=overview.bucket_key(overview_period.DATES_PERIOD)).value == "day"
    at.sidebar.date_input(key=overview_period.DATES_KEY).set_value((date(2020, 1, 1), date(2020, 1, 2)))
    at = _run(at)
    assert _metrics(at)["Inspected"][0] == "0"
    assert any(i.value == overview.EMPTY_PERIOD_MESSAGE for i in at.info)


def test_auto_refresh_toggle(plant: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open()
    toggle = at.sidebar.toggle(key=overview_period.REFRESH_KEY)
    assert toggle.label == "Auto-refresh every 60 s" and toggle.value is False
    toggle.set_value(True)
    at = _run(at)
    assert at.sidebar.toggle(key=overview_period.REFRESH_KEY).value is True and at.metric
    monkeypatch.setenv("INSPECT_DASHBOARD_REFRESH_S", "0")
    at = _open()
    assert not [t for t in at.sidebar.toggle if t.key == overview_period.REFRESH_KEY]
