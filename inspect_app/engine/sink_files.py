"""Sinks that write files: NG/REVIEW evidence (part pictures and heatmap overlays, by content hash), CSV and JSON
Lines result files."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

from inspect_app.config.evidence import (
    EVIDENCE_EXTS,
    evidence_key,
    evidence_ref,
    evidence_relpath,
    is_frame_ref,
)
from inspect_app.data.image_io import write_image
from inspect_app.engine.explain import overlay
from inspect_app.engine.sink_base import CSV_FIELDS, EVIDENCE_DECISIONS, SinkItem, inspection_to_dict, row_key

logger = logging.getLogger(__name__)


class HeatmapFileSink:
    """Files each NG/REVIEW part's evidence under the evidence folder by content hash (layout in
    ``config.evidence``): its heatmap overlay and its picture, and records their paths on the row.

    A frame from a video, stream or camera (image path ``frame:<index>``) has no file of its own, so its picture is
    always written and becomes the row's image path; the frame identity stays in the content hash, which is what the
    exactly-once skip list compares. A part read from a file keeps its own path; its copy here is written when
    ``save_image`` is set. OK parts get no files.

    Args:
        folder: output folder; names come from the content hash, so a re-run overwrites instead of duplicating.
        save_image: also write the picture of parts read from files (``<hash><ext>`` beside ``<hash>_heatmap<ext>``).
        ext: file format of both; JPEG by default because PNG (level 6) costs about 20x more CPU per image here, which
            a 2-core station PC takes straight out of inference. ``.png`` keeps the NG image lossless.
        evidence_root: the plant's evidence folder (default: ``folder``). Files under it are recorded as
            ``evidence:<relative path>``, which any machine resolves against its own mount of the folder; files
            elsewhere are recorded by absolute path.
    """

    def __init__(
        self, folder: Path, save_image: bool = True, ext: str = ".jpg", evidence_root: Path | None = None
    ) -> None:
        if ext.lower() not in EVIDENCE_EXTS:
            raise ValueError(f"evidence file format {ext!r} is not one of {list(EVIDENCE_EXTS)}")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # Not fatal: every write tries again, and what cannot be written is spooled (with its arrays) and
            # replayed by the next run, so the line keeps running and no evidence is lost.
            logger.error("evidence folder %s cannot be created (%s); NG evidence is spooled until it can", folder, exc)
        self.save_image = save_image
        self.ext = ext.lower()
        root = Path(evidence_root) if evidence_root is not None else self.folder
        folder_real, root_real = self.folder.resolve(), root.resolve()
        self._under_root = (
            PurePosixPath(folder_real.relative_to(root_real).as_posix()) if folder_real.is_relative_to(root_real)
            else None
        )

    def _stored(self, relpath: PurePosixPath) -> str:
        """How the row records a file written at ``folder / relpath``."""
        if self._under_root is not None:
            return evidence_ref(self._under_root / relpath)
        return str((self.folder / relpath).absolute())

    def write(self, items: Sequence[SinkItem]) -> list[SinkItem]:
        """Write the evidence of the batch's NG/REVIEW parts and return the rows with their evidence paths."""
        out: list[SinkItem] = []
        for inspection, image, prediction in items:
            if image is not None and prediction is not None and inspection.decision in EVIDENCE_DECISIONS:
                key = evidence_key(inspection.content_hash, image.tobytes())
                heatmap_path, image_path = inspection.heatmap_path, inspection.image_path
                if prediction.heatmap is not None:
                    relpath = evidence_relpath(key, "heatmap", self.ext)
                    write_image(self.folder / relpath, overlay(image, prediction.heatmap))
                    heatmap_path = self._stored(relpath)
                frame = is_frame_ref(inspection.image_path)
                if frame or self.save_image:
                    relpath = evidence_relpath(key, "image", self.ext)
                    write_image(self.folder / relpath, image)
                    if frame:
                        image_path = self._stored(relpath)
                inspection = replace(inspection, heatmap_path=heatmap_path, image_path=image_path)
            out.append((inspection, image, prediction))
        return out


def drop_cut_line(path: Path) -> None:
    """Cut off a last line that a kill left without its newline.

    Otherwise the next append would be glued onto it (one unreadable line), and a cut line that still names its part
    would keep that part from being written again. The part of a dropped line is not in the file any more, so the re-run
    that inspects it again writes it whole.
    """
    if not path.is_file():
        return
    with open(path, "rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return
        fh.seek(end - 1)
        if fh.read(1) == b"\n":
            return
        keep, position = 0, end
        while position > 0:  # back to the last newline, a block at a time
            start = max(0, position - 65536)
            fh.seek(start)
            block = fh.read(position - start)
            if (index := block.rfind(b"\n")) >= 0:
                keep = start + index + 1
                break
            position = start
        fh.truncate(keep)
    logger.warning("%s ended in a line cut short (a killed run); dropped its last %d byte(s)", path, end - keep)


class CsvSink:
    """Appends one CSV line per inspection (header written once).

    A file that already has a header keeps its columns (one written before a column was added gets no new column,
    rather than rows that no longer line up with it).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: tuple[str, ...] = CSV_FIELDS
        drop_cut_line(self.path)
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
        drop_cut_line(self.path)
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
