"""``storage.detail_queries`` against real databases (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from inspect_app.records import Decision, ModelStatus, RunStatus
from inspect_app.storage import Database, Repository, detail_queries
from inspect_app.storage.runs import RunQueue


def test_parts_behind_a_bucket_and_a_class(db: Database, repo: Repository, inspection_factory: Any) -> None:
    t0 = inspection_factory(0).created_at
    plan = [  # (minutes after t0, station, decision, class)
        (5, "s1", Decision.NG, "scratch"), (20, "s1", Decision.NG, "dent"), (50, "s2", Decision.NG, "scratch"),
        (61, "s1", Decision.NG, "scratch"), (30, "s1", Decision.OK, None), (40, "s1", Decision.REVIEW, None),
    ]
    rows = [inspection_factory(i, created_at=t0 + timedelta(minutes=m), station=s, decision=d, defect_class=c)
            for i, (m, s, d, c) in enumerate(plan)]
    repo.add_inspections(rows)
    hour = detail_queries.parts_behind(db, since=t0, until=t0 + timedelta(hours=1))
    # NG only, inside [t0, t0 + 1 h), newest first: the part at minute 61 and the OK/REVIEW ones are left out.
    assert [r.image_path for r in hour] == [rows[2].image_path, rows[1].image_path, rows[0].image_path]
    scratch = detail_queries.parts_behind(db, defect_class="scratch", station="s1")
    assert [r.image_path for r in scratch] == [rows[3].image_path, rows[0].image_path]
    assert detail_queries.parts_behind(db, line="no-such-line") == []
    assert len(detail_queries.parts_behind(db, limit=2)) == 2
    review = detail_queries.parts_behind(db, decision=Decision.REVIEW)
    assert [r.image_path for r in review] == [rows[5].image_path]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"since": datetime(2024, 1, 1)}, "since '2024-01-01T00:00:00' is naive"),
        ({"limit": 0}, "limit 0 must be a positive integer"),
    ],
)
def test_parts_behind_names_bad_arguments(db: Database, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detail_queries.parts_behind(db, **kwargs)


def test_parts_behind_refuses_an_empty_window(db: Database, inspection_factory: Any) -> None:
    t0 = inspection_factory(0).created_at
    with pytest.raises(ValueError, match="must be after since"):
        detail_queries.parts_behind(db, since=t0, until=t0)


def test_failed_run_candidates(db: Database, repo: Repository, model_version_factory: Any,
                               training_run_factory: Any) -> None:
    queue = RunQueue(db)
    failed = queue.add(training_run_factory(status=RunStatus.FAILED))
    cancelled = queue.add(training_run_factory(status=RunStatus.CANCELLED))
    finished = queue.add(training_run_factory(status=RunStatus.SUCCEEDED))
    repo.add_model_version(model_version_factory("left-over", training_run_id=failed))
    repo.add_model_version(model_version_factory("stopped", training_run_id=cancelled))
    repo.add_model_version(model_version_factory("fine", training_run_id=finished))
    repo.add_model_version(model_version_factory("by-hand"))
    # Once promoted (by an older build) it is history, not a candidate: rollback handles it.
    repo.add_model_version(model_version_factory("was-active", training_run_id=failed, status=ModelStatus.RETIRED))
    assert detail_queries.failed_run_candidates(db) == {"left-over", "stopped"}
