"""Inspector: loads a checkpoint once and returns calibrated predictions with heatmaps for non-OK parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspect_app.engine.infer import Inspector
from inspect_app.models.checkpoint import ModelCard, build_model, save_checkpoint
from inspect_app.records import Decision


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    card = ModelCard(
        name="tiny", kind="classifier", backbone="efficientnet_lite0", classes=("good", "crack", "pit"), input_size=64,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    )
    torch.manual_seed(0)
    model = build_model(card)
    # Bias the head so that "crack" wins on every image: the decision path is then known in advance.
    with torch.no_grad():
        model.net.classifier.weight.mul_(0.001)
        model.net.classifier.bias.copy_(torch.tensor([0.0, 8.0, 0.0]))
    return save_checkpoint(tmp_path / "tiny", model, card)


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(80 + 7 * i, 90, 3), dtype=np.uint8) for i in range(n)]


def test_predictions_follow_the_decision_rule(checkpoint: Path) -> None:
    inspector = Inspector(checkpoint, device="cpu")
    predictions = inspector.predict(_images(3))
    assert len(predictions) == 3
    for p in predictions:
        assert sum(p.class_scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.score == pytest.approx(1.0 - p.class_scores["good"])
        assert p.label == "crack" and p.defect_class == "crack"
        assert p.decision is Decision.NG
        assert p.heatmap is not None and p.heatmap.shape == (64, 64)
        assert p.heatmap.min() >= 0.0 and p.heatmap.max() <= 1.0


def test_threshold_override_turns_ng_into_ok(checkpoint: Path) -> None:
    inspector = Inspector(checkpoint, device="cpu", threshold=1.0)
    p = inspector.predict(_images(1))[0]
    assert p.decision is Decision.OK
    assert p.heatmap is None and p.defect_class is None


def test_batch_equals_single(checkpoint: Path) -> None:
    inspector = Inspector(checkpoint, device="cpu")
    images = _images(4)
    batch = inspector.predict(images)
    single = [inspector.predict([im])[0] for im in images]
    for a, b in zip(batch, single, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_empty_batch(checkpoint: Path) -> None:
    assert Inspector(checkpoint, device="cpu").predict([]) == []


@pytest.mark.gpu
def test_cuda_matches_cpu(checkpoint: Path) -> None:
    images = _images(4)
    cpu = Inspector(checkpoint, device="cpu").predict(images)
    gpu = Inspector(checkpoint, device="cuda").predict(images)
    for a, b in zip(cpu, gpu, strict=True):
        assert a.score == pytest.approx(b.score, abs=2e-2)


def test_preprocess_letterboxes_when_the_model_was_trained_so(checkpoint: Path) -> None:
    from inspect_app.models.checkpoint import read_card

    card = read_card(checkpoint)
    (checkpoint / "model_card.json").write_text(card.replace(train_config={"resize_mode": "letterbox"}).to_json())
    wide = np.full((32, 64, 3), 255, np.uint8)
    boxed = Inspector(checkpoint, device="cpu").preprocess([wide])[0]
    assert boxed.shape == (3, 64, 64)
    assert int(boxed[:, :8].max()) == 0 and int(boxed[:, 24:40].min()) == 255  # black bands above, content centred


def test_inference_loads_no_fitting_or_evaluation_code() -> None:
    """A station only scores: importing the Inspector must not pull in bank building, fitting or evaluation."""
    import subprocess
    import sys

    fitting = ["inspect_app.engine.anomaly", "inspect_app.engine.anomaly_bank", "inspect_app.engine.anomaly_eval",
               "inspect_app.engine.anomaly_reload", "inspect_app.engine.coreset", "inspect_app.engine.train"]
    script = (
        "import sys, inspect_app.engine.infer, inspect_app.engine.onnx_backend\n"
        f"print(sorted(m for m in {fitting!r} if m in sys.modules))\n"
        "print('inspect_app.engine.anomaly_scoring' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["[]", "True"]
