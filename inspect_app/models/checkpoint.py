"""Checkpoints: ``model.safetensors`` weights plus a ``model_card.json`` that says how to use them.

Never pickles: the card is plain JSON and the weights are a flat tensor dict, so loading runs no code from the file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from inspect_app.errors import CheckpointError
from inspect_app.models.anomaly import DEFAULT_LAYERS, PatchCore
from inspect_app.models.classifier import Classifier
from inspect_app.records import GOOD_CLASS, utcnow

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
CARD_FORMAT = 1
MODEL_KINDS = ("classifier", "severity", "patchcore")


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to run a model and to judge where it came from.

    Attributes:
        name: model version name (unique in the plant database).
        kind: one of ``MODEL_KINDS``.
        backbone: backbone name given to the factory.
        classes: class names in output order.
        input_size: square input side in pixels.
        mean: normalisation mean.
        std: normalisation std.
        good_class: name of the defect-free class; its probability drives the defect score.
        threshold: defect score at or above which a part is NG.
        review_band: width of the REVIEW band just below ``threshold`` that a pipeline uses unless it sets its own
            (good-only models size it from their calibration; 0 gives binary decisions).
        metrics: validation metrics at save time.
        data_fingerprint: the training data's fingerprint (``data.folders.fingerprint``: classes and content hashes),
            the same value its dataset snapshot and training run carry.
        train_config: the resolved training configuration.
        anomaly: for ``patchcore`` models, the bank's description and score normalisation (raw threshold, centre).
        created_at: ISO-8601 UTC time of saving.
    """

    name: str
    kind: str
    backbone: str
    classes: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    good_class: str = GOOD_CLASS
    threshold: float = 0.5
    review_band: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    train_config: dict[str, Any] = field(default_factory=dict)
    anomaly: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: utcnow().isoformat())
    format: int = CARD_FORMAT

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise CheckpointError(f"model kind {self.kind!r} is not one of {', '.join(MODEL_KINDS)}")
        # A severity model has one numeric output (named "severity"); a classifier needs at least two classes.
        if self.kind == "classifier" and len(self.classes) < 2:
            raise CheckpointError(f"a model needs at least 2 classes, got {list(self.classes)}")

    def to_json(self) -> str:
        """Pretty JSON text."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build from parsed JSON, naming unknown or missing keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"model card has unknown keys {unknown}")
        try:
            card = cls(**data)
        except TypeError as exc:
            raise CheckpointError(f"model card is incomplete: {exc}") from exc
        return dataclasses.replace(card, classes=tuple(card.classes), mean=tuple(card.mean), std=tuple(card.std))

    def replace(self, **changes: Any) -> ModelCard:
        """Copy with changes."""
        return dataclasses.replace(self, **changes)


def build_model(card: ModelCard, pretrained: bool = False) -> Classifier | PatchCore:
    """An untrained model of the card's architecture (weights, and a PatchCore's bank, are loaded separately)."""
    if card.kind == "patchcore":
        config = card.train_config
        return PatchCore(card.backbone, card.mean, card.std, config.get("layers", DEFAULT_LAYERS),
                         int(config.get("neighbourhood", 3)), pretrained=pretrained)
    return Classifier(card.backbone, len(card.classes), card.mean, card.std, pretrained=pretrained)


def save_checkpoint(folder: Path, model: torch.nn.Module, card: ModelCard) -> Path:
    """Write weights and card into ``folder`` (created if needed) and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"name": card.name, "format": str(CARD_FORMAT)})
    write_card(folder, card)
    logger.info("saved checkpoint %s to %s", card.name, folder)
    return folder


def write_card(folder: Path, card: ModelCard) -> None:
    """(Re)write a checkpoint folder's model card, atomically: a reader sees the old card or the new one."""
    path = Path(folder) / CARD_FILE
    partial = path.with_name(f".{CARD_FILE}.part")
    partial.write_text(card.to_json() + "\n", encoding="utf-8")
    os.replace(partial, path)


def read_card(folder: Path) -> ModelCard:
    """Read only the model card of a checkpoint folder."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise CheckpointError(f"{str(folder)!r} is not a checkpoint folder: {CARD_FILE} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    return ModelCard.from_dict(data)


def load_checkpoint(folder: Path, device: str | torch.device = "cpu") -> tuple[Classifier | PatchCore, ModelCard]:
    """Load a checkpoint folder into an eval-mode model on ``device``.

    Raises:
        CheckpointError: files missing, card invalid, or weights that do not fit the card's architecture.
    """
    folder = Path(folder)
    card = read_card(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{str(folder)!r} has a model card but no {WEIGHTS_FILE}")
    model = build_model(card, pretrained=False)
    state = load_file(str(weights), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {str(weights)!r} do not fit backbone {card.backbone!r}: {exc}") from exc
    if isinstance(model, PatchCore):
        return model.place(torch.device(device)).eval(), card
    return model.to(device).eval(), card
