"""Repository: every record type round-trips exactly; inserts are idempotent; promotion keeps one active model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from inspect_app.errors import ActiveModelChangedError, StorageError
from inspect_app.records import Decision, Inspection, ModelStatus
from inspect_app.storage import Repository
from inspect_app.storage.runs import RunQueue

T0 = datetime(2024, 3, 10, 8, 0, tzinfo=UTC)


# --- inspections --------------------------------------------------------------------------------------------------


def test_inspection_round_trips_exactly(repo: Repository, inspection_factory: Any) -> None:
    original = inspection_factory(7)
    assert repo.add_inspections([original]) == 1
    [loaded] = repo.list_inspections()
    assert loaded == original
    assert loaded.created_at.tzinfo is not None and loaded.created_at.utcoffset() == timedelta(0)
    assert isinstance(loaded.decision, Decision)


def test_inspection_in_other_time_zone_comes_back_as_the_same_instant_in_utc(
    repo: Repository, inspection_factory: Any
) -> None:
    plus_two = timezone(timedelta(hours=2))
    original = inspection_factory(1, created_at=datetime(2024, 6, 1, 12, 30, 15, 123456, tzinfo=plus_two))
    repo.add_inspections([original])
    [loaded] = repo.list_inspections()
    assert loaded.created_at == original.created_at
    assert loaded.created_at.tzinfo == UTC
    assert loaded.created_at.hour == 10 and loaded.created_at.microsecond == 123456


def test_error_inspection_with_nulls_round_trips(repo: Repository) -> None:
    original = Inspection(
        station="station-2",
        line="line-2",
        source="/cam/0",
        image_path="frame:17",
        decision=Decision.ERROR,
        created_at=T0,
        error="truncated JPEG",
    )
    repo.add_inspections([original])
    assert repo.list_inspections() == [original]


def test_add_inspections_is_idempotent(repo: Repository, inspection_factory: Any) -> None:
    batch = [inspection_factory(i) for i in range(25)]
    assert repo.add_inspections(batch) == 25
    assert repo.add_inspections(batch) == 0
    assert len(repo.list_inspections(limit=100)) == 25


def test_add_inspections_counts_only_new_rows_in_a_mixed_batch(repo: Repository, inspection_factory: Any) -> None:
    repo.add_inspections([inspection_factory(i) for i in range(5)])
    mixed = [inspection_factory(i) for i in range(3, 8)]
    assert repo.add_inspections(mixed) == 3


def test_same_image_with_other_model_or_station_is_a_new_row(repo: Repository, inspection_factory: Any) -> None:
    base = inspection_factory(1)
    other_model = inspection_factory(1, model_version="resnet-v2")
    other_station = inspection_factory(1, station="station-9")
    assert repo.add_inspections([base, other_model, other_station]) == 3


def test_duplicates_within_one_batch_insert_once(repo: Repository, inspection_factory: Any) -> None:
    row = inspection_factory(1)
    assert repo.add_inspections([row, row, row]) == 1


def test_rows_without_content_hash_may_repeat(repo: Repository, inspection_factory: Any) -> None:
    failed = inspection_factory(1, content_hash=None, decision=Decision.ERROR, error="unreadable")
    assert repo.add_inspections([failed]) == 1
    assert repo.add_inspections([failed]) == 1


def test_batches_smaller_than_input(db: Any, inspection_factory: Any) -> None:
    repo = Repository(db, batch_size=3)
    batch = [inspection_factory(i) for i in range(10)]
    assert repo.add_inspections(batch) == 10
    assert repo.add_inspections(batch) == 0


def test_add_no_inspections(repo: Repository) -> None:
    assert repo.add_inspections([]) == 0


def test_known_hashes(repo: Repository, inspection_factory: Any) -> None:
    repo.add_inspections(
        [inspection_factory(i) for i in range(3)]
        + [inspection_factory(10, station="station-2")]
        + [inspection_factory(11, model_version="other")]
        + [inspection_factory(12, content_hash=None)]
    )
    assert repo.known_hashes("resnet-v1", "station-1") == {f"{i:064x}" for i in range(3)}
    assert repo.known_hashes("resnet-v1", "station-2") == {f"{10:064x}"}
    assert repo.known_hashes("missing", "station-1") == set()
    # None: decided by any model (a pipeline that follows the active model)
    assert repo.known_hashes(None, "station-1") == {f"{i:064x}" for i in (0, 1, 2, 11)}


def test_list_inspections_newest_first_with_filters(repo: Repository, inspection_factory: Any) -> None:
    rows = [
        inspection_factory(i, decision=Decision.OK if i % 2 else Decision.NG, station=f"s{i % 3}") for i in range(12)
    ]
    repo.add_inspections(rows)
    newest_first = sorted(rows, key=lambda r: r.created_at, reverse=True)
    assert repo.list_inspections(limit=4) == newest_first[:4]
    assert repo.list_inspections(limit=100, decision="NG") == [r for r in newest_first if r.decision == Decision.NG]
    assert repo.list_inspections(limit=100, station="s1") == [r for r in newest_first if r.station == "s1"]
    since = T0 + timedelta(seconds=9)
    assert repo.list_inspections(limit=100, since=since) == [r for r in newest_first if r.created_at >= since]


@pytest.mark.parametrize(("kwargs", "bad"), [({"limit": 0}, "0"), ({"decision": "MAYBE"}, "MAYBE")])
def test_list_inspections_rejects_bad_arguments(repo: Repository, kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        repo.list_inspections(**kwargs)


# --- model versions -----------------------------------------------------------------------------------------------


def test_model_version_round_trips_exactly(repo: Repository, model_version_factory: Any) -> None:
    original = model_version_factory()
    model_id = repo.add_model_version(original)
    assert isinstance(model_id, int)
    loaded = repo.get_model_version(original.name)
    assert loaded == original
    assert isinstance(loaded.classes, tuple) and isinstance(loaded.status, ModelStatus)
    assert repo.list_model_versions() == [original]


def test_model_version_links_to_training_run(
    repo: Repository, model_version_factory: Any, training_run_factory: Any
) -> None:
    run_id = RunQueue(repo.db).add(training_run_factory())
    original = model_version_factory(training_run_id=run_id)
    repo.add_model_version(original)
    assert repo.get_model_version(original.name) == original


def test_discard_candidates_removes_only_that_runs_candidates(
    repo: Repository, model_version_factory: Any, training_run_factory: Any
) -> None:
    queue = RunQueue(repo.db)
    failed, other = queue.add(training_run_factory()), queue.add(training_run_factory())
    repo.add_model_version(model_version_factory(name="was-active", training_run_id=failed))
    repo.promote("was-active")
    repo.add_model_version(model_version_factory(name="cand", training_run_id=failed))
    repo.add_model_version(model_version_factory(name="keep", training_run_id=other))
    assert repo.discard_candidates(failed) == ["cand"]
    assert sorted(v.name for v in repo.list_model_versions()) == ["keep", "was-active"]
    assert repo.discard_candidates(failed) == []


def test_model_version_with_missing_training_run_is_refused(repo: Repository, model_version_factory: Any) -> None:
    with pytest.raises(StorageError):
        repo.add_model_version(model_version_factory(training_run_id=424242))


def test_numpy_metrics_are_stored_as_plain_json(repo: Repository, model_version_factory: Any) -> None:
    repo.add_model_version(model_version_factory(metrics={"acc": np.float32(0.5), "per_class": np.array([1, 2])}))
    assert repo.get_model_version("resnet-v1").metrics == {"acc": 0.5, "per_class": [1, 2]}


def test_duplicate_model_name_is_refused(repo: Repository, model_version_factory: Any) -> None:
    repo.add_model_version(model_version_factory())
    with pytest.raises(StorageError, match="resnet-v1"):
        repo.add_model_version(model_version_factory())


def test_unknown_model_version_is_none(repo: Repository) -> None:
    assert repo.get_model_version("nope") is None
    assert repo.active_model() is None
    assert repo.list_model_versions() == []


def test_promote_makes_one_active_and_retires_the_previous(repo: Repository, model_version_factory: Any) -> None:
    for i, name in enumerate(("a", "b", "c")):
        repo.add_model_version(model_version_factory(name, created_at=T0 + timedelta(minutes=i)))

    promoted = repo.promote("a")
    assert promoted.name == "a" and promoted.status == ModelStatus.ACTIVE
    assert repo.active_model().name == "a"

    repo.promote("b")
    statuses = {m.name: m.status for m in repo.list_model_versions()}
    assert statuses == {"a": ModelStatus.RETIRED, "b": ModelStatus.ACTIVE, "c": ModelStatus.CANDIDATE}

    repo.promote("b")  # already active: nothing changes
    assert {m.name: m.status for m in repo.list_model_versions()} == statuses

    repo.promote("a")  # rollback to a retired model
    statuses = {m.name: m.status for m in repo.list_model_versions()}
    assert statuses == {"a": ModelStatus.ACTIVE, "b": ModelStatus.RETIRED, "c": ModelStatus.CANDIDATE}


def test_promote_unknown_name_raises_and_changes_nothing(repo: Repository, model_version_factory: Any) -> None:
    repo.add_model_version(model_version_factory("a"))
    repo.promote("a")
    with pytest.raises(LookupError, match="'ghost'"):
        repo.promote("ghost")
    assert repo.active_model().name == "a"


def test_promote_with_an_expected_active_model_refuses_when_another_one_is_active(
    repo: Repository, model_version_factory: Any
) -> None:
    for name in ("a", "b", "c"):
        repo.add_model_version(model_version_factory(name))
    with pytest.raises(ActiveModelChangedError, match="the active model is None, not 'a'"):
        repo.promote("b", expected_active="a")  # judged against "a", but nothing is active yet
    assert repo.active_model() is None
    assert repo.promote("a", expected_active=None).name == "a"
    assert repo.promote("b", expected_active="a").name == "b"
    with pytest.raises(ActiveModelChangedError, match="the active model is 'b', not 'a'"):
        repo.promote("c", expected_active="a")  # another worker promoted b first: c must be judged again
    assert {m.name: m.status for m in repo.list_model_versions()} == {
        "a": ModelStatus.RETIRED, "b": ModelStatus.ACTIVE, "c": ModelStatus.CANDIDATE}


def test_database_refuses_a_second_active_model(repo: Repository, model_version_factory: Any) -> None:
    repo.add_model_version(model_version_factory("a", status=ModelStatus.ACTIVE))
    with pytest.raises(StorageError):
        repo.add_model_version(model_version_factory("b", status=ModelStatus.ACTIVE))
    assert [m.name for m in repo.list_model_versions()] == ["a"]


# --- stations, reviews, users, audit log, snapshots -----------------------------------------------------------


def test_stations_are_registered_once_with_their_first_line(repo: Repository, inspection_factory: Any) -> None:
    from inspect_app.storage import queries

    repo.add_inspections([inspection_factory(1, station="s-b", line="l-2"), inspection_factory(2, station="s-a")])
    repo.add_inspections([inspection_factory(3, station="s-b", line="l-9")])
    assert queries.stations(repo.db) == ["s-a", "s-b"]
    assert queries.lines(repo.db) == ["l-2", "line-1"]
    # A fresh repository (no cache) sees the stations already there and adds nothing twice.
    Repository(repo.db).add_inspections([inspection_factory(4, station="s-a")])
    assert queries.stations(repo.db) == ["s-a", "s-b"]


def test_review_round_trips_and_is_audited(repo: Repository, inspection_factory: Any) -> None:
    from inspect_app.records import Review

    row = inspection_factory(1, decision=Decision.REVIEW)
    repo.add_inspections([row])
    inspection_id = repo.inspection_id(row.content_hash, row.model_version, row.station)
    review = Review(inspection_id=inspection_id, verdict=Decision.NG, reviewer="ana", created_at=T0,
                    defect_class="dent", comment="visible at 3 o'clock")
    repo.add_review(review)
    assert repo.get_review(inspection_id) == review
    [event] = repo.list_audit(action="review.add")
    assert event.actor == "ana" and event.target == f"inspection:{inspection_id}"
    assert event.details == {"verdict": "NG", "defect_class": "dent"}


def test_review_rejects_bad_input(repo: Repository, inspection_factory: Any) -> None:
    from inspect_app.records import Review

    repo.add_inspections([inspection_factory(1)])
    inspection_id = repo.inspection_id(f"{1:064x}", "resnet-v1", "station-1")
    with pytest.raises(ValueError, match=r"'REVIEW'.*\['OK', 'NG'\]"):
        repo.add_review(Review(inspection_id=inspection_id, verdict=Decision.REVIEW, reviewer="ana"))
    with pytest.raises(LookupError, match="424242"):
        repo.add_review(Review(inspection_id=424242, verdict=Decision.OK, reviewer="ana"))
    repo.add_review(Review(inspection_id=inspection_id, verdict=Decision.OK, reviewer="ana"))
    with pytest.raises(StorageError, match="already has a review"):
        repo.add_review(Review(inspection_id=inspection_id, verdict=Decision.NG, reviewer="bo"))
    assert repo.get_review(inspection_id).reviewer == "ana"


def test_users_store_only_a_hash_and_authenticate(repo: Repository) -> None:
    from sqlalchemy import select

    from inspect_app.records import User
    from inspect_app.storage.tables import UserRow

    user = User(username="ana", role="engineer", display_name="Ana", created_at=T0)
    repo.add_user(user, "correct horse battery")
    assert repo.get_user("ana") == user
    assert repo.authenticate("ana", "correct horse battery") == user
    assert repo.authenticate("ana", "wrong password") is None
    assert repo.authenticate("nobody", "correct horse battery") is None
    with repo.db.session() as session:
        stored = session.scalar(select(UserRow.password_hash))
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    repo.add_user(User(username="off", role="viewer", active=False), "another password")
    assert repo.authenticate("off", "another password") is None
    assert [u.username for u in repo.list_users()] == ["ana", "off"]


def test_users_reject_bad_input(repo: Repository) -> None:
    from inspect_app.records import User

    with pytest.raises(ValueError, match=r"'boss'.*'viewer', 'operator', 'engineer', 'admin'"):
        repo.add_user(User(username="x", role="boss"), "long enough pw")
    with pytest.raises(ValueError, match="at least 8"):
        repo.add_user(User(username="x", role="viewer"), "short")
    repo.add_user(User(username="x", role="viewer"), "long enough pw")
    with pytest.raises(StorageError, match="'x' already exists"):
        repo.add_user(User(username="x", role="admin"), "long enough pw")


def test_audit_log_is_append_only_in_the_database(repo: Repository) -> None:
    from sqlalchemy import text

    from inspect_app.records import AuditEvent

    repo.audit(AuditEvent(actor="ana", action="model.promote", target="m2", details={"from": "m1"}, at=T0))
    with pytest.raises(StorageError, match="append-only"), repo.db.session() as session:
        session.execute(text("UPDATE audit_log SET actor = 'mallory'"))
    with pytest.raises(StorageError, match="append-only"), repo.db.session() as session:
        session.execute(text("DELETE FROM audit_log"))
    assert repo.list_audit() == [AuditEvent(actor="ana", action="model.promote", target="m2",
                                            details={"from": "m1"}, at=T0)]


def test_dataset_snapshot_is_idempotent_by_fingerprint(repo: Repository) -> None:
    from inspect_app.records import DatasetSnapshot

    snapshot = DatasetSnapshot(fingerprint="abc123", path="/data/train", classes=("good", "dent"), image_count=42,
                               created_at=T0)
    first = repo.add_dataset_snapshot(snapshot)
    assert repo.add_dataset_snapshot(snapshot) == first
    assert repo.get_dataset_snapshot("abc123") == snapshot
    assert repo.get_dataset_snapshot("missing") is None


def test_dataset_snapshot_registered_by_many_workers_at_once_is_one_row(repo: Repository) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    from inspect_app.records import DatasetSnapshot

    snapshot = DatasetSnapshot(fingerprint="race", path="/data/train", classes=("good",), image_count=7,
                               created_at=T0)
    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(lambda _: repo.add_dataset_snapshot(snapshot), range(12)))
    assert len(set(ids)) == 1 and ids[0] is not None
    with repo.db.session() as session:
        assert session.scalar(text("SELECT count(*) FROM dataset_snapshots WHERE fingerprint = 'race'")) == 1
