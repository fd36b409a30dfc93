"""Optimiser and learning-rate schedule of a fine-tuning run: parameter groups, layer-wise decay, warm-up, probe."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from inspect_app.config.recipes import TrainConfig
from inspect_app.models.classifier import Classifier


def _layer_id(name: str, num_layers: int) -> int:
    """Depth of a backbone parameter for layer-wise decay: stem 0, ``blocks.N`` N+1, what follows the blocks last."""
    parts = name.split(".")
    if "blocks" in parts:
        position = parts.index("blocks")
        if position + 1 < len(parts) and parts[position + 1].isdigit():
            return int(parts[position + 1]) + 1
    if any(key in name for key in ("conv_stem", "bn1", "stem", "patch_embed")):
        return 0
    return num_layers - 1


def build_optimizer(model: Classifier, config: TrainConfig) -> torch.optim.Optimizer:
    """Optimizer with a lower backbone learning rate and no weight decay on norms and biases.

    Decay on normalisation scales and biases only shrinks them towards zero without regularising anything useful.
    With ``layer_decay`` the backbone rate also shrinks by that factor per stage from the head down, so the generic
    early filters move least. Every group carries ``is_head`` so schedules (linear probe) can treat head and body apart.
    """
    head_ids = {id(p) for p in model.net.get_classifier().parameters()}
    blocks = getattr(model.net, "blocks", None)
    num_layers = (len(blocks) if blocks is not None else 0) + 2
    groups: dict[tuple[bool, bool, int], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = id(param) in head_ids
        no_decay = param.ndim <= 1
        use_layers = not is_head and config.layer_decay is not None
        layer = _layer_id(name.removeprefix("net."), num_layers) if use_layers else num_layers
        groups.setdefault((is_head, no_decay, layer), []).append(param)
    param_groups = []
    for (is_head, no_decay, layer), params in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        if is_head:
            scale = 1.0
        elif config.layer_decay is not None:
            scale = config.layer_decay ** (num_layers - layer)
        else:
            scale = config.backbone_lr_scale
        param_groups.append(
            {
                "params": params,
                "lr": config.lr * scale,
                "weight_decay": 0.0 if no_decay else config.weight_decay,
                "is_head": is_head,
            }
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(param_groups)
    if config.optimizer == "adam":
        # Adam's weight_decay is plain L2 added to the gradient (coupled), unlike AdamW's decoupled decay.
        return torch.optim.Adam(param_groups)
    return torch.optim.SGD(param_groups, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)


def _schedule_factor(step: int, total: int, warmup: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: warm-up, then cosine or step decay."""
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "step":
        return config.step_gamma ** (step // max(1, steps_per_epoch * config.step_epochs))
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int, plan: dict[str, int] | None = None
) -> Any:
    """Per-batch schedule; during the first ``probe_epochs`` the backbone rate is 0 (a linear probe of the head).

    The backbone then gets its own warm-up and decay over the remaining steps, so the fine-tune starts gently from a
    head that already fits. ``plan["epochs"]`` (default ``config.epochs``) is read at every step, so a run that
    shortens itself to meet a time budget also shortens its decay.
    """
    plan = plan if plan is not None else {"epochs": config.epochs}
    warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
    probe = min(config.probe_epochs, config.epochs - 1) * steps_per_epoch

    def head(step: int) -> float:
        return _schedule_factor(step, plan["epochs"] * steps_per_epoch, warmup, config, steps_per_epoch)

    def body(step: int) -> float:
        if step < probe:
            return 0.0
        total = plan["epochs"] * steps_per_epoch
        return _schedule_factor(step - probe, total - probe, warmup, config, steps_per_epoch)

    lambdas: list[Callable[[int], float]] = [
        head if group.get("is_head", False) else body for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
