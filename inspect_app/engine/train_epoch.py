"""One epoch of fine-tuning: the training step (loss, mixup, EMA, AMP) and validation (predictions, metrics)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from inspect_app.config.recipes import TrainConfig
from inspect_app.engine.device import to_input
from inspect_app.engine.metrics import classification_report
from inspect_app.engine.progress import ProgressFn
from inspect_app.records import GOOD_CLASS


def set_train_mode(model: nn.Module, freeze_bn_stats: bool) -> None:
    """Train mode, optionally with BatchNorm layers kept in eval mode so their running statistics stay fixed."""
    model.train()
    if freeze_bn_stats:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()



class WeightEma:
    """Exponential moving average of a model's weights, evaluated and saved instead of the raw weights.

    The decay ramps up as ``(1 + n) / (10 + n)`` until it reaches ``decay``, so short factory runs with a few dozen
    steps still get an average of the recent weights rather than of the pretrained start.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the model's current weights into the average (integer buffers are copied)."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for ema_value, value in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                ema_value.copy_(value)


def class_weights(counts: list[int], mode: str) -> torch.Tensor | None:
    """Per-class loss weights from training counts: ``none``, ``sqrt`` or ``balanced`` inverse frequency.

    Weights are scaled so that the average weight over the training images is 1, which keeps the loss scale (and so
    the learning rate) comparable with unweighted training.
    """
    if mode == "none":
        return None
    n = torch.tensor(counts, dtype=torch.float64).clamp(min=1)
    raw = 1.0 / n if mode == "balanced" else 1.0 / n.sqrt()
    return (raw * n.sum() / (raw * n).sum()).float()


def mix_batch(
    inputs: torch.Tensor, targets: torch.Tensor, num_classes: int, mixup: float, cutmix: float,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix (one of them per batch, chosen at random when both are on); returns inputs and soft targets."""
    soft = F.one_hot(targets, num_classes).float()
    if mixup <= 0 and cutmix <= 0:
        return inputs, soft
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    perm = torch.from_numpy(rng.permutation(inputs.shape[0])).to(inputs.device)
    if use_cutmix:
        h, w = inputs.shape[2:]
        cut_h, cut_w = int(h * math.sqrt(1.0 - lam)), int(w * math.sqrt(1.0 - lam))
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        y0, y1 = max(0, cy - cut_h // 2), min(h, cy + cut_h // 2)
        x0, x1 = max(0, cx - cut_w // 2), min(w, cx + cut_w // 2)
        inputs = inputs.clone()
        inputs[:, :, y0:y1, x0:x1] = inputs[perm][:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    else:
        inputs = lam * inputs + (1.0 - lam) * inputs[perm]
    return inputs, lam * soft + (1.0 - lam) * soft[perm]


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype on CUDA (bf16 where the GPU has it), ``None`` on CPU or with ``amp: off``."""
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "fp16":
        return torch.float16
    if config.amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class StepContext:
    """What ``train_one_epoch`` needs beyond model, data and optimizer; defaults give plain cross-entropy training.

    Attributes:
        config: the recipe (loss, L1, clipping, mixup, channels_last).
        weights: per-class loss weights or ``None``.
        ema: weight average to update after every step, or ``None``.
        raw_model: the unwrapped model (for L1 and EMA) when ``model`` is a DDP or compiled wrapper.
        amp_dtype: autocast dtype on CUDA, or ``None``.
        scaler: gradient scaler for fp16, or ``None``.
        num_classes: number of class outputs (for mixup's soft targets).
    """

    config: TrainConfig = field(default_factory=TrainConfig)
    weights: torch.Tensor | None = None
    ema: WeightEma | None = None
    raw_model: nn.Module | None = None
    amp_dtype: torch.dtype | None = None
    scaler: Any = None
    num_classes: int = 2


def _l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of absolute weights of the layers that weight decay also covers (norms and biases excluded)."""
    # sum() starts from the int 0, which a model with no such weights returns: it adds to a loss as a zero tensor.
    return cast(torch.Tensor, sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim > 1))


def _loss(outputs: torch.Tensor, targets: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    if ctx.config.loss == "mse":
        return F.mse_loss(outputs.float().squeeze(1), targets.float())
    weight = ctx.weights.to(outputs.device) if ctx.weights is not None else None
    return F.cross_entropy(outputs.float(), targets, weight=weight, label_smoothing=ctx.config.label_smoothing)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
    progress: ProgressFn | None = None,
    epoch: int = 0,
    freeze_bn_stats: bool = True,
    ctx: StepContext | None = None,
) -> dict[str, float]:
    """One pass over the training loader; returns mean loss, accuracy (classes) and images/s."""
    ctx = ctx or StepContext()
    config = ctx.config
    raw = ctx.raw_model or model
    set_train_mode(model, freeze_bn_stats)
    rng = np.random.default_rng((config.seed, epoch, 17))
    total_loss = 0.0
    correct = 0
    seen = 0
    start = time.perf_counter()
    for step, (images, targets) in enumerate(loader):
        inputs = to_input(images, device, config.channels_last)
        targets = targets.to(device)
        loss_targets = targets
        if config.loss == "ce" and (config.mixup > 0 or config.cutmix > 0):
            inputs, loss_targets = mix_batch(inputs, targets, ctx.num_classes, config.mixup, config.cutmix, rng)
        with torch.autocast(device.type, dtype=ctx.amp_dtype or torch.float32, enabled=ctx.amp_dtype is not None):
            outputs = model(inputs)
        loss = _loss(outputs, loss_targets, ctx)
        objective = loss + config.l1 * _l1_penalty(raw) if config.l1 > 0 else loss
        optimizer.zero_grad(set_to_none=True)
        if ctx.scaler is not None:
            ctx.scaler.scale(objective).backward()
            ctx.scaler.unscale_(optimizer)
        else:
            objective.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(raw.parameters(), config.grad_clip)
        if ctx.scaler is not None:
            ctx.scaler.step(optimizer)
            ctx.scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        if ctx.ema is not None:
            ctx.ema.update(raw)
        total_loss += float(loss.detach()) * targets.shape[0]
        if config.loss == "ce":
            correct += int((outputs.argmax(1) == targets).sum())
        seen += targets.shape[0]
        if progress is not None:
            elapsed = time.perf_counter() - start
            progress(
                {
                    "phase": "train",
                    "epoch": epoch,
                    "step": step + 1,
                    "steps": len(loader),
                    "loss": total_loss / seen,
                    "images_per_s": seen / elapsed if elapsed > 0 else 0.0,
                }
            )
    elapsed = time.perf_counter() - start
    return {
        "train_loss": total_loss / max(1, seen),
        "train_accuracy": correct / max(1, seen),
        "images_per_s": seen / elapsed if elapsed > 0 else 0.0,
    }


@torch.inference_mode()
def predict_outputs(
    model: nn.Module, loader: DataLoader, device: torch.device, channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw model outputs (float32) and targets for every item of a loader, in loader order."""
    model.eval()
    outputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for images, target in loader:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(to_input(images, device, channels_last))
        outputs.append(out.float().cpu().numpy())
        targets.append(np.asarray(target))
    return np.concatenate(outputs), np.concatenate(targets)


def predict_loader(
    model: nn.Module, loader: DataLoader, device: torch.device, channels_last: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and true targets for every item of a loader."""
    logits, targets = predict_outputs(model, loader, device, channels_last)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy(), targets


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    classes: list[str],
    good_class: str = GOOD_CLASS,
    false_reject_rate: float = 0.01,
    loss: str = "ce",
    channels_last: bool = False,
) -> dict[str, Any]:
    """Validation metrics (see ``metrics.classification_report``) plus the mean cross-entropy.

    With ``loss="mse"`` (severity grading) the report holds ``loss`` (mean squared error), ``mae`` and ``rmse``.
    """
    if loss == "mse":
        outputs, targets = predict_outputs(model, loader, device, channels_last)
        errors = outputs[:, 0] - targets.astype(np.float64)
        return {
            "images": len(targets), "loss": float((errors**2).mean()), "mae": float(np.abs(errors).mean()),
            "rmse": float(np.sqrt((errors**2).mean())),
        }
    probs, targets = predict_loader(model, loader, device, channels_last)
    preds = probs.argmax(1)
    # Without a good class every part is defective by definition: the score is 1.
    has_good = good_class in classes
    defect_scores = 1.0 - probs[:, classes.index(good_class)] if has_good else np.ones(len(probs))
    report = classification_report(targets, preds, defect_scores, classes, good_class, false_reject_rate)
    picked = probs[np.arange(len(targets)), targets]
    report["loss"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return report


def selection_key(metrics: dict[str, Any], select_metric: str) -> tuple[float, ...]:
    """Sort key (higher is better) that picks the best epoch and drives early stopping.

    ``escape_rate`` (defects called good at the configured false-reject rate) falls back to macro recall when the
    validation set has no good parts; the validation loss breaks ties throughout.
    """
    loss = -float(metrics["loss"])
    if select_metric == "loss" or "macro_recall" not in metrics:
        return (loss,)
    if select_metric == "escape_rate":
        point = metrics.get("operating_point") or {}
        if point.get("escape_rate") is not None:
            return (-float(point["escape_rate"]), float(metrics["macro_recall"]), loss)
        return (float(metrics["macro_recall"]), loss)
    return (float(metrics[select_metric]), loss)
