"""Manual promotion and rollback: audited with the replaced model, rollback follows the audit trail."""

from __future__ import annotations

import pytest

from inspect_app.records import ModelVersion
from inspect_app.storage import Repository
from inspect_app.storage.promotions import promote, rollback


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
