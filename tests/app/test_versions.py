"""Model versions through ``app.versions`` on a real database: registration audited once (the first model made
active), promotion and rollback audited with the replaced model, rollback walking back the audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_app.app.versions import (
    PROMOTE_ACTION,
    promote_model,
    promotion_history,
    register_model,
    rollback_model,
    rollback_target,
)
from inspect_app.models.checkpoint import ModelCard
from inspect_app.records import ModelVersion, User
from inspect_app.storage import Database, Repository


def _card(name: str) -> ModelCard:
    return ModelCard(name=name, kind="classifier", backbone="efficientnet_lite0", classes=("good", "scratch"),
                     input_size=224, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), threshold=0.4,
                     metrics={"accuracy": 0.9}, data_fingerprint="f00d")


def test_register_is_audited_once_and_the_first_model_becomes_active(repo: Repository, tmp_path: Path) -> None:
    first = register_model(repo, _card("m1"), tmp_path / "m1", actor="cli:alice")
    assert first.path == str((tmp_path / "m1").resolve()) and first.threshold == 0.4
    register_model(repo, _card("m1"), tmp_path / "m1", actor="cli:alice")  # a pipeline restart registers again
    register_model(repo, _card("m2"), tmp_path / "m2", actor="worker:w1")

    assert repo.active_model().name == "m1"  # only the first model is promoted on registration
    registered = [(e.actor, e.target) for e in reversed(repo.list_audit(action="model.register"))]
    assert registered == [("cli:alice", "m1"), ("worker:w1", "m2")]
    promotions = repo.list_audit(action="model.promote")
    assert [(e.actor, e.target, e.details["reason"], e.details["previous"]) for e in promotions] == [
        ("cli:alice", "m1", "first model", None)]


ANN = User(username="ann", role="engineer")


def _register(repo: Repository, *names: str) -> None:
    for name in names:
        repo.add_model_version(ModelVersion(name=name, kind="classifier", backbone="b", path=f"/m/{name}",
                                            classes=("good", "scratch")))


def test_manual_promote_and_rollback_follow_the_audit_trail(db: Database, repo: Repository) -> None:
    _register(repo, "m1", "m2", "m3")
    for name in ("m1", "m2", "m3"):
        promote_model(db, ANN, name)
    assert rollback_model(db, ANN).name == "m2"
    assert repo.active_model().name == "m2"
    events = repo.list_audit(action=PROMOTE_ACTION)
    assert (events[0].actor, events[0].target, events[0].details["previous"]) == ("ann", "m2", "m3")
    assert "rollback from m3" in events[0].details["reason"]
    promote_model(db, ANN, "m2")  # already active: nothing changes, nothing audited
    assert len(repo.list_audit(action=PROMOTE_ACTION)) == len(events)
    with pytest.raises(LookupError, match="'nope' not found"):
        promote_model(db, ANN, "nope")


def test_rollback_without_audit_trail_takes_the_newest_retired_model(db: Database, repo: Repository) -> None:
    _register(repo, "m1", "m2")
    repo.promote("m1")
    repo.promote("m2")  # promoted before the lifecycle existed: no audit entries
    assert rollback_model(db, ANN).name == "m1"


def test_rollback_walks_back_the_history_instead_of_toggling(db: Database, repo: Repository) -> None:
    _register(repo, "m1", "m2", "m3")
    for name in ("m1", "m2", "m3"):
        promote_model(db, ANN, name)
    assert promotion_history(db) == ["m1", "m2", "m3"]
    assert rollback_model(db, ANN).name == "m2"
    assert rollback_model(db, ANN).name == "m1"  # not back to m3
    assert promotion_history(db) == ["m1"]
    with pytest.raises(LookupError, match="nothing to roll back to"):
        rollback_model(db, ANN)
    assert repo.active_model().name == "m1"


def test_a_promotion_after_a_rollback_starts_from_there(db: Database, repo: Repository) -> None:
    _register(repo, "m1", "m2", "m3", "m4")
    for name in ("m1", "m2", "m3"):
        promote_model(db, ANN, name)
    rollback_model(db, ANN)  # m2
    promote_model(db, ANN, "m4")
    assert promotion_history(db) == ["m1", "m2", "m4"]
    assert rollback_target(db).name == "m2"
    assert rollback_model(db, ANN).name == "m2"
    assert rollback_model(db, ANN).name == "m1"


def test_history_starts_from_the_model_the_first_audited_promotion_replaced(db: Database, repo: Repository) -> None:
    _register(repo, "m0", "m1")
    repo.promote("m0")  # before the audit trail existed
    promote_model(db, ANN, "m1")
    assert promotion_history(db) == ["m0", "m1"]
    assert rollback_model(db, ANN).name == "m0"
