"""The bounded queue between capture threads and the batch assembler, and the envelope that travels through it."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from inspect_app.data.source_base import Captured

POLL_S = 0.2  # how often blocked loops look at the stop flag and the stats clock


@dataclass
class Envelope:
    """A captured item on its way through the queues, with the timings the live figures need."""

    item: Captured
    live: bool
    t_captured: float
    capture_ms: float


class FrameQueue:
    """Bounded queue between capture threads and the batch assembler.

    ``put`` of a live envelope into a full queue drops the oldest queued *live* envelope (counted per source); any
    other put blocks until there is room, so file sources never lose an image.

    Args:
        maxsize: capacity in envelopes.
        producers: number of capture threads that will call ``producer_done``.
    """

    def __init__(self, maxsize: int, producers: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size {maxsize!r} must be a positive integer")
        self.maxsize = maxsize
        self._items: deque[Envelope] = deque()
        self._cond = threading.Condition()
        self._producers = producers
        self.dropped: Counter[str] = Counter()

    @property
    def depth(self) -> int:
        """Envelopes waiting now."""
        return len(self._items)

    def put(self, envelope: Envelope) -> None:
        """Enqueue, dropping the oldest live frame or blocking when full (see class doc)."""
        with self._cond:
            while len(self._items) >= self.maxsize:
                if envelope.live:
                    victim = next((e for e in self._items if e.live), None)
                    if victim is not None:
                        self._items.remove(victim)
                        self.dropped[victim.item.source] += 1
                        continue
                self._cond.wait(POLL_S)
            self._items.append(envelope)
            self._cond.notify_all()

    def producer_done(self) -> None:
        """A capture thread has finished."""
        with self._cond:
            self._producers -= 1
            self._cond.notify_all()

    def get_batch(self, max_batch: int, max_wait_s: float, poll_s: float = POLL_S) -> list[Envelope] | None:
        """Up to ``max_batch`` envelopes, waiting at most ``max_wait_s`` after the first one.

        Returns:
            A batch; an empty list when nothing arrived within ``poll_s`` (so the caller can report figures); or
            ``None`` once every producer is done and the queue is empty.
        """
        with self._cond:
            if not self._items:
                if self._producers <= 0:
                    return None
                self._cond.wait(poll_s)
                if not self._items:
                    return None if self._producers <= 0 else []
            batch = [self._items.popleft()]
            deadline = time.perf_counter() + max_wait_s
            while len(batch) < max_batch:
                if self._items:
                    batch.append(self._items.popleft())
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._producers <= 0:
                    break
                self._cond.wait(remaining)
            self._cond.notify_all()
            return batch
