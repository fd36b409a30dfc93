"""Plant settings: the time zone (IANA names only) and the shift calendar, from the environment."""

from __future__ import annotations

from datetime import time

import pytest

from inspect_app.config import load_settings
from inspect_app.config.plant import DEFAULT_SHIFTS, Shift, check_shifts, parse_shifts
from inspect_app.errors import ConfigError


def test_defaults_are_utc_and_three_shifts() -> None:
    settings = load_settings()
    assert settings.plant_time_zone == "UTC" and settings.plant_zone.key == "UTC"
    assert [s.label() for s in settings.shifts] == ["A 06:00–14:00", "B 14:00–22:00", "C 22:00–06:00"]
    assert settings.shifts == DEFAULT_SHIFTS and DEFAULT_SHIFTS[2].crosses_midnight


def test_zone_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", "America/Chicago")
    assert load_settings().plant_zone.key == "America/Chicago"


@pytest.mark.parametrize("name", ["Europe/Berln", "", "posixrules", "../etc/passwd", "Mars/Olympus"])
def test_bad_zone_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("INSPECT_PLANT_TIME_ZONE", name)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message and f"unknown time zone {name!r}" in message and "Europe/Berlin" in message


def test_shifts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_SHIFTS", "Early=05:30-13:30, Late=13:30-21:30")
    shifts = load_settings().shifts
    assert [(s.name, s.start, s.end) for s in shifts] == [("Early", time(5, 30), time(13, 30)),
                                                           ("Late", time(13, 30), time(21, 30))]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A=06:00-14:00,B=13:00-22:00", "shifts 'A 06:00–14:00' and 'B 13:00–22:00' overlap"),
        ("A=06:00-14:00,A=14:00-22:00", "shift name 'A' is used twice"),
        ("A=22:00-06:00,B=05:00-07:00", "overlap"),
        ("A 06:00-14:00", "shift 'A 06:00-14:00' must look like NAME=HH:MM-HH:MM"),
        ("A=25:00-14:00", "shifts.0.start '25:00'"),
        ("", "needs at least one shift"),
    ],
)
def test_bad_shift_calendar_is_one_line(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("INSPECT_SHIFTS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_minutes_cover_a_night_shift_across_midnight() -> None:
    night = Shift(name="N", start=time(22), end=time(6))
    assert len(night.minutes()) == 8 * 60 and 0 in night.minutes() and 22 * 60 in night.minutes()
    assert len(Shift(name="D", start=time(6), end=time(6)).minutes()) == 24 * 60  # start == end: a whole day
    assert parse_shifts("A=06:00-14:00,") == ({"name": "A", "start": "06:00", "end": "14:00"},)
    assert check_shifts(DEFAULT_SHIFTS) == DEFAULT_SHIFTS
