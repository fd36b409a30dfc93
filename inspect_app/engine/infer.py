"""Inference: ``Inspector`` loads a checkpoint once and turns batches of RGB images into ``Prediction`` records."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch

from inspect_app.data.presets import fit_square, to_chw_uint8
from inspect_app.engine.anomaly_config import ANOMALY_CLASS, ANOMALY_KIND, AnomalyConfig
from inspect_app.engine.anomaly_scoring import load_anomaly_model, normalize
from inspect_app.engine.device import resolve_device
from inspect_app.engine.explain import normalize_map
from inspect_app.engine.screening import refine_level, score_screened
from inspect_app.engine.thresholds import check_threshold, decide
from inspect_app.errors import ConfigError
from inspect_app.models.anomaly import PatchCore
from inspect_app.models.checkpoint import ModelCard, load_checkpoint, read_card
from inspect_app.models.classifier import Classifier, upsample_maps
from inspect_app.records import Decision, Prediction

logger = logging.getLogger(__name__)


class Inspector:
    """A loaded model plus its decision rule.

    Args:
        model_dir: checkpoint folder (``model.safetensors`` + ``model_card.json``).
        device: ``auto``, ``cpu`` or ``cuda``.
        threshold: defect-score threshold; defaults to the model card's.
        review_band: width of the REVIEW band just below the threshold (0 = binary decisions); defaults to the
            model card's.
        heatmaps: compute a heatmap for every non-OK prediction; ``"all"`` for every prediction (evaluation).

    Raises:
        ConfigError: the checkpoint is a severity model, which grades parts but has no OK/NG rule.
    """

    def __init__(
        self,
        model_dir: Path,
        device: str = "auto",
        threshold: float | None = None,
        review_band: float | None = None,
        heatmaps: bool | str = True,
    ) -> None:
        self.device = resolve_device(device)
        kind = read_card(Path(model_dir)).kind
        if kind == "severity":
            raise ConfigError(f"model {str(model_dir)!r} is a severity model: it grades parts on a numeric scale and "
                              "has no OK/NG decision rule; inspect with a classifier or a good-only model")
        self.anomaly_config: AnomalyConfig | None = None
        # None only under onnxruntime, where the graph does a classifier's work (``OnnxInspector``).
        self.model: Classifier | PatchCore | None
        if kind == ANOMALY_KIND:
            # Tiling, smoothing, search and the score normalisation travel in the card; the device is this process's.
            self.model, self.card, self.anomaly_config = load_anomaly_model(Path(model_dir), self.device)
        else:
            self.model, self.card = load_checkpoint(Path(model_dir), self.device)
            if self.device.type == "cuda":
                self.model = self.model.to(memory_format=torch.channels_last)
        self._set_decision(threshold, review_band, heatmaps)
        logger.info("loaded model %s (%s) on %s", self.card.name, self.card.backbone, self.device)

    def _set_decision(self, threshold: float | None, review_band: float | None, heatmaps: bool | str) -> None:
        """Threshold and REVIEW band (the card's unless given), heatmap switch and class order from ``self.card``."""
        self.threshold = self.card.threshold if threshold is None else threshold
        self.threshold_source = "model card" if threshold is None else "given"
        self._review_band_given = review_band
        self.review_band = min(self.card.review_band, self.threshold) if review_band is None else review_band
        check_threshold(self.threshold, self.review_band)
        self.heatmaps = heatmaps
        self.classes = list(self.card.classes)
        self.good_index = self.classes.index(self.card.good_class) if self.card.good_class in self.classes else None

    def set_threshold(self, threshold: float, source: str) -> bool:
        """Decide from the next batch on with ``threshold``; call between batches, never during ``predict``.

        The REVIEW band keeps its width (the one given, else the card's), narrowed where it would pass 0. A change is
        logged as ``threshold 0.62 → 0.55 (source)``.

        Args:
            threshold: the new defect-score threshold in [0, 1].
            source: where it comes from, for the log and ``threshold_source`` (e.g. ``model_versions``).

        Returns:
            Whether the threshold changed.

        Raises:
            ConfigError: the threshold lies outside [0, 1].
        """
        threshold = float(threshold)
        if threshold == self.threshold:
            self.threshold_source = source
            return False
        band = self.card.review_band if self._review_band_given is None else self._review_band_given
        band = min(band, threshold)
        check_threshold(threshold, band)
        old = self.threshold
        self.threshold, self.review_band, self.threshold_source = threshold, band, source
        logger.info("threshold %.4g → %.4g (%s) for model %s", old, threshold, source, self.card.name)
        return True

    @property
    def model_card(self) -> ModelCard:
        """The loaded model's card."""
        return self.card

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize on the CPU and stack as uint8 (3xSxS each), ready to copy to the device."""
        size = self.card.input_size
        # The same resize or letterbox the model was trained with (older cards predate the option: resize).
        mode = self.card.train_config.get("resize_mode", "resize")
        batch = np.stack([to_chw_uint8(fit_square(image, size, mode)) for image in images])
        tensor = torch.from_numpy(batch)
        return tensor.pin_memory() if self.device.type == "cuda" else tensor

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Predictions for HxWx3 uint8 RGB images, in order. An empty list gives an empty list."""
        if not images:
            return []
        if self.anomaly_config is not None:
            return self._predict_anomaly(images)
        inputs = self.preprocess(images).to(self.device, non_blocking=True)
        inputs = inputs.float().div_(255.0)
        if self.device.type == "cuda":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
            # Without an anomaly config the model is the classifier that load_checkpoint gave.
            logits, maps = cast(Classifier, self.model).forward_with_cam(inputs)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return [self._decide(probs[i], maps[i : i + 1]) for i in range(len(images))]

    def _predict_anomaly(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Good-only models: normalised score (threshold 0.5 for every model) and the map in the same units."""
        center = float(self.card.anomaly["raw_center"])
        raw_threshold = float(self.card.anomaly["raw_threshold"])
        # The map has its own units (cards from before the split share the image score's).
        map_center = float(self.card.anomaly.get("raw_map_center", center))
        map_threshold = float(self.card.anomaly.get("raw_map_threshold", raw_threshold))
        out = []
        # Parts screened below the lowest non-OK score are OK under exact search too (``engine.screening``).
        refine_at = refine_level(self.threshold - self.review_band, center, raw_threshold)
        # predict() comes here only with an anomaly config, which comes only with load_anomaly_model's PatchCore.
        model, config = cast(PatchCore, self.model), cast(AnomalyConfig, self.anomaly_config)
        for raw in score_screened(model, images, config, refine_at):
            score = float(normalize(raw.score, center, raw_threshold))
            decision = decide(score, self.threshold, self.review_band)
            defect = decision is not Decision.OK
            heatmap = None
            if self.heatmaps == "all" or (self.heatmaps and defect):
                # Fixed units, not min-max per image: 0.5 is where a good part's hottest pixel rarely reaches, so a
                # faint map means faint evidence.
                heatmap = np.asarray(normalize(raw.heatmap, map_center, map_threshold), dtype=np.float32)
            out.append(Prediction(
                label=ANOMALY_CLASS if score >= self.threshold else self.card.good_class, score=score,
                decision=decision, class_scores={self.card.good_class: 1.0 - score, ANOMALY_CLASS: score},
                heatmap=heatmap, defect_class=ANOMALY_CLASS if defect else None, raw_score=raw.score,
            ))
        return out

    def _decide(self, probs: np.ndarray, maps: torch.Tensor) -> Prediction:
        label_index = int(probs.argmax())
        score = 1.0 - float(probs[self.good_index]) if self.good_index is not None else 1.0
        decision = decide(score, self.threshold, self.review_band)
        heatmap = None
        defect_class = None
        if decision is not Decision.OK:
            # Name and show the most likely *defect* class, even when "good" narrowly had the top probability.
            order = np.argsort(-probs)
            defect_index = next((int(i) for i in order if i != self.good_index), label_index)
            defect_class = self.classes[defect_index]
        if self.heatmaps and (defect_class is not None or self.heatmaps == "all"):
            if defect_class is None:
                order = np.argsort(-probs)
                defect_index = next((int(i) for i in order if i != self.good_index), label_index)
            size = (self.card.input_size, self.card.input_size)
            cam = upsample_maps(maps[:, defect_index : defect_index + 1].float(), size)[0, 0].clamp_(min=0)
            heatmap = normalize_map(cam.cpu().numpy())
        return Prediction(
            label=self.classes[label_index],
            score=score,
            decision=decision,
            class_scores={name: float(p) for name, p in zip(self.classes, probs, strict=True)},
            heatmap=heatmap,
            defect_class=defect_class,
        )
