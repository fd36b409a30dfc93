"""Live pipeline figures in ``pipeline_status``: one row per pipeline and station, replaced at each report."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from inspect_app.storage import Database
from inspect_app.storage.live_stats import (
    PipelineStatusWriter,
    list_pipeline_status,
    pipeline_state,
    record_pipeline_status,
    stats_rows,
)
from inspect_app.storage.tables import PipelineStatusRow

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def _snapshot(frames: int, final: bool = False) -> dict:
    return {
        "name": "cam", "frames": frames, "errors": 2, "fps": 9.5, "fps_recent": 10.1, "queue_depth": 3,
        "dropped": {"camera:0": 4, "camera:1": 1}, "skipped": 0, "gaps": {"camera:0": 2}, "final": final,
        "elapsed_s": 60.0, "latency_ms": {"end_to_end": {"p50": 80.0, "p95": 120.0, "p99": 150.5}},
    }


def _rows(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(PipelineStatusRow))


def test_each_report_replaces_the_pipelines_row(db: Database) -> None:
    record_pipeline_status(db, "cam", "cell-b", "line-2", _snapshot(10), host="st-b", now=NOW)
    record_pipeline_status(db, "cam", "cell-a", "line-1", _snapshot(10), host="st-a", now=NOW)
    record_pipeline_status(db, "cam", "cell-a", "line-1", _snapshot(120), host="st-a", now=NOW + timedelta(seconds=10))
    assert _rows(db) == 2
    first, second = list_pipeline_status(db)
    assert (first.station, first.frames, first.dropped, first.gaps, first.latency_p99_ms) == (
        "cell-a", 120, 5, 2, 150.5)
    assert first.last_seen == NOW + timedelta(seconds=10) and first.started_at == NOW - timedelta(seconds=50)
    assert first.snapshot["dropped"] == {"camera:0": 4, "camera:1": 1}
    assert second.station == "cell-b" and [s.station for s in list_pipeline_status(db, station="cell-b")] == ["cell-b"]


def test_state_and_table_rows(db: Database) -> None:
    record_pipeline_status(db, "cam", "cell-a", "line-1", _snapshot(5), host="st-a", now=NOW)
    record_pipeline_status(db, "batch", "cell-a", "line-1", _snapshot(5, final=True), host="st-a", now=NOW)
    statuses = list_pipeline_status(db)
    quiet = timedelta(minutes=10)
    assert [pipeline_state(s, NOW + timedelta(minutes=5), quiet) for s in statuses] == ["finished", "running"]
    assert [pipeline_state(s, NOW + timedelta(minutes=11), quiet) for s in statuses] == ["finished", "silent"]
    rows = stats_rows(statuses, NOW, quiet)
    assert [(r["Pipeline"], r["Host"], r["Dropped"], r["Frames/s"]) for r in rows] == [
        ("batch", "st-a", 5, 10.1), ("cam", "st-a", 5, 10.1)]


def test_empty_names_are_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="station ''"):
        record_pipeline_status(db, "cam", "", "line-1", _snapshot(1))


def test_writer_keeps_the_newest_snapshot_and_waits_for_the_final_one(db: Database) -> None:
    shown = []
    writer = PipelineStatusWriter(db, "cam", "cell-a", "line-1", also=shown.append)
    for frames in range(1, 6):
        writer(_snapshot(frames))
    writer(_snapshot(99, final=True))
    (status,) = list_pipeline_status(db)
    assert (status.frames, status.final) == (99, True)
    assert [s["frames"] for s in shown] == [1, 2, 3, 4, 5, 99]


def test_writer_never_raises_into_the_pipeline(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    db = Database.open(f"sqlite:///{(tmp_path / 'gone.db').as_posix()}")
    db.dispose()
    (tmp_path / "gone.db").unlink()
    (tmp_path / "gone.db").mkdir()  # the file is now a folder: every write fails
    writer = PipelineStatusWriter(db, "cam", "cell-a", "line-1")
    writer(_snapshot(1))
    writer(_snapshot(2, final=True))
    assert any("live figures of pipeline 'cam' not recorded" in r.message for r in caplog.records)
    assert all(t.name != "status-cam" or t.daemon for t in threading.enumerate())
