"""Dataset snapshots of a fine-tuning run: which files (with content hashes), which reviewed labels, which split.

The snapshot is written as ``manifest.json`` in the run folder and materialised as a class-folder tree of symbolic
links, so ``engine.train.fit`` trains on exactly the listed files even if the plant's folders change meanwhile.

Without a dedicated test folder, the frozen test set is chosen by a hash of each file's path relative to the data
folder: a file's side never depends on which other files exist, so the test set only grows as data is added and
never leaks into training in a later run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_app.config.policy import FinetuneSpec
from inspect_app.data.folders import Item, class_names, scan_class_folders
from inspect_app.data.image_io import file_hash
from inspect_app.errors import DatasetError
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
_HASH_BUCKETS = 10_000


@dataclass(frozen=True)
class Snapshot:
    """A run's frozen data.

    Attributes:
        train_dir: class-folder tree (symbolic links) that ``fit`` trains and validates on.
        test_items: (path, class) pairs of the frozen test set.
        classes: class names of the data folder, ``good`` first.
        fingerprint: SHA-256 over the sorted (split, class, content hash) lines.
        manifest_path: the manifest JSON.
        counts: images per split and source.
        reviews_skipped: reviewed images left out, per reason.
    """

    train_dir: Path
    test_items: list[Item]
    classes: list[str]
    fingerprint: str
    manifest_path: Path
    counts: dict[str, int] = field(default_factory=dict)
    reviews_skipped: dict[str, int] = field(default_factory=dict)


def in_test_split(relative_path: str, test_fraction: float) -> bool:
    """Whether a data-folder file belongs to the hash-chosen frozen test set."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") % _HASH_BUCKETS < round(test_fraction * _HASH_BUCKETS)


def _review_label(review: dict[str, Any]) -> str | None:
    """Training label of a review: OK → good, NG → its defect class (``None`` when the class is missing)."""
    if review["verdict"] == "OK":
        return GOOD_CLASS
    return review.get("defect_class") or None


def _link(target: Path, link: Path) -> None:
    """Symbolic link to ``target`` (a copy where the file system refuses links)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(os.path.abspath(target), link)
    except OSError:
        shutil.copyfile(target, link)


def _scan_data(data_dir: Path, good_only: bool) -> tuple[list[Item], list[str]]:
    """(items, classes, ``good`` first) of a run's data folder.

    A classifier needs class folders. A good-only model also takes a folder of good images, or class folders whose
    good one (``good``, ``ok``, ...) holds its bank images and the others labelled defects (``scan_good_only``).
    """
    if not good_only:
        return scan_class_folders(data_dir), class_names(data_dir)
    from inspect_app.engine.anomaly import scan_good_only

    data = scan_good_only(data_dir)
    items = [(path, GOOD_CLASS) for path in data.good] + list(data.defects)
    return items, [GOOD_CLASS, *sorted({label for _, label in data.defects} - {GOOD_CLASS})]


def build_snapshot(
    data_dir: Path,
    run_dir: Path,
    spec: FinetuneSpec,
    reviews: list[dict[str, Any]] | None = None,
    train_on_folder: bool = True,
) -> Snapshot:
    """Freeze a run's data into ``run_dir``: manifest, training tree and test set.

    Args:
        data_dir: class-folder data set (``good/``, ``scratch/``, ...); for a good-only run (``spec.kind``
            ``anomaly``) also a folder of good images.
        run_dir: the run folder; ``manifest.json`` and ``data/`` are written into it.
        spec: the run's settings (model kind, test folder or fraction, whether to use reviews).
        reviews: reviewed inspections (``RunQueue.reviewed_images``); used when ``spec.use_reviews``.
        train_on_folder: ``False`` for a run that refreshes a model: the data folder's training side is already in
            it, so only the reviews are trained on (the folder still gives the frozen test set).

    Raises:
        DatasetError: the data folder is unusable, or a class ends up without training or test images (named).
    """
    data_dir = Path(data_dir).resolve()
    good_only = spec.kind == "anomaly"
    items, classes = _scan_data(data_dir, good_only)
    files: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path, label in items:
        digest = file_hash(path)
        if digest in seen:
            continue
        seen.add(digest)
        rel = Path(os.path.abspath(path)).relative_to(data_dir).as_posix()
        split = "train" if spec.test_dir else ("test" if in_test_split(rel, spec.test_fraction) else "train")
        if split == "train" and not train_on_folder:
            continue
        files.append({"path": str(path), "label": label, "sha256": digest, "split": split, "source": "folder"})
    skipped: Counter[str] = Counter()
    # A refresh trains on nothing but its reviews, so it takes them whatever use_reviews says.
    for review in (reviews or []) if spec.use_reviews or not train_on_folder else []:
        label = _review_label(review)
        path = Path(review["image_path"])
        if label not in classes:
            skipped["class not in the data set" if label else "NG without a defect class"] += 1
            continue
        if not path.is_file():
            skipped["image file gone"] += 1
            continue
        digest = file_hash(path)
        if review.get("content_hash") and digest != review["content_hash"]:
            # The file changed after it was inspected: the verdict was about other pixels.
            skipped["image changed since inspection"] += 1
            continue
        if digest in seen:
            skipped["already in the data set"] += 1
            continue
        seen.add(digest)
        files.append({"path": str(path), "label": label, "sha256": digest, "split": "train", "source": "review",
                      "inspection_id": review["inspection_id"], "reviewed_at": review.get("reviewed_at")})
    if spec.test_dir:
        test_root = Path(spec.test_dir).resolve()
        for path, label in scan_class_folders(test_root):
            # Every defect class is an anomaly to a good-only model: its test set may name classes it never saw.
            if label not in classes and not good_only:
                raise DatasetError(f"test folder {test_root} has class {label!r}; the data set's classes: {classes}")
            files.append({"path": str(path), "label": label, "sha256": file_hash(path), "split": "test",
                          "source": "test_dir"})
    _check_coverage(files, [GOOD_CLASS] if good_only else classes, data_dir, 2 if train_on_folder else 0)

    train_dir = run_dir / "data"
    if train_dir.exists():
        shutil.rmtree(train_dir)
    train_dir.mkdir(parents=True)  # even when empty (a refresh without reviews): the run folder and tree exist
    test_items: list[Item] = []
    for entry in files:
        if entry["split"] == "test":
            test_items.append((Path(entry["path"]), entry["label"]))
            continue
        link = train_dir / entry["label"] / f"{entry['sha256'][:16]}{Path(entry['path']).suffix.lower()}"
        _link(Path(entry["path"]), link)
    lines = sorted(f"{e['split']}\t{e['label']}\t{e['sha256']}" for e in files)
    fingerprint = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    counts = Counter(f"{e['split']}/{e['source']}" for e in files)
    manifest = {
        "data_dir": str(data_dir), "test_dir": spec.test_dir, "classes": classes, "fingerprint": fingerprint,
        "counts": dict(sorted(counts.items())), "reviews_skipped": dict(skipped), "files": files,
    }
    manifest_path = run_dir / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    logger.info("snapshot %s: %s; reviews skipped %s", fingerprint[:12], dict(counts), dict(skipped))
    return Snapshot(train_dir=train_dir, test_items=test_items, classes=classes, fingerprint=fingerprint,
                    manifest_path=manifest_path, counts=dict(counts), reviews_skipped=dict(skipped))


def _check_coverage(files: list[dict[str, Any]], classes: list[str], data_dir: Path, least: int = 2) -> None:
    """Each of ``classes`` needs ``least`` training images (train + validation, or a good-only fit's bank and
    calibration) and the test set a good and a defective part."""
    train = Counter(e["label"] for e in files if e["split"] == "train")
    test = Counter(e["label"] for e in files if e["split"] == "test")
    short = [c for c in classes if train[c] < least]
    if short:
        raise DatasetError(f"{data_dir}: class(es) {short} have fewer than {least} training images after the test "
                           f"hold-out (training counts {dict(train)})")
    if test[GOOD_CLASS] == 0 or sum(n for c, n in test.items() if c != GOOD_CLASS) == 0:
        raise DatasetError(f"{data_dir}: the frozen test set needs good and defective images, has {dict(test)}; "
                           "add images, raise test_fraction or set test_dir")
