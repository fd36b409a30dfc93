"""onnxruntime backend: the same ``predict`` as ``Inspector``, with the network in an exported ``model.onnx``.

A classifier runs wholly in onnxruntime. A good-only model runs its feature extractor there; its bank and search stay
as the PyTorch path has them (``PatchCore.set_embedder``), so the two backends differ only in the descriptors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from inspect_app.config.pipeline import BACKENDS
from inspect_app.engine.anomaly_config import ANOMALY_KIND
from inspect_app.engine.anomaly_scoring import load_anomaly_model
from inspect_app.engine.infer import Inspector
from inspect_app.errors import CheckpointError, ConfigError
from inspect_app.models.checkpoint import read_card
from inspect_app.models.export import INPUT_NAME, ONNX_FILE, OUTPUT_NAMES, PATCH_OUTPUT_NAMES
from inspect_app.records import Prediction

logger = logging.getLogger(__name__)


class OnnxEmbedder:
    """``PatchCore.embed`` through an onnxruntime session of the exported feature extractor."""

    def __init__(self, session: object) -> None:
        self.session = session

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        """Descriptors (B, D, h, w) of [0, 1] float tiles (B, 3, t, t)."""
        (patches,) = self.session.run(None, {INPUT_NAME: tiles.detach().float().cpu().numpy()})  # type: ignore[attr-defined]
        return torch.from_numpy(patches).to(tiles.device)


class OnnxInspector(Inspector):
    """An ``Inspector`` whose forward pass runs in onnxruntime on the CPU.

    Decisions, defect classes and heatmaps come from the same code as the PyTorch path (``Inspector._decide``).

    Args:
        model_dir: checkpoint folder (for the model card).
        onnx_path: exported graph (default ``<model_dir>/model.onnx``, written by ``inspect-app export``).
        threshold: defect-score threshold; defaults to the model card's.
        review_band: REVIEW band below the threshold; ``None`` keeps the model card's.
        heatmaps: compute a heatmap for every non-OK prediction.
        threads: onnxruntime intra-op threads (0 = its default).
    """

    def __init__(
        self,
        model_dir: Path,
        onnx_path: Path | None = None,
        threshold: float | None = None,
        review_band: float | None = None,
        heatmaps: bool = True,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.card = read_card(Path(model_dir))
        path = Path(onnx_path) if onnx_path is not None else Path(model_dir) / ONNX_FILE
        if not path.is_file():
            raise CheckpointError(f"ONNX file {str(path)!r} not found; run `inspect-app export {model_dir}` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        expected = list(PATCH_OUTPUT_NAMES if self.card.kind == ANOMALY_KIND else OUTPUT_NAMES)
        names = [output.name for output in self.session.get_outputs()]
        if names != expected:
            # A graph exported from another model (or kind) would fail on the first frame, or score wrongly.
            raise CheckpointError(f"ONNX graph {str(path)!r} has outputs {names}, not the {expected} of a "
                                  f"{self.card.kind!r} model: run `inspect-app export {model_dir}` again")
        self.device = torch.device("cpu")
        self.model = None
        self.anomaly_config = None
        if self.card.kind == ANOMALY_KIND:
            # The bank, the search and the recipe load as on PyTorch; only the descriptors come from the graph.
            self.model, self.card, self.anomaly_config = load_anomaly_model(Path(model_dir), self.device)
            self.model.set_embedder(OnnxEmbedder(self.session))
        self._set_decision(threshold, review_band, heatmaps)
        logger.info("loaded ONNX model %s from %s", self.card.name, path)

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Predictions for HxWx3 uint8 RGB images, in order."""
        if not images:
            return []
        if self.anomaly_config is not None:
            with torch.inference_mode():
                return self._predict_anomaly(images)
        logits, maps = self.session.run(None, {INPUT_NAME: self.preprocess(images).numpy()})
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        maps_t = torch.from_numpy(maps)
        return [self._decide(probs[i], maps_t[i : i + 1]) for i in range(len(images))]


def load_inspector(
    model_dir: Path,
    backend: str = "torch",
    device: str = "auto",
    threshold: float | None = None,
    review_band: float | None = None,
    onnx_path: Path | None = None,
) -> Inspector:
    """An ``Inspector`` for the chosen backend (``torch`` on ``device``, or ``onnx`` on the CPU), for either kind."""
    if backend == "torch":
        return Inspector(Path(model_dir), device=device, threshold=threshold, review_band=review_band)
    if backend == "onnx":
        return OnnxInspector(Path(model_dir), onnx_path=onnx_path, threshold=threshold, review_band=review_band)
    raise ConfigError(f"inference backend {backend!r} is not one of {', '.join(BACKENDS)}")
