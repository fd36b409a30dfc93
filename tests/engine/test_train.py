"""Fine-tuning loop: run folder contents, optimizer groups, reproducibility, learning on an easy task."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspect_app.config.recipes import TrainConfig
from inspect_app.engine.train import fit
from inspect_app.engine.train_optim import build_optimizer
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
    from inspect_app.engine.train import zero_init_head
    from inspect_app.engine.train_epoch import set_train_mode

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


# ------------------------------------------------------------------------------------------ recipe building blocks
def test_layer_decay_lowers_the_rate_towards_the_stem() -> None:
    from inspect_app.engine.train_optim import build_optimizer

    model = Classifier("efficientnet_lite0", 3, (0.5,) * 3, (0.5,) * 3, pretrained=False)
    optimizer = build_optimizer(model, TrainConfig(lr=0.01, layer_decay=0.5, optimizer="sgd"))
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of["net.classifier.weight"] == pytest.approx(0.01)
    assert lr_of["net.conv_stem.weight"] < lr_of["net.blocks.3.0.conv_pw.weight"] < lr_of["net.conv_head.weight"]
    assert lr_of["net.conv_head.weight"] == pytest.approx(0.005)
    assert optimizer.param_groups[0]["nesterov"] is True
    assert isinstance(build_optimizer(model, TrainConfig(optimizer="adam")), torch.optim.Adam)


def test_probe_epochs_hold_the_backbone_then_warm_it_up() -> None:
    from inspect_app.engine.train_optim import build_optimizer, build_scheduler

    model = Classifier("efficientnet_lite0", 2, (0.5,) * 3, (0.5,) * 3, pretrained=False)
    config = TrainConfig(epochs=4, probe_epochs=1, warmup_epochs=1.0, lr=0.01)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=10)
    head = next(g for g in optimizer.param_groups if g["is_head"])
    body = next(g for g in optimizer.param_groups if not g["is_head"])
    rates = []
    for _ in range(40):
        rates.append((head["lr"], body["lr"]))
        optimizer.step()
        scheduler.step()
    assert all(b == 0.0 for _, b in rates[:10]) and all(h > 0 for h, _ in rates[:10])
    assert 0 < rates[10][1] < rates[19][1]  # the body warms up after the probe
    assert rates[-1][0] < rates[15][0]  # cosine decay of the head


def test_step_schedule_drops_by_gamma() -> None:
    from inspect_app.engine.train_optim import build_optimizer, build_scheduler

    model = Classifier("efficientnet_lite0", 2, (0.5,) * 3, (0.5,) * 3, pretrained=False)
    config = TrainConfig(epochs=6, schedule="step", step_epochs=2, step_gamma=0.1, warmup_epochs=0.1, lr=0.01)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=5)
    head = next(g for g in optimizer.param_groups if g["is_head"])
    seen = []
    for _ in range(30):
        seen.append(head["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[5] == pytest.approx(0.01) and seen[12] == pytest.approx(0.001) and seen[25] == pytest.approx(1e-4)


def test_class_weights_average_one_over_the_training_images() -> None:
    from inspect_app.engine.train_epoch import class_weights

    counts = [90, 10]
    for mode in ("sqrt", "balanced"):
        weights = class_weights(counts, mode)
        assert weights[1] > weights[0]
        assert float((weights * torch.tensor(counts, dtype=torch.float32)).sum()) == pytest.approx(100.0, rel=1e-5)
    assert class_weights(counts, "balanced")[1] / class_weights(counts, "balanced")[0] == pytest.approx(9.0)
    assert class_weights(counts, "none") is None


def test_mixup_and_cutmix_give_soft_targets_that_sum_to_one() -> None:
    from inspect_app.engine.train_epoch import mix_batch

    inputs = torch.rand(6, 3, 16, 16)
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    for mixup, cutmix in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        mixed, soft = mix_batch(inputs, targets, 3, mixup, cutmix, np.random.default_rng(0))
        assert mixed.shape == inputs.shape and soft.shape == (6, 3)
        assert torch.allclose(soft.sum(1), torch.ones(6))
        assert not torch.equal(mixed, inputs)
    same, hard = mix_batch(inputs, targets, 3, 0.0, 0.0, np.random.default_rng(0))
    assert torch.equal(same, inputs) and torch.equal(hard.argmax(1), targets)


def test_weight_ema_follows_the_weights_with_a_ramp() -> None:
    from inspect_app.engine.train_epoch import WeightEma

    model = torch.nn.Linear(2, 1)
    ema = WeightEma(model, decay=0.99)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # first decay is 2/11: the average moves most of the way at once
    first = ema.module.weight.detach().clone()
    assert torch.all(first > 0.5)
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module.weight, torch.ones(1, 2), atol=1e-3)
    assert not ema.module.weight.requires_grad


def test_selection_key_prefers_lower_escape_rate_then_recall() -> None:
    from inspect_app.engine.train_epoch import selection_key

    a = {"loss": 0.5, "macro_recall": 0.9, "accuracy": 0.9, "operating_point": {"escape_rate": 0.10}}
    b = {"loss": 0.4, "macro_recall": 0.95, "accuracy": 0.95, "operating_point": {"escape_rate": 0.20}}
    assert selection_key(a, "escape_rate") > selection_key(b, "escape_rate")
    assert selection_key(b, "macro_recall") > selection_key(a, "macro_recall")
    assert selection_key(b, "loss") > selection_key(a, "loss")
    no_good = {"loss": 0.5, "macro_recall": 0.9, "accuracy": 0.9}
    assert selection_key(no_good, "escape_rate") == (0.9, -0.5)


# ------------------------------------------------------------------------------------------ whole runs (slow)
@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    data = _easy_dataset(tmp_path / "data", per_class=6)
    config = TrainConfig(epochs=2, batch_size=4, input_size=32, lr=3e-3, seed=1, device="cpu", ema=0.9, mixup=0.2)
    whole = fit(data, tmp_path / "whole", config)

    class StopError(Exception):
        pass

    def stop_after_first_epoch(event: dict) -> None:
        if event["phase"] == "epoch" and event["epoch"] == 1:
            raise StopError

    with pytest.raises(StopError):
        fit(data, tmp_path / "cut", config, progress=stop_after_first_epoch)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = fit(data, tmp_path / "cut", config, resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    from inspect_app.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\['lr'\]"):
        fit(data, tmp_path / "cut", config.with_overrides(lr=1e-2), resume=True)


@pytest.mark.slow
def test_time_budget_shortens_the_run(tmp_path: Path) -> None:
    data = _easy_dataset(tmp_path / "data", per_class=4)
    config = TrainConfig(epochs=5, batch_size=4, input_size=32, device="cpu", time_budget_s=0.01)
    result = fit(data, tmp_path / "run", config)
    assert len(result.history) == 1  # the budget was spent by the first epoch: no second one is started
    assert (result.run_dir / "model.safetensors").is_file()


@pytest.mark.slow
def test_severity_regression_from_a_manifest(tmp_path: Path) -> None:
    data = _easy_dataset(tmp_path / "data", per_class=8)
    rows = ["path,label,severity"]
    for label in ("good", "scratch"):
        for i in range(8):
            rows.append(f"{label}/{i:03d}.png,{label},{0.0 if label == 'good' else 1.0 + i / 8}")
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    config = TrainConfig(epochs=3, batch_size=2, input_size=32, lr=3e-3, loss="mse", device="cpu", ema=0.0)
    result = fit(data / "manifest.csv", tmp_path / "run", config)
    assert result.card.kind == "severity" and result.card.classes == ("severity",)
    assert {"mae", "rmse", "loss"} <= set(result.card.metrics)
    model, _ = load_checkpoint(result.model_dir)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1)
    # Graded, not only sorted: scratched parts (severity >= 1) score higher than good ones (severity 0).
    from inspect_app.data.image_io import read_image
    from inspect_app.data.presets import resize_square

    def grade(label: str) -> float:
        images = [resize_square(read_image(p), 32) for p in sorted((data / label).glob("*.png"))]
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            return float(model(batch).mean())

    assert grade("scratch") > grade("good") + 0.1
    from inspect_app.errors import ConfigError

    with pytest.raises(ConfigError, match="severity"):
        fit(data, tmp_path / "run2", config)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_with_gloo(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    data = _easy_dataset(tmp_path / "data", per_class=6)
    script = tmp_path / "ddp_fit.py"
    script.write_text(
        "import sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from inspect_app.config import TrainConfig\n"
        "from inspect_app.engine.train import fit\n"
        "config = TrainConfig(epochs=2, batch_size=4, input_size=32, lr=3e-3, device='cpu')\n"
        "fit(sys.argv[1], sys.argv[2], config)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
               str(script), str(data), str(tmp_path / "run")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 2
    assert [row["processes"] for row in history] == [2, 2]
    _model, card = load_checkpoint(tmp_path / "run")
    assert card.classes == ("good", "scratch")
    assert (tmp_path / "run" / "split_train.csv").read_text().count("\n") == 11


@pytest.mark.slow
def test_compiled_training_runs_on_cpu_and_saves_plain_weights(tmp_path: Path) -> None:
    """``compile: true`` (TorchInductor, a C++ compiler on the CPU) trains and saves a checkpoint like eager mode."""
    data = _easy_dataset(tmp_path / "data", per_class=8)
    config = TrainConfig(epochs=2, batch_size=8, input_size=64, lr=3e-3, device="cpu", seed=2)
    eager = fit(data, tmp_path / "eager", config)
    compiled = fit(data, tmp_path / "compiled", config.with_overrides(compile=True))
    assert compiled.card.train_config["compile"] is True
    assert compiled.card.metrics["accuracy"] >= 0.75
    eager_model, _ = load_checkpoint(eager.model_dir)
    model, _ = load_checkpoint(compiled.model_dir)
    # The saved weights are the plain module's: no "_orig_mod." prefix from the compiled wrapper.
    assert list(model.state_dict()) == list(eager_model.state_dict())
    assert not any(key.startswith("_orig_mod") for key in model.state_dict())


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_amp_and_channels_last_train(tmp_path: Path) -> None:
    data = _easy_dataset(tmp_path / "data", per_class=8)
    for amp in ("bf16", "fp16"):
        config = TrainConfig(epochs=2, batch_size=8, input_size=64, lr=3e-3, device="cuda", amp=amp, seed=2)
        result = fit(data, tmp_path / amp, config)
        assert result.card.metrics["accuracy"] >= 0.75, amp
