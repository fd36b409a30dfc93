"""Keyset paging of the review queue: pages follow the queue's order through ties, jumps land on the same parts as
walking, and a verdict does not move the parts of the next page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from inspect_app.records import Decision, Review
from inspect_app.storage import Database, Repository, review_paging
from inspect_app.storage.review_paging import page_start_key, queue_key, review_queue_after, review_queue_oldest
from inspect_app.storage.review_queries import ReviewFilters, review_queue_count, review_queue_page

ALL = ReviewFilters()


def _queue(repo: Repository, factory: Any, n: int = 23) -> list[int]:
    """``n`` REVIEW parts, three at a time sharing one timestamp (ties broken by id), two stations; returns the ids
    newest first (the queue's order)."""
    base = factory(0).created_at
    rows = [factory(i, decision=Decision.REVIEW, station=f"s{i % 2}", created_at=base + timedelta(seconds=i // 3),
                    score=0.4 + i / 100) for i in range(n)]
    assert repo.add_inspections(rows) == n
    return list(range(n, 0, -1))


def _walk(db: Database, filters: ReviewFilters, size: int) -> list[list[int]]:
    pages, after = [], None
    while page := review_queue_after(db, filters, after, size):
        pages.append([item.inspection_id for item in page])
        after = queue_key(page[-1])
    return pages


def test_walking_pages_by_key_follows_the_order_through_equal_timestamps(db: Database, repo: Repository,
                                                                         inspection_factory: Any) -> None:
    order = _queue(repo, inspection_factory)
    pages = _walk(db, ALL, 5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == order
    s1 = [i for i in order if (i - 1) % 2 == 1]
    assert [i for p in _walk(db, ReviewFilters(station="s1"), 4) for i in p] == s1


@pytest.mark.parametrize("size", [1, 4, 7])
def test_a_jump_lands_on_the_page_walking_reaches(db: Database, repo: Repository, inspection_factory: Any,
                                                  size: int) -> None:
    order = _queue(repo, inspection_factory)
    matching = review_queue_count(db, ALL)
    assert matching == len(order)
    walked = _walk(db, ALL, size)
    for page, expected in enumerate(walked, start=1):
        after = page_start_key(db, ALL, (page - 1) * size, matching)
        assert [item.inspection_id for item in review_queue_after(db, ALL, after, size)] == expected
        assert [item.inspection_id for item in review_queue_page(db, ALL, page, size)] == expected
    # From a known key: two pages on from page 1's end is page 4's start.
    after_one = queue_key(review_queue_after(db, ALL, None, size)[-1])
    from_known = page_start_key(db, ALL, 2 * size, matching, after=after_one)
    assert [item.inspection_id for item in review_queue_after(db, ALL, from_known, size)] == walked[3]


def test_oldest_is_the_last_page_newest_first(db: Database, repo: Repository, inspection_factory: Any) -> None:
    order = _queue(repo, inspection_factory)
    assert [item.inspection_id for item in review_queue_oldest(db, ALL, 4)] == order[-4:]


def test_a_verdict_on_a_shown_part_leaves_the_next_page_in_place(db: Database, repo: Repository,
                                                                 inspection_factory: Any) -> None:
    _queue(repo, inspection_factory)
    first = review_queue_after(db, ALL, None, 5)
    after = queue_key(first[-1])
    second = [item.inspection_id for item in review_queue_after(db, ALL, after, 5)]
    repo.add_review(Review(inspection_id=first[2].inspection_id, verdict=Decision.OK, reviewer="ann"))
    assert [item.inspection_id for item in review_queue_after(db, ALL, after, 5)] == second
    assert first[2].inspection_id not in [item.inspection_id for item in review_queue_after(db, ALL, None, 5)]


@pytest.mark.parametrize(("call", "message"), [
    (lambda db: review_queue_after(db, ALL, None, 0), "page_size 0 must be an integer ≥ 1"),
    (lambda db: review_queue_oldest(db, ALL, True), "count True must be an integer ≥ 1"),
    (lambda db: page_start_key(db, ALL, -1, 5), "skip -1 must be an integer ≥ 0"),
    (lambda db: review_paging.page_start_key(db, ALL, 1, -2), "matching -2 must be an integer ≥ 0"),
])
def test_bad_paging_values_name_the_value(db: Database, call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(db)
