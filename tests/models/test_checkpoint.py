"""Checkpoints: safetensors + JSON card round trip and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inspect_app.errors import CheckpointError
from inspect_app.models.checkpoint import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    build_model,
    load_checkpoint,
    save_checkpoint,
)


def _card(**changes: object) -> ModelCard:
    base = ModelCard(
        name="m1", kind="classifier", backbone="efficientnet_lite0", classes=("good", "scratch"), input_size=64,
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), metrics={"accuracy": 0.9},
    )
    return base.replace(**changes)


def test_round_trip_preserves_weights_and_card(tmp_path: Path) -> None:
    card = _card()
    torch.manual_seed(1)
    model = build_model(card).eval()
    save_checkpoint(tmp_path / "ck", model, card)
    assert (tmp_path / "ck" / WEIGHTS_FILE).read_bytes()[:8] != b"\x80\x02\x8a\x0al\xfc\x9cF"  # not a pickle
    loaded, loaded_card = load_checkpoint(tmp_path / "ck")
    assert loaded_card == card
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x))


def test_normalisation_travels_with_the_card(tmp_path: Path) -> None:
    card = _card(mean=(0.1, 0.2, 0.3))
    save_checkpoint(tmp_path, build_model(card), card)
    loaded, _ = load_checkpoint(tmp_path)
    assert torch.allclose(loaded.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))


def test_missing_card_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=CARD_FILE):
        load_checkpoint(tmp_path)


def test_missing_weights_is_named(tmp_path: Path) -> None:
    (tmp_path / CARD_FILE).write_text(_card().to_json())
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        load_checkpoint(tmp_path)


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    card = _card()
    save_checkpoint(tmp_path, build_model(card), card)
    wrong = json.loads((tmp_path / CARD_FILE).read_text())
    wrong["classes"] = ["good", "scratch", "crack"]
    (tmp_path / CARD_FILE).write_text(json.dumps(wrong))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path)


def test_unknown_card_key_and_kind_are_named(tmp_path: Path) -> None:
    data = json.loads(_card().to_json())
    data["colour"] = "blue"
    with pytest.raises(CheckpointError, match="colour"):
        ModelCard.from_dict(data)
    with pytest.raises(CheckpointError, match="'segmenter'"):
        _card(kind="segmenter")
