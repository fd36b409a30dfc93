"""Data set layouts: MVTec-AD folders, CSV manifests (mask, severity, split), k-fold and fixed splits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_app.data.image_io import read_image
from inspect_app.data.layouts import detect_layout, kfold_split, load_dataset, split_dataset
from inspect_app.errors import DatasetError


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path
    return path


def make_mvtec(root: Path) -> Path:
    """train/good (8-bit grey PNG), test/good (BMP), test/crack (16-bit PNG, TIFF) with masks."""
    rng = np.random.default_rng(1)
    for i in range(4):
        _write(root / "train" / "good" / f"{i:03d}.png", rng.integers(0, 255, (32, 40), dtype=np.uint8))
    _write(root / "test" / "good" / "000.bmp", rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
    _write(root / "test" / "crack" / "000.png", rng.integers(0, 65535, (32, 40), dtype=np.uint16))
    _write(root / "test" / "crack" / "001.tiff", rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
    _write(root / "ground_truth" / "crack" / "000_mask.png", np.zeros((32, 40), np.uint8))
    _write(root / "ground_truth" / "crack" / "001_mask.png", np.zeros((32, 40), np.uint8))
    return root


def test_mvtec_layout_labels_masks_and_subsets(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "bottle")
    assert detect_layout(root) == "mvtec"
    data = load_dataset(root)
    assert data.layout == "mvtec"
    assert data.classes == ("good", "crack")
    assert data.counts == {"good": 5, "crack": 2}
    assert len(data.subset("train")) == 4 and len(data.subset("test")) == 3
    crack = [p for p, label in data.items if label == "crack"]
    assert {data.masks[p].name for p in crack} == {"000_mask.png", "001_mask.png"}
    for path, _ in data.items:  # every format decodes to RGB uint8
        image = read_image(path)
        assert image.dtype == np.uint8 and image.shape == (32, 40, 3)
    # Training needs defects on the train side: the good-only MVTec train set is re-split, stratified.
    train, val = split_dataset(data, 0.5, seed=0)
    assert {label for _, label in train} == {"good", "crack"}
    assert sorted(train + val) == sorted(data.items)


def test_manifest_with_mask_severity_and_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for i in range(6):
        _write(tmp_path / "img" / f"{i}.jpg", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    lines = ["path,label,mask,severity,split"]
    lines += [f"img/{i}.jpg,{'good' if i < 3 else 'dent'},,{i / 5},{'train' if i % 2 else 'test'}" for i in range(6)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(tmp_path / "m.csv")
    assert data.layout == "csv" and data.classes == ("good", "dent")
    assert data.severity[tmp_path / "img" / "5.jpg"] == pytest.approx(1.0)
    train, test = split_dataset(data, 0.2, seed=0)
    assert [p.name for p, _ in train] == ["1.jpg", "3.jpg", "5.jpg"]
    assert [p.name for p, _ in test] == ["0.jpg", "2.jpg", "4.jpg"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("path,colour\nx.jpg,red\n", "colour"),
        ("path,label,severity\nx.jpg,good,heavy\n", "'heavy'"),
        ("path,label,split\nx.jpg,good,holdout\n", "'holdout'"),
        ("path,label\nnotes.txt,good\n", "'notes.txt'"),
        ("path,label\n", "no images"),
    ],
)
def test_manifest_errors_name_the_bad_value(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DatasetError, match=match):
        load_dataset(tmp_path / "m.csv")


def test_unknown_layout_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"'coco'.*folders, mvtec, csv"):
        load_dataset(tmp_path, layout="coco")


def test_kfold_covers_every_item_once_and_stays_stratified() -> None:
    items = [(Path(f"{label}/{i:02d}.png"), label) for label, n in (("good", 20), ("crack", 10)) for i in range(n)]
    seen: list[tuple[Path, str]] = []
    for fold in range(5):
        train, val = kfold_split(items, 5, fold, seed=3)
        assert not set(train) & set(val) and len(train) + len(val) == len(items)
        assert sum(1 for _, label in val if label == "crack") == 2
        seen += val
    assert sorted(seen) == sorted(items)
    assert kfold_split(items, 5, 0, seed=3)[1] != kfold_split(items, 5, 0, seed=4)[1]
    with pytest.raises(DatasetError, match="fold=5"):
        kfold_split(items, 5, 5, seed=0)
