"""ONNX export and the onnxruntime backend: same scores as PyTorch within 1e-4 on the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspect_app.engine.infer import Inspector
from inspect_app.engine.onnx_backend import OnnxEmbedder, OnnxInspector, load_inspector
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


@pytest.fixture(scope="module")
def good_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """A good-only model fitted on the sample data's good parts, and every sample image (good and defective)."""
    from inspect_app.data.folders import list_images
    from inspect_app.data.image_io import read_image
    from inspect_app.data.synthetic import generate_sample_data
    from inspect_app.engine.anomaly import GoodOnlyData, fit_anomaly
    from inspect_app.engine.anomaly_config import AnomalyConfig

    root = tmp_path_factory.mktemp("good-only")
    generate_sample_data(root / "data", seed=11, per_class={"good": 16, "pit": 3, "scratch": 3}, incoming=6, size=96)
    config = AnomalyConfig(input_size=96, device="cpu", coreset_ratio=0.25)
    good = tuple(list_images(root / "data" / "train" / "good"))
    model_dir = fit_anomaly(GoodOnlyData(good), root / "model", config, name="pc-onnx").model_dir
    paths = [*list_images(root / "data" / "train"), *list_images(root / "data" / "incoming")]
    return model_dir, [read_image(p) for p in paths]


def test_good_only_export_scores_equal_pytorch_within_1e4(good_only: tuple[Path, list[np.ndarray]]) -> None:
    model_dir, images = good_only
    path = export_model(model_dir)
    assert path == model_dir / "model.onnx"
    torch_preds = Inspector(model_dir, device="cpu").predict(images)
    onnx_inspector = load_inspector(model_dir, backend="onnx")
    # The descriptors come from onnxruntime; the bank and the search are the PyTorch path's.
    assert isinstance(onnx_inspector, OnnxInspector) and isinstance(onnx_inspector.model._embedder, OnnxEmbedder)
    onnx_preds = onnx_inspector.predict(images)
    for a, b in zip(torch_preds, onnx_preds, strict=True):
        assert abs(a.score - b.score) <= 1e-4 and abs(a.raw_score - b.raw_score) <= 1e-4 * max(1.0, a.raw_score)
        assert (a.decision, a.label, a.defect_class) == (b.decision, b.label, b.defect_class)
        assert (a.heatmap is None) == (b.heatmap is None)
        if a.heatmap is not None:
            assert np.abs(a.heatmap - b.heatmap).max() <= 1e-4
    assert len({p.decision for p in torch_preds}) > 1  # good and defective parts: both sides of the threshold
    assert len({round(p.score, 6) for p in torch_preds}) == len(images)  # distinct scores, not a constant


def test_a_graph_of_another_kind_is_refused_with_its_outputs_named(
    good_only: tuple[Path, list[np.ndarray]], exported: Path
) -> None:
    model_dir, _ = good_only
    with pytest.raises(CheckpointError, match=r"outputs \['logits', 'maps'\], not the \['patches'\] of a 'patchcore'"):
        OnnxInspector(model_dir, onnx_path=exported)
