"""Sinks: where decided inspections go (database, CSV, NG image + heatmap files).

Each sink takes a batch of ``(Inspection, image, Prediction)`` triples; image and prediction are ``None`` for error
rows. Sinks write per batch, so a crash in the middle of a folder loses nothing already decided.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from inspect_app.data.image_io import write_image
from inspect_app.engine.explain import overlay
from inspect_app.records import Decision, Inspection, Prediction

logger = logging.getLogger(__name__)

Item = tuple[Inspection, np.ndarray | None, Prediction | None]

CSV_FIELDS = (
    "created_at", "station", "line", "source", "image_path", "content_hash", "model_version", "decision",
    "defect_class", "score", "threshold", "latency_ms", "heatmap_path", "error",
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
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, items: Sequence[Item]) -> list[Item]:
        """Save overlays for non-OK items that carry a heatmap."""
        out: list[Item] = []
        for inspection, image, prediction in items:
            if image is not None and prediction is not None and prediction.heatmap is not None:
                stem = (inspection.content_hash or Path(inspection.image_path).stem)[:16]
                path = self.folder / f"{stem}_overlay.png"
                write_image(path, overlay(image, prediction.heatmap))
                inspection = replace(inspection, heatmap_path=str(path))
            out.append((inspection, image, prediction))
        return out


class CsvSink:
    """Appends one CSV line per inspection (header written once)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(CSV_FIELDS)

    def write(self, items: Sequence[Item]) -> Sequence[Item]:
        """Append the batch and flush."""
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            for inspection, _, _ in items:
                row = [getattr(inspection, name) for name in CSV_FIELDS]
                row[0] = inspection.created_at.isoformat()
                row[7] = inspection.decision.value
                writer.writerow(["" if v is None else v for v in row])
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


def count_decisions(items: Sequence[Item]) -> dict[Decision, int]:
    """Count items per decision."""
    counts = dict.fromkeys(Decision, 0)
    for inspection, _, _ in items:
        counts[inspection.decision] += 1
    return counts
