"""``storage.dashboard_queries`` against real databases (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from inspect_app.records import Decision, Review
from inspect_app.storage import Database, Repository, dashboard_queries

MOMENT = datetime(2024, 3, 10, 8, 0, tzinfo=UTC)


def _seed(repo: Repository, factory: Any) -> list:
    rows = [
        factory(0, station="s1", decision=Decision.OK, score=0.05, latency_ms=10.0),
        factory(1, station="s1", decision=Decision.NG, score=0.95, latency_ms=20.0),
        factory(2, station="s2", decision=Decision.NG, score=0.85, latency_ms=30.0),
        factory(3, station="s2", decision=Decision.NG, score=0.75, latency_ms=40.0),
        factory(4, station="s2", decision=Decision.OK, score=0.15, latency_ms=None),
        factory(5, station="s1", decision=Decision.ERROR, score=None, content_hash=None, latency_ms=None),
        factory(6, station="s1", decision=Decision.OK, score=0.25, latency_ms=50.0),
    ]
    assert repo.add_inspections(rows) == len(rows)
    return rows


def test_station_comparison_worst_first(db: Database, repo: Repository, inspection_factory: Any) -> None:
    _seed(repo, inspection_factory)
    rows = dashboard_queries.station_comparison(db)
    assert [(r["station"], r["total"], r["decided"], r["ng"]) for r in rows] == [("s2", 3, 3, 2), ("s1", 4, 3, 1)]
    assert rows[0]["rate"] == pytest.approx(2 / 3)


def test_station_comparison_per_line_and_station_over_whole_and_partial_hours(
    db: Database, repo: Repository, inspection_factory: Any
) -> None:
    # Spread over three hours so that a window from the middle of the first hour reads raw rows there and rollups
    # for the rest; "s1" exists on both lines and must come out once per line.
    plan = [("line-a", "s1", Decision.NG), ("line-a", "s1", Decision.OK), ("line-a", "s2", Decision.OK),
            ("line-b", "s1", Decision.NG), ("line-b", "s1", Decision.NG), ("line-b", "s3", Decision.OK),
            ("line-b", "s3", Decision.ERROR)]
    rows = [inspection_factory(i, line=line, station=station, decision=decision,
                               created_at=inspection_factory().created_at + timedelta(minutes=25 * i))
            for i, (line, station, decision) in enumerate(plan)]
    repo.add_inspections(rows)
    everything = dashboard_queries.station_comparison(db)
    assert [(r["line"], r["station"], r["total"], r["decided"], r["ng"]) for r in everything] == [
        ("line-b", "s1", 2, 2, 2), ("line-a", "s1", 2, 2, 1), ("line-a", "s2", 1, 1, 0), ("line-b", "s3", 2, 1, 0),
    ]
    assert [(r["ok"], r["review"], r["errors"]) for r in everything] == [(0, 0, 0), (1, 0, 0), (1, 0, 0), (1, 0, 1)]
    since = rows[1].created_at  # 25 minutes into the first hour: row 0 is left out
    windowed = dashboard_queries.station_comparison(db, since=since, line="line-a")
    assert [(r["line"], r["station"], r["total"], r["ng"]) for r in windowed] == [("line-a", "s1", 1, 0),
                                                                                   ("line-a", "s2", 1, 0)]


def test_live_figures_over_a_window(db: Database, repo: Repository, inspection_factory: Any) -> None:
    rows = _seed(repo, inspection_factory)
    now = rows[-1].created_at
    figures = dashboard_queries.live_figures(db, window=timedelta(seconds=4), now=now)  # rows 2..6
    assert figures["frames"] == 5 and figures["fps"] == pytest.approx(5 / 4)
    assert figures["errors"] == 1 and figures["ng"] == 2
    assert figures["latency_mean_ms"] == pytest.approx(40.0) and figures["latency_p95_ms"] == 50.0
    assert figures["last_at"] == now
    assert dashboard_queries.live_figures(db, station="s2", now=now, window=timedelta(seconds=1))["frames"] == 0
    with pytest.raises(ValueError, match="must be positive"):
        dashboard_queries.live_figures(db, window=timedelta(0))


def test_audit_sample_is_seeded_ok_and_unreviewed(db: Database, repo: Repository, inspection_factory: Any) -> None:
    _seed(repo, inspection_factory)
    repo.add_review(Review(inspection_id=1, verdict=Decision.OK, reviewer="op"))
    sample = dashboard_queries.audit_sample(db, 10, seed=3)
    assert sorted(i.inspection_id for i in sample) == [5, 7]  # OK rows 1, 5, 7 minus the reviewed 1
    assert all(i.inspection.decision == Decision.OK for i in sample)
    assert [i.inspection_id for i in dashboard_queries.audit_sample(db, 1, seed=3)] == [
        i.inspection_id for i in dashboard_queries.audit_sample(db, 1, seed=3)]
    with pytest.raises(ValueError, match="sample size 0"):
        dashboard_queries.audit_sample(db, 0)


def test_reviewed_labels_and_recent(db: Database, repo: Repository, inspection_factory: Any) -> None:
    rows = _seed(repo, inspection_factory)
    assert dashboard_queries.reviewed_labels(db) == []
    repo.add_review(Review(inspection_id=2, verdict=Decision.OK, reviewer="op"))
    repo.add_review(Review(inspection_id=1, verdict=Decision.NG, reviewer="op", defect_class="stain"))
    assert dashboard_queries.reviewed_labels(db) == [(rows[1].image_path, "good"), (rows[0].image_path, "stain")]
    recent = dashboard_queries.recent_reviews(db)
    # Both relabel the model: inspection 2 was NG and judged OK; inspection 1 was NG scratch and judged NG stain.
    assert [(r["inspection_id"], r["verdict"], r["changed"]) for r in recent] == [(1, "NG", True), (2, "OK", True)]
