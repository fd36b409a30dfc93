"""Database upkeep a plant admin does: purge old inspections and their files."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from inspect_app.app.access import authorize
from inspect_app.records import User
from inspect_app.storage import retention
from inspect_app.storage.db import Database

__all__ = ["purge_inspections"]


def purge_inspections(
    db: Database,
    user: User | None,
    older_than: str | timedelta,
    keep_files: bool = False,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    evidence_root: Path | None = None,
) -> retention.PurgeResult:
    """Delete inspections older than ``older_than`` (and, unless ``keep_files``, their files) via ``retention.purge``.

    ``retention.purge`` writes the one audit entry (``db.purge``) with the user as actor, so none is added here. A
    dry run only counts and is not audited, but needs the role too: the count is the first half of the control.
    Passing the dry run's ``now`` to the confirmed purge deletes exactly the rows that were counted.
    ``evidence_root`` (``Settings.resolved_evidence_dir``) resolves the ``evidence:`` paths of the files to delete.

    Raises:
        AccessDeniedError: the user is not an admin.
        ValueError: ``older_than`` is not an age such as ``90d`` (the text and the allowed units named) or not
            positive, or ``now`` is naive.
    """
    user = authorize(user, "purge")
    age = retention.parse_age(older_than) if isinstance(older_than, str) else older_than
    return retention.purge(db, age, now=now, delete_files=not keep_files, dry_run=dry_run, actor=user.username,
                           evidence_root=evidence_root)
