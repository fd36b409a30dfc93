"""OpenCV capture sources: a camera index or a stream (live, reconnecting with back-off) and a video file."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from inspect_app.data.source_base import Captured, Gap, Source
from inspect_app.errors import SourceError
from inspect_app.records import utcnow

logger = logging.getLogger(__name__)


def _open_capture(target: str | int) -> Any:
    """An OpenCV capture of a camera index, stream URL or video file (the default ``open_capture``)."""
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
