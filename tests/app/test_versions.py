"""Model registration through ``app.versions`` on a real database: audited once, the first model made active."""

from __future__ import annotations

from pathlib import Path

from inspect_app.app.versions import register_model
from inspect_app.models.checkpoint import ModelCard
from inspect_app.storage import Repository


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
