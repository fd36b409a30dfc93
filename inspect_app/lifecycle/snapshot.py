"""Dataset snapshots of a fine-tuning run: which files (with content hashes), which reviewed labels, which split.

The snapshot is written as ``manifest.json`` in the run folder and materialised as two class-folder trees, ``data/``
(training) and ``test/`` (the frozen test set), of hard links into a content-addressed store (``<home>/snapshots``,
``objects/<aa>/<sha256><ext>``) that holds one read-only copy of each distinct image. So ``fit`` trains on exactly the
listed files, and a later edit, deletion or addition in the plant's folders changes neither the snapshot nor its
fingerprint: the store holds copies, never links into the live folder (a hard link to a live file would follow an edit
made in place); a snapshot on another file system than the store gets copies instead of links.

Without a dedicated test folder, the frozen test set is chosen by a hash of each file's path relative to the data
folder: a file's side never depends on which other files exist, so the test set only grows as data is added and
never leaks into training in a later run. Images another model (the champion) trained on never go to the test side,
and an explicit test folder sharing an image with either training split is refused: by content hash, not by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_app.config.evidence import existing_picture, is_evidence_ref, is_frame_ref
from inspect_app.config.policy import FinetuneSpec
from inspect_app.data.folders import (
    Item,
    class_names,
    content_hashes,
    fingerprint_hashes,
    refuse_overlap,
    scan_class_folders,
)
from inspect_app.data.image_io import file_hash
from inspect_app.errors import DatasetError
from inspect_app.records import GOOD_CLASS, DatasetSnapshot, ModelVersion
from inspect_app.storage.repository import Repository

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
_HASH_BUCKETS = 10_000


@dataclass(frozen=True)
class Snapshot:
    """A run's frozen data.

    Attributes:
        train_dir: class-folder tree (hard links into the store, or copies) that ``fit`` trains and validates on.
        test_items: (path, class) pairs of the frozen test set, in the snapshot's ``test/`` tree.
        classes: class names of the data folder, ``good`` first.
        fingerprint: the data fingerprint of the training split (``data.folders.fingerprint_hashes``), the one the
            model's card and run record carry.
        manifest_path: the manifest JSON.
        counts: images per split and source.
        reviews_skipped: reviewed images left out, per reason.
        reviewed: (path in ``train_dir``, class) of the reviewed images it trains on.
    """

    train_dir: Path
    test_items: list[Item]
    classes: list[str]
    fingerprint: str
    manifest_path: Path
    counts: dict[str, int] = field(default_factory=dict)
    reviews_skipped: dict[str, int] = field(default_factory=dict)
    reviewed: list[Item] = field(default_factory=list)

    def record(self) -> DatasetSnapshot:
        """The database record of this snapshot (``Repository.add_dataset_snapshot``)."""
        return DatasetSnapshot(fingerprint=self.fingerprint, path=str(self.train_dir), classes=tuple(self.classes),
                               image_count=sum(self.counts.values()), manifest_path=str(self.manifest_path))


def in_test_split(relative_path: str, test_fraction: float) -> bool:
    """Whether a data-folder file belongs to the hash-chosen frozen test set."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") % _HASH_BUCKETS < round(test_fraction * _HASH_BUCKETS)


def _review_label(review: dict[str, Any]) -> str | None:
    """Training label of a review: OK → good, NG → its defect class (``None`` when the class is missing)."""
    if review["verdict"] == "OK":
        return GOOD_CLASS
    return review.get("defect_class") or None


def _review_picture(review: dict[str, Any], evidence_root: Path | None) -> tuple[Path | None, bool]:
    """Where a reviewed part's picture is here, and whether that is the part's own file.

    Only the part's own file is what its content hash was taken of; a picture filed in the evidence folder (a video
    or camera frame, or the copy of a file since moved) is named by that hash and holds the decoded pixels, so its
    bytes never match it.
    """
    stored = review.get("image_path")
    own = None if not stored or is_evidence_ref(stored) or is_frame_ref(stored) else Path(stored).resolve()
    picture = existing_picture(stored, None, review.get("content_hash"), evidence_root)
    return picture, picture is not None and picture == own


def _freeze(source: Path, digest: str, store_dir: Path, target: Path) -> None:
    """Put ``source`` (content hash ``digest``) in the store once and hard-link ``target`` to it (copy across file
    systems).

    Raises:
        DatasetError: the file changed between hashing and copying (named), or cannot be read.
    """
    suffix = source.suffix.lower()
    stored = store_dir / "objects" / digest[:2] / f"{digest}{suffix}"
    if not stored.is_file():
        stored.parent.mkdir(parents=True, exist_ok=True)
        # Copy to a temporary name, check, then rename: a half-written object never has a content-hash name.
        handle, temporary = tempfile.mkstemp(dir=stored.parent, prefix=".part-", suffix=suffix)
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            if file_hash(temporary) != digest:
                raise DatasetError(f"{source}: changed while the snapshot was taken; run again")
            os.chmod(temporary, 0o444)
            os.replace(temporary, stored)
        except OSError as exc:
            raise DatasetError(f"{source}: cannot copy into the snapshot store {store_dir} "
                               f"({exc.strerror or exc})") from exc
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(stored, target)
    except OSError:
        shutil.copyfile(stored, target)  # another file system (or one without hard links)


def _manifest(manifest_path: str | os.PathLike[str]) -> dict[str, Any]:
    """A snapshot's manifest.

    Raises:
        DatasetError: missing or unreadable (named).
    """
    try:
        manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
            raise ValueError("no file list")
        return manifest
    except (OSError, ValueError) as exc:
        raise DatasetError(f"snapshot manifest {manifest_path} is unreadable ({exc})") from exc


def trained_files(repository: Repository, data_fingerprint: str | None, name: str) -> list[dict[str, Any]] | None:
    """The training entries (manifest rows) of the snapshot ``data_fingerprint`` names; ``None`` when it has none (a
    model registered before snapshots, or in another database), with a warning naming model ``name``."""
    snapshot = repository.get_dataset_snapshot(data_fingerprint) if data_fingerprint else None
    if snapshot is None or not snapshot.manifest_path:
        logger.warning("model %s has no dataset snapshot: its training images cannot be checked against a test set",
                       name)
        return None
    return [entry for entry in _manifest(snapshot.manifest_path)["files"] if entry["split"] == "train"]


def model_training_hashes(repository: Repository, version: ModelVersion) -> set[str] | None:
    """Content hashes ``version`` trained on (its snapshot's training split); ``None`` when it has no snapshot."""
    files = trained_files(repository, version.data_fingerprint, version.name)
    return None if files is None else {entry["sha256"] for entry in files}


def stamp_fingerprint(model_dir: Path, card: Any, snapshot: Snapshot, refresh: bool = False) -> Any:
    """The card of a model fitted on ``snapshot``, carrying the snapshot's fingerprint (one value on card, run record
    and model version).

    A refreshed model's card is its base's, so it is rewritten with the refreshed data's fingerprint (the base's
    images and the new ones); a fresh fit computed the same value from the same files.

    Raises:
        DatasetError: a fresh fit's card names other data than the snapshot it trained on (both named).
    """
    from inspect_app.models.checkpoint import write_card

    if card.data_fingerprint == snapshot.fingerprint:
        return card
    if not refresh:
        raise DatasetError(f"model {card.name}: its card's data fingerprint {card.data_fingerprint} is not the one of "
                           f"its snapshot {snapshot.manifest_path}, {snapshot.fingerprint}: the data changed while "
                           "it trained; train again")
    card = card.replace(data_fingerprint=snapshot.fingerprint)
    write_card(Path(model_dir), card)
    return card


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
    store_dir: Path | None = None,
    trained_by_others: Mapping[str, Collection[str]] | None = None,
    base_files: list[dict[str, Any]] | None = None,
    evidence_root: Path | None = None,
) -> Snapshot:
    """Freeze a run's data into ``run_dir``: manifest, training tree and test set.

    Args:
        data_dir: class-folder data set (``good/``, ``scratch/``, ...); for a good-only run (``spec.kind``
            ``anomaly``) also a folder of good images.
        run_dir: the run folder; ``manifest.json``, ``data/`` and ``test/`` are written into it.
        spec: the run's settings (model kind, test folder or fraction, whether to use reviews).
        reviews: reviewed inspections (``RunQueue.reviewed_images``); used when ``spec.use_reviews``.
        train_on_folder: ``False`` for a run that refreshes a model: the data folder's training side is already in
            it, so only the reviews are trained on (the folder still gives the frozen test set).
        store_dir: the content-addressed image store (``Settings.snapshots_dir``); default ``run_dir/store``.
        trained_by_others: what other models (the champion) trained on, ``"model 'name'"`` → content hashes: the
            hash-chosen test set leaves those images out, and a test folder holding one is refused.
        base_files: for a refresh, the training entries of the model it adds to (``trained_files``): they are
            part of what the refreshed model knows, so its snapshot and fingerprint hold them too (source ``base``).
        evidence_root: this machine's evidence folder (``Settings.resolved_evidence_dir``): reviewed parts stored as
            ``evidence:`` paths (video and camera frames, evidence copies) are read from it.

    Raises:
        DatasetError: the data folder is unusable, a class ends up without training or test images, or the frozen test
            set shares an image with a training split (named, with the count and one path).
    """
    data_dir = Path(data_dir).resolve()
    good_only = spec.kind == "anomaly"
    items, classes = _scan_data(data_dir, good_only)
    others = dict(trained_by_others or {})
    seen_by_others = set().union(*others.values()) if others else set()
    files = [{**entry, "split": "train", "source": "base"} for entry in base_files or []]
    seen = {entry["sha256"] for entry in files}
    label: str | None  # a folder item always has a label; a review may have none (NG without a defect class)
    for path, label in items:
        digest = file_hash(path)
        if digest in seen:
            continue
        seen.add(digest)
        rel = Path(os.path.abspath(path)).relative_to(data_dir).as_posix()
        # A file another model trained on cannot judge it: it stays on the training side.
        chosen = not spec.test_dir and in_test_split(rel, spec.test_fraction) and digest not in seen_by_others
        split = "test" if chosen else "train"
        if split == "train" and not train_on_folder:
            continue
        files.append({"path": str(path), "label": label, "sha256": digest, "split": split, "source": "folder"})
    skipped: Counter[str] = Counter()
    # A refresh trains on nothing but its reviews, so it takes them whatever use_reviews says.
    for review in (reviews or []) if spec.use_reviews or not train_on_folder else []:
        label = _review_label(review)
        if label not in classes:
            skipped["class not in the data set" if label else "NG without a defect class"] += 1
            continue
        picture, own_file = _review_picture(review, evidence_root)
        if picture is None:
            skipped["image file gone"] += 1
            continue
        digest = file_hash(picture)
        if own_file and review.get("content_hash") and digest != review["content_hash"]:
            # The file changed after it was inspected: the verdict was about other pixels.
            skipped["image changed since inspection"] += 1
            continue
        if digest in seen:
            skipped["already in the data set"] += 1
            continue
        seen.add(digest)
        files.append({"path": str(picture), "label": label, "sha256": digest, "split": "train", "source": "review",
                      "inspection_id": review["inspection_id"], "reviewed_at": review.get("reviewed_at")})
    if spec.test_dir:
        test_root = Path(spec.test_dir).resolve()
        test_found = scan_class_folders(test_root)
        for _path, label in test_found:
            # Every defect class is an anomaly to a good-only model: its test set may name classes it never saw.
            if label not in classes and not good_only:
                raise DatasetError(f"test folder {test_root} has class {label!r}; the data set's classes: {classes}")
        test_hashes = content_hashes(test_found)
        refuse_overlap(test_hashes, {e["sha256"] for e in files if e["split"] == "train"}, "this run")
        for trained, hashes in others.items():
            refuse_overlap(test_hashes, hashes, trained)
        files += [{"path": str(path), "label": label, "sha256": digest, "split": "test", "source": "test_dir"}
                  for digest, (path, label) in test_hashes.items()]
    _check_coverage(files, [GOOD_CLASS] if good_only else classes, data_dir, 2 if train_on_folder else 0)

    return _write(files, classes, run_dir, store_dir, {"data_dir": str(data_dir), "test_dir": spec.test_dir},
                  dict(skipped))


def snapshot_trained(
    items: list[Item],
    classes: list[str],
    run_dir: Path,
    store_dir: Path,
    data_dir: Path,
    test_items: list[Item] | None = None,
    base_files: list[dict[str, Any]] | None = None,
) -> Snapshot:
    """Freeze the data a model was trained on outside the worker (``inspect-app train``): every item is training
    data (its validation share included), ``test_items`` the frozen test set, refused when it shares an image.

    Args:
        base_files: for a model that extends another (``train --update``), that model's training entries.

    Raises:
        DatasetError: a file is unreadable, or the test set shares an image with the training data (named).
    """
    train = content_hashes(items)
    test = content_hashes(test_items or [])
    refuse_overlap(test, set(train) | {entry["sha256"] for entry in base_files or []}, f"the training data {data_dir}")
    files = [{**entry, "split": "train", "source": "base"} for entry in base_files or []]
    known = {entry["sha256"] for entry in files}
    files += [{"path": str(path), "label": label, "sha256": digest, "split": split, "source": source}
              for split, source, hashes in (("train", "folder", train), ("test", "test_dir", test))
              for digest, (path, label) in hashes.items() if digest not in known]
    return _write(files, classes, run_dir, store_dir, {"data_dir": str(data_dir), "test_dir": None}, {})


def _write(
    files: list[dict[str, Any]], classes: list[str], run_dir: Path, store_dir: Path | None, where: dict[str, Any],
    skipped: dict[str, int],
) -> Snapshot:
    """Materialise ``files`` as the ``data/`` and ``test/`` trees of ``run_dir`` and write the manifest."""
    store_dir = Path(store_dir) if store_dir is not None else run_dir / "store"
    train_dir, test_dir = run_dir / "data", run_dir / "test"
    for tree in (train_dir, test_dir):
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir(parents=True)  # even when empty (a refresh without reviews): the run folder and tree exist
    test_items: list[Item] = []
    for entry in files:
        tree = test_dir if entry["split"] == "test" else train_dir
        frozen = tree / entry["label"] / f"{entry['sha256'][:16]}{Path(entry['path']).suffix.lower()}"
        # A base model's image comes from its own snapshot: the live file may have changed since.
        _freeze(Path(entry.pop("frozen", None) or entry["path"]), entry["sha256"], store_dir, frozen)
        entry["frozen"] = str(frozen)
        if entry["split"] == "test":
            test_items.append((frozen, entry["label"]))
    fingerprint = fingerprint_hashes((e["label"], e["sha256"]) for e in files if e["split"] == "train")
    counts = Counter(f"{e['split']}/{e['source']}" for e in files)
    manifest = {
        **where, "classes": classes, "fingerprint": fingerprint,
        "test_fingerprint": fingerprint_hashes((e["label"], e["sha256"]) for e in files if e["split"] == "test"),
        "store": str(store_dir), "counts": dict(sorted(counts.items())), "reviews_skipped": skipped, "files": files,
    }
    manifest_path = run_dir / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    logger.info("snapshot %s: %s; reviews skipped %s", fingerprint[:12], dict(counts), skipped)
    return Snapshot(train_dir=train_dir, test_items=test_items, classes=classes, fingerprint=fingerprint,
                    manifest_path=manifest_path, counts=dict(counts), reviews_skipped=skipped,
                    reviewed=[(Path(e["frozen"]), e["label"]) for e in files if e["source"] == "review"])


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
