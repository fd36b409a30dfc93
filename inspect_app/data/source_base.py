"""What every image source shares: the ``Source`` base class, its counters, and the items and gaps it reports."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from inspect_app.records import Frame, utcnow

logger = logging.getLogger(__name__)


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
