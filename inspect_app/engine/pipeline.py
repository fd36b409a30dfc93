"""The inspection pipeline: sources → bounded queue → batch assembler → inference → decisions → sinks.

Threads: one capture thread per source (read + decode), the inference loop in the calling thread, and one sink
thread so database and file writes overlap the next batch's inference. Between them sit bounded queues:

* live sources (camera, stream) drop their *oldest* queued frame when the queue is full and count the drop, so the
  station always inspects the freshest part;
* file sources (folder, glob, watched folder, video file) block instead, so nothing is ever dropped.

The batch assembler hands the model up to ``max_batch`` frames, waiting at most ``max_wait_ms`` after the first one,
so a live station gets low latency and a folder run gets full batches. Unreadable inputs become ERROR rows.
``stop()`` (wired to Ctrl-C / SIGTERM by ``run``) stops the sources, drains the queues and flushes the sinks.
"""

from __future__ import annotations

import logging
import queue
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_app.data.source_base import FrameError, Gap, Source
from inspect_app.data.source_files import folder_source
from inspect_app.engine.infer import Inspector
from inspect_app.engine.pipeline_queue import Envelope, FrameQueue
from inspect_app.engine.pipeline_stats import PipelineStats, write_stats_file
from inspect_app.engine.pipeline_stats import format_stats as format_stats  # re-exported for the CLI
from inspect_app.engine.progress import CountProgressFn
from inspect_app.engine.sink_base import Sink, SinkItem
from inspect_app.engine.sink_spool import ResilientSink
from inspect_app.records import Decision, Frame, Inspection, InspectionSummary, utcnow

logger = logging.getLogger(__name__)

StatsFn = Callable[[dict[str, Any]], None]


@dataclass
class FolderRunResult:
    """Outcome of one pipeline run (the name is kept from the batch-folder flow it started as).

    Attributes:
        total: inputs the sources announced (files listed), or frames seen for live sources.
        skipped: images already inspected earlier with the same model at the same station.
        decisions: count per decision for images handled in this run.
        per_class: NG count per defect class in this run (REVIEW parts are counted in ``review_per_class``).
        review_per_class: REVIEW count per most likely defect class in this run.
        seconds: wall time.
        dropped: live frames dropped under back-pressure, per source.
        gaps: outages of live sources, per source.
        source_failures: sources that stopped on an unexpected error (the run went on without them).
        stats: the last live-figures snapshot.
        replayed: items from earlier runs' sink spools written at the start of this run, per sink.
        undelivered: what still waits in a spool when the run ends, one line each (sink, count, file).
    """

    total: int = 0
    skipped: int = 0
    decisions: Counter = field(default_factory=Counter)
    per_class: Counter = field(default_factory=Counter)
    review_per_class: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, list[Gap]] = field(default_factory=dict)
    source_failures: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    replayed: dict[str, int] = field(default_factory=dict)
    undelivered: list[str] = field(default_factory=list)

    def summary(self) -> InspectionSummary:
        """The run's counts as an ``InspectionSummary``."""
        return InspectionSummary(
            total=sum(self.decisions.values()),
            ok=self.decisions[Decision.OK],
            review=self.decisions[Decision.REVIEW],
            ng=self.decisions[Decision.NG],
            errors=self.decisions[Decision.ERROR],
            per_class=dict(self.per_class.most_common()),
            review_per_class=dict(self.review_per_class.most_common()),
        )


class Pipeline:
    """Runs sources through one ``Inspector`` into sinks (see the module doc for the flow).

    Args:
        sources: where frames come from; each gets its own capture thread.
        inspector: loaded model and decision rule (``Inspector`` or a backend with the same ``predict``).
        sinks: applied in order to every batch (heatmap files first so later rows carry their paths).
        name: pipeline name for logs and figures.
        max_batch: most frames per inference call.
        max_wait_ms: longest wait for a batch to fill after its first frame.
        queue_size: capacity of the frame queue.
        stats_interval_s: how often ``on_stats`` is called and the stats file rewritten.
        on_stats: receives each live-figures snapshot.
        stats_path: JSON file that holds the latest snapshot (for the dashboard).
        progress: called with (handled, total) after each written batch when every source knows its total.
        spool_dir: where a sink's rows go when it still fails after its retries (default: the temp folder).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        inspector: Inspector,
        sinks: Iterable[Sink],
        name: str = "pipeline",
        max_batch: int = 16,
        max_wait_ms: float = 50.0,
        queue_size: int = 64,
        stats_interval_s: float = 10.0,
        on_stats: StatsFn | None = None,
        stats_path: Path | None = None,
        progress: CountProgressFn | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        if not sources:
            raise ValueError("a pipeline needs at least one source")
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch {max_batch!r} must be >= 1 and max_wait_ms {max_wait_ms!r} >= 0")
        self.sources = list(sources)
        self.inspector = inspector
        spool = Path(spool_dir) if spool_dir is not None else Path(tempfile.gettempdir()) / "inspect_app_spool"
        self.sinks = [s if isinstance(s, ResilientSink) else ResilientSink(s, spool) for s in sinks]
        self.name = name
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue = FrameQueue(queue_size, producers=len(self.sources))
        # Two batches in flight towards the sinks keep inference busy while the database writes; the sink queue
        # blocks when full (never drops), which slows inference down to what the sinks can store.
        self._to_sinks: queue.Queue[tuple[list[SinkItem], list[Envelope]] | None] = queue.Queue(maxsize=2)
        self.stats = PipelineStats(name)
        self.stats_interval_s = stats_interval_s
        self.on_stats = on_stats
        self.stats_path = Path(stats_path) if stats_path else None
        self.progress = progress
        self.result = FolderRunResult()
        self._stop = threading.Event()
        self._handled = 0
        self._failures: list[str] = []

    # control -----------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the sources to stop; queued frames are still inspected and written."""
        if not self._stop.is_set():
            logger.info("pipeline %s stopping: draining queues and flushing sinks", self.name)
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called."""
        return self._stop.is_set()

    # threads -----------------------------------------------------------------------------------------------------

    def _capture(self, source: Source) -> None:
        try:
            items = source.frames(self._stop)
            while (item := next(items, None)) is not None:
                # Stage clocks start at the frame's capture time (before reading/decoding a file, right after a
                # camera grab), so a paced or idle source's waiting is not counted as latency.
                now = time.perf_counter()
                capture_s = max(0.0, (utcnow() - item.captured_at).total_seconds())
                self.queue.put(Envelope(item, source.live, now, capture_s * 1000.0))
        except Exception as exc:  # a broken source must never take the station down
            logger.exception("source %s failed", source.name)
            self._failures.append(f"{source.name}: {exc}")
        finally:
            self.queue.producer_done()

    def _sink_loop(self) -> None:
        while (work := self._to_sinks.get()) is not None:
            try:
                self._write(*work)
            except Exception:  # the sinks are guarded; this only protects the counting from taking the thread down
                logger.exception("pipeline %s: failed to account for a written batch", self.name)

    def _write(self, items: list[SinkItem], envelopes: list[Envelope]) -> None:
        t0 = time.perf_counter()
        for sink in self.sinks:
            items = list(sink.write(items))
        done = time.perf_counter()
        self.stats.record("sinks", (done - t0) * 1000.0, len(items))
        for envelope in envelopes:
            self.stats.record("end_to_end", (done - envelope.t_captured) * 1000.0 + envelope.capture_ms)
        errors = 0
        for inspection, _, _ in items:
            self.result.decisions[inspection.decision] += 1
            errors += inspection.decision is Decision.ERROR
            # Only NG parts count per class: the summary's "NG <class>" lines must not include REVIEW parts.
            if inspection.defect_class and inspection.decision is Decision.NG:
                self.result.per_class[inspection.defect_class] += 1
            elif inspection.defect_class and inspection.decision is Decision.REVIEW:
                self.result.review_per_class[inspection.defect_class] += 1
        self.stats.count(len(items) - errors, errors)
        self._handled += len(items)
        totals = [s.total for s in self.sources]
        if self.progress is not None and all(t is not None for t in totals):
            skipped = sum(s.counters.skipped for s in self.sources)
            self.progress(self._handled + skipped, sum(totals))  # type: ignore[arg-type]

    # inference ---------------------------------------------------------------------------------------------------

    def _infer(self, batch: list[Envelope]) -> list[SinkItem]:
        # A model-following inspector (engine.hot_swap) swaps only here, between batches, never inside one.
        poll = getattr(self.inspector, "poll", None)
        if poll is not None:
            poll()
        start = time.perf_counter()
        frames = [e.item for e in batch if isinstance(e.item, Frame)]
        for envelope in batch:
            self.stats.record("capture", envelope.capture_ms)
            self.stats.record("queue", (start - envelope.t_captured) * 1000.0)
        predictions = iter(self.inspector.predict([f.image for f in frames]) if frames else [])
        infer_ms = (time.perf_counter() - start) * 1000.0
        if frames:
            self.stats.record("infer", infer_ms, len(frames))
        model_version = self.inspector.card.name
        items: list[SinkItem] = []
        for envelope in batch:
            item = envelope.item
            if isinstance(item, FrameError):
                row = Inspection(
                    station=item.station, line=item.line, source=item.source, image_path=item.ref,
                    decision=Decision.ERROR, created_at=item.captured_at, content_hash=item.content_hash,
                    model_version=model_version, error=item.reason,
                )
                items.append((row, None, None))
                continue
            prediction = next(predictions)
            row = Inspection(
                station=item.station, line=item.line, source=item.source, image_path=item.ref,
                decision=prediction.decision, created_at=item.captured_at, content_hash=item.content_hash,
                model_version=model_version, defect_class=prediction.defect_class, score=prediction.score,
                raw_score=prediction.raw_score, threshold=self.inspector.threshold, latency_ms=infer_ms / len(frames),
            )
            items.append((row, item.image, prediction))
        return items

    def _report(self, final: bool = False) -> None:
        snapshot = self.stats.snapshot(self.queue, self.sources)
        self.result.stats = snapshot
        if self.stats_path is not None:
            write_stats_file(self.stats_path, {**snapshot, "final": final})
        if self.on_stats is not None:
            self.on_stats({**snapshot, "final": final})

    def run(self, handle_signals: bool = True, max_seconds: float | None = None) -> FolderRunResult:
        """Run until every source is exhausted or ``stop`` is called; returns the counts.

        Args:
            handle_signals: turn SIGINT/SIGTERM into ``stop`` (only possible from the main thread).
            max_seconds: stop the sources after this long (live benchmarks and demos).
        """
        start = time.perf_counter()
        # Items an earlier run could not deliver go first, once their sink works again (evidence, CSV lines, ...).
        for sink in self.sinks:
            if sink.replay():
                self.result.replayed[sink.name] = sink.replayed
        restore = self._install_signals() if handle_signals else {}
        capture_threads = [
            threading.Thread(target=self._capture, args=(s,), name=f"capture-{i}", daemon=True)
            for i, s in enumerate(self.sources)
        ]
        sink_thread = threading.Thread(target=self._sink_loop, name="sinks", daemon=True)
        sink_thread.start()
        for thread in capture_threads:
            thread.start()
        next_report = time.perf_counter() + self.stats_interval_s
        try:
            while True:
                if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                    self.stop()
                batch = self.queue.get_batch(self.max_batch, self.max_wait_s)
                if batch is None:
                    break
                if batch:
                    items = self._infer(batch)
                    self._to_sinks.put((items, batch))
                if time.perf_counter() >= next_report:
                    self._report()
                    next_report = time.perf_counter() + self.stats_interval_s
        finally:
            # Whatever happened in inference, let the sink thread write what it already has.
            self.stop()
            self._to_sinks.put(None)
            sink_thread.join()
            for thread in capture_threads:
                thread.join(timeout=5.0)
            for sink in self.sinks:
                close = getattr(sink, "close", None)
                if close is not None:
                    close()
            for sig, handler in restore.items():
                signal.signal(sig, handler)
        self.result.skipped = sum(s.counters.skipped for s in self.sources)
        totals = [s.total for s in self.sources]
        self.result.total = sum(t for t in totals if t is not None) + sum(
            s.counters.frames + s.counters.errors for s, t in zip(self.sources, totals, strict=True) if t is None
        )
        self.result.dropped = dict(self.queue.dropped)
        self.result.gaps = {s.name: list(s.counters.gaps) for s in self.sources if s.counters.gaps}
        self.result.source_failures = list(self._failures)
        self.result.undelivered = undelivered(self.sinks)
        self.result.seconds = time.perf_counter() - start
        self._report(final=True)
        logger.info("pipeline %s: %s in %.1f s", self.name, dict(self.result.decisions), self.result.seconds)
        return self.result

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda _sig, _frame: self.stop())
        return previous


def undelivered(sinks: Sequence[ResilientSink]) -> list[str]:
    """One line per sink whose spool still holds items (reject signals included): what waits, and where."""
    lines = []
    for sink in sinks:
        if sink.pending:
            lines.append(f"{sink.name}: {sink.pending} item(s) wait in {sink.spool_path}")
        pending_signals = getattr(sink.sink, "pending", None)
        if callable(pending_signals) and (signals := pending_signals()):
            # Only the reject hook keeps signals (and a spool_path for them); the Sink protocol names neither.
            spool_path = getattr(sink.sink, "spool_path", None)
            lines.append(f"{sink.name}: {len(signals)} reject signal(s) wait in {spool_path}")
    return lines


def inspect_folder(
    folder: Path,
    inspector: Inspector,
    sinks: Iterable[Sink],
    station: str,
    line: str,
    batch_size: int = 16,
    skip_hashes: set[str] | None = None,
    progress: CountProgressFn | None = None,
) -> FolderRunResult:
    """Inspect every image under ``folder`` (recursive, stable order) through the pipeline; nothing is dropped.

    Args:
        folder: image folder.
        inspector: loaded model and decision rule.
        sinks: applied in order to every batch (heatmap files first, then CSV/database, so rows carry file paths).
        station: station name recorded with every row.
        line: production line recorded with every row.
        batch_size: images per inference batch.
        skip_hashes: content hashes already inspected (idempotent re-runs).
        progress: called with (done, total) after each batch.
    """
    source = folder_source(Path(folder), skip_hashes=skip_hashes, station=station, line=line)
    pipeline = Pipeline([source], inspector, sinks, name=str(folder), max_batch=batch_size, progress=progress)
    return pipeline.run(handle_signals=False)
