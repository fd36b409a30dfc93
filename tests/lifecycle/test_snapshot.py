"""Data snapshots: the manifest lists files with hashes, reviewed labels are added, the hash test split is frozen."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inspect_app.config.policy import FinetuneSpec
from inspect_app.data.folders import scan_class_folders
from inspect_app.data.image_io import file_hash
from inspect_app.errors import DatasetError
from inspect_app.lifecycle.snapshot import build_snapshot, in_test_split


def _review(inspection_id: int, path: Path, verdict: str, defect_class: str | None, digest: str | None = None) -> dict:
    return {"inspection_id": inspection_id, "image_path": str(path), "verdict": verdict,
            "defect_class": defect_class, "content_hash": digest or file_hash(path), "reviewed_at": "2025-01-01"}


def test_manifest_training_tree_and_reviews(tiny_sets: dict[str, Path], tmp_path: Path) -> None:
    incoming = sorted(tiny_sets["incoming"].glob("*.*"))[:5]
    changed = tmp_path / "changed.png"
    shutil.copyfile(incoming[4], changed)
    reviews = [
        _review(1, incoming[0], "OK", None),
        _review(2, incoming[1], "NG", "scratch"),
        _review(3, incoming[2], "NG", "dent"),  # not a class of this data set
        _review(4, tmp_path / "gone.png", "OK", None, digest="0" * 64),
        _review(5, changed, "OK", None, digest="f" * 64),  # file differs from what was inspected
    ]
    spec = FinetuneSpec(test_fraction=0.3)
    snap = build_snapshot(tiny_sets["train"], tmp_path / "run", spec, reviews)
    manifest = json.loads(snap.manifest_path.read_text())
    assert manifest["fingerprint"] == snap.fingerprint and snap.classes == ["good", "scratch"]
    assert snap.reviews_skipped == {"class not in the data set": 1, "image file gone": 1,
                                    "image changed since inspection": 1}
    from_reviews = {e["inspection_id"]: e["label"] for e in manifest["files"] if e["source"] == "review"}
    assert from_reviews == {1: "good", 2: "scratch"}
    # The tree fit() trains on holds the training files (folder + reviews) and none of the test files.
    trained = {file_hash(path): label for path, label in scan_class_folders(snap.train_dir)}
    expected = {e["sha256"]: e["label"] for e in manifest["files"] if e["split"] == "train"}
    assert trained == expected
    assert not {file_hash(p) for p, _ in snap.test_items} & set(trained)
    assert {label for _, label in snap.test_items} == {"good", "scratch"}
    # Same inputs, same fingerprint; one review more, another fingerprint.
    assert build_snapshot(tiny_sets["train"], tmp_path / "run2", spec, reviews).fingerprint == snap.fingerprint
    more = [*reviews, _review(6, incoming[3], "OK", None)]
    assert build_snapshot(tiny_sets["train"], tmp_path / "run3", spec, more).fingerprint != snap.fingerprint


def test_reviewed_frames_are_read_from_the_evidence_folder(tiny_sets: dict[str, Path], tmp_path: Path) -> None:
    # A video frame's row names its picture relative to the evidence folder, and its hash is the frame's identity,
    # which the re-encoded picture's bytes never match.
    evidence = tmp_path / "evidence"
    frames = {}
    for inspection_id, source in enumerate(sorted(tiny_sets["incoming"].glob("*.*"))[:2], start=1):
        key = f"{inspection_id:02x}" * 32
        relpath = f"{key[:2]}/{key[2:4]}/{key}.jpg"
        (evidence / relpath).parent.mkdir(parents=True)
        shutil.copyfile(source, evidence / relpath)
        frames[inspection_id] = {"inspection_id": inspection_id, "image_path": f"evidence:{relpath}",
                                 "content_hash": key, "verdict": "OK" if inspection_id == 1 else "NG",
                                 "defect_class": "scratch", "reviewed_at": "2025-01-01"}
    unfiled = {**frames[1], "inspection_id": 3, "image_path": "frame:7", "content_hash": "ee" * 32}
    reviews = [*frames.values(), unfiled]
    snap = build_snapshot(tiny_sets["train"], tmp_path / "run", FinetuneSpec(), reviews, evidence_root=evidence)
    manifest = json.loads(snap.manifest_path.read_text())
    from_reviews = {e["inspection_id"]: (e["label"], Path(e["path"]).parent.name) for e in manifest["files"]
                    if e["source"] == "review"}
    assert from_reviews == {1: ("good", "01"), 2: ("scratch", "02")}
    assert snap.reviews_skipped == {"image file gone": 1}
    # Without this machine's evidence folder the frames cannot be found: counted, never a crash.
    blind = build_snapshot(tiny_sets["train"], tmp_path / "blind", FinetuneSpec(), reviews)
    assert blind.reviews_skipped == {"image file gone": 3}


def test_hash_split_does_not_move_files_when_data_is_added() -> None:
    names = [f"good/{i:04d}.png" for i in range(400)]
    before = {n for n in names if in_test_split(n, 0.2)}
    assert 50 < len(before) < 110  # about a fifth
    extra = [f"good/new_{i}.png" for i in range(100)]
    after = {n for n in names + extra if in_test_split(n, 0.2)}
    assert before == after & set(names)


def test_explicit_test_dir_and_coverage_errors(tiny_sets: dict[str, Path], tmp_path: Path) -> None:
    snap = build_snapshot(tiny_sets["train"], tmp_path / "run", FinetuneSpec(test_dir=str(tiny_sets["test"])))
    assert len(snap.test_items) == 16 and snap.counts["train/folder"] == 22
    tiny = tmp_path / "tiny"
    for label in ("good", "scratch"):
        (tiny / label).mkdir(parents=True)
        shutil.copyfile(next(tiny_sets["train"].joinpath(label).glob("*.*")), tiny / label / "a.png")
    with pytest.raises(DatasetError, match="fewer than 2 training images"):
        build_snapshot(tiny, tmp_path / "run2", FinetuneSpec(test_dir=str(tiny_sets["test"])))


def test_a_good_only_run_takes_a_folder_of_good_images_and_a_test_set_of_any_defects(
    tiny_sets: dict[str, Path], tmp_path: Path
) -> None:
    spec = FinetuneSpec(kind="anomaly", test_dir=str(tiny_sets["test"]))
    snapshot = build_snapshot(tiny_sets["train"] / "good", tmp_path / "run", spec)
    assert snapshot.classes == ["good"] and snapshot.counts == {"train/folder": 12, "test/test_dir": 16}
    assert sorted(p.parent.name for p in (snapshot.train_dir).rglob("*.*")) == ["good"] * 12
    assert {label for _, label in snapshot.test_items} == {"good", "scratch"}  # scratch: unseen, an anomaly
    refresh = build_snapshot(tiny_sets["train"] / "good", tmp_path / "refresh", spec, [], train_on_folder=False)
    assert refresh.counts == {"test/test_dir": 16}  # a refresh trains on its reviews only
    # Good images alone hold no defect to judge with: without a test folder the run is refused, naming why.
    with pytest.raises(DatasetError, match="needs good and defective images"):
        build_snapshot(tiny_sets["train"] / "good", tmp_path / "x", spec.model_copy(update={"test_dir": None}))


def test_a_snapshot_is_content_addressed_copies_that_live_folder_changes_never_reach(
    tiny_sets: dict[str, Path], tmp_path: Path
) -> None:
    from inspect_app.data.folders import fingerprint

    live = tmp_path / "live"
    shutil.copytree(tiny_sets["train"], live)
    store = tmp_path / "store"
    snap = build_snapshot(live, tmp_path / "run", FinetuneSpec(test_fraction=0.3), store_dir=store)
    frozen = sorted(p for p in (tmp_path / "run").rglob("*.*") if p.suffix != ".json")
    assert frozen and not any(p.is_symlink() for p in frozen)
    before = {p: file_hash(p) for p in frozen}
    # One fingerprint: the card computes it from the trained tree, the snapshot from the manifest.
    assert fingerprint(scan_class_folders(snap.train_dir)) == snap.fingerprint
    first = sorted(p for p in live.rglob("*.*") if p.is_file())
    first[0].write_bytes(first[1].read_bytes())  # edited in place
    first[2].unlink()  # deleted
    shutil.copyfile(first[3], live / "good" / "added.png")  # added
    assert {p: file_hash(p) for p in frozen} == before
    assert fingerprint(scan_class_folders(snap.train_dir)) == snap.fingerprint
    objects = sorted((store / "objects").rglob("*.*"))
    again = build_snapshot(tiny_sets["train"], tmp_path / "run2", FinetuneSpec(test_fraction=0.3), store_dir=store)
    assert again.fingerprint == snap.fingerprint
    assert sorted((store / "objects").rglob("*.*")) == objects  # identical images are stored once


def test_a_test_folder_sharing_images_with_training_is_refused(tiny_sets: dict[str, Path], tmp_path: Path) -> None:
    test = tmp_path / "test"
    shutil.copytree(tiny_sets["test"], test)
    shutil.copyfile(sorted((tiny_sets["train"] / "good").glob("*.*"))[0], test / "good" / "leak.png")
    with pytest.raises(DatasetError, match=r"^1 of the 17 frozen test image\(s\) are in the training split of this "
                                           r"run, e\.g\. .*leak\.png"):
        build_snapshot(tiny_sets["train"], tmp_path / "run", FinetuneSpec(test_dir=str(test)))
