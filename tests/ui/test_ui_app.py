"""The Streamlit Overview page, driven headless by ``streamlit.testing`` against real SQLite files."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspect_app.records import Decision, Inspection, InspectionSummary
from inspect_app.storage import Database, Repository
from inspect_app.ui import app

APP_FILE = Path(app.__file__).resolve()
TIMEOUT_S = 60


@pytest.fixture(autouse=True)
def open_viewing(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read pages anonymously; sign-in being required by default is tested in tests/security."""
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "true")



def _recent_rows(now: datetime) -> list[Inspection]:
    plan = [
        ("cell-a", Decision.OK, None),
        ("cell-a", Decision.OK, None),
        ("cell-a", Decision.NG, "scratch"),
        ("cell-a", Decision.ERROR, None),
        ("cell-b", Decision.OK, None),
        ("cell-b", Decision.REVIEW, None),
        ("cell-b", Decision.NG, "dent"),
        ("cell-b", Decision.NG, "scratch"),
        ("cell-b", Decision.OK, None),
    ]
    return [
        Inspection(
            station=station,
            line="line-1",
            source="/in",
            image_path=f"/in/{i}.png",
            decision=decision,
            created_at=now - timedelta(minutes=20 * i + 1),
            content_hash=None if decision == Decision.ERROR else f"recent-{i}",
            model_version="m1",
            defect_class=defect,
            score=0.9 if decision == Decision.NG else 0.1,
        )
        for i, (station, decision, defect) in enumerate(plan)
    ]


def _old_rows(now: datetime) -> list[Inspection]:
    return [
        Inspection(
            station="cell-a",
            line="line-1",
            source="/in",
            image_path=f"/in/old-{i}.png",
            decision=Decision.NG,
            created_at=now - timedelta(days=3, hours=i),
            content_hash=f"old-{i}",
            model_version="m1",
            defect_class="stain",
        )
        for i in range(4)
    ]


def _expected(rows: list[Inspection]) -> dict[str, str]:
    counts = Counter(r.decision for r in rows)
    summary = InspectionSummary(
        total=len(rows),
        ok=counts[Decision.OK],
        review=counts[Decision.REVIEW],
        ng=counts[Decision.NG],
        errors=counts[Decision.ERROR],
        per_class={},
    )
    decided = summary.ok + summary.review + summary.ng
    return {
        "Inspected": str(len(rows)),
        "OK": str(summary.ok),
        "Review": str(summary.review),
        "NG": str(summary.ng),
        "Errors": str(summary.errors),
        "Yield %": f"{100 * summary.ok / decided:.1f} %",
        "Defect rate %": f"{100 * summary.ng / decided:.1f} %",
    }


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Inspection]]:
    """A SQLite file with recent and 3-day-old inspections, selected through ``INSPECT_DATABASE_URL``."""
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    now = datetime.now(UTC)
    recent, old = _recent_rows(now), _old_rows(now)
    with Database.open(url) as db:
        assert Repository(db).add_inspections(recent + old) == len(recent) + len(old)
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    return {"recent": recent, "old": old}


def _run(at: AppTest | None = None) -> AppTest:
    at = (at or AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_kpis_equal_seeded_counts_for_default_period(seeded: dict[str, list[Inspection]]) -> None:
    at = _run()
    assert at.title[0].value == app.PAGE_TITLE
    assert _metrics(at) == _expected(seeded["recent"])
    assert len(at.dataframe) == 2  # station comparison and latest NG table
    assert not at.main.info and not at.error


def test_all_time_includes_older_inspections(seeded: dict[str, list[Inspection]]) -> None:
    at = _run()
    at.sidebar.selectbox(key="period").select("All time")
    at = _run(at)
    assert _metrics(at) == _expected(seeded["recent"] + seeded["old"])


def test_station_filter(seeded: dict[str, list[Inspection]]) -> None:
    at = _run()
    assert at.sidebar.selectbox(key="station").options == [app.ALL_STATIONS, "cell-a", "cell-b"]
    at.sidebar.selectbox(key="station").select("cell-b")
    at = _run(at)
    assert _metrics(at) == _expected([r for r in seeded["recent"] if r.station == "cell-b"])


def test_empty_database_shows_how_to_fill_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{(tmp_path / 'empty.db').as_posix()}"
    Database.open(url).dispose()
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    at = _run()
    assert len(at.main.info) == 1 and "inspect-app inspect" in at.main.info[0].value
    assert not at.metric


def test_missing_database_file_shows_the_same_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DATABASE_URL", f"sqlite:///{(tmp_path / 'never' / 'made.db').as_posix()}")
    at = _run()
    assert "inspect-app inspect" in at.info[0].value


def test_home_setting_selects_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path / "home"))
    now = datetime.now(UTC)
    with Database.open(f"sqlite:///{(tmp_path / 'home' / 'inspect.db').as_posix()}") as db:
        Repository(db).add_inspections(_recent_rows(now))
    at = _run()
    assert _metrics(at)["Inspected"] == str(len(_recent_rows(now)))


def test_unreachable_database_shows_error_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DATABASE_URL", "postgresql+psycopg://viewer:hunter2-pw@127.0.0.1:1/plant")
    at = _run()
    assert len(at.error) == 1
    assert "hunter2-pw" not in at.error[0].value and "viewer:***@" in at.error[0].value


@pytest.mark.parametrize(
    ("period", "bucket", "span"),
    [
        ("Last hour", "hour", timedelta(hours=1)),
        ("Last 24 hours", "hour", timedelta(hours=24)),
        ("Last 7 days", "day", timedelta(days=7)),
        ("Last 30 days", "day", timedelta(days=30)),
    ],
)
def test_period_window(period: str, bucket: str, span: timedelta) -> None:
    now = datetime(2024, 5, 1, 12, 34, 56, 789, tzinfo=UTC)
    since, chosen = app.period_window(period, now)
    assert chosen == bucket
    assert since == datetime(2024, 5, 1, 12, 34, tzinfo=UTC) - span


def test_period_window_all_time_and_unknown() -> None:
    assert app.period_window("All time", datetime.now(UTC)) == (None, "day")
    with pytest.raises(ValueError, match="'Last decade'"):
        app.period_window("Last decade", datetime.now(UTC))


def test_kpi_values_with_nothing_decided() -> None:
    values = dict(app.kpi_values(InspectionSummary(total=2, ok=0, review=0, ng=0, errors=2, per_class={})))
    assert values["Errors"] == "2" and values["Yield %"] == "0.0 %" and values["Defect rate %"] == "0.0 %"
