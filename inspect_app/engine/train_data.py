"""The data side of a fine-tuning run: loading and splitting the data set, the split files, the loaders."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from inspect_app.config.recipes import TrainConfig
from inspect_app.data.dataset import LabelledImages
from inspect_app.data.folders import Item, find_good_class
from inspect_app.data.layouts import LabelledSet, load_dataset, split_dataset
from inspect_app.engine.train_dist import RunProcess
from inspect_app.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunData:
    """The data set as the run uses it: its classes, the good one, and the train/validation split."""

    data: LabelledSet
    classes: list[str]
    good_class: str | None
    train_items: list[Item]
    val_items: list[Item]


def prepare_data(data_dir: Path, run_dir: Path, config: TrainConfig, proc: RunProcess) -> RunData:
    """Load and split the data set, check that the recipe fits it, and record the config and split files."""
    data = load_dataset(data_dir)
    classes = list(data.classes)
    # A severity model has no classes to be good; a classifier must know which class is, or its score means nothing.
    good_class = find_good_class(classes, config.good_class) if config.loss != "mse" else None
    if config.loss == "mse" and not data.severity:
        raise ConfigError(f"loss 'mse' needs a CSV manifest with a numeric severity column; {data_dir} has none")
    if proc.world > 1 and config.sampler == "balanced":
        raise ConfigError("sampler 'balanced' is not supported under torchrun; use 'shuffle' with class_weights")
    train_items, val_items = split_dataset(data, config.val_fraction, config.seed, config.folds, config.fold)
    if config.max_train_images is not None:
        train_items = train_items[: config.max_train_images]
    logger.info(
        "training %s on %d images (%d val), classes %s, device %s, %d process(es)",
        config.backbone, len(train_items), len(val_items), classes, proc.device, proc.world,
    )
    if proc.is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=True), encoding="utf-8")
        write_split(run_dir / "split_train.csv", train_items, data.root)
        write_split(run_dir / "split_val.csv", val_items, data.root)
    return RunData(data, classes, good_class, train_items, val_items)


@dataclass(frozen=True)
class RunLoaders:
    """The training set and loaders, with the sampler and generator that each epoch re-seeds."""

    train_set: LabelledImages
    train: DataLoader
    val: DataLoader
    sampler: Any
    generator: torch.Generator


def build_loaders(run: RunData, config: TrainConfig, proc: RunProcess) -> RunLoaders:
    """Loaders for the split: each process's share of the global batch under DDP, or a balanced sampler if asked."""
    severity = run.data.severity if config.loss == "mse" else None
    common: dict[str, Any] = {"resize_mode": config.resize_mode, "cache": config.cache_images, "severity": severity}
    train_set = LabelledImages(
        run.train_items, run.classes, config.input_size, train=True, seed=config.seed, preset=config.augment, **common
    )
    val_set = LabelledImages(run.val_items, run.classes, config.input_size, train=False, **common)
    generator = torch.Generator()
    pin = proc.device.type == "cuda"
    per_process_batch = max(1, config.batch_size // proc.world)
    sampler: Any = None
    if proc.world > 1:
        sampler = DistributedSampler(train_set, num_replicas=proc.world, rank=proc.rank, shuffle=True, seed=config.seed)
    elif config.sampler == "balanced":
        counts = np.bincount(train_set.targets(), minlength=len(run.classes))
        per_item = 1.0 / counts[train_set.targets()]
        sampler = WeightedRandomSampler(per_item.tolist(), len(train_set), replacement=True, generator=generator)
    train_loader = DataLoader(
        train_set, batch_size=per_process_batch, shuffle=sampler is None, sampler=sampler, generator=generator,
        num_workers=config.num_workers, pin_memory=pin, drop_last=len(train_set) > per_process_batch * proc.world,
        persistent_workers=False,
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size * 2, num_workers=config.num_workers, pin_memory=pin)
    return RunLoaders(train_set, train_loader, val_loader, sampler, generator)


def write_split(path: Path, items: list[Item], root: Path) -> None:
    """Write a split's (path, label) pairs as a ``path,label`` CSV, paths relative to the data set's root."""
    # relpath, not relative_to: a manifest may point outside its own folder (``../images/x.png``).
    base = os.path.abspath(root)
    lines = [f"{Path(os.path.relpath(os.path.abspath(p), base)).as_posix()},{label}" for p, label in items]
    path.write_text("path,label\n" + "\n".join(lines) + "\n", encoding="utf-8")
