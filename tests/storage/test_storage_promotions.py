"""Manual promotion and rollback: audited with the replaced model, rollback follows the audit trail."""

from __future__ import annotations

import pytest

from inspect_app.records import ModelVersion
from inspect_app.storage import Repository
from inspect_app.storage.promotions import promote, promotion_history, rollback, rollback_target


def test_manual_promote_and_rollback_follow_the_audit_trail(repo: Repository) -> None:
    for name in ("m1", "m2", "m3"):
        repo.add_model_version(ModelVersion(name=name, kind="classifier", backbone="b", path=f"/m/{name}",
                                            classes=("good", "scratch")))
    promote(repo, "m1", actor="ann")
    promote(repo, "m2", actor="ann")
    promote(repo, "m3", actor="bob")
    assert rollback(repo, actor="bob").name == "m2"
    assert repo.active_model().name == "m2"
    events = repo.list_audit(action="model.promote")
    assert events[0].target == "m2" and events[0].details["previous"] == "m3"
    assert "rollback from m3" in events[0].details["reason"]
    with pytest.raises(LookupError, match="'nope' not found"):
        promote(repo, "nope", actor="ann")


def test_rollback_without_audit_trail_takes_the_newest_retired_model(repo: Repository) -> None:
    for name in ("m1", "m2"):
        repo.add_model_version(ModelVersion(name=name, kind="classifier", backbone="b", path=f"/m/{name}",
                                            classes=("good", "scratch")))
    repo.promote("m1")
    repo.promote("m2")  # promoted before the lifecycle existed: no audit entries
    assert rollback(repo, actor="ann").name == "m1"


def _register(repo: Repository, *names: str) -> None:
    for name in names:
        repo.add_model_version(ModelVersion(name=name, kind="classifier", backbone="b", path=f"/m/{name}",
                                            classes=("good", "scratch")))


def test_rollback_walks_back_the_history_instead_of_toggling(repo: Repository) -> None:
    _register(repo, "m1", "m2", "m3")
    for name in ("m1", "m2", "m3"):
        promote(repo, name, actor="ann")
    assert promotion_history(repo) == ["m1", "m2", "m3"]
    assert rollback(repo, actor="ann").name == "m2"
    assert rollback(repo, actor="ann").name == "m1"  # not back to m3
    assert promotion_history(repo) == ["m1"]
    with pytest.raises(LookupError, match="nothing to roll back to"):
        rollback(repo, actor="ann")
    assert repo.active_model().name == "m1"


def test_a_promotion_after_a_rollback_starts_from_there(repo: Repository) -> None:
    _register(repo, "m1", "m2", "m3", "m4")
    for name in ("m1", "m2", "m3"):
        promote(repo, name, actor="ann")
    rollback(repo, actor="ann")  # m2
    promote(repo, "m4", actor="ann")
    assert promotion_history(repo) == ["m1", "m2", "m4"]
    assert rollback_target(repo).name == "m2"
    assert rollback(repo, actor="ann").name == "m2"
    assert rollback(repo, actor="ann").name == "m1"


def test_history_starts_from_the_model_the_first_audited_promotion_replaced(repo: Repository) -> None:
    _register(repo, "m0", "m1")
    repo.promote("m0")  # before the audit trail existed
    promote(repo, "m1", actor="ann")
    assert promotion_history(repo) == ["m0", "m1"]
    assert rollback(repo, actor="ann").name == "m0"
