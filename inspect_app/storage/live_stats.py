"""Live pipeline figures in the database (``pipeline_status``): written by running pipelines, read by the Live page.

Each pipeline replaces its one row (per station) at every stats report, so a dashboard on any machine sees every
station. ``PipelineStatusWriter`` is the pipeline's ``on_stats`` callback: it writes from a thread of its own, so a
slow or unreachable database never holds up inspection, and only the latest snapshot is kept while it waits.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from inspect_app.errors import StorageError
from inspect_app.records import PipelineStatus, utcnow
from inspect_app.storage.db import Database
from inspect_app.storage.tables import PipelineStatusRow

logger = logging.getLogger(__name__)

# How long the final report may wait for the database before the process goes on ending.
FINAL_WRITE_TIMEOUT_S = 5.0

__all__ = ["PipelineStatusWriter", "list_pipeline_status", "record_pipeline_status", "stats_rows"]


def _status_values(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Table columns of one figures snapshot (``engine.pipeline.PipelineStats.snapshot`` plus ``final``)."""
    e2e = snapshot.get("latency_ms", {}).get("end_to_end", {})
    return {
        "final": bool(snapshot.get("final", False)),
        "frames": int(snapshot.get("frames", 0)),
        "errors": int(snapshot.get("errors", 0)),
        "skipped": int(snapshot.get("skipped", 0)),
        "fps": float(snapshot.get("fps", 0.0)),
        "fps_recent": float(snapshot.get("fps_recent", 0.0)),
        "queue_depth": int(snapshot.get("queue_depth", 0)),
        "dropped": int(sum(snapshot.get("dropped", {}).values())),
        "gaps": int(sum(snapshot.get("gaps", {}).values())),
        "latency_p50_ms": e2e.get("p50"),
        "latency_p95_ms": e2e.get("p95"),
        "latency_p99_ms": e2e.get("p99"),
        "snapshot": dict(snapshot),
    }


def record_pipeline_status(
    db: Database, pipeline: str, station: str, line: str, snapshot: dict[str, Any], host: str | None = None,
    now: datetime | None = None,
) -> None:
    """Replace the row of ``pipeline`` at ``station`` with this snapshot (created on its first report).

    ``started_at`` is derived from the snapshot's ``elapsed_s``, so a restarted pipeline shows its new start.

    Raises:
        StorageError: the database cannot be reached or refused the write.
        ValueError: ``pipeline`` or ``station`` is empty.
    """
    if not pipeline or not station:
        raise ValueError(f"pipeline {pipeline!r} and station {station!r} must both be named")
    now = now or utcnow()
    values = {
        "line": line, "host": host or socket.gethostname(), "last_seen": now,
        "started_at": now - timedelta(seconds=float(snapshot.get("elapsed_s", 0.0))), **_status_values(snapshot),
    }
    for attempt in range(2):
        try:
            with db.session() as session:
                row = session.scalar(select(PipelineStatusRow).where(
                    PipelineStatusRow.pipeline == pipeline, PipelineStatusRow.station == station))
                if row is None:
                    session.add(PipelineStatusRow(pipeline=pipeline, station=station, **values))
                else:
                    for key, value in values.items():
                        setattr(row, key, value)
            return
        except (IntegrityError, StorageError) as exc:
            # Two writers created the row at once: the second one updates it instead.
            if attempt or not isinstance(exc.__cause__ or exc, IntegrityError):
                raise


def _record(row: PipelineStatusRow) -> PipelineStatus:
    return PipelineStatus(
        pipeline=row.pipeline, station=row.station, line=row.line, host=row.host, started_at=row.started_at,
        last_seen=row.last_seen, final=row.final, frames=row.frames, errors=row.errors, skipped=row.skipped,
        fps=row.fps, fps_recent=row.fps_recent, queue_depth=row.queue_depth, dropped=row.dropped, gaps=row.gaps,
        latency_p50_ms=row.latency_p50_ms, latency_p95_ms=row.latency_p95_ms, latency_p99_ms=row.latency_p99_ms,
        snapshot=dict(row.snapshot or {}),
    )


def list_pipeline_status(db: Database, station: str | None = None) -> list[PipelineStatus]:
    """Every pipeline's latest figures, by pipeline name then station (``station``: only that station)."""
    stmt = select(PipelineStatusRow).order_by(PipelineStatusRow.pipeline, PipelineStatusRow.station)
    if station is not None:
        stmt = stmt.where(PipelineStatusRow.station == station)
    with db.session() as session:
        return [_record(row) for row in session.scalars(stmt)]


def pipeline_state(status: PipelineStatus, now: datetime, quiet_after: timedelta) -> str:
    """``finished``, ``running``, or ``silent`` for a pipeline that has not reported for ``quiet_after``."""
    if status.final:
        return "finished"
    return "silent" if now - status.last_seen > quiet_after else "running"


def stats_rows(statuses: list[PipelineStatus], now: datetime, quiet_after: timedelta) -> list[dict[str, Any]]:
    """One flat table row per pipeline: state, host, throughput, end-to-end latency percentiles, queue, drops."""
    return [
        {
            "Pipeline": s.pipeline,
            "Station": s.station,
            "Host": s.host,
            "State": pipeline_state(s, now, quiet_after),
            "Last seen": s.last_seen,
            "Frames": s.frames,
            "Frames/s": s.fps_recent,
            "Latency p50 ms": s.latency_p50_ms,
            "Latency p95 ms": s.latency_p95_ms,
            "Latency p99 ms": s.latency_p99_ms,
            "Queue": s.queue_depth,
            "Dropped": s.dropped,
            "Errors": s.errors,
            "Gaps": s.gaps,
        }
        for s in statuses
    ]


class PipelineStatusWriter:
    """A pipeline's ``on_stats`` callback that records each snapshot in ``pipeline_status``.

    Writes happen on a daemon thread; while one is in progress only the newest snapshot waits. The final snapshot
    (``final: True``) is waited for, up to ``FINAL_WRITE_TIMEOUT_S``, so that a finished run shows as finished.
    A failed write is logged once per outage and never raised into the pipeline.

    Args:
        db: the plant database.
        pipeline: the pipeline's name.
        station: its station.
        line: its line.
        also: a further callback given every snapshot first (the CLI's one-line figures).
    """

    def __init__(self, db: Database, pipeline: str, station: str, line: str,
                 also: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.db, self.pipeline, self.station, self.line, self.also = db, pipeline, station, line, also
        self.host = socket.gethostname()
        self._pending: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._failing = False
        self._thread: threading.Thread | None = None

    def __call__(self, snapshot: dict[str, Any]) -> None:
        """Hand over one snapshot; returns at once (except for the final one, see the class doc)."""
        if self.also is not None:
            self.also(snapshot)
        with self._cond:
            self._pending = dict(snapshot)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"status-{self.pipeline}", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            if snapshot.get("final"):
                self._cond.wait_for(lambda: self._pending is None and not self._busy, FINAL_WRITE_TIMEOUT_S)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None)
                snapshot = self._pending
                if snapshot is None:  # wait_for returned with the predicate true; this narrows the type
                    continue
                self._pending, self._busy = None, True
            try:
                record_pipeline_status(self.db, self.pipeline, self.station, self.line, snapshot, host=self.host)
                if self._failing:
                    logger.info("live figures of pipeline %r reach the database again", self.pipeline)
                self._failing = False
            except StorageError as exc:
                if not self._failing:
                    logger.warning("live figures of pipeline %r not recorded: %s", self.pipeline, exc)
                self._failing = True
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
