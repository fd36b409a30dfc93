"""Resume state of a fine-tuning run: model, EMA, optimiser, schedule and history after each finished epoch."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from inspect_app.config.recipes import TrainConfig
from inspect_app.engine.train_epoch import WeightEma
from inspect_app.errors import ConfigError

logger = logging.getLogger(__name__)

# The run folder's sub-folder that holds the state after the last finished epoch.
LAST_DIR = "last"


def save_state(
    folder: Path, model: nn.Module, ema: WeightEma | None, optimizer: torch.optim.Optimizer, scheduler: Any,
    state: dict[str, Any], best_state: dict[str, torch.Tensor] | None,
) -> None:
    """Everything needed to resume after an epoch, as safetensors + JSON (no pickles)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.module.state_dict().items()})
    if best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
    opt = optimizer.state_dict()
    scalars: dict[str, Any] = {}
    for index, entry in opt["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"opt.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    save_file(tensors, str(folder / "state.safetensors"))
    meta = {
        **state, "scheduler_last_epoch": scheduler.last_epoch, "optimizer_groups": opt["param_groups"],
        "optimizer_scalars": scalars, "ema_updates": ema.updates if ema is not None else 0,
    }
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    tmp.replace(folder / "state.json")  # the JSON written last and atomically marks the state complete


def load_state(
    folder: Path, model: nn.Module, ema: WeightEma | None, optimizer: torch.optim.Optimizer, scheduler: Any,
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore what ``save_state`` wrote; returns the JSON state and the best weights so far."""
    meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    tensors = load_file(str(folder / "state.safetensors"))

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    model.load_state_dict(part("model."))
    if ema is not None:
        ema.module.load_state_dict(part("ema."))
        ema.updates = int(meta["ema_updates"])
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in part("opt.").items():
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["optimizer_groups"]})
    scheduler.last_epoch = int(meta["scheduler_last_epoch"])
    best = part("best.")
    return meta, best or None


@dataclass
class RunStanding:
    """Where a run stands after its last finished epoch: the history and the best epoch so far.

    Attributes:
        history: one dict per finished epoch.
        best_key: ``selection_key`` of the best epoch, or ``None`` before the first one.
        best_state: that epoch's weights (the EMA's where the recipe averages).
        best_metrics: that epoch's validation metrics (with ``epoch``).
        last_epoch: the last finished epoch (0 before the first).
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_key: tuple[float, ...] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    last_epoch: int = 0


def resume_standing(
    run_dir: Path, config: TrainConfig, model: nn.Module, ema: WeightEma | None, optimizer: torch.optim.Optimizer,
    scheduler: Any, plan: dict[str, int],
) -> RunStanding:
    """Restore the state saved in ``run_dir`` into model, EMA, optimiser, schedule and ``plan``; fresh without one.

    Raises:
        ConfigError: the saved run was trained with a different recipe, naming the settings that differ.
    """
    last_dir = run_dir / LAST_DIR
    if not (last_dir / "state.json").is_file():
        logger.info("nothing to resume in %s: starting from scratch", run_dir)
        return RunStanding()
    meta, best_state = load_state(last_dir, model, ema, optimizer, scheduler)
    if meta["config"] != config.to_dict():
        differing = sorted(k for k, v in config.to_dict().items() if meta["config"].get(k) != v)
        raise ConfigError(f"cannot resume {run_dir}: recipe differs from the saved run in {differing}")
    plan["epochs"] = int(meta.get("planned_epochs", config.epochs))
    standing = RunStanding(
        history=meta["history"], best_key=tuple(meta["best_key"]) if meta["best_key"] is not None else None,
        best_state=best_state, best_metrics=meta["best_metrics"], last_epoch=int(meta["epoch"]),
    )
    logger.info("resuming %s after epoch %d", run_dir, standing.last_epoch)
    return standing
