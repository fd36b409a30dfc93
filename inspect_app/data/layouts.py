"""Data set layouts beyond plain class folders: MVTec-AD folders and CSV manifests, plus k-fold splits.

``load_dataset`` recognises the layout of a path and returns one ``LabelledSet`` whatever it was:

* class folders: ``root/<class>/**/*.img`` (``good`` for defect-free parts);
* MVTec-AD: ``root/train/good``, ``root/test/<defect or good>``, ``root/ground_truth/<defect>/<stem>_mask.png``;
* a CSV manifest: header ``path,label`` plus optional ``mask``, ``severity`` and ``split`` columns, paths relative to
  the CSV file's folder.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspect_app.data.folders import (
    ClassFolderLayout,
    Item,
    _class_seed,
    _order_classes,
    class_counts,
    list_images,
    require_dir,
    stratified_split,
)
from inspect_app.data.image_io import is_image_path
from inspect_app.errors import DatasetError
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)

LAYOUTS = ("folders", "mvtec", "csv")
SUBSETS = ("train", "test")
MANIFEST_COLUMNS = ("path", "label", "mask", "severity", "split")


@dataclass(frozen=True)
class LabelledSet:
    """A labelled data set, whatever layout it came from.

    Attributes:
        root: folder the item paths are relative to.
        layout: one of ``LAYOUTS``.
        classes: class names, sorted, ``good`` first when present.
        items: (path, class) pairs in a stable order.
        masks: path → defect mask path, where the layout provides one.
        severity: path → numeric severity (CSV ``severity`` column).
        subsets: path → ``train`` or ``test`` where the layout fixes the split (MVTec, CSV ``split`` column).
    """

    root: Path
    layout: str
    classes: tuple[str, ...]
    items: tuple[Item, ...]
    masks: dict[Path, Path] = field(default_factory=dict)
    severity: dict[Path, float] = field(default_factory=dict)
    subsets: dict[Path, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Number of images per class, in class order."""
        return class_counts(self.classes, self.items)

    def subset(self, name: str) -> list[Item]:
        """Items of the fixed ``train`` or ``test`` subset (empty when the layout fixes none)."""
        if name not in SUBSETS:
            raise DatasetError(f"subset {name!r} is not one of {', '.join(SUBSETS)}")
        return [item for item in self.items if self.subsets.get(item[0]) == name]


def detect_layout(path: str | os.PathLike[str]) -> str:
    """``csv`` for a .csv file, ``mvtec`` for a folder with ``train/good`` and ``test``, else ``folders``."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".csv":
        return "csv"
    if (p / "train" / "good").is_dir() and (p / "test").is_dir():
        return "mvtec"
    return "folders"


def load_dataset(path: str | os.PathLike[str], layout: str | None = None) -> LabelledSet:
    """Read a data set in any supported layout (detected unless ``layout`` names one of ``LAYOUTS``).

    Raises:
        DatasetError: the path does not hold the layout, or the layout name is unknown (both named).
    """
    p = Path(path)
    layout = layout or detect_layout(p)
    if layout == "folders":
        scanned = ClassFolderLayout.scan(p)
        return LabelledSet(root=scanned.root, layout="folders", classes=scanned.classes, items=scanned.items)
    if layout == "mvtec":
        return _load_mvtec(p)
    if layout == "csv":
        return _load_manifest(p)
    raise DatasetError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")


def _load_mvtec(root: Path) -> LabelledSet:
    require_dir(root / "train" / "good", "MVTec train/good folder")
    require_dir(root / "test", "MVTec test folder")
    items: list[Item] = []
    subsets: dict[Path, str] = {}
    masks: dict[Path, Path] = {}
    for path in list_images(root / "train" / "good"):
        items.append((path, GOOD_CLASS))
        subsets[path] = "train"
    for folder in sorted(p for p in (root / "test").iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in list_images(folder):
            items.append((path, folder.name))
            subsets[path] = "test"
            mask = root / "ground_truth" / folder.name / f"{path.stem}_mask.png"
            if mask.is_file():
                masks[path] = mask
            elif folder.name != GOOD_CLASS:
                logger.warning("%s: no ground-truth mask at %s", path, mask)
    classes = _order_classes(label for _, label in items)
    if len(classes) < 2:
        raise DatasetError(f"{root}: MVTec layout needs at least one defect folder under test/, found {classes}")
    items.sort(key=lambda item: (classes.index(item[1]), item[0].relative_to(root).as_posix()))
    return LabelledSet(root, "mvtec", tuple(classes), tuple(items), masks=masks, subsets=subsets)


def _load_manifest(csv_path: Path) -> LabelledSet:
    if not csv_path.is_file():
        raise DatasetError(f"manifest {csv_path} does not exist")
    base = csv_path.parent
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        unknown = sorted(set(columns) - set(MANIFEST_COLUMNS))
        if "path" not in columns or "label" not in columns or unknown:
            raise DatasetError(
                f"manifest {csv_path}: columns {columns} must include path and label and may add only "
                f"{', '.join(MANIFEST_COLUMNS[2:])}"
            )
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    items: list[Item] = []
    masks: dict[Path, Path] = {}
    severity: dict[Path, float] = {}
    subsets: dict[Path, str] = {}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        if not row.get("path") or not row.get("label"):
            raise DatasetError(f"manifest {csv_path} line {number}: path and label must not be empty")
        path = base / row["path"]
        if not is_image_path(path):
            raise DatasetError(f"manifest {csv_path} line {number}: {row['path']!r} is not an image file name")
        items.append((path, row["label"]))
        if row.get("mask"):
            masks[path] = base / row["mask"]
        if row.get("severity"):
            try:
                severity[path] = float(row["severity"])
            except ValueError:
                raise DatasetError(
                    f"manifest {csv_path} line {number}: severity {row['severity']!r} is not a number"
                ) from None
        if row.get("split"):
            if row["split"] not in SUBSETS:
                raise DatasetError(
                    f"manifest {csv_path} line {number}: split {row['split']!r} is not one of {', '.join(SUBSETS)}"
                )
            subsets[path] = row["split"]
    if not items:
        raise DatasetError(f"manifest {csv_path} lists no images")
    if severity and len(severity) != len(items):
        raise DatasetError(f"manifest {csv_path}: severity given for {len(severity)} of {len(items)} rows; need all")
    classes = _order_classes(label for _, label in items)
    return LabelledSet(base, "csv", tuple(classes), tuple(items), masks=masks, severity=severity, subsets=subsets)


def kfold_split(items: Sequence[Item], folds: int, fold: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Stratified k-fold: the ``fold``-th of ``folds`` disjoint validation parts, the rest for training.

    Each class is shuffled with its own seed (as in ``stratified_split``) and dealt round-robin into folds, so every
    item is validated in exactly one fold and class shares stay equal across folds.

    Raises:
        DatasetError: ``folds`` < 2 or ``fold`` outside [0, folds).
    """
    if folds < 2 or not 0 <= fold < folds:
        raise DatasetError(f"k-fold needs folds >= 2 and 0 <= fold < folds, got folds={folds}, fold={fold}")
    by_class: dict[str, list[int]] = {}
    for index, (_, label) in enumerate(items):
        by_class.setdefault(label, []).append(index)
    val_indices: set[int] = set()
    for label, indices in by_class.items():
        ordered = sorted(indices, key=lambda i: (str(items[i][0]), i))
        order = np.random.default_rng(_class_seed(seed, label)).permutation(len(ordered))
        val_indices.update(ordered[k] for position, k in enumerate(order) if position % folds == fold)
    train = [item for i, item in enumerate(items) if i not in val_indices]
    val = [item for i, item in enumerate(items) if i in val_indices]
    return train, val


def split_dataset(
    data: LabelledSet, val_fraction: float, seed: int, folds: int | None = None, fold: int = 0
) -> tuple[list[Item], list[Item]]:
    """Train / validation items: the layout's fixed split when it has one, else k-fold or stratified by seed."""
    fixed_train, fixed_test = data.subset("train"), data.subset("test")
    if fixed_train and fixed_test and folds is None:
        train_classes = {label for _, label in fixed_train}
        if train_classes >= set(data.classes):
            return fixed_train, fixed_test
        # MVTec trains on good parts only: a supervised classifier needs defects in training, so re-split all.
        logger.info("fixed train subset lacks classes %s: using a stratified split of all items instead",
                    sorted(set(data.classes) - train_classes))
    items = list(data.items)
    if folds is not None:
        return kfold_split(items, folds, fold, seed)
    return stratified_split(items, val_fraction, seed)
