"""``evaluate``: report, plots, NG heatmaps and thresholds of a real trained checkpoint on real image files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest

from inspect_app.cli import main
from inspect_app.config.recipes import TrainConfig
from inspect_app.engine.evaluate import evaluate_model
from inspect_app.engine.train import fit
from inspect_app.errors import DatasetError
from tests.engine.test_train import _easy_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    data = _easy_dataset(root / "data", per_class=10)
    config = TrainConfig(epochs=3, batch_size=8, input_size=64, lr=3e-3, device="cpu", seed=3)
    fit(data, root / "model", config)
    return data, root / "model"


@pytest.mark.slow
def test_evaluate_writes_report_plots_and_ng_heatmaps(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, model = trained
    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    (broken / "scratch" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    report = evaluate_model(model, broken, tmp_path / "out", device="cpu", target_escape=0.0,
                            target_false_reject=0.1)
    assert report["images"] == 20
    assert [u["path"].endswith("broken.png") for u in report["unreadable"]] == [True]
    assert set(report["per_class"]) == {"good", "scratch"}
    assert {"precision", "recall", "f1", "support"} <= set(report["per_class"]["scratch"])
    assert report["auroc_good_vs_defect"] is not None and report["operating_point"]["false_reject_rate"] == 0.01
    low, high = report["auroc_interval"]
    assert low <= report["auroc_good_vs_defect"] <= high
    # The parts that cost AUROC are named by path, and their pair counts add up to the AUROC lost.
    scratches = sum(1 for p in (data / "scratch").iterdir())
    goods = sum(1 for p in (data / "good").iterdir())
    lost = (1.0 - report["auroc_good_vs_defect"]) * scratches * goods
    costly = report["costliest"]["good"] + report["costliest"]["defect"]
    assert all(Path(e["name"]).is_file() for e in costly)
    assert sum(e["misordered"] for e in report["costliest"]["good"]) <= lost + 1e-9
    escape_target = report["targets"]["escape_rate"]
    assert escape_target["target"] == 0.0 and 0.0 <= escape_target["false_reject_rate"] <= 1.0
    assert report["targets"]["false_reject_rate"]["escape_rate"] is not None
    saved = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert saved["confusion_matrix"] == report["confusion_matrix"]
    for plot in ("confusion_matrix.png", "roc.png", "score_histogram.png"):
        image = cv2.imread(str(tmp_path / "out" / plot))
        assert image is not None and image.shape[0] > 100, plot
    with (tmp_path / "out" / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20
    ng_rows = [r for r in rows if r["decision"] == "NG"]
    heatmaps = sorted((tmp_path / "out" / "heatmaps").glob("*.png"))
    assert len(heatmaps) == len(ng_rows) == report["heatmaps"] > 0


@pytest.mark.slow
def test_evaluate_cli_and_unknown_labels(trained: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data, model = trained
    code = main(["evaluate", str(model), str(data), "--out", str(tmp_path / "cli"), "--device", "cpu",
                 "--target-escape", "0.05"])
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "escape rate" in out and "threshold for escape_rate 0.05" in out
    assert "95 % bootstrap interval" in out and "AUROC per defect class (against the good parts): scratch" in out
    other = tmp_path / "other"
    shutil.copytree(data, other)
    (other / "scratch").rename(other / "dent")
    with pytest.raises(DatasetError, match="'dent'"):
        evaluate_model(model, other, tmp_path / "x", device="cpu")
