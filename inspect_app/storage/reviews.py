"""People's verdicts on inspections, each written with its audit entry."""

from __future__ import annotations

from sqlalchemy import select

from inspect_app.errors import StorageError
from inspect_app.records import AuditEvent, Decision, Review
from inspect_app.storage.audit import write_audit
from inspect_app.storage.checks import require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.tables import REVIEW_VERDICTS, InspectionRow, ReviewRow


class ReviewRepository:
    """Reviews through one ``Database``."""

    def __init__(self, db: Database) -> None:
        """Bind to a database."""
        self.db = db

    def add_review(self, review: Review) -> int:
        """Record a person's verdict on an inspection (and an audit entry); return the review's id.

        Raises:
            ValueError: the verdict is not one of ``REVIEW_VERDICTS`` or ``created_at`` is naive.
            LookupError: no inspection has ``review.inspection_id``.
            StorageError: the inspection already has a review.
        """
        verdict = str(getattr(review.verdict, "value", review.verdict))
        if verdict not in REVIEW_VERDICTS:
            raise ValueError(f"review verdict {review.verdict!r} is not one of {list(REVIEW_VERDICTS)}")
        require_aware("created_at", review.created_at)
        with self.db.session() as session:
            if session.get(InspectionRow, review.inspection_id) is None:
                raise LookupError(f"inspection {review.inspection_id!r} not found")
            existing = select(ReviewRow.id).where(ReviewRow.inspection_id == review.inspection_id)
            if session.scalar(existing) is not None:
                raise StorageError(f"inspection {review.inspection_id!r} already has a review")
            row = ReviewRow(
                inspection_id=review.inspection_id,
                verdict=verdict,
                defect_class=review.defect_class,
                reviewer=review.reviewer,
                comment=review.comment,
                created_at=review.created_at,
            )
            session.add(row)
            session.flush()
            write_audit(
                session,
                AuditEvent(
                    actor=review.reviewer,
                    action="review.add",
                    target=f"inspection:{review.inspection_id}",
                    details={"verdict": verdict, "defect_class": review.defect_class},
                    at=review.created_at,
                ),
            )
            return row.id

    def get_review(self, inspection_id: int) -> Review | None:
        """The review of one inspection, or ``None`` while it waits."""
        with self.db.session() as session:
            row = session.scalar(select(ReviewRow).where(ReviewRow.inspection_id == inspection_id))
            if row is None:
                return None
            return Review(
                inspection_id=row.inspection_id,
                verdict=Decision(row.verdict),
                reviewer=row.reviewer,
                created_at=row.created_at,
                defect_class=row.defect_class,
                comment=row.comment,
            )


__all__ = ["ReviewRepository"]
