"""A pipeline's live figures: frames/s, per-stage latency percentiles, queue depth, drops and gaps."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspect_app.data.source_base import Source
from inspect_app.engine.pipeline_queue import FrameQueue
from inspect_app.records import utcnow

STAGES = ("capture", "queue", "infer", "sinks", "end_to_end")


class PipelineStats:
    """Live figures: frames/s, per-stage latency percentiles, queue depth, drops, gaps.

    Args:
        name: pipeline name (written into the snapshot).
        window: latencies kept per stage (the most recent ones).
    """

    def __init__(self, name: str, window: int = 20_000) -> None:
        self.name = name
        self.started = time.perf_counter()
        self.latencies: dict[str, deque[float]] = {stage: deque(maxlen=window) for stage in STAGES}
        self.frames = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._last = (self.started, 0)

    def record(self, stage: str, milliseconds: float, count: int = 1) -> None:
        """Add ``count`` observations of one latency to a stage."""
        with self._lock:
            self.latencies[stage].extend([milliseconds] * count)

    def count(self, frames: int, errors: int) -> None:
        """Add handled frames and error rows."""
        with self._lock:
            self.frames += frames
            self.errors += errors

    def snapshot(self, queue: FrameQueue | None = None, sources: Sequence[Source] = ()) -> dict[str, Any]:
        """A JSON-ready dict of the figures so far (``fps_recent`` covers the time since the last snapshot)."""
        now = time.perf_counter()
        with self._lock:
            latency = {}
            for stage, values in self.latencies.items():
                if values:
                    p50, p95, p99 = (float(v) for v in np.percentile(np.fromiter(values, np.float64), [50, 95, 99]))
                    latency[stage] = {"p50": round(p50, 2), "p95": round(p95, 2), "p99": round(p99, 2)}
            elapsed = now - self.started
            last_t, last_frames = self._last
            recent = (self.frames - last_frames) / (now - last_t) if now > last_t else 0.0
            self._last = (now, self.frames)
            frames, errors = self.frames, self.errors
        return {
            "name": self.name,
            "updated_at": utcnow().isoformat(),
            "elapsed_s": round(elapsed, 2),
            "frames": frames,
            "errors": errors,
            "fps": round(frames / elapsed, 2) if elapsed > 0 else 0.0,
            "fps_recent": round(recent, 2),
            "queue_depth": queue.depth if queue is not None else 0,
            "dropped": dict(queue.dropped) if queue is not None else {},
            "skipped": sum(s.counters.skipped for s in sources),
            "gaps": {s.name: len(s.counters.gaps) for s in sources if s.counters.gaps},
            "latency_ms": latency,
        }


def format_stats(snapshot: dict[str, Any]) -> str:
    """One line of live figures for a terminal or a log."""
    parts = [f"{snapshot['frames']} frames", f"{snapshot['fps_recent']:.1f} fps", f"queue {snapshot['queue_depth']}"]
    dropped = sum(snapshot["dropped"].values())
    parts.append(f"dropped {dropped}")
    if snapshot["errors"]:
        parts.append(f"errors {snapshot['errors']}")
    if snapshot["gaps"]:
        parts.append(f"gaps {sum(snapshot['gaps'].values())}")
    for stage in ("infer", "end_to_end"):
        if stage in snapshot["latency_ms"]:
            q = snapshot["latency_ms"][stage]
            parts.append(f"{stage} p50/p95/p99 {q['p50']:.0f}/{q['p95']:.0f}/{q['p99']:.0f} ms")
    return " | ".join(parts)


def write_stats_file(path: Path, snapshot: dict[str, Any]) -> None:
    """Replace ``path`` atomically with the snapshot as JSON (the dashboard may read it at any moment)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(snapshot, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
