"""Good-only data: a fit's good images (and optional labelled defects), their held-out split, and the evaluation
layouts MVTec AD and Magnetic Tile with their pixel masks.

Both evaluation layouts give the same thing: good training images and labelled test images, each with the path of its
defect mask (``None`` for good parts, whose mask is all zero).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_app.data.folders import NO_GOOD_CLASS, find_good_class, list_images, require_dir
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


def magnetic_tile(root: str | os.PathLike[str]) -> AnomalySplit:
    """The DifferNet protocol on Magnetic Tile: ``differnet_train_good.txt`` files to train, all others to test.

    Layout: ``root/MT_<Class>/Imgs/<name>.jpg`` with a ``<name>.png`` mask beside each image; ``MT_Free`` is good.

    Raises:
        DatasetError: the folder, the file list or a listed file is missing.
    """
    base = Path(root)
    require_dir(base, "Magnetic Tile folder")
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
    require_dir(base / "train" / GOOD_CLASS, "MVTec train/good folder")
    require_dir(base / "test", "MVTec test folder")
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


@dataclass(frozen=True)
class GoodOnlyData:
    """Images for a good-only fit.

    Attributes:
        good: defect-free images (bank + held-out calibration).
        defects: optional labelled defective images (path, class), used only for the escape-rate threshold.
    """

    good: tuple[Path, ...]
    defects: tuple[tuple[Path, str], ...] = ()


def scan_good_only(data_dir: Path, good_class: str | None = None) -> GoodOnlyData:
    """A folder of good images, or a class-folder data set whose good class holds the good images.

    In the class-folder case, every other class folder holds labelled defects.

    Args:
        data_dir: the folder.
        good_class: the good class folder's name; ``None`` finds it (``data.folders.find_good_class``).

    Raises:
        DatasetError: no images, or class folders none (or several) of which is named as the good one.
    """
    data_dir = Path(data_dir)
    subdirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if data_dir.is_dir() else []
    if subdirs:
        names = [p.name for p in subdirs]
        if good_class == NO_GOOD_CLASS:
            raise DatasetError(f"{data_dir}: a good-only model needs good images; --good-class {NO_GOOD_CLASS} "
                               "leaves none")
        try:
            good_name = find_good_class(names, good_class)
        except DatasetError as exc:
            raise DatasetError(f"{data_dir}: {exc}; or pass a folder of good images only") from None
        good = tuple(list_images(data_dir / str(good_name)))
        defects = tuple((p, d.name) for d in subdirs if d.name != good_name for p in list_images(d))
    else:
        good = tuple(list_images(data_dir))
        defects = ()
    if len(good) < 2:
        raise DatasetError(f"{data_dir}: need at least 2 good images to fit and calibrate, found {len(good)}")
    return GoodOnlyData(good=good, defects=defects)


def split_holdout(
    paths: Sequence[Path], fraction: float, seed: int, at_least: int = 1, allow_all: bool = False
) -> tuple[list[Path], list[Path]]:
    """(bank, held-out) split of good images, reproducible from the seed and the sorted paths.

    Args:
        paths: the good images.
        fraction: share held out.
        seed: seed of the draw.
        at_least: hold out at least this many (as far as there are images).
        allow_all: every image may be held out (they all join the bank anyway); else one stays in the bank.
    """
    ordered = sorted(paths, key=str)
    n_hold = min(max(1, round(len(ordered) * fraction), at_least), len(ordered) - (0 if allow_all else 1))
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:n_hold].tolist())
    return [p for i, p in enumerate(ordered) if i not in chosen], [p for i, p in enumerate(ordered) if i in chosen]
