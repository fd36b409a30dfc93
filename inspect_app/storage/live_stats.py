"""Live pipeline figures for the dashboard: the JSON snapshots running pipelines write (``<home>/stats/*.json``).

Pipelines replace their file atomically every ``stats.interval_s``, so a reader never sees half a file; a file that
cannot be parsed is skipped with a warning rather than breaking the page.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def read_pipeline_stats(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Latest snapshot of every pipeline that wrote one into ``folder``, sorted by pipeline name.

    Returns an empty list when the folder does not exist.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    snapshots = []
    for path in sorted(root.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("skipping unreadable pipeline stats file %s: %s", path, exc)
            continue
        if isinstance(data, dict) and "frames" in data:
            snapshots.append(data)
    return sorted(snapshots, key=lambda s: str(s.get("name", "")))


def stats_rows(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat table row per pipeline: throughput, end-to-end latency percentiles, queue, drops, errors, gaps."""
    rows = []
    for snap in snapshots:
        e2e = snap.get("latency_ms", {}).get("end_to_end", {})
        rows.append({
            "Pipeline": snap.get("name", "?"),
            "State": "finished" if snap.get("final") else "running",
            "Updated (UTC)": snap.get("updated_at", ""),
            "Frames": snap.get("frames", 0),
            "Frames/s": snap.get("fps_recent", 0.0),
            "Latency p50 ms": e2e.get("p50"),
            "Latency p95 ms": e2e.get("p95"),
            "Latency p99 ms": e2e.get("p99"),
            "Queue": snap.get("queue_depth", 0),
            "Dropped": sum(snap.get("dropped", {}).values()),
            "Errors": snap.get("errors", 0),
            "Gaps": sum(snap.get("gaps", {}).values()),
        })
    return rows
