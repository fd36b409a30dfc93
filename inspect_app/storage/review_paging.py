"""Keyset paging of the waiting review queue (the Review page's cards), newest first.

The queue's order is (``created_at``, ``id``), both descending, and total. A page starts *after* the key of the last
part of the page before it, so a page is one index range read (``ix_inspections_review_queue``) however deep it
is, and a verdict on a shown part does not shift the parts of that page onto another one. A jump to a page whose
start key is unknown finds that key by skipping over key columns only (read from the same index, never table rows),
from whichever end of the queue is nearer.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, select, tuple_

from inspect_app.records import ReviewItem
from inspect_app.storage.db import Database
from inspect_app.storage.inspections import inspection_from_row
from inspect_app.storage.tables import InspectionRow

if TYPE_CHECKING:
    from inspect_app.storage.review_queries import ReviewFilters

# (created_at, inspection id) of a waiting part: its place in the queue's order.
QueueKey = tuple[datetime, int]

__all__ = ["QueueKey", "page_start_key", "queue_key", "review_queue_after", "review_queue_oldest"]


def queue_key(item: ReviewItem) -> QueueKey:
    """The queue key of a shown part (the ``after`` of the page that follows it)."""
    return item.inspection.created_at, item.inspection_id


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} {value!r} must be an integer ≥ {minimum}")


def _key_columns() -> ColumnElement[tuple[datetime, int]]:
    return tuple_(InspectionRow.created_at, InspectionRow.id)


def _older_than(key: QueueKey) -> ColumnElement[bool]:
    """Parts after ``key`` in the queue's newest-first order."""
    return _key_columns() < tuple_(key[0], key[1], types=(InspectionRow.created_at.type, InspectionRow.id.type))


def _items(db: Database, stmt: object) -> list[ReviewItem]:
    with db.session() as session:
        return [ReviewItem(inspection_id=row.id, inspection=inspection_from_row(row))
                for row in session.scalars(stmt)]  # type: ignore[call-overload]


def review_queue_after(
    db: Database, filters: ReviewFilters, after: QueueKey | None, page_size: int
) -> list[ReviewItem]:
    """Up to ``page_size`` waiting parts matching ``filters`` that come after ``after`` (None: from the newest).

    Raises:
        ValueError: ``page_size`` is not a positive integer, or the filters are invalid.
    """
    _check_count("page_size", page_size, 1)
    conditions = filters.conditions()
    if after is not None:
        conditions.append(_older_than(after))
    stmt = (select(InspectionRow).where(*conditions)
            .order_by(InspectionRow.created_at.desc(), InspectionRow.id.desc()).limit(page_size))
    return _items(db, stmt)


def review_queue_oldest(db: Database, filters: ReviewFilters, count: int) -> list[ReviewItem]:
    """The ``count`` oldest waiting parts matching ``filters``, newest first: the last page, read from its end.

    Raises:
        ValueError: ``count`` is not a positive integer, or the filters are invalid.
    """
    _check_count("count", count, 1)
    stmt = (select(InspectionRow).where(*filters.conditions())
            .order_by(InspectionRow.created_at.asc(), InspectionRow.id.asc()).limit(count))
    return _items(db, stmt)[::-1]


def page_start_key(
    db: Database, filters: ReviewFilters, skip: int, matching: int, after: QueueKey | None = None
) -> QueueKey | None:
    """The ``after`` key of the page that starts ``skip`` parts past ``after`` (None: past the start).

    ``matching`` (the count of waiting parts that match) lets the walk start from the oldest end when that is
    nearer. Returns ``after`` itself when nothing is to be skipped or the queue ends first.

    Raises:
        ValueError: ``skip`` or ``matching`` is negative, or the filters are invalid.
    """
    _check_count("skip", skip, 0)
    _check_count("matching", matching, 0)
    if skip == 0:
        return after
    conditions = filters.conditions()
    newest_first = (InspectionRow.created_at.desc(), InspectionRow.id.desc())
    if after is None and skip <= matching and matching - skip < skip:
        # The key is the (matching - skip + 1)-th oldest part: nearer from the old end.
        stmt = (select(InspectionRow.created_at, InspectionRow.id).where(*conditions)
                .order_by(InspectionRow.created_at.asc(), InspectionRow.id.asc()).offset(matching - skip).limit(1))
    else:
        if after is not None:
            conditions.append(_older_than(after))
        stmt = (select(InspectionRow.created_at, InspectionRow.id).where(*conditions)
                .order_by(*newest_first).offset(skip - 1).limit(1))
    with db.session() as session:
        row = session.execute(stmt).first()
    if row is None:
        return after
    created_at, inspection_id = row
    # SQLite hands the raw column back through the type, so the key is timezone-aware UTC like the records.
    return created_at, int(inspection_id)
