"""Good-only evaluation layouts: MVTec AD categories and Magnetic Tile, with their pixel masks.

Both give the same thing: good training images and labelled test images, each with the path of its defect mask
(``None`` for good parts, whose mask is all zero).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_app.data.folders import list_images
from inspect_app.errors import DatasetError, ImageDecodeError
from inspect_app.records import GOOD_CLASS

MT_GOOD = "Free"
MT_TRAIN_LIST = "differnet_train_good.txt"


@dataclass(frozen=True)
class EvalImage:
    """One labelled test image.

    Attributes:
        path: the image file.
        label: class name (``good`` for defect-free parts).
        mask: the defect mask file, or ``None`` when the part is good or the layout has no mask.
    """

    path: Path
    label: str
    mask: Path | None = None

    @property
    def is_defect(self) -> bool:
        """True for defective parts."""
        return self.label != GOOD_CLASS


@dataclass(frozen=True)
class AnomalySplit:
    """Good-only protocol: train on good images only, test on good and defective ones.

    Attributes:
        train_good: defect-free training images.
        test: labelled test images with masks.
    """

    train_good: tuple[Path, ...]
    test: tuple[EvalImage, ...]


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")


def magnetic_tile(root: str | os.PathLike[str]) -> AnomalySplit:
    """The DifferNet protocol on Magnetic Tile: ``differnet_train_good.txt`` files to train, all others to test.

    Layout: ``root/MT_<Class>/Imgs/<name>.jpg`` with a ``<name>.png`` mask beside each image; ``MT_Free`` is good.

    Raises:
        DatasetError: the folder, the file list or a listed file is missing.
    """
    base = Path(root)
    _require_dir(base, "Magnetic Tile folder")
    listing = base / MT_TRAIN_LIST
    if not listing.is_file():
        raise DatasetError(f"{base}: the training list {MT_TRAIN_LIST} is missing")
    names = {line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()}
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name.startswith("MT_"))
    if f"MT_{MT_GOOD}" not in classes:
        raise DatasetError(f"{base}: no MT_{MT_GOOD} folder among {classes}")
    train: list[Path] = []
    test: list[EvalImage] = []
    for folder in classes:
        label = folder[3:]
        good = label == MT_GOOD
        for path in list_images(base / folder / "Imgs"):
            if path.suffix.lower() != ".jpg":
                continue  # the .png files beside the images are their masks
            if good and path.name in names:
                train.append(path)
                continue
            mask = path.with_suffix(".png")
            test.append(EvalImage(path, GOOD_CLASS if good else label.lower(), mask if mask.is_file() else None))
    missing = sorted(names - {p.name for p in train})
    if missing:
        raise DatasetError(f"{base}: {len(missing)} file(s) of {MT_TRAIN_LIST} not found in MT_{MT_GOOD}, "
                           f"e.g. {missing[:3]}")
    return AnomalySplit(tuple(train), tuple(test))


def mvtec_category(root: str | os.PathLike[str]) -> AnomalySplit:
    """One MVTec AD category: ``train/good``, ``test/<defect>/*.png``, masks ``ground_truth/<defect>/<stem>_mask.png``.

    Raises:
        DatasetError: the category folder is missing ``train/good`` or ``test``.
    """
    base = Path(root)
    _require_dir(base / "train" / GOOD_CLASS, "MVTec train/good folder")
    _require_dir(base / "test", "MVTec test folder")
    test: list[EvalImage] = []
    for folder in sorted(p for p in (base / "test").iterdir() if p.is_dir()):
        for path in list_images(folder):
            mask = base / "ground_truth" / folder.name / f"{path.stem}_mask.png"
            good = folder.name == GOOD_CLASS
            test.append(EvalImage(path, folder.name, None if good or not mask.is_file() else mask))
    return AnomalySplit(tuple(list_images(base / "train" / GOOD_CLASS)), tuple(test))


def read_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
    """A boolean defect mask of ``shape`` (height, width): the file's non-zero pixels, or all False for ``None``.

    Raises:
        ImageDecodeError: the mask file cannot be read.
    """
    if path is None:
        return np.zeros(shape, dtype=bool)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ImageDecodeError(f"mask {str(path)!r} cannot be read")
    if mask.shape != tuple(shape):
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0
