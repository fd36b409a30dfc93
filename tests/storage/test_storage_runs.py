"""The run queue on real SQLite files and real PostgreSQL: claim order, exclusivity, heartbeats, cancel, recovery."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from inspect_app.errors import RunStateError
from inspect_app.records import Decision, ModelComparison, Review, RunStatus, TrainingRun
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue

T0 = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


def test_enqueue_then_claim_oldest_first_and_empty_queue_gives_none(db: Database) -> None:
    queue = RunQueue(db)
    first = queue.enqueue({"train": {"epochs": 1}}, "/data/a", created_at=T0)
    second = queue.enqueue({"train": {"epochs": 2}}, "/data/b", created_at=T0 + timedelta(seconds=1))
    claimed = queue.claim("w1", T0 + timedelta(minutes=1))
    assert claimed is not None and claimed.id == first
    assert claimed.status is RunStatus.RUNNING
    assert (claimed.worker, claimed.attempts, claimed.started_at) == ("w1", 1, T0 + timedelta(minutes=1))
    assert queue.claim("w2", T0).id == second
    assert queue.claim("w3", T0) is None
    assert queue.get(first).config == {"train": {"epochs": 1}}


def test_concurrent_claims_never_hand_out_a_run_twice(db_url: str) -> None:
    # Separate engines per worker: separate connections, as separate processes would have.
    with Database.open(db_url) as setup:
        ids = {RunQueue(setup).enqueue({}, f"/data/{i}", created_at=T0 + timedelta(seconds=i)) for i in range(12)}
    taken: dict[str, list[int]] = {"w1": [], "w2": [], "w3": []}
    barrier = threading.Barrier(len(taken))

    def work(name: str) -> None:
        with Database.open(db_url, migrate=False) as db:
            queue = RunQueue(db)
            barrier.wait()
            while (run := queue.claim(name)) is not None:
                taken[name].append(run.id)

    threads = [threading.Thread(target=work, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    all_taken = [run_id for runs in taken.values() for run_id in runs]
    assert sorted(all_taken) == sorted(ids), taken  # every run once, none twice
    with Database.open(db_url, migrate=False) as db:
        holders = {run.id: run.worker for run in RunQueue(db).list(limit=50)}
    assert all(holders[run_id] == name for name, runs in taken.items() for run_id in runs)


def test_heartbeat_reports_cancel_and_finish_is_conditional_on_the_holder(db: Database) -> None:
    queue = RunQueue(db)
    run_id = queue.enqueue({}, "/data", created_at=T0)
    queue.claim("w1", T0)
    assert queue.heartbeat(run_id, "w1", {"phase": "train", "step": 3}, T0 + timedelta(seconds=10)) is False
    assert queue.get(run_id).progress == {"phase": "train", "step": 3}
    assert queue.cancel(run_id).cancel_requested is True
    assert queue.heartbeat(run_id, "w1", None, T0 + timedelta(seconds=20)) is True
    with pytest.raises(RunStateError, match="w2"):
        queue.finish(run_id, "w2", RunStatus.SUCCEEDED)
    done = queue.finish(run_id, "w1", RunStatus.CANCELLED, T0 + timedelta(seconds=30), error="stopped")
    assert (done.status, done.finished_at, done.error) == (RunStatus.CANCELLED, T0 + timedelta(seconds=30), "stopped")
    with pytest.raises(RunStateError, match="cancelled"):
        queue.cancel(run_id)
    with pytest.raises(ValueError, match="running"):
        queue.finish(run_id, "w1", RunStatus.RUNNING)


def test_cancel_of_a_queued_run_is_immediate_and_unknown_runs_are_named(db: Database) -> None:
    queue = RunQueue(db)
    run_id = queue.enqueue({}, "/data", created_at=T0)
    assert queue.cancel(run_id, T0).status is RunStatus.CANCELLED
    assert queue.claim("w1", T0) is None
    with pytest.raises(LookupError, match="9999"):
        queue.cancel(9999)


def test_recover_requeues_stale_runs_then_fails_them_after_max_attempts(db: Database) -> None:
    queue = RunQueue(db)
    run_id = queue.enqueue({}, "/data", created_at=T0)
    fresh_id = queue.enqueue({}, "/data", created_at=T0 + timedelta(seconds=1))
    queue.claim("dead", T0)
    queue.claim("alive", T0 + timedelta(minutes=9))
    recovered = queue.recover(T0 + timedelta(minutes=10), stale_after=timedelta(minutes=5), max_attempts=2)
    assert [r.id for r in recovered] == [run_id]  # the live worker's run is left alone
    assert recovered[0].status is RunStatus.QUEUED and recovered[0].worker is None
    assert "dead" in recovered[0].progress["requeued"]
    with pytest.raises(RunStateError, match="no longer running under worker 'dead'"):
        queue.heartbeat(run_id, "dead")
    assert queue.get(fresh_id).status is RunStatus.RUNNING
    # Second life: claimed again, abandoned again, and now out of attempts.
    assert queue.claim("dead-again", T0 + timedelta(minutes=11)).attempts == 2
    failed = queue.recover(T0 + timedelta(minutes=30), stale_after=timedelta(minutes=5), max_attempts=2)
    assert {r.id: r.status for r in failed}[run_id] is RunStatus.FAILED
    assert "gave up after 2 attempt(s)" in queue.get(run_id).error


def test_recover_by_worker_name_takes_its_runs_at_once(db: Database) -> None:
    queue = RunQueue(db)
    run_id = queue.enqueue({}, "/data", created_at=T0)
    queue.claim("w1", T0)
    assert queue.recover(T0, stale_after=timedelta(hours=1), worker="w2") == []
    assert [r.id for r in queue.recover(T0, stale_after=timedelta(hours=1), worker="w1")] == [run_id]


def test_comparisons_and_reviewed_images_round_trip(db: Database, inspection_factory) -> None:
    queue = RunQueue(db)
    repo = Repository(db)
    run_id = queue.enqueue({}, "/data", created_at=T0)
    comparison = ModelComparison(candidate="m2", champion="m1", promoted=False, reason="worse on 'dent'",
                                 details={"candidate": {"escape_rate": 0.5}}, training_run_id=run_id, created_at=T0)
    repo.add_comparison(comparison)
    assert repo.list_comparisons(candidate="m2") == [comparison]
    repo.add_inspections([inspection_factory(1), inspection_factory(2)])
    inspection_id = repo.inspection_id(f"{1:064x}", "resnet-v1", "station-1")
    assert queue.reviews_since(None) == 0
    repo.add_review(Review(inspection_id=inspection_id, verdict=Decision.NG, reviewer="ann", defect_class="dent",
                           created_at=T0 + timedelta(hours=1)))
    assert queue.reviews_since(T0) == 1 and queue.reviews_since(T0 + timedelta(hours=2)) == 0
    [item] = queue.reviewed_images()
    assert (item["inspection_id"], item["verdict"], item["defect_class"]) == (inspection_id, "NG", "dent")
    assert item["image_path"].endswith("img_0001.png")
    assert queue.reviewed_images(until=T0) == []


def test_add_records_a_run_as_it_is_and_get_round_trips_it(db: Database, training_run_factory) -> None:
    queue = RunQueue(db)
    run_id = queue.add(training_run_factory(status=RunStatus.SUCCEEDED))
    loaded = queue.get(run_id)
    assert loaded == training_run_factory(status=RunStatus.SUCCEEDED, id=run_id)
    assert loaded.finished_at.tzinfo is not None and isinstance(loaded.status, RunStatus)
    bare = queue.add(TrainingRun(config={}, data_dir="/d", created_at=T0))
    assert queue.get(bare) == TrainingRun(config={}, data_dir="/d", created_at=T0, id=bare)
    with pytest.raises(ValueError, match="naive"):
        queue.add(TrainingRun(config={}, data_dir="/d", created_at=datetime(2024, 1, 1)))  # naive on purpose
    with pytest.raises(LookupError, match="9999"):
        queue.get(9999)


def test_list_is_newest_first_and_filters_by_status(db: Database, training_run_factory) -> None:
    queue = RunQueue(db)
    ids = [
        queue.add(training_run_factory(created_at=T0 + timedelta(minutes=i), status=status))
        for i, status in enumerate([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.QUEUED])
    ]
    assert [r.id for r in queue.list(limit=10)] == ids[::-1]
    assert [r.id for r in queue.list(limit=2)] == ids[:0:-1]
    assert [r.id for r in queue.list(limit=10, status="queued")] == [ids[2], ids[0]]
