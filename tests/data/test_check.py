"""``data check``: counts, unreadable files listed, exact duplicates, conflicting labels and train/test leakage."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_app.data.check import check_dataset
from tests.conftest import SHARED_DATASETS
from tests.data.test_layouts import make_mvtec


def _folders(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("good", "dent"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / label / f"{i}.png"), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    shutil.copy(root / "good" / "0.png", root / "good" / "copy.png")  # duplicate, same label
    shutil.copy(root / "good" / "1.png", root / "dent" / "relabelled.png")  # duplicate, conflicting label
    data = (root / "dent" / "2.png").read_bytes()
    (root / "dent" / "2.png").write_bytes(data[: len(data) // 2])  # truncated
    return root


def test_check_lists_unreadable_duplicates_and_conflicts(tmp_path: Path) -> None:
    report = check_dataset(_folders(tmp_path / "d"))
    assert report.counts == {"good": 4, "dent": 4}
    assert [Path(p).name for p, _ in report.unreadable] == ["2.png"]
    assert "truncated" in report.unreadable[0][1] or "corrupt" in report.unreadable[0][1]
    assert sorted(len(g) for g in report.duplicates) == [2, 2]
    assert len(report.conflicting) == 1 and "(dent)" in " ".join(report.conflicting[0])
    assert any("different labels" in w for w in report.warnings)
    assert "unreadable files: 1" in report.format()
    assert report.to_dict()["total"] == 8


def test_leakage_between_mvtec_train_and_test(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "m")
    assert check_dataset(root).leakage == []
    shutil.copy(root / "train" / "good" / "000.png", root / "test" / "good" / "leak.png")
    report = check_dataset(root)
    assert len(report.leakage) == 1
    assert report.leakage[0]["test"][0].endswith("leak.png")
    assert any("both train and test" in w for w in report.warnings)


def test_leakage_against_a_separate_test_set(tmp_path: Path) -> None:
    train = _folders(tmp_path / "train")
    test = tmp_path / "test" / "good"
    test.mkdir(parents=True)
    shutil.copy(train / "dent" / "0.png", test / "x.png")
    (tmp_path / "test" / "dent").mkdir()
    shutil.copy(train / "dent" / "1.png", tmp_path / "test" / "dent" / "y.png")
    report = check_dataset(train, test=tmp_path / "test")
    assert len(report.leakage) == 2


@pytest.mark.datasets
@pytest.mark.skipif(not (SHARED_DATASETS / "neu-cls").is_dir(), reason="shared datasets absent")
def test_neu_has_one_exact_duplicate() -> None:
    report = check_dataset(SHARED_DATASETS / "neu-cls")
    assert report.total == 1800 and set(report.counts.values()) == {300}
    assert report.unreadable == []
    assert [[Path(p).name for p in g] for g in report.duplicates] == [["Pa_101.bmp", "Pa_105.bmp"]]


@pytest.mark.datasets
@pytest.mark.skipif(not (SHARED_DATASETS / "magnetic-tile").is_dir(), reason="shared datasets absent")
def test_magnetic_tile_through_a_manifest_with_masks(tmp_path: Path) -> None:
    from inspect_app.data.layouts import load_dataset

    rows = ["path,label,mask"]
    for folder in sorted((SHARED_DATASETS / "magnetic-tile").glob("MT_*")):
        label = "good" if folder.name == "MT_Free" else folder.name[3:].lower()
        rows += [f"{p},{label},{p.with_suffix('.png')}" for p in sorted((folder / "Imgs").glob("*.jpg"))]
    (tmp_path / "mt.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(tmp_path / "mt.csv")
    assert data.counts == {"good": 952, "blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 103}
    assert len(data.masks) == 1344 and all(m.is_file() for m in list(data.masks.values())[:20])
    report = check_dataset(tmp_path / "mt.csv")
    assert report.unreadable == [] and report.leakage == []
