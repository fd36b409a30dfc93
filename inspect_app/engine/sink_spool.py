"""Spooling around any sink: retries with back-off, then items (and their evidence arrays) kept on disk, replayed."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from inspect_app.engine.sink_base import Sink, SinkItem, append_jsonl
from inspect_app.records import Prediction, inspection_from_json, inspection_to_json, spooled_count

logger = logging.getLogger(__name__)


class ResilientSink:
    """Wraps a sink: a failing write is retried with back-off, then its items are spooled to disk and the run goes on.

    The spool keeps everything the wrapped sink needs to write the items later: each row in full (JSON Lines) and,
    for items carrying evidence, the image and heatmap in a ``.npz`` file next to it, so an unwritable NG folder
    loses no evidence. ``replay`` (run by the pipeline before its first batch) writes the spool through the sink once
    it works again and removes it.

    Args:
        sink: the wrapped sink.
        spool_dir: folder for ``<SinkClass>.jsonl`` files holding items that could not be written.
        retries: extra attempts after the first failure.
        backoff_s: first delay between attempts (doubled per attempt).
        sleep: injected sleep (tests).

    Attributes:
        spooled: items spooled by this object.
        replayed: spooled items (from this or an earlier run) written through the sink by ``replay``.
    """

    def __init__(
        self,
        sink: Sink,
        spool_dir: Path,
        retries: int = 3,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sink = sink
        self.spool_path = Path(spool_dir) / f"{type(sink).__name__}.jsonl"
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.spooled = 0
        self.replayed = 0

    @property
    def name(self) -> str:
        """The wrapped sink's class name (how logs and the run's last line name it)."""
        return type(self.sink).__name__

    @property
    def pending(self) -> int:
        """Items waiting in the spool file."""
        return spooled_count(self.spool_path)

    def write(self, items: Sequence[SinkItem]) -> Sequence[SinkItem]:
        """Write through the wrapped sink; on persistent failure spool the items and return them unchanged."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return self.sink.write(items)
            except Exception as exc:  # any sink error: retry, then spool; never lose the rows, never stop the run
                logger.warning("sink %s failed (attempt %d/%d): %s", self.name, attempt + 1, self.retries + 1, exc)
                if attempt < self.retries:
                    self._sleep(delay)
                    delay *= 2.0
        self._spool(items)
        logger.error("sink %s: %d row(s) spooled to %s", self.name, len(items), self.spool_path)
        return items

    def _spool(self, items: Sequence[SinkItem]) -> None:
        records = []
        for inspection, image, prediction in items:
            record = json.loads(inspection_to_json(inspection))
            if image is not None and prediction is not None:
                # The arrays go first, so a spool line never names evidence that is not on disk.
                arrays = self.spool_path.with_name(f"{self.spool_path.stem}-{uuid.uuid4().hex}.npz")
                arrays.parent.mkdir(parents=True, exist_ok=True)
                heatmap = prediction.heatmap if prediction.heatmap is not None else np.zeros((0, 0), np.float32)
                with open(arrays, "wb") as fh:
                    np.savez(fh, image=image, heatmap=heatmap)
                    fh.flush()
                    os.fsync(fh.fileno())
                record["_evidence"] = arrays.name
                record["_label"] = prediction.label
            records.append(record)
        append_jsonl(self.spool_path, records)
        self.spooled += len(items)

    def _load(self) -> tuple[list[SinkItem], list[Path]]:
        items: list[SinkItem] = []
        evidence: list[Path] = []
        with open(self.spool_path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                record = json.loads(line)
                arrays_name, label = record.pop("_evidence", None), record.pop("_label", None)
                inspection = inspection_from_json(json.dumps(record))
                image, prediction = None, None
                if arrays_name is not None:
                    path = self.spool_path.with_name(arrays_name)
                    with np.load(path) as arrays:
                        image, heatmap = arrays["image"], arrays["heatmap"]
                    prediction = Prediction(
                        label=label or "", score=inspection.score or 0.0, decision=inspection.decision,
                        heatmap=heatmap if heatmap.size else None, defect_class=inspection.defect_class,
                        raw_score=inspection.raw_score,
                    )
                    evidence.append(path)
                items.append((inspection, image, prediction))
        return items, evidence

    def replay(self) -> int:
        """Write the spooled items through the sink (one attempt) and remove the spool; return the items written.

        Returns 0 and keeps the spool when the sink still fails (logged); the next run tries again.
        """
        if not self.spool_path.is_file():
            return 0
        items, evidence = self._load()
        try:
            self.sink.write(items)
        except Exception as exc:  # still failing: keep everything for the next run
            logger.warning("sink %s still failing; %d spooled item(s) stay in %s: %s", self.name, len(items),
                           self.spool_path, exc)
            return 0
        self.spool_path.unlink()
        for path in evidence:
            path.unlink(missing_ok=True)
        self.replayed += len(items)
        logger.info("sink %s: replayed %d spooled item(s) from %s", self.name, len(items), self.spool_path)
        return len(items)

    def close(self) -> None:
        """Close the wrapped sink when it has a ``close``."""
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()
