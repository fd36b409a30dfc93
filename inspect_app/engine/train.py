"""Fine-tuning loop for the supervised classifier: ``fit`` → ``train_one_epoch`` / ``evaluate`` → checkpoint.

A run folder holds everything needed to reproduce and audit the run: the resolved config, the split file lists,
per-epoch history, final metrics and the checkpoint (``safetensors`` + model card).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from inspect_app.config.recipes import TrainConfig
from inspect_app.data.dataset import LabelledImages
from inspect_app.data.folders import find_good_class, fingerprint
from inspect_app.data.layouts import load_dataset, split_dataset
from inspect_app.engine.device import resolve_device
from inspect_app.engine.metrics import classification_report
from inspect_app.errors import ConfigError
from inspect_app.models.checkpoint import ModelCard, save_checkpoint
from inspect_app.models.classifier import Classifier
from inspect_app.models.factory import backbone_normalization
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run folder.
        model_dir: the checkpoint folder (the run folder itself).
        card: the saved model card (with validation metrics).
        history: one dict per epoch.
        seconds: wall time of the run.
    """

    run_dir: Path
    model_dir: Path
    card: ModelCard
    history: list[dict[str, Any]]
    seconds: float


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that a fixed seed reproduces a run on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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

    lambdas = [head if group.get("is_head", False) else body for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def set_train_mode(model: nn.Module, freeze_bn_stats: bool) -> None:
    """Train mode, optionally with BatchNorm layers kept in eval mode so their running statistics stay fixed."""
    model.train()
    if freeze_bn_stats:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def zero_init_head(model: Classifier) -> None:
    """Start the new head at zero: every class equally likely, so the first steps do not wreck the pretrained body."""
    head = model.net.get_classifier()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)


def _to_input(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 batch → float [0, 1] on the device (conversion after the copy moves 4x fewer bytes)."""
    inputs = batch.to(device, non_blocking=True).float().div_(255.0)
    return inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs


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


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
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
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim > 1)


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
        inputs = _to_input(images, device, config.channels_last)
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
            out = model(_to_input(images, device, channels_last))
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


def _write_lines(path: Path, items: list[tuple[Path, str]], root: Path) -> None:
    # relpath, not relative_to: a manifest may point outside its own folder (``../images/x.png``).
    base = os.path.abspath(root)
    lines = [f"{Path(os.path.relpath(os.path.abspath(p), base)).as_posix()},{label}" for p, label in items]
    path.write_text("path,label\n" + "\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------ resume state
LAST_DIR = "last"


def _save_state(
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


def _load_state(
    folder: Path, model: nn.Module, ema: WeightEma | None, optimizer: torch.optim.Optimizer, scheduler: Any,
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore what ``_save_state`` wrote; returns the JSON state and the best weights so far."""
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


# ------------------------------------------------------------------------------------------------ distributed
def _dist_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) for a plain process."""
    return (
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def fit(
    data_dir: Path,
    run_dir: Path,
    config: TrainConfig,
    name: str | None = None,
    progress: ProgressFn | None = None,
    resume: bool = False,
) -> TrainResult:
    """Fine-tune a classifier (or a severity regressor) and save the best epoch.

    Runs unchanged under ``torchrun --nproc_per_node N``: each process trains on its share of every batch with DDP
    (NCCL on CUDA, gloo on CPU), ``batch_size`` stays the global batch, and only rank 0 writes files.

    Args:
        data_dir: class folders, an MVTec-AD folder or a CSV manifest (see ``data.layouts.load_dataset``).
        run_dir: run folder to create; the checkpoint (weights + model card) is written into it.
        config: the recipe.
        name: model version name; defaults to the run folder's name.
        progress: called with a dict after every step and epoch (with ``eta_s``, the estimated seconds left).
        resume: continue from the state saved after the last finished epoch in ``run_dir`` (same config required).

    Returns:
        Paths, model card and history of the run.

    Raises:
        DatasetError: the data cannot be read as a supported layout.
        ConfigError: the recipe does not fit the data (for example ``mse`` without severities) or differs from the
            run being resumed.
    """
    start = time.perf_counter()
    data_dir = Path(data_dir)
    run_dir = Path(run_dir)
    world, rank, local_rank = _dist_env()
    owns_group = False
    device = resolve_device(config.device)
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            owns_group = True
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    is_main = rank == 0
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)

    data = load_dataset(data_dir)
    classes = list(data.classes)
    # A severity model has no classes to be good; a classifier must know which class is, or its score means nothing.
    good_class = find_good_class(classes, config.good_class) if config.loss != "mse" else None
    if config.loss == "mse" and not data.severity:
        raise ConfigError(f"loss 'mse' needs a CSV manifest with a numeric severity column; {data_dir} has none")
    if world > 1 and config.sampler == "balanced":
        raise ConfigError("sampler 'balanced' is not supported under torchrun; use 'shuffle' with class_weights")
    train_items, val_items = split_dataset(data, config.val_fraction, config.seed, config.folds, config.fold)
    if config.max_train_images is not None:
        train_items = train_items[: config.max_train_images]
    logger.info(
        "training %s on %d images (%d val), classes %s, device %s, %d process(es)",
        config.backbone, len(train_items), len(val_items), classes, device, world,
    )
    if is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=True), encoding="utf-8")
        _write_lines(run_dir / "split_train.csv", train_items, data.root)
        _write_lines(run_dir / "split_val.csv", val_items, data.root)

    mean, std = backbone_normalization(config.backbone)
    outputs = 1 if config.loss == "mse" else len(classes)
    model = Classifier(config.backbone, outputs, mean, std, pretrained=config.pretrained)
    zero_init_head(model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    severity = data.severity if config.loss == "mse" else None
    common = {"resize_mode": config.resize_mode, "cache": config.cache_images, "severity": severity}
    train_set = LabelledImages(
        train_items, classes, config.input_size, train=True, seed=config.seed, preset=config.augment, **common
    )
    val_set = LabelledImages(val_items, classes, config.input_size, train=False, **common)
    generator = torch.Generator()
    pin = device.type == "cuda"
    per_process_batch = max(1, config.batch_size // world)
    sampler: Any = None
    if world > 1:
        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    elif config.sampler == "balanced":
        counts = np.bincount(train_set.targets(), minlength=len(classes))
        per_item = 1.0 / counts[train_set.targets()]
        sampler = WeightedRandomSampler(per_item.tolist(), len(train_set), replacement=True, generator=generator)
    train_loader = DataLoader(
        train_set, batch_size=per_process_batch, shuffle=sampler is None, sampler=sampler, generator=generator,
        num_workers=config.num_workers, pin_memory=pin, drop_last=len(train_set) > per_process_batch * world,
        persistent_workers=False,
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size * 2, num_workers=config.num_workers, pin_memory=pin)

    optimizer = build_optimizer(model, config)
    plan = {"epochs": config.epochs}
    scheduler = build_scheduler(optimizer, config, len(train_loader), plan)
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    ema = WeightEma(model, config.ema) if config.ema > 0 else None
    train_model: nn.Module = model
    if world > 1:
        train_model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    if config.compile:
        train_model = torch.compile(train_model)
    counts = np.bincount(train_set.targets(), minlength=len(classes)).tolist()
    ctx = StepContext(
        config=config, weights=class_weights(counts, config.class_weights) if config.loss == "ce" else None,
        ema=ema, raw_model=model, amp_dtype=amp_dtype, scaler=scaler, num_classes=len(classes),
    )

    best_key: tuple[float, ...] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    first_epoch = 1
    last_dir = run_dir / LAST_DIR
    if resume and (last_dir / "state.json").is_file():
        meta, best_state = _load_state(last_dir, model, ema, optimizer, scheduler)
        if meta["config"] != config.to_dict():
            differing = sorted(k for k, v in config.to_dict().items() if meta["config"].get(k) != v)
            raise ConfigError(f"cannot resume {run_dir}: recipe differs from the saved run in {differing}")
        history, best_metrics = meta["history"], meta["best_metrics"]
        plan["epochs"] = int(meta.get("planned_epochs", config.epochs))
        best_key = tuple(meta["best_key"]) if meta["best_key"] is not None else None
        first_epoch = int(meta["epoch"]) + 1
        logger.info("resuming %s after epoch %d", run_dir, first_epoch - 1)
    elif resume:
        logger.info("nothing to resume in %s: starting from scratch", run_dir)

    clock = {"start": time.perf_counter(), "steps_done": 0}
    total_steps = (config.epochs - first_epoch + 1) * len(train_loader)

    def report(event: dict[str, Any]) -> None:
        # ETA from the run's own pace so far (validation time included), for bars and periodic lines alike.
        if progress is None or not is_main:
            return
        done = clock["steps_done"] + (event["step"] if event["phase"] == "train" else 0)
        elapsed = time.perf_counter() - clock["start"]
        eta = elapsed / done * (total_steps - done) if done else None
        progress({**event, "epochs": plan["epochs"], "eta_s": eta})

    stale = 0
    epoch = first_epoch
    loop_start = time.perf_counter()
    while epoch <= plan["epochs"]:
        # Seeding per epoch makes a resumed run draw the same batches, augmentations and dropout masks.
        torch.manual_seed(config.seed * 100_003 + epoch)
        generator.manual_seed(config.seed * 100_003 + epoch)
        train_set.set_epoch(epoch)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        train_stats = train_one_epoch(
            train_model, train_loader, optimizer, scheduler, device, report, epoch, config.freeze_bn_stats, ctx
        )
        clock["steps_done"] += len(train_loader)
        scored = ema.module if ema is not None else model
        val_metrics = evaluate(
            scored, val_loader, device, classes, good_class=good_class or "",
            false_reject_rate=config.false_reject_rate, loss=config.loss,
            channels_last=config.channels_last,
        )
        row = {"epoch": epoch, **train_stats, "val_loss": val_metrics["loss"], "processes": world}
        for key in ("accuracy", "macro_recall", "auroc_good_vs_defect", "mae"):
            if key in val_metrics:
                row[f"val_{key}"] = val_metrics[key]
        if "operating_point" in val_metrics:
            row["val_escape_rate"] = val_metrics["operating_point"]["escape_rate"]
        history.append(row)
        logger.info("epoch %d/%d %s", epoch, plan["epochs"], {k: round(v, 4) for k, v in row.items() if v is not None})
        key = selection_key(val_metrics, config.select_metric)
        if best_key is None or key > best_key:
            best_key = key
            best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
            best_metrics = {**val_metrics, "epoch": epoch}
            stale = 0
        else:
            stale += 1
        if config.time_budget_s is not None:
            # Re-planned after every epoch from the mean pace so far, so a machine that gets busier mid-run still
            # ends in time; the first epoch also decodes and caches the images, which keeps the estimate cautious.
            left = config.time_budget_s - (time.perf_counter() - start)
            affordable = int(left // ((time.perf_counter() - loop_start) / (epoch - first_epoch + 1)))
            if epoch + affordable < plan["epochs"]:
                plan["epochs"] = max(epoch, epoch + affordable)
                total_steps = (plan["epochs"] - first_epoch + 1) * len(train_loader)
                logger.info("time budget %.0f s: shortening the run to %d epochs", config.time_budget_s, plan["epochs"])
        if is_main:
            state = {"epoch": epoch, "history": history, "best_key": list(best_key), "best_metrics": best_metrics,
                     "config": config.to_dict(), "planned_epochs": plan["epochs"]}
            _save_state(last_dir, model, ema, optimizer, scheduler, state, best_state)
        report({"phase": "epoch", **row, "epochs_planned": plan["epochs"]})
        if config.patience is not None and stale >= config.patience:
            logger.info("early stop after epoch %d: no better %s for %d epochs", epoch, config.select_metric, stale)
            break
        epoch += 1
    assert best_state is not None
    model.load_state_dict(best_state)

    card = ModelCard(
        name=name or run_dir.name,
        kind="severity" if config.loss == "mse" else "classifier",
        backbone=config.backbone,
        classes=("severity",) if config.loss == "mse" else tuple(classes),
        good_class=good_class or "",
        input_size=config.input_size,
        mean=tuple(mean),
        std=tuple(std),
        metrics=best_metrics,
        data_fingerprint=fingerprint(list(data.items), data.root if data.layout != "csv" else None),
        train_config=config.to_dict(),
    )
    seconds = time.perf_counter() - start
    if is_main:
        save_checkpoint(run_dir, model, card)
        (run_dir / "history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
        (run_dir / "metrics.json").write_text(json.dumps(best_metrics, indent=2), encoding="utf-8")
        logger.info("run %s finished in %.1f s; best epoch %s", run_dir, seconds, best_metrics.get("epoch"))
    if world > 1:
        dist.barrier()
        if owns_group:
            dist.destroy_process_group()
    return TrainResult(run_dir=run_dir, model_dir=run_dir, card=card, history=history, seconds=seconds)
