"""The Review page's queue: REVIEW inspections that wait for a person's verdict, whole or filtered and paged.

One definition of "waiting" (``waiting_conditions``) serves every query here; it matches the partial index
``ix_inspections_review_queue``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists, func, select

from inspect_app.records import Decision, ReviewItem
from inspect_app.storage import review_paging
from inspect_app.storage.db import Database
from inspect_app.storage.inspections import inspection_from_row
from inspect_app.storage.tables import UNCLASSIFIED, InspectionRow, ReviewRow

__all__ = ["ReviewFilters", "review_queue", "review_queue_count", "review_queue_page", "review_queue_size",
           "waiting_conditions"]


def _check_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes by name."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware datetime")


def waiting_conditions(station: str | None) -> list[ColumnElement[bool]]:
    """REVIEW inspections that nobody has reviewed yet, optionally one station."""
    reviewed = exists().where(ReviewRow.inspection_id == InspectionRow.id)
    conditions = [InspectionRow.decision == Decision.REVIEW.value, ~reviewed]
    if station is not None:
        conditions.append(InspectionRow.station == station)
    return conditions


def review_queue(db: Database, limit: int = 50, station: str | None = None) -> list[ReviewItem]:
    """REVIEW inspections without a review yet, newest first, with the ids that ``ReviewRepository.add_review`` takes.

    Raises:
        ValueError: ``limit`` is not a positive integer.
    """
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit {limit!r} must be a positive integer")
    stmt = (
        select(InspectionRow)
        .where(*waiting_conditions(station))
        .order_by(InspectionRow.created_at.desc(), InspectionRow.id.desc())
        .limit(limit)
    )
    with db.session() as session:
        return [ReviewItem(inspection_id=row.id, inspection=inspection_from_row(row)) for row in session.scalars(stmt)]


def review_queue_size(db: Database, station: str | None = None) -> int:
    """How many REVIEW inspections wait for a person's verdict."""
    return review_queue_count(db, ReviewFilters(station=station))


@dataclass(frozen=True)
class ReviewFilters:
    """What the Review page narrows the waiting REVIEW parts to; ``None`` means no filter.

    Attributes:
        station: one station.
        defect_class: the model's most likely class; ``UNCLASSIFIED`` selects parts the model gave no class.
        min_score / max_score: inclusive score bounds.
        since / until: ``created_at`` window, ``since`` inclusive and ``until`` exclusive (timezone-aware).
    """

    station: str | None = None
    defect_class: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions: the waiting queue (``waiting_conditions``) and these filters.

        Raises:
            ValueError: a naive bound, or a lower bound above its upper bound (both values named).
        """
        self.validate()
        # One definition of "waiting", which matches the partial index ix_inspections_review_queue.
        return [*waiting_conditions(self.station), *self.part_conditions()]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the value for a naive bound or a lower bound above its upper bound."""
        _check_aware("since", self.since)
        _check_aware("until", self.until)
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since {self.since.isoformat()!r} must be before until {self.until.isoformat()!r}")
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise ValueError(f"min_score {self.min_score!r} is above max_score {self.max_score!r}")

    def part_conditions(self) -> list[ColumnElement[bool]]:
        """The filters on the part itself (class, score, time), without the queue's own conditions."""
        conditions: list[ColumnElement[bool]] = []
        if self.defect_class == UNCLASSIFIED:
            conditions.append(InspectionRow.defect_class.is_(None))
        elif self.defect_class is not None:
            conditions.append(InspectionRow.defect_class == self.defect_class)
        if self.min_score is not None:
            conditions.append(InspectionRow.score >= self.min_score)
        if self.max_score is not None:
            conditions.append(InspectionRow.score <= self.max_score)
        if self.since is not None:
            conditions.append(InspectionRow.created_at >= self.since)
        if self.until is not None:
            conditions.append(InspectionRow.created_at < self.until)
        return conditions


def review_queue_page(db: Database, filters: ReviewFilters, page: int = 1, page_size: int = 12) -> list[ReviewItem]:
    """Page ``page`` (from 1) of the waiting REVIEW parts that match ``filters``, newest first.

    The order (``created_at``, then ``id``, both descending) is total, so a part is on exactly one page. Pages are
    keyset reads (``storage.review_paging``): a deep page costs a walk over index keys, not over table rows; the
    Review page itself keeps the keys of the pages it showed and needs not even that walk.

    Raises:
        ValueError: ``page`` or ``page_size`` is not a positive integer, or the filters are invalid.
    """
    for name, value in (("page", page), ("page_size", page_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} {value!r} must be a positive integer")
    if page == 1:
        return review_paging.review_queue_after(db, filters, None, page_size)
    matching = review_queue_count(db, filters)
    skip = (page - 1) * page_size
    if skip >= matching:
        return []
    if matching - skip <= page_size:
        return review_paging.review_queue_oldest(db, filters, matching - skip)
    after = review_paging.page_start_key(db, filters, skip, matching)
    return review_paging.review_queue_after(db, filters, after, page_size)


def review_queue_count(db: Database, filters: ReviewFilters) -> int:
    """How many waiting REVIEW parts match ``filters``.

    Counted as the matching REVIEW parts less the reviewed ones among them, not as one count with a "no review yet"
    probe per part: the first is an index-only count over the REVIEW index, the second walks ``reviews`` (people
    review thousands of parts, a line sends millions), and the probe per part was what made the count of ~300,000
    waiting parts at 10,000,000 rows cost 100-200 ms.
    """
    filters.validate()
    parts = [InspectionRow.decision == Decision.REVIEW.value, *filters.part_conditions()]
    if filters.station is not None:
        parts.append(InspectionRow.station == filters.station)
    review_parts = select(func.count()).select_from(InspectionRow).where(*parts)
    reviewed = (select(func.count()).select_from(ReviewRow)
                .join(InspectionRow, InspectionRow.id == ReviewRow.inspection_id).where(*parts))
    with db.session() as session:
        return int(session.scalar(review_parts) or 0) - int(session.scalar(reviewed) or 0)
