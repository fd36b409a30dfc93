"""Synthetic parts: reproducible files, the folder layout, and masks that match the drawn defects."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from inspect_app.data.folders import class_names, list_images, scan_class_folders
from inspect_app.data.image_io import read_image
from inspect_app.data.synthetic import (
    CLASSES,
    DEFAULT_PER_CLASS,
    DEFECT_CLASSES,
    SURFACES,
    SampleDataSummary,
    generate_sample_data,
    synthesize,
)
from inspect_app.errors import DatasetError


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleDataSummary]:
    out = tmp_path_factory.mktemp("synthetic") / "sample"
    return out, generate_sample_data(out, seed=0, per_class=3, incoming=10, size=128)


def test_same_seed_gives_byte_identical_files(tmp_path: Path, small_set: tuple[Path, SampleDataSummary]) -> None:
    first, _ = small_set
    again = tmp_path / "again"
    generate_sample_data(again, seed=0, per_class=3, incoming=10, size=128)
    assert _hashes(again) == _hashes(first)

    other = tmp_path / "other"
    generate_sample_data(other, seed=1, per_class=3, incoming=10, size=128)
    first_hashes, other_hashes = _hashes(first), _hashes(other)
    assert first_hashes.keys() == other_hashes.keys()
    images = [k for k in first_hashes if k.endswith(".jpg")]
    assert all(first_hashes[k] != other_hashes[k] for k in images)


def test_more_images_of_one_class_leave_the_others_unchanged(tmp_path: Path) -> None:
    a = generate_sample_data(tmp_path / "a", seed=3, per_class={"good": 2, "pit": 2}, incoming=0, size=96)
    b = generate_sample_data(tmp_path / "b", seed=3, per_class={"good": 4, "pit": 2}, incoming=0, size=96)
    assert b.counts == {"good": 4, "pit": 2}
    ha, hb = _hashes(a.out_dir / "train"), _hashes(b.out_dir / "train")
    assert all(hb[k] == v for k, v in ha.items())


def test_layout_counts_and_readme(small_set: tuple[Path, SampleDataSummary]) -> None:
    out, summary = small_set
    assert summary.out_dir == out and summary.seed == 0 and summary.size == 128
    assert summary.counts == dict.fromkeys(CLASSES, 3) and summary.total_train == 15
    assert class_names(out / "train") == ["good", "crack", "pit", "scratch", "stain"]
    for label in CLASSES:
        names = [p.name for p in list_images(out / "train" / label)]
        assert names == ["0000.jpg", "0001.jpg", "0002.jpg"]
        masks = [p.name for p in list_images(out / "masks" / label)] if label != "good" else []
        assert masks == ([] if label == "good" else ["0000.png", "0001.png", "0002.png"])
    assert not (out / "masks" / "good").exists()
    assert len(scan_class_folders(out / "train")) == 15
    assert read_image(out / "train" / "pit" / "0000.jpg").shape == (128, 128, 3)

    incoming = list_images(out / "incoming")
    assert len(incoming) == summary.incoming == 10
    with (out / "incoming_labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == [p.name for p in incoming]
    assert {r["label"] for r in rows} <= set(CLASSES)
    assert sum(r["label"] == "good" for r in rows) == summary.incoming_counts["good"] == 7

    readme = (out / "README.md").read_text()
    assert "seed 0" in readme and "generate_sample_data" in readme and "masks/<class>/NNNN.png" in readme


def test_incoming_mix_is_mostly_good(tmp_path: Path) -> None:
    summary = generate_sample_data(tmp_path / "mix", seed=0, per_class={"good": 1, "pit": 1}, incoming=40, size=64)
    assert summary.incoming_counts == {"good": 28, "scratch": 3, "crack": 3, "pit": 3, "stain": 3}


def test_default_sizes_fit_the_committed_budget() -> None:
    assert DEFAULT_PER_CLASS == {"good": 60, "scratch": 30, "crack": 30, "pit": 30, "stain": 30}


def test_masks_are_binary_nonempty_and_small(small_set: tuple[Path, SampleDataSummary]) -> None:
    out, _ = small_set
    for label in DEFECT_CLASSES:
        for mask_path in list_images(out / "masks" / label):
            mask = read_image(mask_path)[:, :, 0]
            assert mask.shape == (128, 128)
            assert set(np.unique(mask)) <= {0, 255}
            share = float((mask > 0).mean())
            assert 0.0 < share < 0.3, (mask_path, share)


def test_written_defects_lie_inside_their_masks(small_set: tuple[Path, SampleDataSummary]) -> None:
    """The JPEG on disk differs from the same part rendered clean inside the mask, and hardly outside it."""
    out, _ = small_set
    for label in DEFECT_CLASSES:
        class_index = CLASSES.index(label)
        for i in range(3):
            rng = np.random.default_rng(np.random.SeedSequence([0, 0, class_index, i]))
            clean = synthesize(label, rng, 128).clean.astype(np.int16)
            written = read_image(out / "train" / label / f"{i:04d}.jpg").astype(np.int16)
            mask = read_image(out / "masks" / label / f"{i:04d}.png")[:, :, 0] > 0
            diff = np.abs(written - clean).max(axis=2)
            assert diff[mask].max() >= 30, (label, i)
            assert np.percentile(diff[~mask], 99) <= 12, (label, i)


@pytest.mark.parametrize("label", DEFECT_CLASSES)
def test_defect_changes_pixels_only_inside_its_mask(label: str) -> None:
    for i in range(8):
        sample = synthesize(label, np.random.default_rng(100 + i), 256)
        mask = sample.mask > 0
        assert sample.label == label and sample.surface in SURFACES
        assert sample.mask.dtype == np.uint8 and set(np.unique(sample.mask)) <= {0, 255}
        assert 0 < mask.sum() < 0.3 * mask.size
        np.testing.assert_array_equal(sample.image[~mask], sample.clean[~mask])
        diff = np.abs(sample.image.astype(np.int16) - sample.clean.astype(np.int16)).max(axis=2)
        assert diff[mask].max() >= 40, (label, i)  # clearly visible somewhere
        assert diff[mask].mean() >= 8, (label, i)  # and not a faint whisper over the whole mask


def test_good_parts_have_no_defect() -> None:
    sample = synthesize("good", np.random.default_rng(5), 256)
    assert not sample.mask.any()
    np.testing.assert_array_equal(sample.image, sample.clean)
    assert sample.image.shape == (256, 256, 3) and sample.image.dtype == np.uint8


def test_images_vary_in_surface_and_defect_position() -> None:
    samples = [synthesize("scratch", np.random.default_rng(i), 128) for i in range(24)]
    assert {s.surface for s in samples} == set(SURFACES)
    centroids = {tuple(np.round(np.argwhere(s.mask).mean(axis=0) / 16).astype(int)) for s in samples}
    assert len(centroids) >= 12
    areas = {int((s.mask > 0).sum()) for s in samples}
    assert len(areas) >= 20
    # Greyish parts: mean channel spread stays small (no saturated colours on the clean surface).
    for s in samples:
        assert float(np.abs(s.clean.astype(float).mean(axis=(0, 1)) - s.clean.mean()).max()) < 25


def test_refuses_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("someone's notes")
    with pytest.raises(DatasetError, match=r"not empty: .*busy"):
        generate_sample_data(out, per_class=1, incoming=0, size=64)
    assert not (out / "train").exists()

    generate_sample_data(out, per_class=1, incoming=2, size=64, overwrite=True)
    generate_sample_data(out, per_class={"good": 1, "stain": 1}, incoming=0, size=64, overwrite=True)
    assert (out / "keep.txt").read_text() == "someone's notes"
    assert sorted(p.name for p in (out / "train").iterdir()) == ["good", "stain"]
    assert not (out / "incoming").exists() and not (out / "incoming_labels.csv").exists()


def test_out_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(DatasetError, match="a_file"):
        generate_sample_data(target, per_class=1, incoming=0, size=64)


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'dent'"):
        synthesize("dent", np.random.default_rng(0))
    with pytest.raises(ValueError, match="32"):
        synthesize("good", np.random.default_rng(0), size=32)
    with pytest.raises(ValueError, match="dent"):
        generate_sample_data(tmp_path / "x", per_class={"dent": 2})
    with pytest.raises(ValueError, match="-1"):
        generate_sample_data(tmp_path / "y", seed=-1)
