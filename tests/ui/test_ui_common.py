"""Times on the dashboard in the plant's zone: formatting, titles and chart wall-clock values."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from inspect_app.errors import ConfigError
from inspect_app.ui import common


def test_times_are_shown_in_the_plant_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", "Europe/Berlin")
    winter, summer = datetime(2026, 12, 1, 21, 9, tzinfo=UTC), datetime(2026, 7, 1, 21, 9, tzinfo=UTC)
    assert common.format_time(winter) == "2026-12-01 22:09 Europe/Berlin"
    assert common.format_time(summer) == "2026-07-01 23:09 Europe/Berlin"
    assert common.format_time(datetime(2026, 12, 1, 21, 9)) == "2026-12-01 22:09 Europe/Berlin"  # naive = UTC
    assert common.format_time(winter, ZoneInfo("Asia/Kolkata")) == "2026-12-02 02:39 Asia/Kolkata"
    assert common.time_title() == "Time (Europe/Berlin)" and common.time_title("Day") == "Day (Europe/Berlin)"
    # Charts get the plant's wall-clock time on a UTC scale.
    assert common.plant_wall(winter) == datetime(2026, 12, 1, 22, 9, tzinfo=UTC)


def test_bad_zone_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", "Europe/Berln")
    with pytest.raises(ConfigError, match="unknown time zone 'Europe/Berln'"):
        common.format_time(datetime(2026, 12, 1, tzinfo=UTC))
