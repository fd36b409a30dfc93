"""A local spool for inspections while the database is unreachable, replayed once it answers again.

``SpoolingRepository`` wraps a ``Repository``: ``add_inspections`` appends the batch to a JSON-lines file (flushed
and fsynced) instead of failing when the database cannot be reached, and every later call first replays the file.
Replays are idempotent: decided rows hit the (content_hash, model_version, station) unique constraint, and rows
without a content hash are matched on (station, created_at, image_path) before they are written, so a crash between a
replay's commit and the spool's removal neither loses nor duplicates anything.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from inspect_app.errors import StorageError
from inspect_app.records import Inspection, inspection_from_json, inspection_to_json, spooled_count
from inspect_app.storage.db import is_unreachable
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import InspectionRow

logger = logging.getLogger(__name__)


class SpoolingRepository:
    """A ``Repository`` whose ``add_inspections`` survives database outages; other methods pass straight through.

    Args:
        repository: the repository to write through.
        path: the spool file (its folder is created); one file per writer process, e.g. per station.

    Attributes:
        spooled: rows written to the spool by this object (an outage's size).
        replayed: spooled rows that later reached the database.
    """

    def __init__(self, repository: Repository, path: Path) -> None:
        """Wrap ``repository``; an existing spool file (from an earlier run) is replayed by the next write."""
        self.repository = repository
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.spooled = 0
        self.replayed = 0

    def __getattr__(self, name: str) -> Any:
        """Everything but ``add_inspections`` and ``flush`` is the wrapped repository's."""
        return getattr(self.repository, name)

    @property
    def pending(self) -> int:
        """Rows waiting in the spool file."""
        return spooled_count(self.path)

    def pending_hashes(self) -> set[str]:
        """Content hashes of the rows waiting in the spool (still part of the skip list while the database is down)."""
        if not self.path.exists():
            return set()
        hashes = set()
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    digest = json.loads(line).get("content_hash") if line.strip() else None
                except (ValueError, AttributeError):
                    continue
                if digest:
                    hashes.add(digest)
        return hashes

    def add_inspections(self, inspections: Iterable[Inspection]) -> int:
        """Write the batch (after replaying the spool), or spool it while the database is unreachable.

        Returns:
            Rows inserted into the database by this call, replayed ones included; 0 when the batch was spooled.

        Raises:
            StorageError: the database refused the rows for another reason than being unreachable.
        """
        batch = list(inspections)
        inserted = 0
        if self.path.exists():
            try:
                inserted += self.flush()
            except StorageError as exc:
                if not is_unreachable(exc):
                    raise
                self._append(batch)
                return 0
        try:
            return inserted + self.repository.add_inspections(batch)
        except StorageError as exc:
            if not is_unreachable(exc):
                raise
            logger.warning("database unreachable, spooling %d inspection(s) to %s: %s", len(batch), self.path, exc)
            self._append(batch)
            return inserted

    def flush(self) -> int:
        """Replay the spool into the database in one transaction and remove it; return the rows inserted.

        Lines that cannot be parsed (a write cut short by a crash) are moved to ``<spool>.rejected`` and logged, not
        dropped silently.

        Raises:
            StorageError: the database is still unreachable (the spool is kept) or refused the rows.
        """
        if not self.path.exists():
            return 0
        rows: list[Inspection] = []
        rejected: list[str] = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    rows.append(inspection_from_json(line))
                except (ValueError, TypeError, KeyError) as exc:
                    logger.error("spool %s: unreadable line kept in %s.rejected: %s", self.path, self.path.name, exc)
                    rejected.append(line if line.endswith("\n") else line + "\n")
        fresh = self._not_yet_recorded(rows)
        inserted = self.repository.add_inspections(fresh)
        if rejected:
            with open(self.path.with_name(self.path.name + ".rejected"), "a", encoding="utf-8") as fh:
                fh.writelines(rejected)
        self.path.unlink()
        self.replayed += inserted
        logger.info("replayed %d spooled inspection(s) from %s (%d new)", len(rows), self.path, inserted)
        return inserted

    def _not_yet_recorded(self, rows: list[Inspection]) -> list[Inspection]:
        """Drop rows without a content hash that an earlier, interrupted replay already committed."""
        hashless = [r for r in rows if r.content_hash is None]
        if not hashless:
            return rows
        present = set()
        with self.repository.db.session() as session:
            for row in hashless:
                stmt = select(InspectionRow.id).where(
                    InspectionRow.station == row.station,
                    InspectionRow.created_at == row.created_at,
                    InspectionRow.image_path == row.image_path,
                )
                if session.scalar(stmt.limit(1)) is not None:
                    present.add(id(row))
        return [r for r in rows if id(r) not in present]

    def _append(self, batch: list[Inspection]) -> None:
        """Append rows to the spool and force them to disk before returning."""
        if not batch:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.writelines(inspection_to_json(r) + "\n" for r in batch)
            fh.flush()
            os.fsync(fh.fileno())
        self.spooled += len(batch)
