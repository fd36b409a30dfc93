"""Pipeline live-figure files as the dashboard reads them."""

from __future__ import annotations

import json
from pathlib import Path

from inspect_app.storage.live_stats import read_pipeline_stats, stats_rows


def _snapshot(name: str, final: bool) -> dict:
    return {
        "name": name, "updated_at": "2026-01-01T00:00:00+00:00", "frames": 120, "errors": 2, "fps": 9.5,
        "fps_recent": 10.1, "queue_depth": 3, "dropped": {"camera:0": 4, "camera:1": 1}, "skipped": 0,
        "gaps": {"camera:0": 2}, "final": final,
        "latency_ms": {"end_to_end": {"p50": 80.0, "p95": 120.0, "p99": 150.5}},
    }


def test_reads_every_pipeline_sorted_and_skips_broken_files(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps(_snapshot("station-b", final=True)))
    (tmp_path / "a.json").write_text(json.dumps(_snapshot("station-a", final=False)))
    (tmp_path / "broken.json").write_text("{half a fi")
    (tmp_path / "other.json").write_text(json.dumps({"unrelated": True}))
    rows = stats_rows(read_pipeline_stats(tmp_path))
    assert [r["Pipeline"] for r in rows] == ["station-a", "station-b"]
    assert [r["State"] for r in rows] == ["running", "finished"]
    first = rows[0]
    assert (first["Dropped"], first["Gaps"], first["Latency p99 ms"], first["Frames/s"]) == (5, 2, 150.5, 10.1)


def test_missing_folder_gives_no_rows(tmp_path: Path) -> None:
    assert read_pipeline_stats(tmp_path / "nope") == []
