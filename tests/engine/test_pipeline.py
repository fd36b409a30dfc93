"""The production pipeline with real files, a real model, real SQLite and real OpenCV video."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_app.config.evidence import resolve_stored_path
from inspect_app.data.image_io import write_image
from inspect_app.data.sources import VideoSource, WatchFolderSource, folder_source
from inspect_app.engine.infer import Inspector
from inspect_app.engine.pipeline import Pipeline, inspect_folder
from inspect_app.engine.pipeline_queue import Envelope, FrameQueue
from inspect_app.engine.pipeline_stats import format_stats
from inspect_app.engine.sinks import CsvSink, DatabaseSink, HeatmapFileSink, JsonLinesSink
from inspect_app.records import Decision, Frame, utcnow
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository


def _part(value: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(value, 8, (72, 72, 3)), 0, 255).astype(np.uint8)


@pytest.fixture()
def parts(tmp_path: Path) -> Path:
    """10 bright (good) and 6 dark (defective) parts in two sub-folders, plus 3 broken files."""
    root = tmp_path / "parts"
    for i in range(10):
        write_image(root / "lot1" / f"ok_{i:02d}.jpg", _part(230, i))
    for i in range(6):
        write_image(root / "lot2" / f"dark_{i:02d}.png", _part(15, 100 + i))
    (root / "lot2" / "empty.png").write_bytes(b"")
    (root / "lot2" / "junk.jpg").write_bytes(b"\xff\xd8\xff garbage")
    good = (root / "lot1" / "ok_00.jpg").read_bytes()
    (root / "lot1" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return root


@pytest.fixture()
def repository(tmp_path: Path) -> Repository:
    return Repository(Database.open(f"sqlite:///{tmp_path / 'plant.db'}"))


def test_folder_run_writes_every_image_once_with_errors_and_ng_files(
    parts: Path, tiny_checkpoint: Path, repository: Repository, tmp_path: Path
) -> None:
    inspector = Inspector(tiny_checkpoint, device="cpu")
    ng_dir, csv_path, jsonl_path = tmp_path / "ng", tmp_path / "out.csv", tmp_path / "out.jsonl"
    sinks = [HeatmapFileSink(ng_dir), CsvSink(csv_path), JsonLinesSink(jsonl_path), DatabaseSink(repository)]
    source = folder_source(parts, station="st-A", line="L1")
    seen: list[tuple[int, int]] = []
    stats_path = tmp_path / "stats.json"
    pipeline = Pipeline([source], inspector, sinks, max_batch=4, max_wait_ms=5, queue_size=3,
                        progress=lambda done, total: seen.append((done, total)), stats_path=stats_path)
    result = pipeline.run(handle_signals=False)

    rows = repository.list_inspections(limit=100)
    assert len(rows) == 19 and result.total == 19
    by_name = {Path(r.image_path).name: r for r in rows}
    assert {n for n, r in by_name.items() if r.decision is Decision.ERROR} == {"empty.png", "junk.jpg", "truncated.jpg"}
    assert all(by_name[f"ok_{i:02d}.jpg"].decision is Decision.OK for i in range(10))
    assert all(by_name[f"dark_{i:02d}.png"].decision is Decision.NG for i in range(6))
    assert all(r.station == "st-A" and r.line == "L1" and r.model_version == "tiny-pipe" for r in rows)
    assert result.decisions == {Decision.OK: 10, Decision.NG: 6, Decision.ERROR: 3}
    assert result.per_class == {"crack": 6}
    ng = [r for r in rows if r.decision is Decision.NG]
    # Evidence is filed by content hash under the evidence folder, recorded relative to it (config.evidence).
    assert all(r.heatmap_path == f"evidence:{r.content_hash[:2]}/{r.content_hash[2:4]}/{r.content_hash}_heatmap.jpg"
               and resolve_stored_path(r.heatmap_path, ng_dir).is_file() for r in ng)
    assert len(list(ng_dir.glob("*/*/*_heatmap.jpg"))) == 6 and len(list(ng_dir.glob("*/*/*.jpg"))) == 12
    with open(csv_path, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 19
    lines = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert len(lines) == 19 and {line["decision"] for line in lines} == {"OK", "NG", "ERROR"}
    assert seen[-1] == (19, 19) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert result.dropped == {}
    stats = json.loads(stats_path.read_text())
    assert stats["final"] is True and stats["frames"] == 16 and stats["errors"] == 3
    for stage in ("capture", "queue", "infer", "sinks", "end_to_end"):
        q = stats["latency_ms"][stage]
        assert 0 <= q["p50"] <= q["p95"] <= q["p99"]
    assert "16 frames" in format_stats(stats)


def test_interrupted_folder_run_resumes_without_loss_or_duplicates(
    parts: Path, tiny_checkpoint: Path, repository: Repository
) -> None:
    inspector = Inspector(tiny_checkpoint, device="cpu")
    source = folder_source(parts, station="st-A", line="L1")
    holder: dict[str, Pipeline] = {}

    class StopsAfterFirstBatch:
        """The inspector, with Ctrl-C pressed right after its first batch is decided.

        Stopping from the progress callback would race with inference (the sink thread lags behind), so on a fast
        machine every frame could be decided before the stop landed and nothing would be left to resume.
        """

        def predict(self, images: list) -> list:
            out = inspector.predict(images)
            holder["p"].stop()  # what Ctrl-C does: stop the source, drain and flush what is already decided
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(inspector, name)

    holder["p"] = Pipeline([source], StopsAfterFirstBatch(), [DatabaseSink(repository)], max_batch=4, queue_size=2)
    first = holder["p"].run(handle_signals=False)
    written = len(repository.list_inspections(limit=100))
    # The first batch, plus at most the two queued frames and the one the source was putting when it stopped.
    assert 4 <= written <= 4 + 2 + 1 and sum(first.decisions.values()) == written

    known = repository.known_hashes("tiny-pipe", "st-A")
    second = inspect_folder(parts, inspector, [DatabaseSink(repository)], station="st-A", line="L1", batch_size=4,
                            skip_hashes=known)
    rows = repository.list_inspections(limit=100)
    hashed = [r.content_hash for r in rows if r.content_hash]
    assert len(hashed) == len(set(hashed))  # nothing inspected twice
    assert {Path(r.image_path).name for r in rows} == {p.name for p in parts.rglob("*") if p.is_file()}
    assert second.skipped == len(known)
    third = inspect_folder(parts, inspector, [DatabaseSink(repository)], station="st-A", line="L1",
                           skip_hashes=repository.known_hashes("tiny-pipe", "st-A"))
    # Every file was read once, so every file has a content hash on record: a third run does nothing.
    assert third.skipped == 19 and sum(third.decisions.values()) == 0


def _env(source: str, live: bool) -> Envelope:
    frame = Frame(np.zeros((1, 1, 3), np.uint8), source, "frame:0", utcnow(), "h")
    return Envelope(frame, live, time.perf_counter(), 0.0)


def test_live_frames_drop_oldest_and_file_frames_block() -> None:
    q = FrameQueue(2, producers=1)
    for i in range(5):
        q.put(Envelope(Frame(np.zeros((1, 1, 3), np.uint8), "cam", f"frame:{i}", utcnow(), "h"), True, 0.0, 0.0))
    assert q.dropped == {"cam": 3}
    assert [e.item.ref for e in q.get_batch(10, 0.0)] == ["frame:3", "frame:4"]

    q = FrameQueue(1, producers=1)
    q.put(_env("folder", False))
    blocked = threading.Thread(target=q.put, args=(_env("folder", False),), daemon=True)
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # a file frame waits for room instead of being dropped
    assert len(q.get_batch(1, 0.0)) == 1
    blocked.join(2.0)
    assert not blocked.is_alive() and q.depth == 1 and q.dropped == {}


def test_batch_assembler_waits_at_most_max_wait_and_ends_when_producers_are_done() -> None:
    q = FrameQueue(10, producers=1)
    q.put(_env("a", False))
    t0 = time.perf_counter()
    assert len(q.get_batch(4, 0.15)) == 1
    assert 0.1 <= time.perf_counter() - t0 < 1.0
    for _ in range(6):
        q.put(_env("a", False))
    assert len(q.get_batch(4, 5.0)) == 4  # full batch: no waiting
    q.producer_done()
    assert len(q.get_batch(4, 5.0)) == 2
    assert q.get_batch(4, 5.0) is None


def _write_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (72, 72))
    for i in range(frames):
        writer.write(np.full((72, 72, 3), 230 if i % 3 else 15, np.uint8))
    writer.release()


def test_live_video_under_back_pressure_accounts_for_every_frame(
    tiny_checkpoint: Path, repository: Repository, tmp_path: Path
) -> None:
    video = tmp_path / "line.avi"
    _write_video(video, 60)
    source = VideoSource(str(video), live=True, max_attempts=0, station="cam-1")
    pipeline = Pipeline([source], Inspector(tiny_checkpoint, device="cpu"), [DatabaseSink(repository)],
                        max_batch=2, max_wait_ms=1, queue_size=2)
    result = pipeline.run(handle_signals=False)
    handled = sum(result.decisions.values())
    assert source.counters.frames == 60
    assert handled + sum(result.dropped.values()) == 60  # every frame was either decided or counted as dropped
    assert result.dropped.get(str(video), 0) > 0
    assert len(result.gaps[str(video)]) == 1  # the "camera" ended and reconnection gave up without a crash
    rows = repository.list_inspections(limit=100)
    assert rows and all(r.image_path.startswith("frame:") and r.station == "cam-1" for r in rows)


def test_sigterm_stops_a_watched_folder_run_and_flushes(
    tiny_checkpoint: Path, repository: Repository, tmp_path: Path
) -> None:
    watched = tmp_path / "drop"
    watched.mkdir()
    for i in range(5):
        write_image(watched / f"{i}.png", _part(230, i))
    source = WatchFolderSource(watched, poll_s=0.05, settle_s=0.0)
    pipeline = Pipeline([source], Inspector(tiny_checkpoint, device="cpu"), [DatabaseSink(repository)],
                        max_batch=8, max_wait_ms=1)

    def terminate_when_done() -> None:
        deadline = time.time() + 30
        while source.counters.frames < 5 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_when_done, daemon=True).start()
    previous = signal.getsignal(signal.SIGTERM)
    result = pipeline.run(handle_signals=True)
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    assert sum(result.decisions.values()) == 5 and len(repository.list_inspections(limit=100)) == 5


def test_summary_counts_review_parts_apart_from_ng_classes(tmp_path) -> None:
    from inspect_app.data.sources import FileListSource
    from inspect_app.engine.pipeline import Pipeline
    from inspect_app.records import Decision, Inspection, utcnow

    pipeline = Pipeline([FileListSource("x", [])], inspector=None, sinks=[], spool_dir=tmp_path)  # type: ignore[arg-type]
    rows = [
        Inspection(station="st", line="l", source="s", image_path=f"{i}.png", decision=d, created_at=utcnow(),
                   content_hash=f"h{i}", model_version="m", defect_class=c)
        for i, (d, c) in enumerate([(Decision.NG, "crack"), (Decision.REVIEW, "crack"), (Decision.OK, None)])
    ]
    pipeline._write([(r, None, None) for r in rows], [])
    summary = pipeline.result.summary()
    assert summary.per_class == {"crack": 1}
    assert (summary.ng, summary.review, summary.ok) == (1, 1, 1)
