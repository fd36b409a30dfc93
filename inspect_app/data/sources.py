"""Image sources: camera index, RTSP/HTTP stream, video file, image folder, watched folder and glob.

Every source yields ``Frame`` records (decoded RGB uint8 plus source, station/line, index or path and the UTC capture
time) or ``FrameError`` records for inputs that could not be read, so that a bad file becomes an error row instead of
stopping the run. Sources run in capture threads and check a ``threading.Event`` so that Ctrl-C stops them promptly.

Live sources (camera, stream) never end on their own: when a read fails they reconnect with exponential back-off
and record the gap. File sources (folder, glob, video file) end after their last frame and never drop anything.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspect_app.config import SOURCE_KINDS
from inspect_app.data.folders import list_images
from inspect_app.data.image_io import DEFAULT_MAX_PIXELS, content_hash, decode_image, is_image_path
from inspect_app.errors import DatasetError, ImageDecodeError, SourceError
from inspect_app.records import Frame, utcnow

logger = logging.getLogger(__name__)

LIVE_KINDS = frozenset({"stream", "camera"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


@dataclass(frozen=True)
class FrameError:
    """An input that could not become a frame (unreadable, empty, truncated, oversized...).

    Attributes:
        source: source reference.
        ref: file path or ``frame:<index>``.
        reason: why it failed, naming the file.
        captured_at: UTC time the failure was seen.
        index: position in the source.
        station: station name.
        line: production line.
        content_hash: SHA-256 of the bytes when they could be read.
    """

    source: str
    ref: str
    reason: str
    captured_at: datetime
    index: int = 0
    station: str = ""
    line: str = ""
    content_hash: str | None = None


Captured = Frame | FrameError


@dataclass(frozen=True)
class Gap:
    """A period during which a live source delivered nothing.

    Attributes:
        started_at: UTC time the source dropped.
        ended_at: UTC time it came back, or ``None`` when it never did.
        attempts: reconnection attempts made.
        seconds: gap length measured on the source's clock.
    """

    started_at: datetime
    ended_at: datetime | None
    attempts: int
    seconds: float


@dataclass
class SourceCounters:
    """What a source has done so far (read by the pipeline's live figures).

    Attributes:
        frames: frames delivered.
        errors: inputs that became ``FrameError``.
        skipped: files skipped because their content hash was already inspected.
        gaps: outages of a live source.
    """

    frames: int = 0
    errors: int = 0
    skipped: int = 0
    gaps: list[Gap] = field(default_factory=list)


class Source:
    """Base class: a named producer of ``Captured`` items.

    Args:
        name: how the source is written into every row (path, URL or ``camera:<index>``).
        station: station name stamped on every frame.
        line: production line stamped on every frame.
    """

    kind = "base"
    live = False

    def __init__(self, name: str, station: str = "station-1", line: str = "line-1") -> None:
        self.name = name
        self.station = station
        self.line = line
        self.counters = SourceCounters()

    @property
    def total(self) -> int | None:
        """Number of items the source will produce, when known in advance (for progress bars)."""
        return None

    def frames(self, stop: threading.Event) -> Iterator[Captured]:
        """Yield items until exhausted or until ``stop`` is set."""
        raise NotImplementedError

    def _error(
        self, ref: str, reason: str, index: int, digest: str | None = None, captured_at: datetime | None = None
    ) -> FrameError:
        logger.warning("source %s: %s", self.name, reason)
        self.counters.errors += 1
        return FrameError(self.name, ref, reason, captured_at or utcnow(), index, self.station, self.line, digest)

    def _frame(
        self, image: np.ndarray, ref: str, digest: str, index: int, captured_at: datetime | None = None
    ) -> Frame:
        self.counters.frames += 1
        return Frame(image, self.name, ref, captured_at or utcnow(), digest, index, self.station, self.line)


class FileListSource(Source):
    """Decodes a fixed, stably ordered list of image files; never drops one.

    Args:
        name: source reference written into rows.
        paths: files in the order to inspect them.
        skip_hashes: content hashes already inspected; such files are counted as skipped and not decoded.
        max_pixels: largest accepted image (width x height); larger ones become errors.
        station: station name.
        line: production line.
    """

    kind = "folder"

    def __init__(
        self,
        name: str,
        paths: list[Path],
        skip_hashes: set[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        station: str = "station-1",
        line: str = "line-1",
    ) -> None:
        super().__init__(name, station, line)
        self.paths = list(paths)
        self.skip_hashes = skip_hashes if skip_hashes is not None else set()
        self.skip_paths: set[str] = set()  # unreadable files whose ERROR row an earlier run wrote
        self.max_pixels = max_pixels

    @property
    def total(self) -> int | None:
        """Number of files listed."""
        return len(self.paths)

    def frames(self, stop: threading.Event) -> Iterator[Captured]:
        """Read, hash and decode each file in order; unreadable ones become ``FrameError``."""
        for index, path in enumerate(self.paths):
            if stop.is_set():
                return
            item = read_file_item(self, path, index)
            if item is not None:
                yield item


def read_file_item(source: FileListSource | WatchFolderSource, path: Path, index: int) -> Captured | None:
    """One file as a ``Frame``/``FrameError``, or ``None`` when its content hash says it was already inspected.

    The capture time is when reading started, so the pipeline's capture stage covers reading and decoding.
    """
    captured_at = utcnow()
    try:
        data = path.read_bytes()
    except OSError as exc:
        if str(path) in getattr(source, "skip_paths", ()):
            source.counters.skipped += 1  # its ERROR row was written by an earlier run
            return None
        return source._error(str(path), f"{path}: cannot read file ({exc.strerror or exc})", index, None, captured_at)
    digest = content_hash(data)
    if digest in source.skip_hashes:
        source.counters.skipped += 1
        return None
    try:
        image = decode_image(data, name=str(path), max_pixels=source.max_pixels)
    except ImageDecodeError as exc:
        return source._error(str(path), str(exc), index, digest, captured_at)
    return source._frame(image, str(path), digest, index, captured_at)


def folder_source(
    folder: str | os.PathLike[str], recursive: bool = True, **kwargs: Any
) -> FileListSource:
    """Every image under ``folder`` (recursive by default), sorted by relative path."""
    try:
        paths = list_images(folder, recursive=recursive)
    except DatasetError as exc:
        raise SourceError(f"folder source: {exc}") from exc
    return FileListSource(str(folder), paths, **kwargs)


def glob_source(pattern: str, **kwargs: Any) -> FileListSource:
    """Image files matching a glob pattern (``**`` recurses), sorted by path."""
    paths = sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if is_image_path(p) and Path(p).is_file())
    source = FileListSource(pattern, paths, **kwargs)
    source.kind = "glob"
    return source


class WatchFolderSource(Source):
    """Watches a folder and inspects each new image once it is completely written.

    A file counts as complete when its size and modification time have not changed for ``settle_s`` seconds (and it
    is not empty); hidden files (``.name.tmp``) are ignored, so writers that rename into place are picked up at once.
    Files already present at start are inspected too (the content-hash skip makes restarts idempotent).

    Args:
        folder: folder to watch (recursively).
        poll_s: seconds between directory scans.
        settle_s: how long a file must stay unchanged before it is read.
        skip_hashes: content hashes already inspected.
        max_pixels: largest accepted image.
        station: station name.
        line: production line.
        sleep: injected sleep (tests).
        clock: injected monotonic clock (tests).
    """

    kind = "watch"
    live = False  # never drop: a watched folder is a queue of files, not a stream of frames

    def __init__(
        self,
        folder: str | os.PathLike[str],
        poll_s: float = 0.5,
        settle_s: float = 1.0,
        skip_hashes: set[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        station: str = "station-1",
        line: str = "line-1",
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(str(folder), station, line)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"watch source: folder {str(self.folder)!r} does not exist or is not a directory")
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.skip_hashes = skip_hashes if skip_hashes is not None else set()
        self.max_pixels = max_pixels
        self._sleep = sleep
        self._clock = clock
        self._seen: dict[Path, tuple[int, int, float]] = {}
        self._done: set[Path] = set()

    def ready_files(self) -> list[Path]:
        """One scan: files that have been stable for ``settle_s`` and were not handled yet, in path order."""
        now = self._clock()
        ready = []
        for path in list_images(self.folder):
            if path in self._done:
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            signature = (st.st_size, st.st_mtime_ns)
            previous = self._seen.get(path)
            if previous is None or previous[:2] != signature:
                self._seen[path] = (*signature, now)
                continue
            if st.st_size > 0 and now - previous[2] >= self.settle_s:
                ready.append(path)
        return ready

    def frames(self, stop: threading.Event) -> Iterator[Captured]:
        """Scan every ``poll_s`` until ``stop`` is set; yield each completed file once."""
        index = 0
        while not stop.is_set():
            for path in self.ready_files():
                self._done.add(path)
                self._seen.pop(path, None)
                item = read_file_item(self, path, index)
                index += 1
                if item is not None:
                    yield item
            if self._sleep is not None:
                self._sleep(self.poll_s)
            else:
                stop.wait(self.poll_s)


def _open_capture(target: str | int) -> Any:
    return cv2.VideoCapture(target)


class VideoSource(Source):
    """Frames from OpenCV ``VideoCapture``: a camera index, an RTSP/HTTP stream URL or a video file.

    A *live* source (camera, stream) that stops delivering is reopened with exponential back-off
    (``backoff_s``, doubled per attempt up to ``max_backoff_s``); each outage is recorded as a ``Gap`` and logged,
    and the process is never taken down. A non-live video file simply ends after its last frame.

    Args:
        target: camera index, URL or file path.
        live: reconnect on failure instead of ending.
        backoff_s: first reconnection delay.
        max_backoff_s: longest delay between attempts.
        max_attempts: consecutive failed reconnection attempts before giving up; ``None`` tries forever.
        station: station name.
        line: production line.
        pace_fps: deliver at most this many frames per second (replaying a recorded video as if it were a camera).
        skip_hashes: frame identities already inspected (a video file's frames hash the same on every run, so a re-run
            sends no row or reject signal twice); such frames are counted as skipped.
        open_capture: factory for the capture object (defaults to ``cv2.VideoCapture``).
        sleep: injected sleep (tests); by default waits on the stop event so Ctrl-C interrupts a back-off.
        clock: injected monotonic clock (tests).
    """

    kind = "video"

    def __init__(
        self,
        target: str | int,
        live: bool = False,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_attempts: int | None = None,
        station: str = "station-1",
        line: str = "line-1",
        pace_fps: float | None = None,
        skip_hashes: set[str] | None = None,
        open_capture: Callable[[str | int], Any] = _open_capture,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        name = f"camera:{target}" if isinstance(target, int) else str(target)
        super().__init__(name, station, line)
        if backoff_s <= 0 or max_backoff_s < backoff_s:
            raise SourceError(f"backoff_s {backoff_s!r} must be > 0 and <= max_backoff_s {max_backoff_s!r}")
        self.target = target
        self.live = live
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_attempts = max_attempts
        if pace_fps is not None and pace_fps <= 0:
            raise SourceError(f"pace_fps {pace_fps!r} must be positive")
        self.pace_fps = pace_fps
        self.skip_hashes = skip_hashes if skip_hashes is not None else set()
        self._open = open_capture
        self._sleep = sleep
        self._clock = clock
        self.delays: list[float] = []

    def _frame_hash(self, rgb: np.ndarray, index: int) -> str:
        """Pixels plus the frame's identity, so two identical-looking parts are two rows, never one.

        A video file's frame is identified by its index (re-running the same file skips what was inspected); a live
        frame by its capture time (a camera never shows the same moment twice).
        """
        digest = hashlib.sha256(rgb.data)
        identity = f"{self.name}|{index}" if not self.live else f"{self.name}|{utcnow().isoformat()}|{index}"
        digest.update(identity.encode("utf-8"))
        return digest.hexdigest()

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        self.delays.append(seconds)
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            stop.wait(seconds)

    def _reconnect(self, stop: threading.Event) -> Any | None:
        """Reopen with back-off; returns the open capture, or ``None`` when stopped or out of attempts."""
        started_at, t0 = utcnow(), self._clock()
        attempts = 0
        delay = self.backoff_s
        logger.warning("source %s dropped; reconnecting", self.name)
        while not stop.is_set() and (self.max_attempts is None or attempts < self.max_attempts):
            self._wait(delay, stop)
            if stop.is_set():
                break
            attempts += 1
            capture = self._open(self.target)
            if capture is not None and capture.isOpened():
                gap = Gap(started_at, utcnow(), attempts, self._clock() - t0)
                self.counters.gaps.append(gap)
                logger.warning("source %s back after %.1f s (%d attempt(s))", self.name, gap.seconds, attempts)
                return capture
            if capture is not None:
                capture.release()
            delay = min(delay * 2.0, self.max_backoff_s)
        self.counters.gaps.append(Gap(started_at, None, attempts, self._clock() - t0))
        if not stop.is_set():
            logger.error("source %s gave up after %d reconnection attempt(s)", self.name, attempts)
        return None

    def frames(self, stop: threading.Event) -> Iterator[Captured]:
        """Read frames until the file ends (non-live), ``stop`` is set, or reconnection gives up."""
        capture = self._open(self.target)
        if capture is None or not capture.isOpened():
            if not self.live:
                raise SourceError(f"cannot open video source {self.name!r}")
            capture = self._reconnect(stop)
        index = 0
        next_due = time.perf_counter()
        try:
            while capture is not None and not stop.is_set():
                if self.pace_fps is not None:
                    stop.wait(max(0.0, next_due - time.perf_counter()))
                    next_due = max(next_due + 1.0 / self.pace_fps, time.perf_counter())
                ok, bgr = capture.read()
                grabbed_at = utcnow()
                if not ok or bgr is None:
                    capture.release()
                    capture = self._reconnect(stop) if self.live else None
                    continue
                rgb = _capture_to_rgb(bgr)
                digest = self._frame_hash(rgb, index)
                if digest in self.skip_hashes:
                    self.counters.skipped += 1
                else:
                    yield self._frame(rgb, f"frame:{index}", digest, index, grabbed_at)
                index += 1
        finally:
            if capture is not None:
                capture.release()


def _capture_to_rgb(frame: np.ndarray) -> np.ndarray:
    """OpenCV capture output (BGR, grey or BGRA; 8 or 16 bit) as contiguous RGB uint8."""
    if frame.dtype == np.uint16:
        frame = ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def open_source(
    kind: str,
    target: str,
    station: str = "station-1",
    line: str = "line-1",
    skip_hashes: set[str] | None = None,
    live: bool | None = None,
    options: dict[str, Any] | None = None,
) -> Source:
    """Build a source from its declared kind and target.

    Args:
        kind: one of ``SOURCE_KINDS``.
        target: folder path, glob pattern, video file, stream URL or camera index.
        station: station name stamped on frames.
        line: production line stamped on frames.
        skip_hashes: content hashes / frame identities already inspected (file sources and video files).
        live: override whether frames may be dropped and failures reconnected (default: camera/stream are live).
        options: kind-specific settings (``recursive``, ``poll_s``, ``settle_s``, ``backoff_s``, ``max_backoff_s``,
            ``max_attempts``, ``pace_fps``, ``max_pixels``).

    Raises:
        SourceError: unknown kind, bad target or unknown option, naming the value and the allowed ones.
    """
    options = dict(options or {})
    allowed = {
        "folder": {"recursive", "max_pixels"},
        "glob": {"max_pixels"},
        "watch": {"poll_s", "settle_s", "max_pixels"},
        "video": {"backoff_s", "max_backoff_s", "max_attempts", "pace_fps"},
        "stream": {"backoff_s", "max_backoff_s", "max_attempts", "pace_fps"},
        "camera": {"backoff_s", "max_backoff_s", "max_attempts", "pace_fps"},
    }
    if kind not in allowed:
        raise SourceError(f"source kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    unknown = sorted(set(options) - allowed[kind])
    if unknown:
        raise SourceError(f"{kind} source: unknown option(s) {unknown}; allowed: {sorted(allowed[kind])}")
    common = {"station": station, "line": line}
    if kind == "folder":
        return folder_source(target, skip_hashes=skip_hashes, **options, **common)
    if kind == "glob":
        return glob_source(target, skip_hashes=skip_hashes, **options, **common)
    if kind == "watch":
        return WatchFolderSource(target, skip_hashes=skip_hashes, **options, **common)
    if kind == "camera":
        try:
            index: str | int = int(target)
        except ValueError as exc:
            raise SourceError(f"camera source: {target!r} is not a camera index (0, 1, ...)") from exc
        return VideoSource(index, live=True if live is None else live, **options, **common)
    if kind == "stream" and not str(target).lower().startswith(STREAM_SCHEMES) and not Path(target).exists():
        raise SourceError(f"stream source: {target!r} is neither a URL ({', '.join(STREAM_SCHEMES)}) nor a file")
    if kind == "video" and not Path(target).is_file():
        raise SourceError(f"video source: file {target!r} does not exist")
    default_live = kind in LIVE_KINDS
    source = VideoSource(
        str(target), live=default_live if live is None else live, skip_hashes=skip_hashes, **options, **common
    )
    source.kind = kind
    return source
