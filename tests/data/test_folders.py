"""Listing image folders, the class-folder layout, stratified splits and data fingerprints, on real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_app.data.folders import (
    NO_GOOD_CLASS,
    ClassFolderLayout,
    class_names,
    content_hashes,
    find_good_class,
    fingerprint,
    fingerprint_hashes,
    list_images,
    refuse_overlap,
    scan_class_folders,
    stratified_split,
)
from inspect_app.data.image_io import file_hash
from inspect_app.errors import DatasetError


def _image(path: Path, value: int = 0) -> Path:
    """Write a small real image whose pixels depend on ``value`` (so contents differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = {".jpeg": ".jpg"}.get(path.suffix.lower(), path.suffix.lower())
    ok, buf = cv2.imencode(ext, np.full((6, 6, 3), value, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _dataset(root: Path, counts: dict[str, int]) -> Path:
    for label, n in counts.items():
        for i in range(n):
            _image(root / label / f"{i:03d}.png", value=(i * 7 + len(label)) % 256)
    return root


def test_list_images_sorted_filtered_and_skips_hidden(tmp_path: Path) -> None:
    for rel in ["b.png", "a.JPG", "sub/c.tif", "sub/deeper/d.jpeg", "z.bmp", "A.tiff"]:
        _image(tmp_path / rel)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "labels.csv").write_text("x")
    _image(tmp_path / ".hidden.png")
    _image(tmp_path / ".cache" / "e.png")
    _image(tmp_path / "sub" / "._mac.jpg")

    rels = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rels == ["A.tiff", "a.JPG", "b.png", "sub/c.tif", "sub/deeper/d.jpeg", "z.bmp"]
    flat = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=False)]
    assert flat == ["A.tiff", "a.JPG", "b.png", "z.bmp"]


def test_list_images_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(DatasetError, match="no_such_folder"):
        list_images(missing)
    a_file = _image(tmp_path / "x.png")
    with pytest.raises(DatasetError, match="not a directory"):
        list_images(a_file)


def test_scan_class_folders_layout_and_good_first(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"scratch": 2, "good": 3, "crack": 1})
    (root / ".git").mkdir()
    (root / "README.md").write_text("x")

    assert class_names(root) == ["good", "crack", "scratch"]
    items = scan_class_folders(root)
    assert [label for _, label in items] == ["good"] * 3 + ["crack"] + ["scratch"] * 2
    assert items[0] == (root / "good" / "000.png", "good")
    layout = ClassFolderLayout.scan(root)
    assert layout.counts == {"good": 3, "crack": 1, "scratch": 2}
    assert layout.root == root


def test_class_names_without_good_are_alphabetical(tmp_path: Path) -> None:
    root = _dataset(tmp_path, {"pit": 1, "dent": 1})
    assert class_names(root) == ["dent", "pit"]


def test_scan_needs_two_classes(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "one", {"good": 2})
    with pytest.raises(DatasetError, match=r"at least 2 class folders.*found: good"):
        scan_class_folders(root)


def test_scan_names_empty_class_folders(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"good": 2, "scratch": 1})
    (root / "crack").mkdir()
    (root / "pit").mkdir()
    (root / "pit" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="without images: crack, pit"):
        scan_class_folders(root)


def test_scan_missing_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="absent_root"):
        scan_class_folders(tmp_path / "absent_root")


def _items(counts: dict[str, int]) -> list[tuple[Path, str]]:
    return [(Path(f"/data/{label}/{i:03d}.png"), label) for label, n in counts.items() for i in range(n)]


def test_stratified_split_properties() -> None:
    counts = {"good": 40, "scratch": 10, "crack": 3, "pit": 2, "stain": 1}
    items = _items(counts)
    train, val = stratified_split(items, 0.2, seed=0)

    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(items)
    val_counts = {label: sum(1 for _, lab in val if lab == label) for label in counts}
    assert val_counts == {"good": 8, "scratch": 2, "crack": 1, "pit": 1, "stain": 0}
    # Both lists keep the input order.
    assert train == [it for it in items if it in set(train)]
    assert val == [it for it in items if it in set(val)]


def test_stratified_split_deterministic_and_seed_dependent() -> None:
    items = _items({"good": 30, "scratch": 12})
    first = stratified_split(items, 0.25, seed=7)
    assert stratified_split(items, 0.25, seed=7) == first
    assert stratified_split(list(reversed(items)), 0.25, seed=7)[1] == list(reversed(first[1]))
    assert set(stratified_split(items, 0.25, seed=8)[1]) != set(first[1])


def test_stratified_split_class_independent_of_other_classes() -> None:
    base = _items({"good": 20, "scratch": 10})
    more = base + _items({"crack": 5})
    val_base = {it for it in stratified_split(base, 0.3, seed=1)[1] if it[1] == "scratch"}
    val_more = {it for it in stratified_split(more, 0.3, seed=1)[1] if it[1] == "scratch"}
    assert val_base == val_more


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match=str(fraction)):
        stratified_split(_items({"good": 4}), fraction, seed=0)


def test_fingerprint_tracks_content_and_labels_not_names_or_location(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "a" / "ds", {"good": 3, "scratch": 2})
    fp = fingerprint(scan_class_folders(root))
    assert len(fp) == 64
    assert fingerprint(list(reversed(scan_class_folders(root)))) == fp

    moved = tmp_path / "b" / "elsewhere"
    shutil.copytree(root, moved)
    assert fingerprint(scan_class_folders(moved)) == fp
    (moved / "good" / "000.png").rename(moved / "good" / "renamed.png")  # a snapshot names files by content hash
    assert fingerprint(scan_class_folders(moved)) == fp

    _image(moved / "good" / "renamed.png", value=99)  # edit one image
    assert fingerprint(scan_class_folders(moved)) != fp

    items = scan_class_folders(root)
    relabelled = [(p, "crack" if i == 0 else lab) for i, (p, lab) in enumerate(items)]
    assert fingerprint(relabelled) != fp
    # The same image listed twice is one image; the hashes alone give the same value as the files.
    assert fingerprint([*items, items[0]]) == fp
    assert fingerprint_hashes((lab, file_hash(p)) for p, lab in items) == fp


def test_fingerprint_names_an_unreadable_file(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"good": 1, "pit": 1})
    with pytest.raises(DatasetError, match=r"ghost\.png"):
        fingerprint([(root / "good" / "ghost.png", "good"), (root / "pit" / "000.png", "pit")])


def test_refuse_overlap_names_the_count_and_one_path(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", {"good": 3, "pit": 2})
    items = scan_class_folders(root)
    test = content_hashes(items[:2])
    assert len(test) == 2 and all(isinstance(path, Path) for path, _ in test.values())
    refuse_overlap(test, set(content_hashes(items[2:])), "model 'm'")  # disjoint: accepted
    with pytest.raises(DatasetError, match=r"^1 of the 2 frozen test image\(s\) are in the training split of "
                                           r"model 'm', e\.g\. .*good/001\.png"):
        refuse_overlap(test, set(content_hashes(items[1:])), "model 'm'")


def test_a_given_good_class_must_exist_and_none_means_defect_typing() -> None:
    assert find_good_class(["crazing", "inclusion"], NO_GOOD_CLASS) is None
    assert find_good_class(["a", "b"], "b") == "b"
    with pytest.raises(DatasetError, match=r"'c' is not one of the classes \['a', 'b'\]"):
        find_good_class(["a", "b"], "c")
