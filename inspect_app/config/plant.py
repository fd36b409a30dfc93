"""Plant calendar settings: the plant's time zone and its shift calendar (part of ``Settings``).

The environment gives them as ``INSPECT_PLANT_TIME_ZONE=Europe/Berlin`` (an IANA name) and
``INSPECT_SHIFTS="A=06:00-14:00,B=14:00-22:00,C=22:00-06:00"``; a shift whose end is not after its start runs across
midnight into the next day.
"""

from __future__ import annotations

from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_SHIFTS", "Shift", "check_shifts", "check_time_zone", "parse_shifts", "shifts_before"]

_MINUTES_PER_DAY = 24 * 60


class Shift(BaseModel):
    """One shift of the calendar: ``name`` from ``start`` to ``end`` plant time (``end <= start``: across midnight)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=40)
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        """Whether the shift ends on the next calendar day."""
        return self.end <= self.start

    def minutes(self) -> set[int]:
        """Minutes of the day (0..1439) the shift covers, to find overlaps."""
        first = self.start.hour * 60 + self.start.minute
        length = (self.end.hour * 60 + self.end.minute - first) % _MINUTES_PER_DAY or _MINUTES_PER_DAY
        return {(first + k) % _MINUTES_PER_DAY for k in range(length)}

    def label(self) -> str:
        """``A 06:00–14:00``."""
        return f"{self.name} {self.start:%H:%M}–{self.end:%H:%M}"


DEFAULT_SHIFTS = (
    Shift(name="A", start=time(6), end=time(14)),
    Shift(name="B", start=time(14), end=time(22)),
    Shift(name="C", start=time(22), end=time(6)),
)


def check_time_zone(name: str) -> str:
    """Return ``name`` when it is an IANA time zone zoneinfo knows.

    Raises:
        ValueError: unknown name (the message names it and gives examples).
    """
    try:
        # Empty, relative or odd names raise ValueError in zoneinfo, unknown ones ZoneInfoNotFoundError.
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as UTC, Europe/Berlin or America/Chicago"
        ) from None
    if name not in available_timezones() and name != "UTC":
        # zoneinfo also opens files such as "posixrules"; only real zone names are allowed.
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as UTC, Europe/Berlin or America/Chicago")
    return name


def parse_shifts(text: str) -> tuple[dict[str, str], ...]:
    """``"A=06:00-14:00,B=14:00-22:00"`` → shift fields (validated by ``Shift``).

    Raises:
        ValueError: an entry is not ``NAME=HH:MM-HH:MM`` (the message names it).
    """
    result = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, span = entry.partition("=")
        start, dash, end = span.partition("-")
        if not sep or not dash or not name.strip():
            raise ValueError(f"shift {entry!r} must look like NAME=HH:MM-HH:MM, e.g. A=06:00-14:00")
        result.append({"name": name.strip(), "start": start.strip(), "end": end.strip()})
    return tuple(result)


def check_shifts(shifts: tuple[Shift, ...]) -> tuple[Shift, ...]:
    """Return ``shifts`` when they have distinct names, are not empty and do not overlap.

    Raises:
        ValueError: naming the duplicate name or the two overlapping shifts.
    """
    if not shifts:
        raise ValueError("the shift calendar needs at least one shift, e.g. A=06:00-14:00")
    seen: dict[str, Shift] = {}
    for shift in shifts:
        if shift.name in seen:
            raise ValueError(f"shift name {shift.name!r} is used twice; names must be distinct")
        for other in seen.values():
            if shift.minutes() & other.minutes():
                raise ValueError(f"shifts {other.label()!r} and {shift.label()!r} overlap")
        seen[shift.name] = shift
    return shifts


def shifts_before(value: Any) -> Any:
    """Field validator input: an environment string becomes shift fields; anything else is left to pydantic."""
    return parse_shifts(value) if isinstance(value, str) else value
