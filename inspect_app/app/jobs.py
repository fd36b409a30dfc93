"""Inspection jobs: run a declared pipeline (folder, video, camera, stream) into its sinks, and say what happened.

The shared body of ``inspect-app inspect``, ``run`` and ``demo``. It reaches the engine (torch) only from inside
``run_inspection_job``, so importing this module stays cheap and torch-free.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_app.app.versions import register_model
from inspect_app.config.pipeline import PipelineSpec
from inspect_app.config.settings import Settings
from inspect_app.errors import StorageError
from inspect_app.records import InspectionSummary
from inspect_app.storage import queries
from inspect_app.storage.db import Database, mask_url
from inspect_app.storage.repository import Repository
from inspect_app.storage.spool import SpoolingRepository

logger = logging.getLogger(__name__)

__all__ = ["JobReport", "build_sinks", "run_inspection_job", "station_file_name"]


@dataclass
class JobReport:
    """What one inspection job did: the counts a quality engineer reads and anything still waiting in a spool."""

    name: str
    source: str
    model: str
    database: str  # the URL with its password masked
    summary: InspectionSummary
    skipped: int = 0
    station_summary: InspectionSummary | None = None  # everything the station holds, when parts were skipped
    dropped: int = 0
    outages: dict[str, tuple[int, float]] = field(default_factory=dict)  # source → (outages, seconds without frames)
    source_failures: list[str] = field(default_factory=list)
    spool_replayed: int = 0  # rows from a database outage written at the end of this run
    undelivered: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every row, evidence file and reject signal reached its destination."""
        return not self.undelivered


def station_file_name(name: str) -> str:
    """A station name made safe as a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "station"


def build_sinks(spec: PipelineSpec, settings: Settings, repository: Any) -> list:
    """The sinks a pipeline declares, in the order they must run (files first so rows carry their paths)."""
    from inspect_app.engine.sinks import CsvSink, DatabaseSink, HeatmapFileSink, JsonLinesSink, RejectHookSink

    spool = Path(spec.spool_dir) if spec.spool_dir else settings.home / "spool"
    ng_dir = Path(spec.ng_dir) if spec.ng_dir else settings.resolved_evidence_dir
    # Rows record evidence relative to the plant's evidence folder when ng_dir lies in it (any machine resolves them).
    sinks: list = [HeatmapFileSink(ng_dir, spec.save_ng_images, evidence_root=settings.resolved_evidence_dir)]
    if spec.csv:
        sinks.append(CsvSink(Path(spec.csv)))
    if spec.jsonl:
        sinks.append(JsonLinesSink(Path(spec.jsonl)))
    if spec.reject_webhook or spec.reject_command:
        sinks.append(RejectHookSink(
            spool / f"reject_{spec.name}.jsonl", webhook=spec.reject_webhook, command=spec.reject_command,
            decisions=spec.reject_on,
        ))
    sinks.append(DatabaseSink(repository))
    return sinks


def _flush_spool(spool: SpoolingRepository) -> int:
    """Try once more to write spooled rows; returns how many were written (0 when the database still fails)."""
    waiting = spool.pending
    try:
        spool.flush()
    except StorageError as exc:
        logger.warning("spooled rows stay in %s: %s", spool.path, exc)
    written = waiting - spool.pending if waiting else 0
    if written:
        logger.info("%d result(s) spooled during a database outage were written to the database", written)
    return written


def run_inspection_job(
    spec: PipelineSpec,
    settings: Settings,
    actor: str = "system",
    progress: Callable[[int, int], None] | None = None,
    on_stats: Callable[[dict], None] | None = None,
    announce: Callable[[str], None] = logger.info,
) -> JobReport:
    """Run a declared pipeline to its end (a finite source) or until stopped (a live one), and report on it.

    ``actor`` is who registers the model when the database does not know it yet (audited). ``progress`` is called with
    (done, total) for a finite source; ``on_stats`` with the live figures of an endless one; ``announce`` with the
    lines an operator should see while it runs (the live source being watched).
    """
    from inspect_app.data.sources import open_source
    from inspect_app.engine.hot_swap import bind_to_database
    from inspect_app.engine.onnx_backend import load_inspector
    from inspect_app.engine.pipeline import Pipeline
    from inspect_app.storage.live_stats import PipelineStatusWriter

    url = os.environ.get("INSPECT_DATABASE_URL") or spec.database_url or settings.resolved_database_url
    repository = Repository(Database.open(url))
    inspector: Any = load_inspector(
        Path(spec.model), backend=spec.backend, device=spec.device, threshold=spec.threshold,
        review_band=spec.review_band, onnx_path=Path(spec.onnx_path) if spec.onnx_path else None,
    )
    version = register_model(repository, inspector.card, Path(spec.model), actor=actor)
    # The stored threshold (the dashboard's) decides unless the pipeline pins one; follow_active follows promotions.
    inspector = bind_to_database(inspector, repository, version, spec)
    # Batches decided while the database is unreachable wait in a local spool and are written once it answers. The
    # spool is replayed *before* the skip list is read, so images spooled by an earlier run are not inspected again.
    spool_dir = Path(spec.spool_dir) if spec.spool_dir else settings.home / "spool"
    spool = SpoolingRepository(repository, spool_dir / f"{station_file_name(spec.station)}.jsonl")
    replayed = _flush_spool(spool) if spool.pending else 0
    # A pipeline that follows the active model is the station's line: a part it decided under any model is done (a
    # restart after a promotion must not decide, and signal, the parts already in its folder again). A pipeline
    # pinned to one model re-inspects a folder for that model.
    decided_by = None if spec.follow_active else inspector.card.name
    known = repository.known_hashes(decided_by, spec.station) | spool.pending_hashes()
    source = open_source(
        spec.source_kind, spec.source, station=spec.station, line=spec.line, skip_hashes=known, live=spec.live,
        options=spec.source_options,
    )
    if hasattr(source, "skip_paths"):
        source.skip_paths = repository.unreadable_paths(spec.station)
    finite = source.total is not None
    pipeline = Pipeline(
        [source], inspector, build_sinks(spec, settings, spool), name=spec.name, max_batch=spec.batch_size,
        max_wait_ms=spec.max_wait_ms, queue_size=spec.queue_size, stats_interval_s=spec.stats_interval_s,
        on_stats=PipelineStatusWriter(repository.db, spec.name, spec.station, spec.line,
                                      None if finite else on_stats),
        stats_path=Path(spec.stats_file) if spec.stats_file else settings.home / "stats" / f"{spec.name}.json",
        progress=progress if finite else None,
        spool_dir=spool_dir,
    )
    if not finite:
        announce(f"[{spec.name}] inspecting {source.name}; Ctrl-C stops, drains and flushes")
    result = pipeline.run()
    if spool.spooled or spool.pending:
        replayed += _flush_spool(spool)
    undelivered = list(result.undelivered)
    if spool.pending:
        undelivered.append(f"database: {spool.pending} result(s) wait in {spool.path}")
    return JobReport(
        name=spec.name, source=str(spec.source), model=inspector.card.name, database=mask_url(url),
        summary=result.summary(), skipped=result.skipped,
        station_summary=queries.summary(repository.db, station=spec.station) if result.skipped else None,
        dropped=sum(result.dropped.values()) if result.dropped else 0,
        outages={name: (len(gaps), sum(g.seconds for g in gaps)) for name, gaps in result.gaps.items()},
        source_failures=[str(f) for f in result.source_failures], spool_replayed=replayed, undelivered=undelivered,
    )
