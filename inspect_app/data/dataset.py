"""Torch datasets over labelled image lists; decoding goes through ``image_io`` so errors read the same everywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from inspect_app.data.image_io import read_image
from inspect_app.data.presets import augment, fit_square, to_chw_uint8


class LabelledImages(Dataset):
    """(path, class name) pairs → (uint8 3xSxS tensor, class index or severity).

    Args:
        items: (path, class name) pairs.
        classes: class names in output order.
        size: square input side.
        train: apply augmentation.
        seed: base seed; each (epoch, index) gets its own stream so runs reproduce with workers too.
        resize_mode: ``resize`` or ``letterbox``.
        preset: augmentation preset (see ``presets.augment``), used when ``train``.
        cache: keep every decoded, resized image in memory after its first read (uint8, size² x 3 bytes each):
            decoding large JPEGs every epoch costs more than the forward pass on a small CPU.
        severity: path → numeric severity; when given, the target is that float instead of the class index.
    """

    def __init__(
        self,
        items: Sequence[tuple[Path, str]],
        classes: Sequence[str],
        size: int,
        train: bool,
        seed: int = 0,
        resize_mode: str = "resize",
        preset: str = "inspection",
        cache: bool = False,
        severity: Mapping[Path, float] | None = None,
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
        self.resize_mode = resize_mode
        self.preset = preset
        self.severity = dict(severity) if severity is not None else None
        if self.severity is not None:
            missing = [str(p) for p, _ in self.items if p not in self.severity]
            if missing:
                raise ValueError(f"{len(missing)} item(s) have no severity value, e.g. {missing[:3]}")
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call once per epoch)."""
        self.epoch = epoch

    def load(self, index: int) -> np.ndarray:
        """The decoded, resized (not augmented) SxSx3 image of item ``index``, from the cache when enabled."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image = fit_square(read_image(self.items[index][0]), self.size, self.resize_mode)
        if self._cache is not None:
            self._cache[index] = image
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | float]:
        path, label = self.items[index]
        image = self.load(index)
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            image = augment(image, rng, self.preset)
        target: int | float = self.class_to_index[label] if self.severity is None else float(self.severity[path])
        return torch.from_numpy(to_chw_uint8(image)), target

    def targets(self) -> list[int]:
        """Class index of every item, in order."""
        return [self.class_to_index[label] for _, label in self.items]
