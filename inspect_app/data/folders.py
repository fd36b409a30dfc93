"""Image folders on disk: listing, the ``root/<class>/*.img`` layout, stratified splits and data fingerprints.

Orders are always sorted by relative path string, never by file-system order, so two machines that hold the same
files list, split and fingerprint them identically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspect_app.data.image_io import file_hash, is_image_path
from inspect_app.errors import DatasetError
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)

Item = tuple[Path, str]
"""One labelled image: (path, class name)."""


def _is_hidden(name: str) -> bool:
    """Dot-files and dot-folders (``.git``, ``.DS_Store``, macOS ``._x.jpg``, our own ``.x.tmp``) are not data."""
    return name.startswith(".")


def require_dir(folder: Path, what: str) -> None:
    """Raise DatasetError naming the folder unless it is an existing directory."""
    if not folder.exists():
        raise DatasetError(f"{what} not found: {folder}")
    if not folder.is_dir():
        raise DatasetError(f"{what} is not a directory: {folder}")


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files under ``folder``, sorted by relative path, skipping hidden files and folders.

    Args:
        folder: the folder to list.
        recursive: also look into sub-folders.

    Returns:
        Paths (``folder`` joined with the relative path) whose suffix is in ``IMAGE_EXTENSIONS``.

    Raises:
        DatasetError: ``folder`` does not exist or is not a directory.
    """
    root = Path(folder)
    require_dir(root, "image folder")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending into hidden folders at all.
        dirnames[:] = [] if not recursive else [d for d in dirnames if not _is_hidden(d)]
        here = Path(dirpath)
        for fname in filenames:
            if _is_hidden(fname) or not is_image_path(fname):
                continue
            path = here / fname
            found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda pair: pair[0])
    return [path for _, path in found]


# Folder names that mean "defect-free" as a whole, and words that do at the start or end of a name (``ok_front``,
# ``front-good``) unless the name also says otherwise (``not_ok``, ``ng_ok``).
GOOD_NAMES = ("good", "ok", "pass", "passed", "normal", "no_defect", "nodefect", "defect_free", "free")
GOOD_WORDS = ("good", "ok", "pass", "passed", "normal", "free")
NEGATING_WORDS = ("not", "non", "no", "nok", "ng", "bad", "fail", "failed", "reject", "defect", "defective", "def")
NO_GOOD_CLASS = "none"


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def looks_good(name: str) -> bool:
    """Whether a class folder's name says it holds defect-free parts (see ``GOOD_NAMES``)."""
    words = _words(name)
    if not words:
        return False
    if "_".join(words) in GOOD_NAMES:
        return True
    ends = {words[0], words[-1]}
    return bool(ends & set(GOOD_WORDS)) and not set(words) & set(NEGATING_WORDS)


def find_good_class(classes: Sequence[str], given: str | None = None) -> str | None:
    """The class that holds the defect-free parts: ``given``, or the one name among ``classes`` that says so.

    Args:
        classes: the data set's class names.
        given: the user's choice; ``NO_GOOD_CLASS`` says there is none (every class is a defect type).

    Returns:
        The class name, or ``None`` when ``given`` is ``NO_GOOD_CLASS``.

    Raises:
        DatasetError: ``given`` is not a class, or no single class name says it is the good one (lists them).
    """
    if given is not None:
        if given == NO_GOOD_CLASS:
            return None
        if given not in classes:
            raise DatasetError(f"good class {given!r} is not one of the classes {list(classes)}")
        return given
    if GOOD_CLASS in classes:
        return GOOD_CLASS
    candidates = [c for c in classes if looks_good(c)]
    if len(candidates) == 1:
        logger.info("good class: %r (from its folder name)", candidates[0])
        return candidates[0]
    found = f"several look like it: {candidates}" if candidates else "none is named like one"
    raise DatasetError(
        f"cannot tell which class holds the good parts among {list(classes)} ({found}); pass --good-class NAME "
        f"(or --good-class {NO_GOOD_CLASS} when every class is a defect type)"
    )


def _order_classes(names: Iterable[str]) -> list[str]:
    """Sorted class names with ``GOOD_CLASS`` first when present (index 0 is then the 'no defect' class)."""
    ordered = sorted(set(names))
    if GOOD_CLASS in ordered:
        ordered.remove(GOOD_CLASS)
        ordered.insert(0, GOOD_CLASS)
    return ordered


@dataclass(frozen=True)
class ClassFolderLayout:
    """A labelled data set stored as ``root/<class>/**/*.img``.

    Attributes:
        root: the data set folder.
        classes: class names, sorted, ``good`` first when present.
        items: (path, class) pairs, grouped by class in ``classes`` order, each group sorted by path.
    """

    root: Path
    classes: tuple[str, ...]
    items: tuple[Item, ...]

    @classmethod
    def scan(cls, root: str | os.PathLike[str]) -> ClassFolderLayout:
        """Read the layout under ``root``.

        Raises:
            DatasetError: root missing, fewer than 2 class folders, or class folders without images (all named).
        """
        base = Path(root)
        require_dir(base, "data set folder")
        folders = {p.name: p for p in base.iterdir() if p.is_dir() and not _is_hidden(p.name)}
        classes = _order_classes(folders)
        if len(classes) < 2:
            found = ", ".join(classes) if classes else "none"
            raise DatasetError(
                f"{base}: need at least 2 class folders (for example {GOOD_CLASS}/ and one defect), found: {found}"
            )
        items: list[Item] = []
        empty: list[str] = []
        for name in classes:
            images = list_images(folders[name])
            if not images:
                empty.append(name)
            items.extend((path, name) for path in images)
        if empty:
            raise DatasetError(f"{base}: class folders without images: {', '.join(empty)}")
        loose = [p.name for p in base.iterdir() if p.is_file() and is_image_path(p.name)]
        if loose:
            logger.warning("%s: %d image(s) directly in the root are ignored (not in a class folder)", base, len(loose))
        return cls(root=base, classes=tuple(classes), items=tuple(items))

    @property
    def counts(self) -> dict[str, int]:
        """Number of images per class, in class order."""
        return class_counts(self.classes, self.items)


def scan_class_folders(root: str | os.PathLike[str]) -> list[Item]:
    """(path, class) pairs of a ``root/<class>/*.img`` data set; see ``ClassFolderLayout.scan``."""
    return list(ClassFolderLayout.scan(root).items)


def class_names(root: str | os.PathLike[str]) -> list[str]:
    """Class names of a ``root/<class>/*.img`` data set, sorted with ``good`` first; validated like ``scan``."""
    return list(ClassFolderLayout.scan(root).classes)


def class_counts(classes: Sequence[str], items: Iterable[Item]) -> dict[str, int]:
    """Number of images per class, in class order (classes without images count 0)."""
    counts = dict.fromkeys(classes, 0)
    for _, label in items:
        counts[label] += 1
    return counts


def _class_seed(seed: int, label: str) -> int:
    """A per-class seed, so adding or removing one class does not reshuffle the split of the others."""
    digest = hashlib.sha256(f"{seed}\x00{label}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def stratified_split(items: Sequence[Item], val_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Split labelled items into train and validation, class by class, reproducibly.

    Each class holds out ``round(n * val_fraction)`` items, at least 1 and at most ``n - 1`` when it has 2 or more
    (a class with a single image stays in train). The choice depends only on the seed, the class name and the
    sorted paths of that class, not on the input order.

    Args:
        items: (path, class) pairs.
        val_fraction: share held out for validation, strictly between 0 and 1.
        seed: any integer; the same seed gives the same split.

    Returns:
        (train, val): disjoint lists whose union is ``items``, each in input order.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    by_class: dict[str, list[int]] = {}
    for index, (_, label) in enumerate(items):
        by_class.setdefault(label, []).append(index)
    val_indices: set[int] = set()
    for label, indices in by_class.items():
        n = len(indices)
        if n < 2:
            continue
        n_val = min(max(round(n * val_fraction), 1), n - 1)
        ordered = sorted(indices, key=lambda i: (str(items[i][0]), i))
        rng = np.random.default_rng(_class_seed(seed, label))
        chosen = rng.permutation(n)[:n_val]
        val_indices.update(ordered[k] for k in chosen)
    train = [item for i, item in enumerate(items) if i not in val_indices]
    val = [item for i, item in enumerate(items) if i in val_indices]
    return train, val


def fingerprint_hashes(labelled_hashes: Iterable[tuple[str, str]]) -> str:
    """The data fingerprint: SHA-256 over the sorted, distinct (class, content hash) lines of a labelled set.

    The one definition every place uses (model card, dataset snapshot, run record): names and locations do not count,
    so a snapshot's content-addressed copy of a folder has the folder's fingerprint, and an image listed twice once.
    """
    lines = sorted({f"{label}\t{digest}\n" for label, digest in labelled_hashes})
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def fingerprint(items: Sequence[Item]) -> str:
    """``fingerprint_hashes`` of labelled image files: relabelling, adding, removing or editing an image changes it;
    renaming or moving files does not.

    Raises:
        DatasetError: an item's file cannot be read (named).
    """
    return fingerprint_hashes((label, _hash_of(path)) for path, label in items)


def _hash_of(path: str | os.PathLike[str]) -> str:
    """``file_hash`` with a read failure as a ``DatasetError`` naming the file."""
    try:
        return file_hash(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read for its content hash ({exc.strerror or exc})") from exc


def content_hashes(items: Iterable[Item]) -> dict[str, Item]:
    """Content hash (SHA-256 of the bytes) → the first item with those bytes.

    Raises:
        DatasetError: an item's file cannot be read (named).
    """
    hashes: dict[str, Item] = {}
    for path, label in items:
        hashes.setdefault(_hash_of(path), (Path(path), label))
    return hashes


def refuse_overlap(test: Mapping[str, Item], training: Collection[str], trained: str) -> None:
    """Refuse a frozen test set that shares an image (by content hash) with a model's training split.

    Args:
        test: content hash → item of the frozen test set (``content_hashes``).
        training: content hashes of the training split.
        trained: what trained on ``training``, for the message (``model 'm1'``, ``the training folder``).

    Raises:
        DatasetError: one line with the number of shared images and one example path.
    """
    shared = sorted(str(test[digest][0]) for digest in set(test) & set(training))
    if shared:
        raise DatasetError(f"{len(shared)} of the {len(test)} frozen test image(s) are in the training split of "
                           f"{trained}, e.g. {shared[0]}; a model must be judged on images it never trained on")
