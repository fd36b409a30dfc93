"""Sinks that write files: NG/REVIEW evidence images with heatmap overlays, CSV and JSON Lines result files."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from inspect_app.data.image_io import write_image
from inspect_app.engine.explain import overlay
from inspect_app.engine.sink_base import CSV_FIELDS, SinkItem, inspection_to_dict, row_key

logger = logging.getLogger(__name__)


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

    def write(self, items: Sequence[SinkItem]) -> list[SinkItem]:
        """Save overlays for non-OK items that carry a heatmap."""
        out: list[SinkItem] = []
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

    def write(self, items: Sequence[SinkItem]) -> Sequence[SinkItem]:
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

    def write(self, items: Sequence[SinkItem]) -> Sequence[SinkItem]:
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
