"""Dashboard aggregations against a seeded set whose expected numbers are computed here, in plain Python."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from inspect_app.records import Decision, Inspection, InspectionSummary
from inspect_app.storage import Database, Repository, queries
from inspect_app.storage.queries import UNCLASSIFIED

START = datetime(2024, 5, 1, 21, 0, tzinfo=UTC)  # spans UTC midnights, to catch buckets taken in a local zone
STATIONS = ("press-1", "press-2", "weld-1")
LINES = ("line-a", "line-b")
CLASSES = ("scratch", "dent", "stain", None)


def _seed_rows() -> list[Inspection]:
    rng = random.Random(1234)
    rows = []
    for i in range(400):
        decision = rng.choices(list(Decision), weights=[60, 10, 25, 5])[0]
        rows.append(
            Inspection(
                station=rng.choice(STATIONS),
                line=rng.choice(LINES),
                source="/data/in",
                image_path=f"/data/in/{i}.png",
                decision=decision,
                created_at=START + timedelta(minutes=rng.randrange(0, 3 * 24 * 60), seconds=rng.randrange(60)),
                content_hash=None if decision == Decision.ERROR else f"hash-{i}",
                model_version="m1",
                defect_class=rng.choice(CLASSES) if decision == Decision.NG else None,
                score=rng.random(),
            )
        )
    return rows


SEED = _seed_rows()


@pytest.fixture
def seeded(db: Database) -> Database:
    """``db`` holding ``SEED``."""
    assert Repository(db).add_inspections(SEED) == len(SEED)
    return db


def _select(since: datetime | None = None, until: datetime | None = None, **equal: str) -> list[Inspection]:
    return [
        r
        for r in SEED
        if (since is None or r.created_at >= since)
        and (until is None or r.created_at < until)
        and all(getattr(r, key) == value for key, value in equal.items())
    ]


def _expected_summary(rows: list[Inspection]) -> InspectionSummary:
    counts = Counter(r.decision for r in rows)
    per_class = Counter(r.defect_class or UNCLASSIFIED for r in rows if r.decision == Decision.NG)
    return InspectionSummary(
        total=len(rows),
        ok=counts[Decision.OK],
        review=counts[Decision.REVIEW],
        ng=counts[Decision.NG],
        errors=counts[Decision.ERROR],
        per_class=dict(per_class),
    )


FILTERS: list[dict[str, Any]] = [
    {},
    {"station": "press-2"},
    {"line": "line-b"},
    {"station": "weld-1", "line": "line-a"},
    {"since": START + timedelta(hours=30)},
    {"since": START + timedelta(hours=5), "until": START + timedelta(hours=29)},
    {"station": "press-1", "until": START + timedelta(days=1)},
]


@pytest.mark.parametrize("filters", FILTERS)
def test_summary_matches_python_counts(seeded: Database, filters: dict[str, Any]) -> None:
    assert queries.summary(seeded, **filters) == _expected_summary(_select(**filters))


def test_summary_rates(seeded: Database) -> None:
    result = queries.summary(seeded)
    expected = _expected_summary(SEED)
    assert result.defect_rate == pytest.approx(expected.ng / (expected.ok + expected.review + expected.ng))
    assert result.yield_rate == pytest.approx(expected.ok / (expected.ok + expected.review + expected.ng))


def test_summary_of_empty_database_is_all_zero(db: Database) -> None:
    assert queries.summary(db) == InspectionSummary(total=0, ok=0, review=0, ng=0, errors=0, per_class={})
    assert queries.defect_rate_over_time(db) == []
    assert queries.defect_class_counts(db) == []
    assert queries.stations(db) == []
    assert queries.latest_ng(db) == []


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


@pytest.mark.parametrize("bucket", ["hour", "day"])
@pytest.mark.parametrize("filters", [{}, {"station": "press-1"}, {"since": START + timedelta(hours=20)}])
def test_defect_rate_over_time_matches_python_buckets(seeded: Database, bucket: str, filters: dict[str, Any]) -> None:
    rows = _select(**filters)
    grouped: dict[datetime, list[Inspection]] = {}
    for row in rows:
        grouped.setdefault(_floor(row.created_at, bucket), []).append(row)
    expected = []
    for start in sorted(grouped):
        members = grouped[start]
        decided = sum(r.decision != Decision.ERROR for r in members)
        ng = sum(r.decision == Decision.NG for r in members)
        expected.append(
            {
                "bucket": start,
                "total": len(members),
                "decided": decided,
                "ng": ng,
                "rate": ng / decided if decided else 0.0,
            }
        )

    result = queries.defect_rate_over_time(seeded, bucket=bucket, **filters)

    assert result == expected
    assert all(item["bucket"].tzinfo is not None and item["bucket"].utcoffset() == timedelta(0) for item in result)
    if bucket == "day" and not filters:
        assert len(result) == 4  # 21:00 on day 1 + 72 h touches four UTC days


def test_unknown_bucket_names_value_and_allowed(db: Database) -> None:
    with pytest.raises(ValueError, match=r"'week'.*'hour', 'shift', 'day'"):
        queries.defect_rate_over_time(db, bucket="week")


def test_naive_bounds_are_rejected(db: Database) -> None:
    with pytest.raises(ValueError, match="since"):
        queries.summary(db, since=datetime(2024, 1, 1))  # naive on purpose


def test_defect_class_counts_descending(seeded: Database) -> None:
    counts = Counter(r.defect_class or UNCLASSIFIED for r in SEED if r.decision == Decision.NG)
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    result = queries.defect_class_counts(seeded)
    assert result == expected
    assert [n for _, n in result] == sorted((n for _, n in result), reverse=True)


def test_defect_class_counts_with_filter(seeded: Database) -> None:
    rows = _select(station="weld-1")
    counts = Counter(r.defect_class or UNCLASSIFIED for r in rows if r.decision == Decision.NG)
    assert dict(queries.defect_class_counts(seeded, station="weld-1")) == dict(counts)


def test_stations_sorted_and_distinct(seeded: Database) -> None:
    assert queries.stations(seeded) == sorted(STATIONS)


def test_latest_ng(seeded: Database) -> None:
    expected = sorted((r for r in SEED if r.decision == Decision.NG), key=lambda r: r.created_at, reverse=True)
    assert queries.latest_ng(seeded, limit=5) == expected[:5]
    press = [r for r in expected if r.station == "press-2"]
    assert queries.latest_ng(seeded, limit=3, station="press-2") == press[:3]


# --- rollups: exact for windows that start and end inside an hour --------------------------------------------------

ODD_WINDOWS: list[dict[str, Any]] = [
    {"since": START + timedelta(hours=5, minutes=17, seconds=3), "until": START + timedelta(hours=29, minutes=41)},
    {"since": START + timedelta(hours=7, minutes=10), "until": START + timedelta(hours=7, minutes=50)},  # one hour
    {"since": START + timedelta(hours=7, minutes=50), "until": START + timedelta(hours=8, minutes=10)},  # two pieces
    {"since": START + timedelta(minutes=59, seconds=59), "station": "press-1"},
    {"until": START + timedelta(days=2, minutes=1), "line": "line-a"},
    {"since": START + timedelta(hours=9), "until": START + timedelta(hours=9)},  # empty
]


@pytest.mark.parametrize("filters", ODD_WINDOWS)
def test_summary_is_exact_for_windows_inside_hours(seeded: Database, filters: dict[str, Any]) -> None:
    assert queries.summary(seeded, **filters) == _expected_summary(_select(**filters))


def _bucket_start(moment: datetime, bucket: str) -> datetime:
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if bucket == "hour":
        return hour
    if bucket == "day":
        return hour.replace(hour=0)
    shift_start = hour.replace(hour=queries.SHIFT_START_HOUR)
    while shift_start > hour:
        shift_start -= timedelta(hours=queries.SHIFT_HOURS)
    while shift_start + timedelta(hours=queries.SHIFT_HOURS) <= hour:
        shift_start += timedelta(hours=queries.SHIFT_HOURS)
    return shift_start


@pytest.mark.parametrize("bucket", ["hour", "shift", "day"])
@pytest.mark.parametrize("by", [None, "station", "line"])
def test_defect_rate_per_bucket_and_group_matches_python(seeded: Database, bucket: str, by: str | None) -> None:
    window = ODD_WINDOWS[0]
    grouped: dict[tuple, list[Inspection]] = {}
    for row in _select(**window):
        grouped.setdefault((_bucket_start(row.created_at, bucket), getattr(row, by) if by else None), []).append(row)
    expected = []
    for (start, key) in sorted(grouped, key=lambda k: (k[0], k[1] or "")):
        members = grouped[(start, key)]
        decided = sum(r.decision != Decision.ERROR for r in members)
        ng = sum(r.decision == Decision.NG for r in members)
        item: dict[str, Any] = {"bucket": start}
        if by:
            item[by] = key
        item.update({"total": len(members), "decided": decided, "ng": ng, "rate": ng / decided if decided else 0.0})
        expected.append(item)
    assert queries.defect_rate_over_time(seeded, bucket=bucket, by=by, **window) == expected


def test_shift_buckets_start_at_the_shift_hours(seeded: Database) -> None:
    starts = {row["bucket"].hour for row in queries.defect_rate_over_time(seeded, bucket="shift")}
    assert starts == {(queries.SHIFT_START_HOUR + k * queries.SHIFT_HOURS) % 24 for k in range(3)}


def test_unknown_breakdown_names_value_and_allowed(db: Database) -> None:
    with pytest.raises(ValueError, match=r"'shift_lead'.*'station', 'line'"):
        queries.defect_rate_over_time(db, by="shift_lead")


def test_pareto_shares_add_up(seeded: Database) -> None:
    result = queries.pareto(seeded, **ODD_WINDOWS[0])
    counts = Counter(r.defect_class or UNCLASSIFIED for r in _select(**ODD_WINDOWS[0]) if r.decision == Decision.NG)
    assert [(item["defect_class"], item["ng"]) for item in result] == sorted(
        counts.items(), key=lambda item: (-item[1], item[0])
    )
    assert result[-1]["cumulative"] == pytest.approx(1.0)
    assert sum(item["share"] for item in result) == pytest.approx(1.0)


def test_p_chart_centre_and_three_sigma_limits(seeded: Database) -> None:
    chart = queries.p_chart(seeded, bucket="day")
    decided = [r for r in SEED if r.decision != Decision.ERROR]
    p_bar = sum(r.decision == Decision.NG for r in decided) / len(decided)
    assert chart["center"] == pytest.approx(p_bar)
    per_day = Counter(_bucket_start(r.created_at, "day") for r in decided)
    assert [p["bucket"] for p in chart["points"]] == sorted(per_day)
    for point in chart["points"]:
        n = per_day[point["bucket"]]
        sigma = (p_bar * (1 - p_bar) / n) ** 0.5
        assert point["n"] == n
        assert point["ucl"] == pytest.approx(min(1.0, p_bar + 3 * sigma))
        assert point["lcl"] == pytest.approx(max(0.0, p_bar - 3 * sigma))
        assert point["out_of_control"] == (not point["lcl"] <= point["p"] <= point["ucl"])


def test_score_distribution_per_day_matches_python(seeded: Database) -> None:
    window = ODD_WINDOWS[0]
    grouped: dict[datetime, list[float]] = {}
    for row in _select(**window):
        if row.score is not None:
            grouped.setdefault(_bucket_start(row.created_at, "day"), []).append(row.score)
    result = queries.score_distribution(seeded, bucket="day", **window)
    assert [item["bucket"] for item in result] == sorted(grouped)
    for item in result:
        scores = grouped[item["bucket"]]
        assert item["n"] == len(scores)
        assert item["mean"] == pytest.approx(sum(scores) / len(scores))
        assert item["bins"] == [sum(min(int(s * 10), 9) == k for s in scores) for k in range(10)]


def test_lines_are_registered(seeded: Database) -> None:
    assert queries.lines(seeded) == sorted(LINES)


def test_rollups_ignore_duplicates_and_match_raw_counts(db: Database) -> None:
    repo = Repository(db, batch_size=37)
    assert repo.add_inspections(SEED[:250]) == 250
    assert repo.add_inspections(SEED) == len(SEED) - 250 + sum(r.content_hash is None for r in SEED[:250])
    errors_twice = [r for r in SEED[:250] if r.content_hash is None]
    assert queries.summary(db) == _expected_summary(SEED + errors_twice)


# --- plant buckets: windows whose edges are not UTC days ---------------------------------------------------------


def _windows(start: datetime, step: timedelta, count: int) -> list[tuple[datetime, datetime]]:
    return [(start + k * step, start + (k + 1) * step) for k in range(count)]


@pytest.mark.parametrize(
    "windows",
    [
        # Whole-hour edges (Chicago midnights in May, 05:00 UTC), and half-hour edges (Kolkata, 18:30 UTC).
        _windows(datetime(2024, 5, 1, 5, tzinfo=UTC), timedelta(days=1), 4),
        _windows(datetime(2024, 5, 1, 18, 30, tzinfo=UTC), timedelta(hours=8), 8),
        # With a gap between windows and partial first / last windows.
        [(datetime(2024, 5, 1, 22, 17, tzinfo=UTC), datetime(2024, 5, 2, 6, tzinfo=UTC)),
         (datetime(2024, 5, 2, 14, tzinfo=UTC), datetime(2024, 5, 3, 9, 45, 30, tzinfo=UTC))],
    ],
)
def test_rates_in_windows_count_exactly_the_parts_inside(seeded: Database, windows: list) -> None:
    for filters in ({}, {"station": "press-1"}, {"line": "line-b"}):
        rows = queries.rates_in_windows(seeded, windows, **filters)
        assert [(r["bucket"], r["end"]) for r in rows] == windows
        for row, (start, end) in zip(rows, windows, strict=True):
            inside = _select(start, end, **filters)
            decided = [r for r in inside if r.decision is not Decision.ERROR]
            ng = sum(r.decision is Decision.NG for r in inside)
            assert (row["total"], row["decided"], row["ng"]) == (len(inside), len(decided), ng)
            assert row["rate"] == (ng / len(decided) if decided else 0.0)
    assert sum(r["total"] for r in queries.rates_in_windows(seeded, windows)) > 0


def test_rates_in_windows_reject_overlap_and_naive_bounds(db: Database) -> None:
    a = datetime(2024, 5, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="overlap"):
        queries.rates_in_windows(db, [(a, a + timedelta(hours=2)), (a + timedelta(hours=1), a + timedelta(hours=3))])
    with pytest.raises(ValueError, match="naive"):
        queries.rates_in_windows(db, [(a.replace(tzinfo=None), a + timedelta(hours=1))])
    assert queries.rates_in_windows(db, []) == []


def test_p_chart_of_windows_matches_the_utc_p_chart_on_utc_days(seeded: Database) -> None:
    days = _windows(datetime(2024, 5, 1, tzinfo=UTC), timedelta(days=1), 4)
    by_windows = queries.p_chart_of(queries.rates_in_windows(seeded, days))
    by_utc = queries.p_chart(seeded, bucket="day")
    assert by_windows["center"] == pytest.approx(by_utc["center"])
    assert [(p["bucket"], p["n"], p["ng"]) for p in by_windows["points"]] == [
        (p["bucket"], p["n"], p["ng"]) for p in by_utc["points"]]
    assert all(p["end"] - p["bucket"] == timedelta(days=1) for p in by_windows["points"])


def test_first_hour(seeded: Database, db_url: str) -> None:
    earliest = min(r.created_at for r in SEED)
    assert queries.first_hour(seeded) == earliest.replace(minute=0, second=0, microsecond=0)
