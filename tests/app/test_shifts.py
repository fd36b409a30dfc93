"""Shift windows in the plant zone (across midnight and DST), the last completed shift, and the shift report with
its CSV and PDF, over a real SQLite file."""

from __future__ import annotations

import csv
import io
import itertools
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inspect_app.app import shifts
from inspect_app.app.pdf import text_pdf
from inspect_app.config.plant import DEFAULT_SHIFTS, Shift
from inspect_app.records import Decision, Inspection
from inspect_app.storage import Database, Repository

BERLIN = ZoneInfo("Europe/Berlin")
A, B, C = DEFAULT_SHIFTS


def test_night_shift_runs_across_midnight() -> None:
    window = shifts.shift_window(C, date(2026, 12, 6), BERLIN)
    assert window.start == datetime(2026, 12, 6, 21, tzinfo=UTC) and window.end == datetime(2026, 12, 7, 5, tzinfo=UTC)
    assert window.title == "Shift C 2026-12-06 (22:00–06:00)"


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 28), 7), (date(2026, 10, 24), 9), (date(2026, 7, 1), 8)])
def test_night_shift_across_dst_changes_lasts_7_or_9_hours(day: date, hours: int) -> None:
    window = shifts.shift_window(C, day, BERLIN)
    assert window.end - window.start == timedelta(hours=hours)
    assert window.start.astimezone(BERLIN).time() == time(22) and window.end.astimezone(BERLIN).time() == time(6)


def test_start_in_the_spring_forward_gap_uses_the_offset_before() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29; read with +01:00 it is 01:30 UTC (03:30 summer time).
    early = Shift(name="E", start=time(2, 30), end=time(10))
    window = shifts.shift_window(early, date(2026, 3, 29), BERLIN)
    assert window.start == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert window.end == datetime(2026, 3, 29, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 12, 7, 10, 0, tzinfo=UTC), ("C", date(2026, 12, 6))),  # 11:00 Berlin: night shift done
        (datetime(2026, 12, 7, 5, 0, tzinfo=UTC), ("C", date(2026, 12, 6))),  # 06:00 Berlin exactly: C just ended
        (datetime(2026, 12, 7, 4, 59, tzinfo=UTC), ("B", date(2026, 12, 6))),
        (datetime(2026, 12, 7, 13, 0, tzinfo=UTC), ("A", date(2026, 12, 7))),
    ],
)
def test_last_completed_shift(now: datetime, expected: tuple[str, date]) -> None:
    window = shifts.last_completed_shift(DEFAULT_SHIFTS, BERLIN, now)
    assert (window.shift.name, window.day) == expected and window.end <= now


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown shift 'D'; the calendar has \['A', 'B', 'C'\]"):
        shifts.find_shift(DEFAULT_SHIFTS, "D")
    with pytest.raises(ValueError, match="naive"):
        shifts.last_completed_shift(DEFAULT_SHIFTS, BERLIN, datetime(2026, 12, 7, 10))


def _rows(start: datetime) -> list[Inspection]:
    """Parts inside the night shift (and two outside it) on two lines; minutes that are not whole hours on purpose."""
    plan = [("press-1", "line-A", Decision.OK, None, 5), ("press-1", "line-A", Decision.NG, "scratch", 65),
            ("press-1", "line-A", Decision.REVIEW, None, 130), ("paint-1", "line-B", Decision.NG, "dent", 200),
            ("paint-1", "line-B", Decision.NG, "scratch", 300), ("paint-1", "line-B", Decision.OK, None, 470),
            ("paint-1", "line-B", Decision.ERROR, None, 475),
            ("press-1", "line-A", Decision.NG, "crack", -1), ("paint-1", "line-B", Decision.NG, "crack", 480)]
    return [
        Inspection(station=station, line=line, source="/in", image_path=f"/in/{i}.png", decision=decision,
                   created_at=start + timedelta(minutes=minute), content_hash=None if decision == Decision.ERROR
                   else f"h{i}", model_version="m1", defect_class=defect,
                   score=None if decision == Decision.ERROR else 0.5,
                   error="bad" if decision == Decision.ERROR else None)
        for i, (station, line, decision, defect, minute) in enumerate(plan)
    ]


def test_shift_report_counts_only_the_shift(tmp_path: Path) -> None:
    window = shifts.shift_window(C, date(2026, 12, 6), BERLIN)
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    with Database.open(url) as db:
        Repository(db).add_inspections(_rows(window.start))
        report = shifts.shift_report(db, window)
    assert (report.total, report.ok, report.review, report.ng, report.errors) == (7, 2, 1, 3, 1)
    assert report.defect_rate == pytest.approx(3 / 6)
    assert [(r["station"], r["ok"], r["review"], r["ng"], r["errors"]) for r in report.stations] == [
        ("paint-1", 1, 0, 2, 1), ("press-1", 1, 1, 1, 0)]
    assert report.worst_station["station"] == "paint-1"
    assert report.top_classes == (("scratch", 2), ("dent", 1))
    rows = list(csv.reader(io.StringIO(shifts.report_csv(report).decode())))
    assert rows[0][:4] == ["shift", "C", "date", "2026-12-06"]
    assert rows[2] == ["line-B", "paint-1", "4", "1", "0", "2", "1", "0.6667"]
    assert ["all", "all", "7", "2", "1", "3", "1", "0.5000"] in rows and ["scratch", "2"] in rows
    lines = shifts.report_lines(report, BERLIN)
    assert lines[0] == "2026-12-06 22:00 to 2026-12-07 06:00 (Europe/Berlin)"
    assert any(line.startswith("Worst station: paint-1 (line-B) at 66.67 %") for line in lines)
    assert shifts.report_pdf(report, BERLIN).startswith(b"%PDF-1.4")


def test_pdf_is_well_formed_across_pages() -> None:
    lines = [f"row {i} (with parentheses) and a backslash \\ – dash" for i in range(150)]
    data = text_pdf("Shift A 2026-12-07 (06:00–14:00)", lines)
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
    # The cross-reference table points at every object's first byte.
    xref_at = int(re.search(rb"startxref\n(\d+)\n", data).group(1))
    assert data[xref_at:].startswith(b"xref")
    offsets = [int(m) for m in re.findall(rb"(\d{10}) 00000 n ", data)]
    for number, offset in enumerate(offsets, start=1):
        assert data[offset:].startswith(b"%d 0 obj" % number)
    assert b"/Count 3" in data  # 150 lines at 12 pt on A4 need three pages
    assert b"\\(with parentheses\\)" in data and b"\\\\" in data and b"\x96" in data  # en dash in cp1252


# --- the Overview's plant buckets -----------------------------------------------------------------------------------

CHICAGO = ZoneInfo("America/Chicago")


def test_plant_days_start_at_local_midnight_across_dst() -> None:
    # 2026-03-08 (spring forward) has 23 hours in Chicago, 2026-11-01 (fall back) 25.
    for day, hours in ((date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 12, 7), 24)):
        start, end = shifts.plant_day(day, CHICAGO)
        assert start.astimezone(CHICAGO).time() == time(0) and end.astimezone(CHICAGO).time() == time(0)
        assert end - start == timedelta(hours=hours)
    since = datetime(2026, 3, 7, 12, tzinfo=UTC)
    windows = shifts.plant_buckets("day", since, datetime(2026, 3, 10, tzinfo=UTC), CHICAGO)
    assert windows[0] == (since, datetime(2026, 3, 8, 6, tzinfo=UTC))  # cut at since, ends at local midnight (CST)
    assert windows[1] == (datetime(2026, 3, 8, 6, tzinfo=UTC), datetime(2026, 3, 9, 5, tzinfo=UTC))  # 23 h
    assert windows[-1][1] == datetime(2026, 3, 10, tzinfo=UTC)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))


def test_plant_shifts_follow_the_calendar_and_cut_the_period() -> None:
    since, until = datetime(2026, 12, 7, 8, tzinfo=UTC), datetime(2026, 12, 8, 8, tzinfo=UTC)
    windows = shifts.plant_buckets("shift", since, until, BERLIN, DEFAULT_SHIFTS)
    # 09:00 Berlin is in shift A (06-14 = 05-13 UTC); then B, C, and A of the next day up to 09:00.
    assert windows == [
        (since, datetime(2026, 12, 7, 13, tzinfo=UTC)),
        (datetime(2026, 12, 7, 13, tzinfo=UTC), datetime(2026, 12, 7, 21, tzinfo=UTC)),
        (datetime(2026, 12, 7, 21, tzinfo=UTC), datetime(2026, 12, 8, 5, tzinfo=UTC)),
        (datetime(2026, 12, 8, 5, tzinfo=UTC), until),
    ]
    two = (Shift(name="day", start=time(7), end=time(15)), Shift(name="late", start=time(15), end=time(23)))
    gapped = shifts.plant_buckets("shift", since, until, BERLIN, two)
    # day (09:00-15:00 Berlin, cut at since), late, then day again up to until; 23:00-07:00 is no shift.
    assert [(a.astimezone(BERLIN).hour, b.astimezone(BERLIN).hour) for a, b in gapped] == [(9, 15), (15, 23), (7, 9)]


def test_plant_buckets_name_bad_input() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    with pytest.raises(ValueError, match="'week'"):
        shifts.plant_buckets("week", now - timedelta(days=1), now, BERLIN)
    with pytest.raises(ValueError, match="naive"):
        shifts.plant_buckets("day", datetime(2026, 12, 6), now, BERLIN)
    with pytest.raises(ValueError, match="no shifts"):
        shifts.plant_buckets("shift", now - timedelta(days=1), now, BERLIN, ())


def test_recent_shifts_of_the_last_day_end_with_the_running_one() -> None:
    now = datetime(2026, 12, 7, 10, tzinfo=UTC)  # 11:00 Berlin, in shift A
    recent = shifts.recent_shifts(DEFAULT_SHIFTS, BERLIN, now, timedelta(hours=24))
    assert [(w.shift.name, w.day) for w in recent] == [
        ("A", date(2026, 12, 6)), ("B", date(2026, 12, 6)), ("C", date(2026, 12, 6)), ("A", date(2026, 12, 7))]
    assert recent[-1].start <= now < recent[-1].end
    with pytest.raises(ValueError, match="naive"):
        shifts.recent_shifts(DEFAULT_SHIFTS, BERLIN, datetime(2026, 12, 7), timedelta(hours=24))
