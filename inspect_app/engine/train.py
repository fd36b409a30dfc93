"""Fine-tuning loop for the supervised classifier: ``fit`` runs its phases → checkpoint.

A run folder holds everything needed to reproduce and audit the run: the resolved config, the split file lists,
per-epoch history, final metrics and the checkpoint (``safetensors`` + model card). The processes (DDP) live in
``engine.train_dist``, the data set, split and loaders in ``engine.train_data``, the optimiser and schedule in
``engine.train_optim``, one epoch's training and validation in ``engine.train_epoch``, and the state saved after each
epoch for ``--resume`` in ``engine.train_state``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from inspect_app.config.recipes import TrainConfig
from inspect_app.data.folders import fingerprint
from inspect_app.engine.progress import ProgressFn
from inspect_app.engine.train_data import RunData, RunLoaders, build_loaders, prepare_data
from inspect_app.engine.train_dist import RunProcess, join_processes, leave_processes
from inspect_app.engine.train_epoch import (
    StepContext,
    WeightEma,
    autocast_dtype,
    class_weights,
    evaluate,
    selection_key,
    train_one_epoch,
)
from inspect_app.engine.train_optim import build_optimizer, build_scheduler
from inspect_app.engine.train_state import LAST_DIR, RunStanding, resume_standing, save_state
from inspect_app.models.checkpoint import ModelCard, save_checkpoint
from inspect_app.models.classifier import Classifier
from inspect_app.models.factory import backbone_normalization

logger = logging.getLogger(__name__)


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



def zero_init_head(model: Classifier) -> None:
    """Start the new head at zero: every class equally likely, so the first steps do not wreck the pretrained body."""
    head = model.net.get_classifier()
    # A head's weight and bias are parameters; nn.Module's attribute lookup types them as "Tensor | Module".
    nn.init.zeros_(cast(torch.Tensor, head.weight))
    nn.init.zeros_(cast(torch.Tensor, head.bias))


# ------------------------------------------------------------------------------------------------ phases of a fit
def _build_model(
    config: TrainConfig, classes: list[str], device: torch.device
) -> tuple[Classifier, tuple[float, ...], tuple[float, ...]]:
    """The pretrained backbone with a new zero head (one output for severity), on the device; and its mean and std."""
    mean, std = backbone_normalization(config.backbone)
    outputs = 1 if config.loss == "mse" else len(classes)
    model = Classifier(config.backbone, outputs, mean, std, pretrained=config.pretrained)
    zero_init_head(model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, mean, std


@dataclass
class _Trainer:
    """What the epochs work with: the model (raw and wrapped), optimiser, schedule, EMA, step context and the plan.

    ``plan["epochs"]`` is the planned length; the schedule reads it at every step, so a time budget can shorten it.
    """

    model: Classifier
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: WeightEma | None
    ctx: StepContext
    plan: dict[str, int]


def _build_trainer(
    model: Classifier, loaders: RunLoaders, classes: list[str], config: TrainConfig, proc: RunProcess
) -> _Trainer:
    """Optimiser, schedule, AMP, EMA and the DDP / compiled wrappers around the model."""
    optimizer = build_optimizer(model, config)
    plan = {"epochs": config.epochs}
    scheduler = build_scheduler(optimizer, config, len(loaders.train), plan)
    amp_dtype = autocast_dtype(config, proc.device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    ema = WeightEma(model, config.ema) if config.ema > 0 else None
    train_model: nn.Module = model
    if proc.world > 1:
        device_ids = [proc.local_rank] if proc.device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=device_ids)
    if config.compile:
        # Compiling a module gives a module (OptimizedModule); the stubs type it as any callable.
        train_model = cast(nn.Module, torch.compile(train_model))
    counts = np.bincount(loaders.train_set.targets(), minlength=len(classes)).tolist()
    ctx = StepContext(
        config=config, weights=class_weights(counts, config.class_weights) if config.loss == "ce" else None,
        ema=ema, raw_model=model, amp_dtype=amp_dtype, scaler=scaler, num_classes=len(classes),
    )
    return _Trainer(model, train_model, optimizer, scheduler, ema, ctx, plan)


class _EtaReport:
    """Passes step and epoch events on with the estimated seconds left, from the run's own pace so far.

    Validation time is included in the pace, so bars and periodic lines alike get an honest estimate.
    """

    def __init__(self, progress: ProgressFn | None, is_main: bool, plan: dict[str, int], steps_per_epoch: int,
                 first_epoch: int, epochs: int) -> None:
        self.progress = progress if is_main else None
        self.plan = plan
        self.steps_per_epoch = steps_per_epoch
        self.first_epoch = first_epoch
        self.start = time.perf_counter()
        self.steps_done = 0
        self.total_steps = (epochs - first_epoch + 1) * steps_per_epoch

    def replanned(self) -> None:
        """The plan changed length: so does the number of steps left."""
        self.total_steps = (self.plan["epochs"] - self.first_epoch + 1) * self.steps_per_epoch

    def __call__(self, event: dict[str, Any]) -> None:
        """Pass ``event`` on (rank 0 only) with the planned epochs and ``eta_s``."""
        if self.progress is None:
            return
        done = self.steps_done + (event["step"] if event["phase"] == "train" else 0)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total_steps - done) if done else None
        self.progress({**event, "epochs": self.plan["epochs"], "eta_s": eta})


def _epoch_row(epoch: int, train_stats: dict[str, float], val_metrics: dict[str, Any], world: int) -> dict[str, Any]:
    """The history row of one epoch: training figures and the validation figures that select and stop."""
    row = {"epoch": epoch, **train_stats, "val_loss": val_metrics["loss"], "processes": world}
    for key in ("accuracy", "macro_recall", "auroc_good_vs_defect", "mae"):
        if key in val_metrics:
            row[f"val_{key}"] = val_metrics[key]
    if "operating_point" in val_metrics:
        row["val_escape_rate"] = val_metrics["operating_point"]["escape_rate"]
    return row


def _budget_epochs(
    budget_s: float, start: float, loop_start: float, epoch: int, first_epoch: int, planned: int
) -> int | None:
    """A shorter plan when the time budget cannot afford the planned epochs at the mean pace so far, else ``None``.

    Re-planned after every epoch, so a machine that gets busier mid-run still ends in time; the first epoch also
    decodes and caches the images, which keeps the estimate cautious.
    """
    left = budget_s - (time.perf_counter() - start)
    affordable = int(left // ((time.perf_counter() - loop_start) / (epoch - first_epoch + 1)))
    return max(epoch, epoch + affordable) if epoch + affordable < planned else None


def _run_epochs(
    trainer: _Trainer, loaders: RunLoaders, run: RunData, config: TrainConfig, proc: RunProcess, run_dir: Path,
    standing: RunStanding, report: _EtaReport, start: float,
) -> None:
    """Train epoch after epoch, keep the best one in ``standing``, save the resume state, stop early or in time."""
    plan, ema, model = trainer.plan, trainer.ema, trainer.model
    first_epoch = standing.last_epoch + 1
    stale = 0
    epoch = first_epoch
    loop_start = time.perf_counter()
    while epoch <= plan["epochs"]:
        # Seeding per epoch makes a resumed run draw the same batches, augmentations and dropout masks.
        torch.manual_seed(config.seed * 100_003 + epoch)
        loaders.generator.manual_seed(config.seed * 100_003 + epoch)
        loaders.train_set.set_epoch(epoch)
        if isinstance(loaders.sampler, DistributedSampler):
            loaders.sampler.set_epoch(epoch)
        train_stats = train_one_epoch(
            trainer.train_model, loaders.train, trainer.optimizer, trainer.scheduler, proc.device, report, epoch,
            config.freeze_bn_stats, trainer.ctx,
        )
        report.steps_done += len(loaders.train)
        scored = ema.module if ema is not None else model
        val_metrics = evaluate(
            scored, loaders.val, proc.device, run.classes, good_class=run.good_class or "",
            false_reject_rate=config.false_reject_rate, loss=config.loss, channels_last=config.channels_last,
        )
        row = _epoch_row(epoch, train_stats, val_metrics, proc.world)
        standing.history.append(row)
        logger.info("epoch %d/%d %s", epoch, plan["epochs"], {k: round(v, 4) for k, v in row.items() if v is not None})
        key = selection_key(val_metrics, config.select_metric)
        if standing.best_key is None or key > standing.best_key:
            standing.best_key = key
            standing.best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
            standing.best_metrics = {**val_metrics, "epoch": epoch}
            stale = 0
        else:
            stale += 1
        if config.time_budget_s is not None:
            shorter = _budget_epochs(config.time_budget_s, start, loop_start, epoch, first_epoch, plan["epochs"])
            if shorter is not None:
                plan["epochs"] = shorter
                report.replanned()
                logger.info("time budget %.0f s: shortening the run to %d epochs", config.time_budget_s, shorter)
        standing.last_epoch = epoch
        if proc.is_main:
            state = {"epoch": epoch, "history": standing.history, "best_key": list(standing.best_key),
                     "best_metrics": standing.best_metrics, "config": config.to_dict(),
                     "planned_epochs": plan["epochs"]}
            save_state(run_dir / LAST_DIR, model, ema, trainer.optimizer, trainer.scheduler, state, standing.best_state)
        report({"phase": "epoch", **row, "epochs_planned": plan["epochs"]})
        if config.patience is not None and stale >= config.patience:
            logger.info("early stop after epoch %d: no better %s for %d epochs", epoch, config.select_metric, stale)
            break
        epoch += 1


def _model_card(
    name: str, run: RunData, config: TrainConfig, mean: tuple[float, ...], std: tuple[float, ...],
    metrics: dict[str, Any],
) -> ModelCard:
    """The card of the best epoch: preprocessing, classes, the good one, validation metrics and data fingerprint."""
    return ModelCard(
        name=name,
        kind="severity" if config.loss == "mse" else "classifier",
        backbone=config.backbone,
        classes=("severity",) if config.loss == "mse" else tuple(run.classes),
        good_class=run.good_class or "",
        input_size=config.input_size,
        mean=tuple(mean),
        std=tuple(std),
        metrics=metrics,
        data_fingerprint=fingerprint(list(run.data.items)),
        train_config=config.to_dict(),
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
    proc = join_processes(config)
    if proc.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    run = prepare_data(data_dir, run_dir, config, proc)
    model, mean, std = _build_model(config, run.classes, proc.device)
    loaders = build_loaders(run, config, proc)
    trainer = _build_trainer(model, loaders, run.classes, config, proc)
    standing = RunStanding()
    if resume:
        standing = resume_standing(run_dir, config, model, trainer.ema, trainer.optimizer, trainer.scheduler,
                                   trainer.plan)
    report = _EtaReport(progress, proc.is_main, trainer.plan, len(loaders.train), standing.last_epoch + 1,
                        config.epochs)
    _run_epochs(trainer, loaders, run, config, proc, run_dir, standing, report, start)
    assert standing.best_state is not None
    model.load_state_dict(standing.best_state)

    card = _model_card(name or run_dir.name, run, config, mean, std, standing.best_metrics)
    seconds = time.perf_counter() - start
    if proc.is_main:
        save_checkpoint(run_dir, model, card)
        (run_dir / "history.json").write_text(json.dumps(standing.history, indent=2), encoding="utf-8")
        (run_dir / "metrics.json").write_text(json.dumps(standing.best_metrics, indent=2), encoding="utf-8")
        logger.info("run %s finished in %.1f s; best epoch %s", run_dir, seconds, standing.best_metrics.get("epoch"))
    leave_processes(proc)
    return TrainResult(run_dir=run_dir, model_dir=run_dir, card=card, history=standing.history, seconds=seconds)
