"""Reviewing inspected parts: a person's verdict on one inspection (audited with the review), and the export of
verdicts as a training manifest."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from inspect_app.app.access import authorize
from inspect_app.config.evidence import existing_picture, is_frame_ref
from inspect_app.config.settings import load_settings
from inspect_app.records import Decision, Review, User
from inspect_app.storage import dashboard_queries
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import REVIEW_VERDICTS

logger = logging.getLogger(__name__)

__all__ = ["ReviewExport", "export_reviews", "review_inspection"]


def review_inspection(
    db: Database,
    user: User | None,
    inspection_id: int,
    verdict: str,
    defect_class: str | None = None,
    comment: str | None = None,
) -> int:
    """Record a person's verdict (confirm or relabel) on one inspection; returns the review id.

    The repository writes the audit entry in the same transaction as the review.

    Raises:
        AccessDeniedError: the user is not at least an operator.
        ValueError: the verdict is not OK/NG, or an NG verdict names no defect class.
        LookupError: no such inspection.
        StorageError: the inspection already has a review.
    """
    user = authorize(user, "review")
    if verdict not in REVIEW_VERDICTS:
        raise ValueError(f"review verdict {verdict!r} is not one of {list(REVIEW_VERDICTS)}")
    if verdict == Decision.NG.value and not defect_class:
        raise ValueError("an NG verdict needs the defect class the reviewer saw")
    return Repository(db).add_review(
        Review(
            inspection_id=inspection_id,
            verdict=Decision(verdict),
            reviewer=user.username,
            defect_class=defect_class if verdict == Decision.NG.value else None,
            comment=comment or None,
        )
    )


@dataclass(frozen=True)
class ReviewExport:
    """What ``export_reviews`` wrote: manifest rows, and reviewed parts left out because no image file exists."""

    path: Path
    written: int
    frames: int  # stream/video frames whose evidence file was never written (rows from before frames were filed)
    missing: int  # the image file is gone (purged, moved, or on another machine's disk)


def export_reviews(
    db: Database, path: Path, since: datetime | None = None, evidence_root: Path | None = None
) -> ReviewExport:
    """Write the reviewed parts as a ``path,label`` CSV manifest that ``train`` and ``data check`` read as is.

    Paths are written absolute (a manifest's relative paths are read relative to the manifest). Each part's picture
    is its recorded file when that exists here, else its copy in the evidence folder (``evidence_root``, this
    machine's mount of it; default ``Settings.resolved_evidence_dir``), which is also where stream and video frames
    are filed. A relative path of an older row is resolved from the current folder. Parts without an image file are
    counted, not written: a manifest row that points nowhere would stop the next training run. A part reviewed
    twice (inspected by two models) is written once, with its latest verdict.

    Raises:
        ValueError: nothing has been reviewed, or none of the reviewed parts has an image file (counts named).
    """
    root = Path(evidence_root) if evidence_root is not None else load_settings().resolved_evidence_dir
    parts = dashboard_queries.reviewed_parts(db, since=since)
    if not parts:
        raise ValueError("no reviewed parts yet; review parts on the Review page first")
    labels: dict[str, str] = {}
    frames = missing = 0
    for part in parts:
        if (picture := existing_picture(part.image_path, part.heatmap_path, part.content_hash, root)) is not None:
            labels[str(picture)] = part.label  # oldest first: a later verdict on the same picture wins
        elif is_frame_ref(part.image_path):
            frames += 1
        else:
            missing += 1
    if not labels:
        raise ValueError(f"none of the {len(parts)} reviewed parts has an image file here "
                         f"({frames} stream frame(s), {missing} file(s) not found under {root} or their own path)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows(labels.items())
    logger.info("wrote %d reviewed parts to %s (%d frames, %d missing files left out)", len(labels), path, frames,
                missing)
    return ReviewExport(path=path, written=len(labels), frames=frames, missing=missing)
