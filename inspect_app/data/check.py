"""``data check``: what a vision engineer wants to know about a data set before training on it.

Class counts, unreadable files (listed, not fatal), exact duplicates by content hash (with conflicting labels called
out) and leakage: the same image on both sides of a train/test split, reported as a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inspect_app.data.folders import Item
from inspect_app.data.image_io import file_hash, read_image_and_hash
from inspect_app.data.layouts import LabelledSet, load_dataset
from inspect_app.errors import ImageDecodeError

logger = logging.getLogger(__name__)


@dataclass
class DataCheckReport:
    """Findings of ``check_dataset``; everything is listed, nothing raises.

    Attributes:
        root: the data set checked.
        layout: detected layout.
        counts: images per class.
        unreadable: (path, reason) of files that do not decode.
        duplicates: groups of paths with identical bytes inside the data set.
        conflicting: the duplicate groups whose copies carry different labels.
        leakage: groups of identical images found on both the train and the test side.
        warnings: one line per problem worth a look.
    """

    root: str
    layout: str
    counts: dict[str, int]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    conflicting: list[list[str]] = field(default_factory=list)
    leakage: list[dict[str, list[str]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Number of images listed."""
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "root": self.root, "layout": self.layout, "total": self.total, "counts": self.counts,
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable], "duplicates": self.duplicates,
            "conflicting": self.conflicting, "leakage": self.leakage, "warnings": self.warnings,
        }

    def format(self) -> str:
        """Human-readable report for the terminal."""
        width = max(len(name) for name in self.counts) if self.counts else 5
        lines = [f"data set {self.root} ({self.layout} layout): {self.total} images, {len(self.counts)} classes"]
        lines += [f"  {name:<{width}}  {count:>6}" for name, count in self.counts.items()]
        lines.append(f"unreadable files: {len(self.unreadable)}")
        lines += [f"  {path}: {reason}" for path, reason in self.unreadable]
        conflicts = len(self.conflicting)
        lines.append(f"exact duplicate groups: {len(self.duplicates)} ({conflicts} with conflicting labels)")
        lines += [f"  {' = '.join(group)}" for group in self.duplicates[:20]]
        if len(self.duplicates) > 20:
            lines.append(f"  ... {len(self.duplicates) - 20} more")
        lines.append(f"train/test leakage groups: {len(self.leakage)}")
        lines += [f"  train {g['train']} = test {g['test']}" for g in self.leakage[:20]]
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def _hash_items(items: Sequence[Item], unreadable: list[tuple[str, str]]) -> dict[str, list[Item]]:
    """Content hash → items, decoding every file so broken ones are found; decode failures are recorded."""
    by_hash: dict[str, list[Item]] = {}
    for path, label in items:
        try:
            _, digest = read_image_and_hash(path)
        except ImageDecodeError as exc:
            unreadable.append((str(path), str(exc).removeprefix(f"{path}: ")))
            try:
                digest = file_hash(path)
            except OSError:
                continue
        by_hash.setdefault(digest, []).append((path, label))
    return by_hash


def check_dataset(path: str | os.PathLike[str], test: str | os.PathLike[str] | None = None) -> DataCheckReport:
    """Check a data set in any layout; ``test`` names a separate test set to check for leakage against.

    Without ``test``, leakage is checked between the layout's own train and test subsets (MVTec folders, a CSV
    ``split`` column).

    Raises:
        DatasetError: the path is not a data set in a supported layout (named in the message).
    """
    data: LabelledSet = load_dataset(path)
    report = DataCheckReport(root=str(path), layout=data.layout, counts=data.counts)
    by_hash = _hash_items(data.items, report.unreadable)
    for group in by_hash.values():
        if len(group) > 1:
            report.duplicates.append(sorted(str(p) for p, _ in group))
            if len({label for _, label in group}) > 1:
                report.conflicting.append(sorted(f"{p} ({label})" for p, label in group))
    if test is not None:
        other = load_dataset(test)
        test_hashes = _hash_items(other.items, report.unreadable)
        train_hashes = by_hash
    else:
        train_hashes = {h: [i for i in g if data.subsets.get(i[0]) == "train"] for h, g in by_hash.items()}
        test_hashes = {h: [i for i in g if data.subsets.get(i[0]) == "test"] for h, g in by_hash.items()}
    for digest, train_group in train_hashes.items():
        test_group = test_hashes.get(digest) or []
        if train_group and test_group:
            report.leakage.append({"train": sorted(str(p) for p, _ in train_group),
                                   "test": sorted(str(p) for p, _ in test_group)})
    if report.unreadable:
        report.warnings.append(f"{len(report.unreadable)} file(s) cannot be decoded; training would fail on them")
    if report.conflicting:
        report.warnings.append(f"{len(report.conflicting)} identical image group(s) carry different labels")
    if report.leakage:
        report.warnings.append(
            f"{len(report.leakage)} image(s) appear in both train and test: test figures would be optimistic"
        )
    smallest = min(report.counts.values()) if report.counts else 0
    if smallest and smallest < 10:
        report.warnings.append(f"smallest class has {smallest} image(s): validation figures for it will be noisy")
    logger.info("checked %s: %d images, %d warnings", path, report.total, len(report.warnings))
    return report
