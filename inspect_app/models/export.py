"""Export a checkpoint to ONNX for runtimes without PyTorch (onnxruntime on the station PC).

A classifier's graph takes what the pipeline already produces, uint8 images (B, 3, S, S), and returns the class logits
and the class activation maps, so scores and heatmaps match the PyTorch path. A good-only (PatchCore) model's graph is
its feature extractor: [0, 1] float tiles (B, 3, t, t) in, patch descriptors (B, D, h, w) out; the memory bank, the
nearest-neighbour search, the smoothing and the decision rule stay beside it (bank in ``model.safetensors``, recipe and
threshold in the model card), so both backends share everything after the descriptors.

Every export is checked at once: onnxruntime and PyTorch run the same batch, and a graph whose outputs differ by more
than ``EXPORT_TOLERANCE`` (relative to the outputs' scale) is deleted and refused.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inspect_app.errors import CheckpointError, ConfigError
from inspect_app.models.anomaly import PatchCore
from inspect_app.models.checkpoint import load_checkpoint
from inspect_app.models.classifier import Classifier

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx",)
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "maps")
PATCH_OUTPUT_NAMES = ("patches",)
# Largest output difference, over the largest output magnitude, that an exported graph may show against PyTorch.
EXPORT_TOLERANCE = 1e-4


class _Uint8Cam(nn.Module):
    """uint8 images → (logits, CAM maps), scaling to [0, 1] inside the graph as ``Inspector`` does on the device."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and maps for a uint8 batch."""
        return self.model.forward_with_cam(images.float() / 255.0)


class _PatchEmbed(nn.Module):
    """[0, 1] float tiles → PatchCore patch descriptors (``PatchCore.embed``), without the bank."""

    def __init__(self, model: PatchCore) -> None:
        super().__init__()
        self.model = model

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """Descriptors (B, D, h, w) for a float tile batch."""
        return self.model.embed(tiles)


def export_model(model_dir: Path, fmt: str = "onnx", out: Path | None = None) -> Path:
    """Export the checkpoint in ``model_dir``; returns the written file (default ``<model_dir>/model.onnx``).

    Raises:
        ConfigError: ``fmt`` is not one of ``EXPORT_FORMATS``.
        CheckpointError: the folder is not a valid checkpoint, or the exported graph does not reproduce PyTorch.
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    model, card = load_checkpoint(Path(model_dir), "cpu")
    out = Path(out) if out is not None else Path(model_dir) / ONNX_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    # A fresh wrapper module starts in training mode and export applies its mode to the children: set eval first.
    if isinstance(model, PatchCore):
        wrapper: nn.Module = _PatchEmbed(model).eval()
        example = torch.rand(2, 3, card.input_size, card.input_size, generator=generator)
        outputs: tuple[str, ...] = PATCH_OUTPUT_NAMES
    else:
        wrapper = _Uint8Cam(model).eval()
        example = torch.randint(0, 256, (2, 3, card.input_size, card.input_size), generator=generator,
                                dtype=torch.uint8)
        outputs = OUTPUT_NAMES
    dynamic = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript; it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Shape checks are traced as constants: right, since the graph only ever gets tiles of the card's side.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper, (example,), str(out), dynamo=False, input_names=[INPUT_NAME], output_names=list(outputs),
            dynamic_axes=dynamic, opset_version=ONNX_OPSET,
        )
    _check_parity(wrapper, example, out)
    logger.info("exported %s (%s) to %s", card.name, card.kind, out)
    return out


def _check_parity(wrapper: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Run the written graph on ``example`` and compare with PyTorch; delete it and raise if they disagree."""
    import onnxruntime as ort

    with torch.inference_mode():
        expected = wrapper(example)
    expected = expected if isinstance(expected, tuple) else (expected,)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: example.numpy()})
    for name, want, have in zip(session.get_outputs(), expected, got, strict=True):
        want = want.float().numpy()
        scale = max(1.0, float(np.abs(want).max()))
        worst = float(np.abs(want - have).max()) / scale
        if worst > EXPORT_TOLERANCE:
            path.unlink(missing_ok=True)
            raise CheckpointError(f"exported graph {str(path)!r} gives {name.name!r} {worst:.2e} away from PyTorch "
                                  f"(allowed {EXPORT_TOLERANCE:.0e}); nothing was written")
