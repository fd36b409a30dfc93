"""Resume state of a fine-tuning run: what is saved after an epoch comes back exactly, and only for the same recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from inspect_app.config.recipes import TrainConfig
from inspect_app.engine.train_epoch import WeightEma
from inspect_app.engine.train_state import LAST_DIR, RunStanding, resume_standing, save_state
from inspect_app.errors import ConfigError


def _parts(seed: int) -> tuple[nn.Module, WeightEma, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, WeightEma(model, 0.9), optimizer, scheduler


def test_saved_state_resumes_model_ema_optimiser_schedule_and_standing(tmp_path: Path) -> None:
    config = TrainConfig(epochs=4)
    model, ema, optimizer, scheduler = _parts(0)
    for _ in range(3):  # a few real steps, so momentum buffers and the schedule have moved
        optimizer.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
        ema.update(model)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    state = {"epoch": 2, "history": [{"epoch": 1}, {"epoch": 2}], "best_key": [-0.5], "best_metrics": {"epoch": 2},
             "config": config.to_dict(), "planned_epochs": 3}
    save_state(tmp_path / LAST_DIR, model, ema, optimizer, scheduler, state, best)

    fresh, fresh_ema, fresh_opt, fresh_sched = _parts(1)
    plan = {"epochs": config.epochs}
    standing = resume_standing(tmp_path, config, fresh, fresh_ema, fresh_opt, fresh_sched, plan)
    assert standing.last_epoch == 2 and standing.best_key == (-0.5,) and plan["epochs"] == 3
    assert [row["epoch"] for row in standing.history] == [1, 2]
    assert standing.best_state is not None and torch.equal(standing.best_state["0.weight"], best["0.weight"])
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert fresh_ema.updates == 3 and torch.equal(fresh_ema.module[0].bias, ema.module[0].bias)
    assert fresh_sched.last_epoch == scheduler.last_epoch
    momentum = [s["momentum_buffer"] for s in optimizer.state.values()]
    assert all(torch.equal(a["momentum_buffer"], b) for a, b in zip(fresh_opt.state.values(), momentum, strict=True))


def test_resume_needs_the_same_recipe_and_starts_fresh_without_a_state(tmp_path: Path) -> None:
    model, ema, optimizer, scheduler = _parts(0)
    assert resume_standing(tmp_path, TrainConfig(), model, ema, optimizer, scheduler, {"epochs": 1}) == RunStanding()
    state = {"epoch": 1, "history": [], "best_key": [0.0], "best_metrics": {}, "config": TrainConfig().to_dict()}
    save_state(tmp_path / LAST_DIR, model, ema, optimizer, scheduler, state, None)
    with pytest.raises(ConfigError, match=r"recipe differs from the saved run in \['lr'\]"):
        resume_standing(tmp_path, TrainConfig(lr=0.5), model, ema, optimizer, scheduler, {"epochs": 1})
