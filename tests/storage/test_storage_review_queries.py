"""The review queue on real SQLite and PostgreSQL: what waits, newest first, filtered and paged without overlap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from inspect_app.records import Decision, Review
from inspect_app.storage import Database, Repository, review_queries
from inspect_app.storage.tables import UNCLASSIFIED

MOMENT = datetime(2024, 3, 10, 8, 0, tzinfo=UTC)


def _review_rows(repo: Repository, factory: Any) -> list:
    """Ten REVIEW parts (ids 1..10, one second apart) over two stations and three classes, and one reviewed."""
    classes = ("scratch", "dent", None)
    rows = [
        factory(i, station="s1" if i % 2 else "s2", decision=Decision.REVIEW, defect_class=classes[i % 3],
                score=0.40 + i * 0.01)
        for i in range(10)
    ]
    assert repo.add_inspections(rows) == 10
    repo.add_review(Review(inspection_id=10, verdict=Decision.OK, reviewer="ann"))
    return rows


def test_review_queue_page_pages_newest_first_without_overlap(db: Database, repo: Repository,
                                                              inspection_factory: Any) -> None:
    _review_rows(repo, inspection_factory)
    everything = review_queries.ReviewFilters()
    pages = [[item.inspection_id for item in review_queries.review_queue_page(db, everything, page, 4)]
             for page in (1, 2, 3, 4)]
    # Id 10 is reviewed: nine wait, newest first, on pages of 4, 4 and 1.
    assert pages == [[9, 8, 7, 6], [5, 4, 3, 2], [1], []]
    assert review_queries.review_queue_count(db, everything) == 9


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (review_queries.ReviewFilters(station="s1"), [8, 6, 4, 2]),
        (review_queries.ReviewFilters(defect_class="dent"), [8, 5, 2]),
        (review_queries.ReviewFilters(defect_class=UNCLASSIFIED), [9, 6, 3]),
        (review_queries.ReviewFilters(min_score=0.425, max_score=0.445), [5, 4]),
        (review_queries.ReviewFilters(station="s2", defect_class="scratch"), [7, 1]),
    ],
)
def test_review_queue_filters(db: Database, repo: Repository, inspection_factory: Any,
                              filters: review_queries.ReviewFilters, expected: list[int]) -> None:
    _review_rows(repo, inspection_factory)
    assert [i.inspection_id for i in review_queries.review_queue_page(db, filters, 1, 20)] == expected
    assert review_queries.review_queue_count(db, filters) == len(expected)


def test_review_queue_date_window(db: Database, repo: Repository, inspection_factory: Any) -> None:
    rows = _review_rows(repo, inspection_factory)
    # Rows 2, 3 and 4 (ids 3..5): since inclusive, until exclusive.
    window = review_queries.ReviewFilters(since=rows[2].created_at, until=rows[5].created_at)
    assert [i.inspection_id for i in review_queries.review_queue_page(db, window, 1, 20)] == [5, 4, 3]
    assert review_queries.review_queue_count(db, window) == 3


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (review_queries.ReviewFilters(min_score=0.6, max_score=0.5), "min_score 0.6 is above max_score 0.5"),
        (review_queries.ReviewFilters(since=MOMENT, until=MOMENT), "must be before until"),
        (review_queries.ReviewFilters(since=MOMENT.replace(tzinfo=None)), "since '2024-03-10T08:00:00' is naive"),
    ],
)
def test_review_queue_rejects_bad_filters(db: Database, filters: review_queries.ReviewFilters,
                                          message: str) -> None:
    with pytest.raises(ValueError, match=message):
        review_queries.review_queue_count(db, filters)


@pytest.mark.parametrize(("page", "size"), [(0, 12), (1, 0), (True, 12), (1, 2.5)])
def test_review_queue_page_rejects_bad_paging(db: Database, page: Any, size: Any) -> None:
    with pytest.raises(ValueError, match="must be a positive integer"):
        review_queries.review_queue_page(db, review_queries.ReviewFilters(), page, size)


def test_review_queue_lists_unreviewed_review_rows_newest_first(db: Database, repo: Repository,
                                                                 inspection_factory: Any) -> None:
    rows = _review_rows(repo, inspection_factory)
    waiting = sorted(rows[:9], key=lambda r: r.created_at, reverse=True)  # id 10 (rows[9]) is reviewed
    queue = review_queries.review_queue(db, limit=1000)
    assert [item.inspection for item in queue] == waiting
    assert review_queries.review_queue_size(db) == 9
    repo.add_review(Review(inspection_id=queue[0].inspection_id, verdict=Decision.NG, reviewer="ana"))
    assert [item.inspection for item in review_queries.review_queue(db, limit=1000)] == waiting[1:]
    assert review_queries.review_queue_size(db) == 8
    assert {i.inspection.station for i in review_queries.review_queue(db, station="s1")} == {"s1"}
    assert review_queries.review_queue_size(db, station="s1") == 4
    with pytest.raises(ValueError, match="limit 0 must be a positive integer"):
        review_queries.review_queue(db, limit=0)


@pytest.mark.parametrize(
    "filters",
    [review_queries.ReviewFilters(), review_queries.ReviewFilters(station="s1"),
     review_queries.ReviewFilters(defect_class="dent"), review_queries.ReviewFilters(min_score=0.43)],
)
def test_review_queue_count_matches_the_pages_with_reviews_on_other_parts(
        db: Database, repo: Repository, inspection_factory: Any, filters: review_queries.ReviewFilters) -> None:
    # The count subtracts reviewed REVIEW parts: reviews of NG parts (spot checks) and of parts outside the filter
    # must not come off it, and a reviewed part inside it must.
    _review_rows(repo, inspection_factory)
    assert repo.add_inspections([inspection_factory(i, decision=Decision.NG, station="s1", defect_class="dent",
                                                    score=0.9) for i in (10, 11)]) == 2
    for inspection_id in (11, 12, 2, 5):  # 11, 12: NG parts; 2 (s1, dent), 5 (s2, dent): REVIEW parts
        repo.add_review(Review(inspection_id=inspection_id, verdict=Decision.NG, reviewer="ann"))
    listed = review_queries.review_queue_page(db, filters, 1, 100)
    assert review_queries.review_queue_count(db, filters) == len(listed)
    assert not {2, 5, 10, 11, 12} & {item.inspection_id for item in listed}
