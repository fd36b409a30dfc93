"""Reviewing inspected parts: a person's verdict on one inspection, audited with the review."""

from __future__ import annotations

from inspect_app.app.access import authorize
from inspect_app.records import Decision, Review, User
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import REVIEW_VERDICTS

__all__ = ["review_inspection"]


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
