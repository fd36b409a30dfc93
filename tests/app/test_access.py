"""Roles, sign-in and the audited use cases of `inspect_app.app` on a real database (SQLite; PostgreSQL when set)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from inspect_app.app import access, maintenance, reviews, users, versions
from inspect_app.app import runs as run_actions
from inspect_app.app import schedules as schedule_actions
from inspect_app.config.policy import FinetuneSpec
from inspect_app.errors import AccessDeniedError, ConfigError, RunStateError, StorageError
from inspect_app.records import Decision, ModelStatus, RunStatus, User
from inspect_app.storage import Database, Repository
from inspect_app.storage.passwords import verify_password
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore
from inspect_app.storage.tables import InspectionRow, UserRow

PASSWORD = "s3cret-enough"


def _user(role: str) -> User:
    return User(username=f"{role}-1", role=role)


@pytest.mark.parametrize(
    ("role", "action", "expected"),
    [
        ("viewer", "review", False), ("operator", "review", True), ("operator", "train", False),
        ("engineer", "promote", True), ("engineer", "purge", False), ("admin", "purge", True),
        ("admin", "users", True), ("engineer", "users", False),
    ],
)
def test_role_ladder(role: str, action: str, expected: bool) -> None:
    assert access.allowed(_user(role), action) is expected


def test_refusals_name_the_user_role_and_needed_roles() -> None:
    with pytest.raises(AccessDeniedError, match=r"'operator-1' with role 'operator' may not 'promote'; needs role "
                                                r"engineer or admin"):
        access.authorize(_user("operator"), "promote")
    with pytest.raises(AccessDeniedError, match="sign in first"):
        access.authorize(None, "review")
    with pytest.raises(AccessDeniedError):
        access.authorize(User(username="gone", role="admin", active=False), "review")
    with pytest.raises(ValueError, match=r"unknown action 'explode'; allowed: \["):
        access.allowed(_user("admin"), "explode")


def test_users_are_stored_hashed_and_sign_in_is_audited(db: Database) -> None:
    users.create_user(db, "eve", "engineer", PASSWORD)
    with db.session() as session:
        stored = session.query(UserRow).filter_by(username="eve").one().password_hash
    assert PASSWORD not in stored and stored.startswith("$argon2id$") and verify_password(stored, PASSWORD)
    assert access.sign_in(db, "eve", PASSWORD).role == "engineer"
    with pytest.raises(AccessDeniedError, match="sign-in failed for user 'eve'"):
        access.sign_in(db, "eve", "wrong-password")
    actions = [(e.action, e.actor) for e in Repository(db).list_audit()]
    assert actions[:2] == [("auth.sign_in_failed", "eve"), ("auth.sign_in", "eve")]


def test_create_user_checks_role_name_and_actor(db: Database) -> None:
    with pytest.raises(ValueError, match=r"role 'boss' is not one of \['viewer', 'operator', 'engineer', 'admin'\]"):
        users.create_user(db, "x", "boss", PASSWORD)
    with pytest.raises(ValueError, match="user name ' x'"):
        users.create_user(db, " x", "viewer", PASSWORD)
    with pytest.raises(AccessDeniedError):
        users.create_user(db, "y", "viewer", PASSWORD, actor=_user("engineer"))
    users.create_user(db, "z", "viewer", PASSWORD, actor=_user("admin"))
    users.create_user(db, "w", "viewer", PASSWORD, shell_actor="cli:ops")
    # One entry per creation, naming who created the user (the admin, or the shell user of the CLI).
    assert [(e.actor, e.target) for e in Repository(db).list_audit(action="user.add")] == [
        ("cli:ops", "w"), ("admin-1", "z")]
    with pytest.raises(StorageError, match="'z' already exists"):
        users.create_user(db, "z", "viewer", PASSWORD)


def test_review_needs_operator_and_ng_needs_a_class(db: Database, repo: Repository, inspection_factory: Any) -> None:
    repo.add_inspections([inspection_factory(0, decision=Decision.REVIEW)])
    with pytest.raises(AccessDeniedError):
        reviews.review_inspection(db, _user("viewer"), 1, "OK")
    with pytest.raises(ValueError, match="defect class"):
        reviews.review_inspection(db, _user("operator"), 1, "NG")
    with pytest.raises(ValueError, match=r"verdict 'MAYBE' is not one of \['OK', 'NG'\]"):
        reviews.review_inspection(db, _user("operator"), 1, "MAYBE")
    reviews.review_inspection(db, _user("operator"), 1, "NG", defect_class="dent")
    review = repo.get_review(1)
    assert review is not None and review.reviewer == "operator-1" and review.defect_class == "dent"
    assert repo.list_audit(action="review.add")[0].actor == "operator-1"


def test_promote_rollback_and_threshold(db: Database, repo: Repository, model_version_factory: Any) -> None:
    for name in ("a", "b", "c"):
        repo.add_model_version(model_version_factory(name))
    engineer = _user("engineer")
    assert versions.rollback_target(db) is None
    versions.promote_model(db, engineer, "a")
    versions.promote_model(db, engineer, "c")
    versions.promote_model(db, engineer, "b")
    assert versions.rollback_target(db).name == "c"  # the one active before b, not the newest retired by date
    assert versions.rollback_model(db, engineer).name == "c"
    assert repo.active_model().name == "c"
    rolled = repo.list_audit(action="model.promote")[0]  # one audited path for both: app.versions
    assert (rolled.actor, rolled.target, rolled.details) == ("engineer-1", "c",
                                                               {"previous": "b", "reason": "rollback from b"})
    with pytest.raises(AccessDeniedError):
        versions.rollback_model(db, _user("operator"))
    with pytest.raises(LookupError, match="'nope' not found; known: \\['a', 'b', 'c'\\]"):
        versions.promote_model(db, engineer, "nope")
    updated = versions.set_model_threshold(db, engineer, "c", 0.3)
    assert updated.threshold == pytest.approx(0.3) and updated.status == ModelStatus.ACTIVE
    assert repo.list_audit(action="model.threshold")[0].details == {"old": 0.4375, "new": 0.3}
    for bad in (0.0, 1.0, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            versions.set_model_threshold(db, engineer, "c", bad)  # type: ignore[arg-type]
    with pytest.raises(AccessDeniedError):
        versions.set_model_threshold(db, _user("operator"), "c", 0.2)
    assert repo.get_model_version("c").threshold == pytest.approx(0.3)


def test_enqueue_training_validates_and_audits(db: Database, repo: Repository, tmp_path: Path) -> None:
    engineer = _user("engineer")
    with pytest.raises(ValueError, match="does not exist"):
        run_actions.enqueue_training(db, engineer, str(tmp_path / "missing"), {})
    with pytest.raises(ValueError, match=r"test folder .*missing.* does not exist"):
        run_actions.enqueue_training(db, engineer, str(tmp_path), {}, test_dir=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="unknown training option"):
        run_actions.enqueue_training(db, engineer, str(tmp_path), {"epoch": 3})
    with pytest.raises(AccessDeniedError):
        run_actions.enqueue_training(db, _user("operator"), str(tmp_path), {})
    run_id = run_actions.enqueue_training(db, engineer, str(tmp_path), {"epochs": 3}, model_name="m9",
                                          use_reviews=False)
    run = RunQueue(db).get(run_id)
    spec = FinetuneSpec.from_dict(run.config)  # the form lifecycle.worker reads
    assert run.status.value == "queued" and spec.train.epochs == 3 and run.model_name == "m9"
    assert spec.train.extra == {"requested_by": "engineer-1"} and spec.use_reviews is False
    assert repo.list_audit(action="training.enqueue")[0].target == f"training_run:{run_id}"


def test_cancel_run_needs_the_role_and_audits(db: Database, repo: Repository, tmp_path: Path) -> None:
    queue = RunQueue(db)
    running, queued = (queue.enqueue(FinetuneSpec().to_dict(), str(tmp_path)) for _ in range(2))
    assert queue.claim("w1").id == running  # the oldest is taken
    with pytest.raises(AccessDeniedError, match="may not 'cancel'"):
        run_actions.cancel_run(db, _user("operator"), running)
    assert queue.get(running).cancel_requested is False
    assert run_actions.cancel_run(db, _user("engineer"), running).cancel_requested is True
    assert run_actions.cancel_run(db, _user("engineer"), queued).status is RunStatus.CANCELLED
    with pytest.raises(RunStateError, match="'cancelled'"):
        run_actions.cancel_run(db, _user("engineer"), queued)
    with pytest.raises(LookupError, match="99"):
        run_actions.cancel_run(db, _user("engineer"), 99)
    assert [e.details["status"] for e in repo.list_audit(action="training.cancel")] == ["cancelled", "running"]


def test_schedules(db: Database, repo: Repository, tmp_path: Path) -> None:
    engineer = _user("engineer")
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    schedule = schedule_actions.add_schedule(db, engineer, "nightly", "0 2 * * *", str(tmp_path), only_if_new_data=True,
                                   now=now)
    assert schedule.next_run_at == datetime(2025, 1, 2, 2, 0, tzinfo=UTC)
    stored = ScheduleStore(db).get("nightly").config  # the form lifecycle.scheduler fires
    assert (stored["data_dir"], stored["only_if_new_data"], stored["model_prefix"]) == (
        str(tmp_path.resolve()), True, "nightly")
    with pytest.raises(ConfigError, match="'0 2 \\* \\*' is not valid"):
        schedule_actions.add_schedule(db, engineer, "bad", "0 2 * *", str(tmp_path))
    with pytest.raises(ConfigError, match="'61 2 \\* \\* \\*' is not valid"):  # five fields, but no minute 61
        schedule_actions.add_schedule(db, engineer, "bad", "61 2 * * *", str(tmp_path))
    with pytest.raises(ValueError, match=r"data folder .*missing.* does not exist"):
        schedule_actions.add_schedule(db, engineer, "bad", "0 2 * * *", str(tmp_path / "missing"))
    with pytest.raises(AccessDeniedError, match="may not 'schedule'"):
        schedule_actions.add_schedule(db, _user("operator"), "op", "0 4 * * *", str(tmp_path))
    schedule_actions.set_schedule_enabled(db, engineer, "nightly", False)
    assert {s.name: s.enabled for s in ScheduleStore(db).list()} == {"nightly": False}
    with pytest.raises(LookupError, match="'nope' not found"):
        schedule_actions.set_schedule_enabled(db, engineer, "nope", True)
    # Resuming recomputes the next run.
    assert schedule_actions.set_schedule_enabled(db, engineer, "nightly", True).next_run_at > now
    assert [e.action for e in repo.list_audit() if e.action.startswith("schedule")] == [
        "schedule.enable", "schedule.disable", "schedule.add"]


def _inspection_count(db: Database) -> int:
    with db.session() as session:
        return session.query(InspectionRow).count()


def test_purge_needs_an_admin_and_is_audited_once(db: Database, tmp_path: Path, inspection_factory: Any) -> None:
    now = datetime.now(UTC)
    image = tmp_path / "old.png"
    image.write_bytes(b"img")
    repo = Repository(db)
    repo.add_inspections([
        inspection_factory(0, created_at=now - timedelta(days=10), image_path=str(image), content_hash="old"),
        inspection_factory(1, created_at=now - timedelta(hours=1), content_hash="new"),
    ])
    for role in ("operator", "engineer"):
        with pytest.raises(AccessDeniedError, match=rf"role '{role}' may not 'purge'; needs role admin"):
            maintenance.purge_inspections(db, _user(role), "1d")
    with pytest.raises(AccessDeniedError, match="sign in first"):
        maintenance.purge_inspections(db, None, "1d", dry_run=True)
    assert _inspection_count(db) == 2 and image.exists() and repo.list_audit(action="db.purge") == []
    with pytest.raises(ValueError, match=r"age '1 day'.*m, h, d, w"):
        maintenance.purge_inspections(db, _user("admin"), "1 day")
    assert maintenance.purge_inspections(db, _user("admin"), "1d", dry_run=True, now=now).rows == 1
    assert _inspection_count(db) == 2 and repo.list_audit(action="db.purge") == []  # a dry run changes nothing
    result = maintenance.purge_inspections(db, _user("admin"), "1d", keep_files=True, now=now)
    assert result.rows == 1 and result.cutoff == now - timedelta(days=1) and image.exists()
    assert _inspection_count(db) == 1
    [event] = repo.list_audit(action="db.purge")
    assert (event.actor, event.details["rows"], event.details["delete_files"]) == ("admin-1", 1, False)
