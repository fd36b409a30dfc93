"""Exporting review verdicts with ``app.reviews``: a manifest that ``data check`` and training read as is."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from inspect_app.app.reviews import export_reviews
from inspect_app.data.check import check_dataset
from inspect_app.data.layouts import load_dataset
from inspect_app.records import Decision, Review
from inspect_app.storage import Database, Repository


def _image(path: Path, value: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((32, 32, 3), value, dtype=np.uint8))
    return str(path)


def test_export_writes_absolute_paths_and_leaves_out_frames_and_missing_files(
    db: Database, repo: Repository, inspection_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = tmp_path / "plant"
    _image(plant / "in" / "a.png", 40)
    _image(plant / "in" / "b.png", 200)
    monkeypatch.chdir(plant)  # `inspect in/` stored paths relative to the folder it ran in
    paths = ["in/a.png", "in/b.png", "frame:17", str(tmp_path / "gone.png")]
    for index, image in enumerate(paths):
        repo.add_inspections([inspection_factory(index, image_path=image)])
    with pytest.raises(ValueError, match="no reviewed parts"):
        export_reviews(db, tmp_path / "m.csv")
    for inspection_id, verdict in zip(range(1, 5), ("OK", "NG", "NG", "OK"), strict=True):
        repo.add_review(Review(inspection_id=inspection_id, verdict=Decision(verdict), reviewer="op",
                               defect_class="stain" if verdict == "NG" else None))

    out = tmp_path / "elsewhere" / "reviewed.csv"
    export = export_reviews(db, out)
    assert (export.written, export.frames, export.missing) == (2, 1, 1)
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["path", "label"], [str(plant / "in" / "a.png"), "good"], [str(plant / "in" / "b.png"), "stain"]]

    os.chdir(tmp_path)  # read from another folder, as a training run would
    labelled = load_dataset(out)
    assert sorted(labelled.classes) == ["good", "stain"] and len(labelled.items) == 2
    report = check_dataset(out)
    assert not report.unreadable


def test_export_refuses_when_no_reviewed_part_has_a_file(db: Database, repo: Repository, inspection_factory: Any,
                                                         tmp_path: Path) -> None:
    repo.add_inspections([inspection_factory(0, image_path="frame:3")])
    repo.add_review(Review(inspection_id=1, verdict=Decision.OK, reviewer="op"))
    with pytest.raises(ValueError, match=r"none of the 1 reviewed parts .*1 stream frame\(s\), 0 file\(s\) not found"):
        export_reviews(db, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
