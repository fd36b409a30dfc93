"""Torch datasets over labelled image lists; decoding goes through ``image_io`` so errors read the same everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from inspect_app.data.image_io import read_image
from inspect_app.data.presets import augment_inspection, resize_square, to_chw_uint8


class LabelledImages(Dataset):
    """(path, class name) pairs → (uint8 3xSxS tensor, class index).

    Args:
        items: (path, class name) pairs.
        classes: class names in output order.
        size: square input side.
        train: apply augmentation.
        seed: base seed; each (epoch, index) gets its own stream so runs reproduce with workers too.
    """

    def __init__(
        self, items: Sequence[tuple[Path, str]], classes: Sequence[str], size: int, train: bool, seed: int = 0
    ) -> None:
        self.items = list(items)
        self.class_to_index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({label for _, label in self.items} - set(self.class_to_index))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
        self.size = size
        self.train = train
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call once per epoch)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        image = resize_square(read_image(path), self.size)
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            image = augment_inspection(image, rng)
        return torch.from_numpy(to_chw_uint8(image)), self.class_to_index[label]

    def targets(self) -> list[int]:
        """Class index of every item, in order."""
        return [self.class_to_index[label] for _, label in self.items]
