"""ONNX export and the onnxruntime backend: same scores as PyTorch within 1e-4 on the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspect_app.engine.infer import Inspector
from inspect_app.engine.onnx_backend import OnnxInspector, load_inspector
from inspect_app.errors import CheckpointError, ConfigError
from inspect_app.models.export import export_model


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(tiny_checkpoint, "onnx", tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    images = [np.clip(rng.normal(level, 20, (50 + 9 * i, 70, 3)), 0, 255).astype(np.uint8)
              for i, level in enumerate((20, 60, 110, 140, 180, 235))]
    return [*images, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]


def test_onnx_scores_equal_pytorch_within_1e4(tiny_checkpoint: Path, exported: Path) -> None:
    images = _images()
    torch_preds = Inspector(tiny_checkpoint, device="cpu").predict(images)
    onnx_preds = OnnxInspector(tiny_checkpoint, onnx_path=exported).predict(images)
    assert {p.decision for p in torch_preds} >= {p.decision for p in onnx_preds}
    for a, b in zip(torch_preds, onnx_preds, strict=True):
        assert abs(a.score - b.score) <= 1e-4
        for name in a.class_scores:
            assert abs(a.class_scores[name] - b.class_scores[name]) <= 1e-4
        assert (a.decision, a.label, a.defect_class) == (b.decision, b.label, b.defect_class)
        if a.heatmap is not None:
            assert np.abs(a.heatmap - b.heatmap).max() <= 1e-3
    assert len({p.decision for p in torch_preds}) > 1  # the images exercise both OK and non-OK paths


def test_backend_selection_and_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert type(load_inspector(tiny_checkpoint, backend="torch", device="cpu")) is Inspector
    with pytest.raises(ConfigError, match="'tensorrt' is not one of torch, onnx"):
        load_inspector(tiny_checkpoint, backend="tensorrt")
    with pytest.raises(CheckpointError, match="inspect-app export"):
        OnnxInspector(tiny_checkpoint, onnx_path=tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="'tflite' is not one of onnx"):
        export_model(tiny_checkpoint, "tflite")
