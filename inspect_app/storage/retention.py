"""Retention: delete inspections older than a cut-off together with their image and heatmap files.

The hourly rollups (``inspection_hourly``, ``defect_hourly``) are kept, so defect rates, Pareto charts and score
histograms of purged periods stay answerable. Rows are deleted in chunks, each in its own transaction, so a large
purge neither holds one huge transaction nor loses its progress when interrupted; files are removed only after the
chunk that referenced them is committed, and never while a remaining inspection still points at them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from inspect_app.config.evidence import resolve_stored_path
from inspect_app.records import AuditEvent, utcnow
from inspect_app.storage.audit import AuditRepository
from inspect_app.storage.db import Database
from inspect_app.storage.tables import InspectionRow

logger = logging.getLogger(__name__)

AGE_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_AGE = re.compile(r"^\s*(\d+)\s*([a-z])\s*$")
DEFAULT_CHUNK = 5000


def parse_age(text: str) -> timedelta:
    """``"90d"`` → 90 days; units ``m`` (minutes), ``h``, ``d``, ``w``.

    Raises:
        ValueError: the text is not a positive whole number followed by one of those units.
    """
    match = _AGE.match(str(text).lower())
    if match is None or match.group(2) not in AGE_UNITS or int(match.group(1)) < 1:
        raise ValueError(
            f"age {text!r} is not a positive number followed by a unit; allowed units: {', '.join(AGE_UNITS)} "
            "(for example 90d)"
        )
    return int(match.group(1)) * AGE_UNITS[match.group(2)]


@dataclass(frozen=True)
class PurgeResult:
    """What a purge did (or, with ``dry_run``, would do).

    Attributes:
        cutoff: inspections created before this instant were purged.
        rows: inspections deleted (their reviews go with them).
        files_deleted: image and heatmap files removed.
        files_missing: files that were already gone.
        files_kept: files kept because a remaining inspection still refers to them.
    """

    cutoff: datetime
    rows: int
    files_deleted: int = 0
    files_missing: int = 0
    files_kept: int = 0


def purge(
    db: Database,
    older_than: timedelta,
    *,
    now: datetime | None = None,
    delete_files: bool = True,
    dry_run: bool = False,
    chunk: int = DEFAULT_CHUNK,
    actor: str = "system",
    evidence_root: Path | None = None,
) -> PurgeResult:
    """Delete inspections created before ``now - older_than`` and, by default, their image and heatmap files.

    Args:
        db: the database.
        older_than: age of the oldest inspection kept.
        now: reference time (default: the current UTC time).
        delete_files: also remove the image and heatmap files the purged rows point at.
        dry_run: count what would be purged, change nothing.
        chunk: rows deleted per transaction.
        actor: who asked, for the audit log.
        evidence_root: this machine's evidence folder, which ``evidence:`` paths are relative to; without it such
            files are kept (counted in ``files_kept``), never guessed at.

    Raises:
        ValueError: ``older_than`` is not positive, ``now`` is naive or ``chunk`` is not positive.
    """
    if older_than <= timedelta(0):
        raise ValueError(f"older_than {older_than!r} must be a positive duration")
    if chunk < 1:
        raise ValueError(f"chunk {chunk!r} must be a positive integer")
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError(f"now {now.isoformat()!r} is naive; pass a timezone-aware datetime")
    cutoff = now - older_than
    old = InspectionRow.created_at < cutoff
    if dry_run:
        with db.session() as session:
            count = int(session.scalar(select(func.count()).select_from(InspectionRow).where(old)) or 0)
        return PurgeResult(cutoff=cutoff, rows=count)

    rows = deleted = missing = kept = 0
    while True:
        with db.session() as session:
            batch = session.execute(
                select(
                    InspectionRow.id, InspectionRow.content_hash, InspectionRow.image_path, InspectionRow.heatmap_path
                )
                .where(old)
                .order_by(InspectionRow.id)
                .limit(chunk)
            ).all()
            if not batch:
                break
            session.execute(delete(InspectionRow).where(InspectionRow.id.in_([r.id for r in batch])))
            candidates = _file_candidates(batch)
            # Same image inspected again later (other model, newer row): its files stay with the newer row.
            hashes = sorted({r.content_hash for r in batch if r.content_hash})
            still_used: set[str] = set()
            for start in range(0, len(hashes), 500):
                for image_path, heatmap_path in session.execute(
                    select(InspectionRow.image_path, InspectionRow.heatmap_path).where(
                        InspectionRow.content_hash.in_(hashes[start : start + 500])
                    )
                ):
                    still_used.update(p for p in (image_path, heatmap_path) if p)
        rows += len(batch)
        if delete_files:
            for path in sorted(candidates):
                if path in still_used:
                    kept += 1
                    continue
                local = resolve_stored_path(path, evidence_root)
                if local is None:  # a frame reference, or an evidence path with no root to resolve it
                    kept += 1
                    continue
                try:
                    local.unlink()
                    deleted += 1
                except FileNotFoundError:
                    missing += 1
                except OSError as exc:  # a permission problem must not stop the purge of the database rows
                    logger.warning("cannot delete %s: %s", path, exc)
                    kept += 1
        logger.debug("purged %d inspections so far", rows)
    result = PurgeResult(cutoff=cutoff, rows=rows, files_deleted=deleted, files_missing=missing, files_kept=kept)
    AuditRepository(db).audit(
        AuditEvent(
            actor=actor,
            action="db.purge",
            target="inspections",
            details={"cutoff": cutoff.isoformat(), "rows": rows, "delete_files": delete_files, "files_deleted": deleted,
                     "files_kept": kept},
        )
    )
    logger.info("purged %d inspections created before %s", rows, cutoff.isoformat())
    return result


def _file_candidates(batch: Sequence[Any]) -> set[str]:
    """Files the purged rows point at: heatmaps always, images only for decided rows.

    Rows without a content hash (unreadable files) keep their image: without the hash there is no indexed way to
    prove that no newer row points at the same file.
    """
    paths = {r.heatmap_path for r in batch if r.heatmap_path}
    paths.update(r.image_path for r in batch if r.content_hash and r.image_path)
    return paths
