"""Fine-tuning loop: run folder contents, optimizer groups, reproducibility, learning on an easy task."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspect_app.config import TrainConfig
from inspect_app.engine.train import build_optimizer, fit
from inspect_app.models.checkpoint import load_checkpoint
from inspect_app.models.classifier import Classifier


def _easy_dataset(root: Path, per_class: int = 12) -> Path:
    """good = plain grey parts, scratch = the same with a bright line: trivially separable."""
    rng = np.random.default_rng(0)
    for label in ("good", "scratch"):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = np.full((64, 64, 3), 110, np.uint8) + rng.integers(0, 20, (64, 64, 1), dtype=np.uint8)
            if label == "scratch":
                y = int(rng.integers(8, 56))
                cv2.line(image, (4, y), (60, y + int(rng.integers(-6, 6))), (250, 250, 250), 3)
            cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return root


def test_optimizer_decays_weights_not_norms_or_biases() -> None:
    model = Classifier("efficientnet_lite0", 3, (0.5,) * 3, (0.5,) * 3, pretrained=False)
    config = TrainConfig(lr=0.01, backbone_lr_scale=0.1, weight_decay=0.05)
    optimizer = build_optimizer(model, config)
    head_ids = {id(p) for p in model.net.get_classifier().parameters()}
    seen = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            seen += 1
            assert group["weight_decay"] == (0.0 if p.ndim <= 1 else 0.05)
            assert group["lr"] == pytest.approx(0.01 if id(p) in head_ids else 0.001)
    assert seen == sum(1 for _ in model.parameters())


@pytest.mark.slow
def test_fit_learns_an_easy_task_and_reproduces(tmp_path: Path) -> None:
    data = _easy_dataset(tmp_path / "data")
    config = TrainConfig(epochs=3, batch_size=8, input_size=64, lr=3e-3, seed=7, device="cpu")
    first = fit(data, tmp_path / "run1", config)
    second = fit(data, tmp_path / "run2", config)
    assert first.card.classes == ("good", "scratch")
    assert first.card.metrics["accuracy"] >= 0.8
    for a, b in zip(first.history, second.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    for name in ("config.yaml", "split_train.csv", "split_val.csv", "history.json", "metrics.json"):
        assert (first.run_dir / name).is_file(), name
    assert json.loads((first.run_dir / "metrics.json").read_text())["epoch"] in (1, 2, 3)
    model, card = load_checkpoint(first.model_dir)
    assert card.data_fingerprint and card.train_config["seed"] == 7
    assert isinstance(model(torch.rand(1, 3, 64, 64)), torch.Tensor)


def test_frozen_bn_keeps_running_statistics() -> None:
    from inspect_app.engine.train import set_train_mode, zero_init_head

    model = Classifier("efficientnet_lite0", 2, (0.5,) * 3, (0.5,) * 3, pretrained=True)
    zero_init_head(model)
    assert torch.count_nonzero(model(torch.rand(2, 3, 64, 64))) == 0  # zero head: equal logits
    before = model.net.bn1.running_mean.clone()
    set_train_mode(model, freeze_bn_stats=True)
    model(torch.rand(4, 3, 64, 64))
    assert torch.equal(model.net.bn1.running_mean, before)
    assert model.training and model.net.blocks.training
    set_train_mode(model, freeze_bn_stats=False)
    model(torch.rand(4, 3, 64, 64))
    assert not torch.equal(model.net.bn1.running_mean, before)
