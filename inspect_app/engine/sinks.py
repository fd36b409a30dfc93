"""Sinks: where decided inspections go (database, CSV, JSON Lines, NG image + heatmap files, reject signal).

Each sink takes a batch of ``(Inspection, image, Prediction)`` triples; image and prediction are ``None`` for error
rows. Sinks write per batch, so a crash in the middle of a folder loses nothing already decided. The pipeline wraps
every sink in ``ResilientSink`` (retries, then rows spooled to disk); ``RejectHookSink`` keeps its own spool of
undelivered reject signals and replays it, in order, once the PLC's endpoint answers again.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspect_app.data.image_io import write_image
from inspect_app.engine.explain import overlay
from inspect_app.errors import ConfigError, SinkError
from inspect_app.records import Decision, Inspection, Prediction, inspection_from_json, inspection_to_json
from inspect_app.redact import redact_url

logger = logging.getLogger(__name__)

Item = tuple[Inspection, np.ndarray | None, Prediction | None]

CSV_FIELDS = (
    "created_at", "station", "line", "source", "image_path", "content_hash", "model_version", "decision",
    "defect_class", "score", "raw_score", "threshold", "latency_ms", "heatmap_path", "error",
)


class Sink(Protocol):
    """Anything that accepts batches of decided items."""

    def write(self, items: Sequence[Item]) -> Sequence[Item]:
        """Store the batch; may return the items with fields filled in (e.g. heatmap paths)."""
        ...


class HeatmapFileSink:
    """Writes the NG/REVIEW image and its heatmap overlay as PNG files and records the overlay path.

    Args:
        folder: output folder; files are named after the content hash so re-runs overwrite, not duplicate.
        save_image: also write the NG/REVIEW image itself (``<hash>_image<ext>``) next to its overlay.
        ext: file format of both; JPEG by default because PNG (level 6) costs about 20x more CPU per image here, which
            a 2-core station PC takes straight out of inference. ``.png`` keeps the NG image lossless.
    """

    def __init__(self, folder: Path, save_image: bool = True, ext: str = ".jpg") -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # Not fatal: every write tries again, and what cannot be written is spooled (with its arrays) and
            # replayed by the next run, so the line keeps running and no evidence is lost.
            logger.error("evidence folder %s cannot be created (%s); NG evidence is spooled until it can", folder, exc)
        self.save_image = save_image
        self.ext = ext

    def write(self, items: Sequence[Item]) -> list[Item]:
        """Save overlays for non-OK items that carry a heatmap."""
        out: list[Item] = []
        for inspection, image, prediction in items:
            if image is not None and prediction is not None and prediction.heatmap is not None:
                stem = (inspection.content_hash or Path(inspection.image_path).stem)[:16]
                path = self.folder / f"{stem}_overlay{self.ext}"
                write_image(path, overlay(image, prediction.heatmap))
                if self.save_image:
                    write_image(self.folder / f"{stem}_image{self.ext}", image)
                inspection = replace(inspection, heatmap_path=str(path))
            out.append((inspection, image, prediction))
        return out


class CsvSink:
    """Appends one CSV line per inspection (header written once).

    A file that already has a header keeps its columns (one written before a column was added gets no new column,
    rather than rows that no longer line up with it).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: tuple[str, ...] = CSV_FIELDS
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(CSV_FIELDS)
        else:
            with open(self.path, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            self.fields = tuple(header) or CSV_FIELDS
        with open(self.path, newline="", encoding="utf-8") as fh:
            self.written = {row_key(row) for row in csv.DictReader(fh)}

    def write(self, items: Sequence[Item]) -> Sequence[Item]:
        """Append the batch's parts not already in the file, and flush."""
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            for inspection, _, _ in items:
                row = inspection_to_dict(inspection)
                if (key := row_key(row)) in self.written:
                    continue  # written by a run that was killed before its database commit
                writer.writerow(["" if row.get(name) is None else row[name] for name in self.fields])
                self.written.add(key)
        return items


class DatabaseSink:
    """Writes inspections through the storage repository (batched, idempotent on content hash)."""

    def __init__(self, repository: object) -> None:
        self.repository = repository
        self.inserted = 0

    def write(self, items: Sequence[Item]) -> Sequence[Item]:
        """Insert the batch's inspection rows."""
        self.inserted += self.repository.add_inspections([inspection for inspection, _, _ in items])
        return items


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """What identifies one part's line in an output file: station, model and content hash (the image path for a
    file that could not be read).

    The sinks that append to files run before the database sink, so a run killed between them leaves lines whose
    rows were never committed; the re-run inspects those parts again, and this key keeps their lines single.
    """
    part = row.get("content_hash") or f"path:{row.get('image_path') or ''}"
    return (str(row.get("station") or ""), str(row.get("model_version") or ""), str(part))


def inspection_to_dict(inspection: Inspection) -> dict[str, Any]:
    """JSON-ready dict of an inspection (the CSV columns, timestamps in ISO-8601 UTC)."""
    row = {name: getattr(inspection, name) for name in CSV_FIELDS}
    row["created_at"] = inspection.created_at.isoformat()
    row["decision"] = inspection.decision.value
    return row


class JsonLinesSink:
    """Appends one JSON object per inspection to a ``.jsonl`` file, flushed to disk per batch."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.written: set[tuple[str, ...]] = set()
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        self.written.add(row_key(json.loads(line)))
                    except (ValueError, AttributeError):
                        continue  # a line cut short by a crash names no part

    def write(self, items: Sequence[Item]) -> Sequence[Item]:
        """Append the batch's parts not already in the file and fsync (a power cut loses at most this batch)."""
        with open(self.path, "a", encoding="utf-8") as fh:
            for inspection, _, _ in items:
                row = inspection_to_dict(inspection)
                if (key := row_key(row)) in self.written:
                    continue  # written by a run that was killed before its database commit
                fh.write(json.dumps(row) + "\n")
                self.written.add(key)
            fh.flush()
            os.fsync(fh.fileno())
        return items


def _append_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


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
        if not self.spool_path.is_file():
            return 0
        with open(self.spool_path, encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip())

    def write(self, items: Sequence[Item]) -> Sequence[Item]:
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

    def _spool(self, items: Sequence[Item]) -> None:
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
        _append_jsonl(self.spool_path, records)
        self.spooled += len(items)

    def _load(self) -> tuple[list[Item], list[Path]]:
        items: list[Item] = []
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


def _no_url(text: str, url: str) -> str:
    return text.replace(url, redact_url(url))


class RejectHookSink:
    """Sends a reject signal for each NG part to the line's PLC gateway: an HTTP webhook or a local command.

    The webhook receives a JSON POST; the command receives the same JSON on stdin (run without a shell). A signal that
    still fails after ``retries`` is appended to ``spool_path`` and replayed, oldest first, before newer signals once
    the endpoint answers again, so none is lost and the order is kept.

    Args:
        webhook: URL to POST to.
        command: command line to run per signal (exit status 0 = delivered).
        spool_path: JSON Lines file of undelivered signals.
        decisions: decisions that trigger a signal (default NG only).
        retries: extra attempts per signal before spooling.
        backoff_s: first delay between attempts (doubled per attempt).
        timeout_s: per-attempt timeout.
        sleep: injected sleep (tests).
    """

    def __init__(
        self,
        spool_path: Path,
        webhook: str | None = None,
        command: str | None = None,
        decisions: Sequence[str] = (Decision.NG.value,),
        retries: int = 2,
        backoff_s: float = 0.2,
        timeout_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (webhook is None) == (command is None):
            raise ConfigError("reject hook needs exactly one of 'webhook' or 'command'")
        allowed = [d.value for d in Decision]
        bad = [d for d in decisions if d not in allowed]
        if bad:
            raise ConfigError(f"reject hook decision(s) {bad} are not among {allowed}")
        self.webhook = webhook
        self.command = shlex.split(command) if command else None
        self.spool_path = Path(spool_path)
        self.decisions = frozenset(decisions)
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self.delivered = 0
        self.spooled = 0
        # Parts already signalled, kept next to the spool so a re-run after kill -9 does not reject a part twice
        # (the payload carries the content hash too, for a gateway that wants to deduplicate the narrow window
        # between a delivery and its journal line).
        self.journal_path = self.spool_path.with_name(f"{self.spool_path.stem}.delivered")
        self._signalled: set[str] = set()
        if self.journal_path.is_file():
            self._signalled = set(self.journal_path.read_text(encoding="utf-8").splitlines())

    def _journal(self, payload: dict[str, Any]) -> None:
        key = json.dumps(row_key(payload))
        self._signalled.add(key)
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal_path, "a", encoding="utf-8") as fh:
            fh.write(key + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _deliver_once(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        if self.webhook is not None:
            request = urllib.request.Request(
                self.webhook, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if not 200 <= response.status < 300:
                        raise SinkError(f"webhook {redact_url(self.webhook)} answered HTTP {response.status}")
            except (urllib.error.URLError, OSError) as exc:
                # The error text can quote the URL (with its credentials): name the redacted URL and the error's kind.
                reason = getattr(exc, "reason", None) or exc.__class__.__name__
                raise SinkError(f"webhook {redact_url(self.webhook)} failed: {_no_url(str(reason), self.webhook)}") \
                    from exc
            return
        try:
            done = subprocess.run(self.command, input=body, capture_output=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SinkError(f"reject command {self.command} failed: {exc}") from exc
        if done.returncode != 0:
            raise SinkError(f"reject command {self.command} exited with status {done.returncode}")

    def _deliver(self, payload: dict[str, Any], retries: int) -> bool:
        delay = self.backoff_s
        for attempt in range(retries + 1):
            try:
                self._deliver_once(payload)
                self.delivered += 1
                self._journal(payload)
                return True
            except SinkError as exc:
                logger.warning("reject signal for %s not delivered (attempt %d): %s", payload["image_path"],
                               attempt + 1, exc)
                if attempt < retries:
                    self._sleep(delay)
                    delay *= 2.0
        return False

    def pending(self) -> list[dict[str, Any]]:
        """Signals waiting in the spool, oldest first."""
        if not self.spool_path.is_file():
            return []
        lines = self.spool_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _replay(self) -> bool:
        """Deliver spooled signals in order; True when the spool is empty afterwards."""
        waiting = self.pending()
        if not waiting:
            return True
        for i, payload in enumerate(waiting):
            # One attempt each: the endpoint was down moments ago, so do not stall the line on a long retry loop.
            if not self._deliver(payload, retries=0):
                remaining = waiting[i:]
                tmp = self.spool_path.with_name(f".{self.spool_path.name}.tmp")
                tmp.write_text("".join(json.dumps(p) + "\n" for p in remaining), encoding="utf-8")
                os.replace(tmp, self.spool_path)
                return False
        self.spool_path.unlink()
        logger.info("replayed %d spooled reject signal(s)", len(waiting))
        return True

    def write(self, items: Sequence[Item]) -> Sequence[Item]:
        """Signal each item whose decision triggers a reject; spool what cannot be delivered."""
        spooled = {json.dumps(row_key(p)) for p in self.pending()}
        payloads = [
            payload for payload in (inspection_to_dict(i) for i, _, _ in items if i.decision.value in self.decisions)
            if (key := json.dumps(row_key(payload))) not in self._signalled and key not in spooled
        ]
        if not payloads:
            return items
        clear = self._replay()
        failed: list[dict[str, Any]] = []
        for payload in payloads:
            # Once anything is spooled, newer signals queue behind it so the PLC sees them in order.
            if not clear or failed or not self._deliver(payload, self.retries):
                failed.append(payload)
        if failed:
            _append_jsonl(self.spool_path, failed)
            self.spooled += len(failed)
            logger.error("%d reject signal(s) spooled to %s", len(failed), self.spool_path)
        return items

    def close(self) -> None:
        """Try once more to empty the spool before the process ends."""
        self._replay()


def count_decisions(items: Sequence[Item]) -> dict[Decision, int]:
    """Count items per decision."""
    counts = dict.fromkeys(Decision, 0)
    for inspection, _, _ in items:
        counts[inspection.decision] += 1
    return counts
