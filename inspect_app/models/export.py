"""Export a checkpoint to ONNX for runtimes without PyTorch (onnxruntime on the station PC).

The exported graph takes what the pipeline already produces, uint8 images (B, 3, S, S), and returns the class logits
and the class activation maps, so scores and heatmaps match the PyTorch path.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from inspect_app.errors import ConfigError
from inspect_app.models.checkpoint import load_checkpoint
from inspect_app.models.classifier import Classifier

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx",)
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "maps")


class _Uint8Cam(nn.Module):
    """uint8 images → (logits, CAM maps), scaling to [0, 1] inside the graph as ``Inspector`` does on the device."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and maps for a uint8 batch."""
        return self.model.forward_with_cam(images.float() / 255.0)


def export_model(model_dir: Path, fmt: str = "onnx", out: Path | None = None) -> Path:
    """Export the checkpoint in ``model_dir``; returns the written file (default ``<model_dir>/model.onnx``).

    Raises:
        ConfigError: ``fmt`` is not one of ``EXPORT_FORMATS``.
        CheckpointError: the folder is not a valid checkpoint.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    model, card = load_checkpoint(Path(model_dir), "cpu")
    out = Path(out) if out is not None else Path(model_dir) / ONNX_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    # A fresh wrapper module starts in training mode and export applies its mode to the children: set eval first.
    wrapper = _Uint8Cam(model).eval()
    example = torch.zeros(2, 3, card.input_size, card.input_size, dtype=torch.uint8)
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript; it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper, (example,), str(out), dynamo=False, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic, opset_version=ONNX_OPSET,
        )
    logger.info("exported %s to %s", card.name, out)
    return out
