"""Good-only layouts: MVTec AD category folders and Magnetic Tile, with masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspect_app.data.anomaly_sets import magnetic_tile, mvtec_category, read_mask
from inspect_app.data.image_io import write_image
from inspect_app.errors import DatasetError
from tests.conftest import SHARED_DATASETS


def _img(path: Path, value: int = 0) -> Path:
    return write_image(path, np.full((16, 16, 3), value, np.uint8))


def test_mvtec_layout_pairs_images_with_masks(tmp_path: Path) -> None:
    for i in range(3):
        _img(tmp_path / "train" / "good" / f"{i:03d}.png")
    _img(tmp_path / "test" / "good" / "000.png")
    _img(tmp_path / "test" / "crack" / "000.png")
    _img(tmp_path / "test" / "crack" / "001.png")
    mask = np.zeros((16, 16, 3), np.uint8)
    mask[4:8, 4:8] = 255
    write_image(tmp_path / "ground_truth" / "crack" / "000_mask.png", mask)
    split = mvtec_category(tmp_path)
    assert len(split.train_good) == 3
    by_name = {(t.label, t.path.name): t for t in split.test}
    assert by_name[("good", "000.png")].mask is None and not by_name[("good", "000.png")].is_defect
    crack = by_name[("crack", "000.png")]
    assert crack.is_defect and crack.mask is not None
    assert by_name[("crack", "001.png")].mask is None
    m = read_mask(crack.mask, (8, 8))
    assert m.shape == (8, 8) and m.sum() == 4 and m[2:4, 2:4].all()
    assert not read_mask(None, (5, 6)).any()


def test_missing_mvtec_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="train/good"):
        mvtec_category(tmp_path)


def test_magnetic_tile_layout_uses_the_training_list(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _img(tmp_path / "MT_Free" / "Imgs" / name)
        _img(tmp_path / "MT_Free" / "Imgs" / name.replace(".jpg", ".png"))
    _img(tmp_path / "MT_Crack" / "Imgs" / "d.jpg")
    _img(tmp_path / "MT_Crack" / "Imgs" / "d.png", 255)
    (tmp_path / "differnet_train_good.txt").write_text("a.jpg\nb.jpg\n")
    split = magnetic_tile(tmp_path)
    assert [p.name for p in split.train_good] == ["a.jpg", "b.jpg"]
    labels = {(t.label, t.path.name) for t in split.test}
    assert labels == {("good", "c.jpg"), ("crack", "d.jpg")}
    (tmp_path / "differnet_train_good.txt").write_text("a.jpg\nzzz.jpg\n")
    with pytest.raises(DatasetError, match=r"zzz\.jpg"):
        magnetic_tile(tmp_path)


@pytest.mark.datasets
@pytest.mark.skipif(not (SHARED_DATASETS / "magnetic-tile").is_dir(), reason="shared datasets absent")
def test_real_magnetic_tile_follows_the_differnet_protocol() -> None:
    split = magnetic_tile(SHARED_DATASETS / "magnetic-tile")
    assert len(split.train_good) == 761
    assert sum(not t.is_defect for t in split.test) == 191
    assert sum(t.is_defect for t in split.test) == 392
    assert all(t.mask is not None for t in split.test)


def test_a_file_given_as_a_layout_folder_is_named_as_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "mt.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match=r"Magnetic Tile folder is not a directory: .*mt\.zip"):
        magnetic_tile(tmp_path / "mt.zip")
    with pytest.raises(DatasetError, match="MVTec test folder not found"):
        _img(tmp_path / "bottle" / "train" / "good" / "000.png")
        mvtec_category(tmp_path / "bottle")
