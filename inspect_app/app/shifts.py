"""Shifts in plant time: the UTC window of a shift on a plant date, the last completed shift, the plant days and
shifts that cover a period (the Overview's buckets), and the shift report (parts, OK/REVIEW/NG, defect rate per line
and station, top defect classes, worst station) as rows, CSV and PDF.

A shift on date ``d`` starts at ``d start`` plant time and ends at ``d end`` (``d+1 end`` across midnight). Times
are resolved in the plant zone with zoneinfo, so a night shift across a DST change lasts 7 or 9 hours; a start that
falls into the spring-forward gap is read with the offset before the change (``fold=0``, zoneinfo's rule).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from inspect_app.app.pdf import text_pdf
from inspect_app.config.plant import Shift
from inspect_app.storage import Database, dashboard_queries, queries

__all__ = [
    "TOP_CLASSES",
    "ShiftReport",
    "ShiftWindow",
    "find_shift",
    "last_completed_shift",
    "plant_buckets",
    "plant_day",
    "recent_shifts",
    "report_csv",
    "report_lines",
    "report_pdf",
    "shift_report",
    "shift_window",
]

# Classes shown in the report's "top defect classes".
TOP_CLASSES = 5


@dataclass(frozen=True)
class ShiftWindow:
    """One shift on one plant date: ``[start, end)`` as aware UTC datetimes."""

    shift: Shift
    day: date
    start: datetime
    end: datetime

    @property
    def title(self) -> str:
        """``Shift A 2026-12-07 (06:00–14:00)``."""
        return f"Shift {self.shift.name} {self.day.isoformat()} ({self.shift.start:%H:%M}–{self.shift.end:%H:%M})"


def find_shift(shifts: Sequence[Shift], name: str) -> Shift:
    """The shift called ``name``.

    Raises:
        ValueError: no such shift (the message lists the calendar's names).
    """
    for shift in shifts:
        if shift.name == name:
            return shift
    raise ValueError(f"unknown shift {name!r}; the calendar has {[s.name for s in shifts]}")


def shift_window(shift: Shift, day: date, zone: ZoneInfo) -> ShiftWindow:
    """The UTC window of ``shift`` starting on plant date ``day``."""
    end_day = day + timedelta(days=1) if shift.crosses_midnight else day
    start = datetime.combine(day, shift.start, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(end_day, shift.end, tzinfo=zone).astimezone(UTC)
    return ShiftWindow(shift=shift, day=day, start=start, end=end)


def last_completed_shift(shifts: Sequence[Shift], zone: ZoneInfo, now: datetime) -> ShiftWindow:
    """The shift that ended last at or before ``now`` (aware).

    Raises:
        ValueError: ``now`` is naive or the calendar is empty.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now {now.isoformat()!r} is naive; pass a timezone-aware datetime")
    if not shifts:
        raise ValueError("the shift calendar has no shifts")
    today = now.astimezone(zone).date()
    # A shift that ended by now started on today, yesterday or (across midnight) the day before.
    candidates = [shift_window(s, today - timedelta(days=back), zone) for s in shifts for back in range(3)]
    return max((w for w in candidates if w.end <= now), key=lambda w: w.end)


def plant_day(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC window of plant date ``day``: local midnight to the next local midnight (23 or 25 hours on a DST
    change)."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def plant_buckets(bucket: str, since: datetime, until: datetime, zone: ZoneInfo,
                  calendar: Sequence[Shift] = ()) -> list[tuple[datetime, datetime]]:
    """The plant days (``"day"``) or shifts of ``calendar`` (``"shift"``) that overlap ``[since, until)``, oldest first,
    as UTC windows cut to ``[since, until)``: the first and last may be partial.

    Raises:
        ValueError: an unknown bucket, a naive bound, or shifts asked for with an empty calendar.
    """
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware datetime")
    if bucket not in ("day", "shift"):
        raise ValueError(f"unknown plant bucket {bucket!r}; allowed: 'day', 'shift'")
    if bucket == "shift" and not calendar:
        raise ValueError("the shift calendar has no shifts")
    first, last = since.astimezone(zone).date(), until.astimezone(zone).date()
    # A shift that covers ``since`` may have started the day before (across midnight).
    days = [first - timedelta(days=1) + timedelta(days=k) for k in range((last - first).days + 2)]
    if bucket == "day":
        windows = [plant_day(d, zone) for d in days]
    else:
        windows = sorted((w.start, w.end) for w in (shift_window(s, d, zone) for d in days for s in calendar))
    return [(max(start, since), min(end, until)) for start, end in windows if start < until and end > since]


@dataclass(frozen=True)
class ShiftReport:
    """What a shift produced.

    Attributes:
        window: the shift.
        total, ok, review, ng, errors: inspections and decisions over the shift.
        stations: one dict per line and station: ``line``, ``station``, ``total``, ``ok``, ``review``, ``ng``,
            ``errors``, ``rate`` (NG / decided), worst rate first.
        top_classes: ``(defect class, NG count)``, most frequent first (at most ``TOP_CLASSES``).
    """

    window: ShiftWindow
    total: int
    ok: int
    review: int
    ng: int
    errors: int
    stations: tuple[dict[str, Any], ...]
    top_classes: tuple[tuple[str, int], ...]

    @property
    def defect_rate(self) -> float:
        """NG share of decided parts (0.0 when nothing was decided)."""
        decided = self.total - self.errors
        return self.ng / decided if decided else 0.0

    @property
    def worst_station(self) -> dict[str, Any] | None:
        """The station with the highest defect rate, or ``None`` for an empty shift."""
        return self.stations[0] if self.stations else None


def shift_report(db: Database, window: ShiftWindow) -> ShiftReport:
    """The report of one shift, from the hourly rollups (raw rows only for partial hours)."""
    totals = queries.summary(db, since=window.start, until=window.end)
    stations = dashboard_queries.station_comparison(db, since=window.start, until=window.end)
    classes = tuple(queries.defect_class_counts(db, since=window.start, until=window.end)[:TOP_CLASSES])
    return ShiftReport(window=window, total=totals.total, ok=totals.ok, review=totals.review, ng=totals.ng,
                       errors=totals.errors, stations=tuple(stations), top_classes=classes)


def report_csv(report: ShiftReport) -> bytes:
    """The report as CSV: a header block, one row per line and station, then the top defect classes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    window = report.window
    writer.writerow(["shift", window.shift.name, "date", window.day.isoformat(), "start_utc",
                     window.start.isoformat(), "end_utc", window.end.isoformat()])
    writer.writerow(["line", "station", "parts", "ok", "review", "ng", "errors", "defect_rate"])
    for row in report.stations:
        writer.writerow([row["line"], row["station"], row["total"], row["ok"], row["review"], row["ng"],
                         row["errors"], f"{row['rate']:.4f}"])
    writer.writerow(["all", "all", report.total, report.ok, report.review, report.ng, report.errors,
                     f"{report.defect_rate:.4f}"])
    writer.writerow([])
    writer.writerow(["defect_class", "ng"])
    writer.writerows(report.top_classes)
    return buffer.getvalue().encode("utf-8")


def report_lines(report: ShiftReport, zone: ZoneInfo) -> list[str]:
    """The report as fixed-width text lines (the PDF body)."""
    window = report.window
    start, end = window.start.astimezone(zone), window.end.astimezone(zone)
    lines = [
        f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} ({zone.key})",
        "",
        f"Parts {report.total:,}   OK {report.ok:,}   REVIEW {report.review:,}   NG {report.ng:,}   "
        f"errors {report.errors:,}   defect rate {report.defect_rate * 100:.2f} %",
    ]
    worst = report.worst_station
    if worst is not None:
        lines.append(f"Worst station: {worst['station']} ({worst['line']}) at {worst['rate'] * 100:.2f} %")
    lines += ["", f"{'Line':<14}{'Station':<16}{'Parts':>9}{'OK':>9}{'REVIEW':>8}{'NG':>7}{'Rate':>9}"]
    for row in report.stations:
        lines.append(f"{row['line'][:13]:<14}{row['station'][:15]:<16}{row['total']:>9,}{row['ok']:>9,}"
                     f"{row['review']:>8,}{row['ng']:>7,}{row['rate'] * 100:>8.2f}%")
    lines += ["", "Top defect classes", *(f"  {name:<24}{count:>8,}" for name, count in report.top_classes)]
    if not report.top_classes:
        lines.append("  (no NG parts)")
    return lines


def report_pdf(report: ShiftReport, zone: ZoneInfo) -> bytes:
    """The report as a one-or-more page PDF."""
    return text_pdf(report.window.title, report_lines(report, zone))


def recent_shifts(calendar: Sequence[Shift], zone: ZoneInfo, now: datetime, span: timedelta) -> list[ShiftWindow]:
    """The shifts that started at or before ``now`` (aware) and ended after ``now - span``, oldest first (the
    running one last)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now {now.isoformat()!r} is naive; pass a timezone-aware datetime")
    today = now.astimezone(zone).date()
    back = span.days + 2  # a night shift that ended within the span may have started two days before
    windows = [shift_window(s, today - timedelta(days=k), zone) for s in calendar for k in range(back + 1)]
    return sorted((w for w in windows if w.start <= now and w.end > now - span), key=lambda w: w.start)
