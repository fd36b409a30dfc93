"""``inspect-app train --test-dir``: a frozen test set sharing an image (by content hash) with the training data is
refused with one line and exit 2, for both model kinds, before anything is trained or registered."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspect_app.cli import main
from inspect_app.data.synthetic import generate_sample_data


@pytest.mark.parametrize("kind", ["classifier", "anomaly"])
def test_a_test_dir_sharing_an_image_with_the_training_data_is_refused(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_sample_data(tmp_path / "a", seed=3, per_class={"good": 6, "scratch": 4}, incoming=0, size=64)
    generate_sample_data(tmp_path / "b", seed=4, per_class={"good": 3, "scratch": 3}, incoming=0, size=64)
    data, test = tmp_path / "a" / "train", tmp_path / "b" / "train"
    # The same pixels under another name: only a content hash sees that the test set leaks a training image.
    shutil.copyfile(sorted((data / "good").glob("*.*"))[0], test / "good" / "renamed-leak.jpg")
    home = tmp_path / "home"
    code = main(["--home", str(home), "train", str(data), "--kind", kind, "--test-dir", str(test),
                 "--out", str(tmp_path / "m"), "--epochs", "1", "--input-size", "64", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: 1 of the 7 frozen test image(s) are in the training split of the training "
                               f"data {data}"), lines[0]
    assert "renamed-leak.jpg" in lines[0]
    assert not (tmp_path / "m" / "model_card.json").exists(), "refused before training"
    assert not list(home.rglob("*.db")), "nothing registered"

