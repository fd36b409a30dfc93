"""Batch folder inspection: images → decode → batched inference → decisions → sinks.

Folder runs never drop an image: unreadable files become ERROR inspections with the reason, already-inspected files
(same content hash, model and station) are skipped, and every batch is written before the next one is decoded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspect_app.data.folders import list_images
from inspect_app.data.image_io import content_hash, decode_image
from inspect_app.engine.infer import Inspector
from inspect_app.engine.sinks import Item, Sink
from inspect_app.errors import ImageDecodeError
from inspect_app.records import Decision, Inspection, InspectionSummary, utcnow

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class FolderRunResult:
    """Outcome of one folder run.

    Attributes:
        total: images found.
        skipped: images already inspected earlier with the same model at the same station.
        decisions: count per decision for images handled in this run.
        per_class: NG/REVIEW count per defect class in this run.
        seconds: wall time.
    """

    total: int = 0
    skipped: int = 0
    decisions: Counter = field(default_factory=Counter)
    per_class: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> InspectionSummary:
        """The run's counts as an ``InspectionSummary``."""
        return InspectionSummary(
            total=sum(self.decisions.values()),
            ok=self.decisions[Decision.OK],
            review=self.decisions[Decision.REVIEW],
            ng=self.decisions[Decision.NG],
            errors=self.decisions[Decision.ERROR],
            per_class=dict(self.per_class.most_common()),
        )


def _chunks(paths: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def inspect_folder(
    folder: Path,
    inspector: Inspector,
    sinks: Iterable[Sink],
    station: str,
    line: str,
    batch_size: int = 16,
    skip_hashes: set[str] | None = None,
    progress: ProgressFn | None = None,
) -> FolderRunResult:
    """Inspect every image under ``folder`` (recursive, stable order) and send each batch through the sinks.

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
    start = time.perf_counter()
    folder = Path(folder)
    paths = list_images(folder)
    sinks = list(sinks)
    skip = skip_hashes or set()
    result = FolderRunResult(total=len(paths))
    done = 0
    for chunk in _chunks(paths, batch_size):
        # Read per batch: a hot-swapping inspector (lifecycle.active_model) may change model between batches.
        model_version = inspector.card.name
        items: list[Item] = []
        decoded: list[tuple[Path, str, np.ndarray]] = []
        for path in chunk:
            try:
                data = path.read_bytes()
            except OSError as exc:
                reason = f"cannot read file: {exc}"
                items.append((_error(path, None, reason, folder, station, line, inspector), None, None))
                continue
            digest = content_hash(data)
            if digest in skip:
                result.skipped += 1
                continue
            try:
                decoded.append((path, digest, decode_image(data, name=str(path))))
            except ImageDecodeError as exc:
                items.append((_error(path, digest, str(exc), folder, station, line, inspector), None, None))
        if decoded:
            t0 = time.perf_counter()
            predictions = inspector.predict([image for _, _, image in decoded])
            latency_ms = (time.perf_counter() - t0) * 1000.0 / len(decoded)
            for (path, digest, image), prediction in zip(decoded, predictions, strict=True):
                inspection = Inspection(
                    station=station,
                    line=line,
                    source=str(folder),
                    image_path=str(path),
                    decision=prediction.decision,
                    created_at=utcnow(),
                    content_hash=digest,
                    model_version=model_version,
                    defect_class=prediction.defect_class,
                    score=prediction.score,
                    threshold=inspector.threshold,
                    latency_ms=latency_ms,
                )
                items.append((inspection, image, prediction))
        for sink in sinks:
            items = list(sink.write(items))
        for inspection, _, _ in items:
            result.decisions[inspection.decision] += 1
            if inspection.defect_class and inspection.decision in (Decision.NG, Decision.REVIEW):
                result.per_class[inspection.defect_class] += 1
            if inspection.content_hash:
                skip.add(inspection.content_hash)
        done += len(chunk)
        if progress is not None:
            progress(done, len(paths))
    result.seconds = time.perf_counter() - start
    logger.info("inspected %s: %s in %.1f s", folder, dict(result.decisions), result.seconds)
    return result


def _error(
    path: Path, digest: str | None, reason: str, folder: Path, station: str, line: str, inspector: Inspector
) -> Inspection:
    logger.warning("error row for %s: %s", path, reason)
    return Inspection(
        station=station,
        line=line,
        source=str(folder),
        image_path=str(path),
        decision=Decision.ERROR,
        content_hash=digest,
        model_version=inspector.card.name,
        error=reason,
    )
