"""Evaluating a good-only model on labelled test images: image and pixel AUROC, escape rate, worst-case overlays."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspect_app.data.image_io import read_image
from inspect_app.engine.anomaly_config import AnomalyConfig
from inspect_app.engine.anomaly_scoring import score_raw
from inspect_app.engine.metrics import (
    auroc_per_class,
    costliest_samples,
    roc_auc,
    roc_auc_interval,
    threshold_for_false_reject,
)
from inspect_app.engine.progress import CountProgressFn
from inspect_app.models.anomaly import PatchCore
from inspect_app.records import GOOD_CLASS

PIXEL_EVAL_SIDE = 192


def _eval_shape(shape: tuple[int, int], side: int = PIXEL_EVAL_SIDE) -> tuple[int, int]:
    """A smaller shape with the same aspect for pixel metrics (bounds memory over hundreds of images)."""
    factor = min(1.0, side / max(shape))
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def evaluate_anomaly(
    model: PatchCore,
    config: AnomalyConfig,
    test: Sequence[Any],
    false_reject_rate: float = 0.01,
    overlay_dir: Path | None = None,
    worst: int = 5,
    progress: CountProgressFn | None = None,
) -> dict[str, Any]:
    """Image AUROC, pixel AUROC (when masks exist), escape rate at a false-reject rate, and worst-case overlays.

    Args:
        model: a fitted PatchCore.
        config: its recipe (tiling, smoothing).
        test: ``data.anomaly_sets.EvalImage`` items (path, label, mask).
        false_reject_rate: operating point set on the test's own good images, for the escape rate.
        overlay_dir: where to save map-on-image overlays of the worst good and defective images.
        worst: overlays per kind.
        progress: called with (done, total) after each batch.

    Returns:
        Plain JSON-able metrics; raw scores are kept under ``scores`` in test order.
    """
    from inspect_app.data.anomaly_sets import read_mask
    from inspect_app.data.image_io import write_image
    from inspect_app.engine.explain import overlay

    scores: list[float] = []
    peaks: list[float] = []
    pixel_scores: list[np.ndarray] = []
    pixel_truth: list[np.ndarray] = []
    has_masks = any(item.mask is not None for item in test)
    start = time.perf_counter()
    for i in range(0, len(test), config.batch_size):
        chunk = test[i : i + config.batch_size]
        images = [read_image(item.path) for item in chunk]
        for item, image, raw in zip(chunk, images, score_raw(model, images, config), strict=True):
            scores.append(raw.score)
            peaks.append(raw.peak)
            if has_masks:
                shape = _eval_shape(image.shape[:2])
                pixel_truth.append(read_mask(item.mask, shape).ravel())
                pixel_scores.append(cv2_resize(raw.heatmap, shape).ravel())
        if progress is not None:
            progress(min(i + config.batch_size, len(test)), len(test))
    seconds = time.perf_counter() - start
    is_defect = np.array([item.is_defect for item in test])
    values = np.asarray(scores)
    good = values[~is_defect]
    report: dict[str, Any] = {
        "images": len(test), "good": int((~is_defect).sum()), "defective": int(is_defect.sum()),
        "image_auroc": roc_auc(is_defect, values), "image_auroc_interval": roc_auc_interval(is_defect, values),
        "costliest": costliest_samples(is_defect, values, [str(item.path) for item in test]),
        "scoring_images_per_s": len(test) / seconds,
    }
    if good.size:
        threshold = threshold_for_false_reject(good, false_reject_rate)
        report["operating_point"] = {
            "false_reject_rate": float((good >= threshold).mean()), "target_false_reject_rate": false_reject_rate,
            "escape_rate": float((values[is_defect] < threshold).mean()) if is_defect.any() else None,
        }
    if has_masks and pixel_truth:
        report["pixel_auroc"] = roc_auc(np.concatenate(pixel_truth), np.concatenate(pixel_scores))
    report["image_auroc_per_class"] = auroc_per_class([item.label for item in test], values, GOOD_CLASS)
    if overlay_dir is not None:
        overlay_dir = Path(overlay_dir)
        overlay_dir.mkdir(parents=True, exist_ok=True)
        scale = max(max(peaks), 1e-6)
        # Worst cases: defects scored lowest (escapes first) and good parts scored highest (false rejects first).
        defects = sorted(np.flatnonzero(is_defect), key=lambda k: values[k])[:worst]
        goods = sorted(np.flatnonzero(~is_defect), key=lambda k: -values[k])[:worst]
        written = []
        for kind, indices in (("defect", defects), ("good", goods)):
            for rank, k in enumerate(indices):
                item = test[int(k)]
                image = read_image(item.path)
                raw = score_raw(model, [image], config)[0]
                path = overlay_dir / f"worst_{kind}_{rank}_{item.label}_{item.path.stem}.png"
                write_image(path, overlay(image, np.clip(raw.heatmap / scale, 0.0, 1.0)))
                written.append(str(path))
        report["overlays"] = written
    report["scores"] = [float(v) for v in values]
    return report


def cv2_resize(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (height, width)."""
    return cv2.resize(heatmap.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
