"""``evaluate``: a trained model against a labelled data set, in the plant's terms, with plots and NG heatmaps.

The images go through ``Inspector`` exactly as in production (same resize, same score = 1 − p(good), same CAM
heatmaps), so the figures describe what the line will see. Written into the output folder:

* ``evaluation.json``: per-class precision/recall/F1, confusion matrix, good-vs-defect ROC AUC, the plant's
  operating point (false rejects, escapes and the share sent to REVIEW at the model's *own* threshold and band),
  pixel AUROC where the data set has masks, the escape rate at the configured false-reject rate (a threshold set on
  this test set, for comparison), and the thresholds meeting the target escape / false-reject rates;
* ``predictions.csv``: one row per image (path, true label, predicted label, defect score, raw score, decision);
* ``confusion_matrix.png``, ``roc.png``, ``score_histogram.png``;
* ``heatmaps/``: CAM overlays of the images the model calls NG.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspect_app.data.anomaly_sets import read_mask
from inspect_app.data.folders import find_good_class
from inspect_app.data.image_io import read_image, write_image
from inspect_app.data.layouts import load_dataset
from inspect_app.engine.anomaly_config import expected_label
from inspect_app.engine.explain import overlay
from inspect_app.engine.infer import Inspector
from inspect_app.engine.metrics import (
    auroc_per_class,
    classification_report,
    costliest_samples,
    escape_rate,
    false_reject_rate,
    roc_auc,
    roc_auc_interval,
    roc_curve,
    threshold_for_escape_rate,
    threshold_for_false_reject,
)
from inspect_app.engine.progress import CountProgressFn
from inspect_app.errors import DatasetError, ImageDecodeError
from inspect_app.records import Decision

logger = logging.getLogger(__name__)


def _plots(report: dict[str, Any], truth_defect: np.ndarray, scores: np.ndarray, out: Path) -> list[str]:
    """Confusion matrix, ROC and score histogram PNGs; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a plant server
    import matplotlib.pyplot as plt

    written = []
    classes = report["classes"]
    matrix = np.asarray(report["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(classes), 1.0 + 0.6 * len(classes)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_title(f"accuracy {report['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=100)
    plt.close(fig)
    written.append("confusion_matrix.png")
    if truth_defect.any() and (~truth_defect).any():
        fpr, tpr, _ = roc_curve(truth_defect, scores)
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(fpr, tpr, lw=2)
        ax.plot([0, 1], [0, 1], ls="--", color="grey")
        ax.set_xlabel("false-reject rate (good called NG)")
        ax.set_ylabel("detection rate (1 − escape rate)")
        ax.set_title(f"good vs defect, AUROC {report['auroc_good_vs_defect']:.4f}")
        fig.tight_layout()
        fig.savefig(out / "roc.png", dpi=100)
        plt.close(fig)
        written.append("roc.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0.0, 1.0, 41)
    if (~truth_defect).any():
        ax.hist(scores[~truth_defect], bins=bins.tolist(), alpha=0.6, label="good", color="tab:green")
    if truth_defect.any():
        ax.hist(scores[truth_defect], bins=bins.tolist(), alpha=0.6, label="defect", color="tab:red")
    point = report.get("operating_point")
    if point:
        ax.axvline(point["threshold"], color="black", ls="--", label=f"{point['false_reject_rate']:.0%} false reject")
    ax.set_yscale("log")
    ax.set_xlabel("defect score (1 − p(good))")
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "score_histogram.png", dpi=100)
    plt.close(fig)
    written.append("score_histogram.png")
    return written


def decision_rates(is_defect: np.ndarray, decisions: Sequence[str]) -> dict[str, Any]:
    """What the line would do with these parts at the model's own threshold and REVIEW band.

    ``false_reject_rate``: good parts called NG; ``escape_rate``: defects not called NG (OK or REVIEW: the threshold
    alone lets them through); ``escape_into_ok_rate``: defects called OK (what the band still lets through);
    ``review_share``: all parts sent to REVIEW; ``good_to_review_rate``: good parts sent to REVIEW.
    """
    decided = np.asarray(decisions)
    good, defect = decided[~is_defect], decided[is_defect]

    def share(values: np.ndarray, *wanted: str) -> float | None:
        return float(np.isin(values, wanted).mean()) if values.size else None

    return {
        "false_reject_rate": share(good, Decision.NG.value),
        "escape_rate": share(defect, Decision.OK.value, Decision.REVIEW.value),
        "escape_into_ok_rate": share(defect, Decision.OK.value),
        "review_share": share(decided, Decision.REVIEW.value),
        "good_to_review_rate": share(good, Decision.REVIEW.value),
        "good": int(good.size), "defective": int(defect.size),
    }


class PixelAuroc:
    """Pixel AUROC over parts with ground-truth masks, maps and masks shrunk to one small side (bounded memory).

    A good part has no mask and counts as all good pixels; the caller leaves out defects without one.
    """

    SIDE = 192

    def __init__(self) -> None:
        self.truth: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []

    def add(self, heatmap: np.ndarray, mask_path: Path | None, image_shape: tuple[int, int]) -> None:
        """One part's map (any size) and its mask file (``None``: a good part, no defect pixels)."""
        import cv2

        factor = min(1.0, self.SIDE / max(image_shape))
        shape = (max(1, round(image_shape[0] * factor)), max(1, round(image_shape[1] * factor)))
        resized = cv2.resize(heatmap.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        self.truth.append(read_mask(mask_path, shape).ravel())
        self.scores.append(resized.ravel())

    def auroc(self) -> float | None:
        """The AUROC over every pixel added; ``None`` without both kinds of pixel."""
        if not self.truth:
            return None
        truth = np.concatenate(self.truth)
        if truth.all() or not truth.any():
            return None
        return roc_auc(truth, np.concatenate(self.scores))


def evaluate_model(
    model_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    device: str = "auto",
    batch_size: int = 32,
    false_reject: float = 0.01,
    target_escape: float | None = None,
    target_false_reject: float | None = None,
    max_heatmaps: int = 100,
    progress: CountProgressFn | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a labelled data set and write the report, plots and NG heatmaps.

    A layout with a fixed test subset (MVTec ``test/``, a CSV ``split`` column) is evaluated on that subset only;
    otherwise on every image. Unreadable images are listed in the report and skipped, never fatal.

    Args:
        model_dir: checkpoint folder.
        data: class folders, MVTec folder or CSV manifest; its labels must be among the model's classes.
        out_dir: folder for ``evaluation.json``, ``predictions.csv``, the plots and ``heatmaps/``.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: images per forward pass.
        false_reject: false-reject rate at which the escape rate is reported.
        target_escape: also report the threshold meeting this escape rate (and its false-reject rate).
        target_false_reject: also report the threshold meeting this false-reject rate (and its escape rate).
        max_heatmaps: at most this many NG overlays are written.
        progress: called with (done, total) after every batch.

    Returns:
        The report written to ``evaluation.json``.

    Raises:
        DatasetError: the data set's labels are not the model's classes (named), or nothing could be read.
    """
    out = Path(out_dir)
    (out / "heatmaps").mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(data)
    items = dataset.subset("test") or list(dataset.items)
    masks = {path: dataset.masks[path] for path, _ in items if path in dataset.masks}
    # With masks, every part needs its map (pixel AUROC), not only the NG ones.
    inspector = Inspector(Path(model_dir), device=device, heatmaps="all" if masks else True)
    classes = list(inspector.card.classes)
    good = inspector.card.good_class
    # The data set may name its good parts otherwise than the model did (a good-only model calls them "good").
    data_good = good if good in dataset.classes or not good else find_good_class(dataset.classes)

    def truth_of(label: str) -> str:
        # Every defect label is an anomaly to a good-only model; the labels themselves give per-defect-class AUROC.
        return expected_label(inspector.card.kind, good if label == data_good else label, good)

    unknown = sorted({truth_of(label) for _, label in items} - set(classes))
    if unknown:
        raise DatasetError(f"{data}: labels {unknown} are not classes of model {inspector.card.name!r}: {classes}")
    y_true: list[int] = []
    y_pred: list[int] = []
    scores: list[float] = []
    rows: list[tuple[str, str, str, float, float | None, str]] = []
    unreadable: list[dict[str, str]] = []
    pixels = PixelAuroc()
    heatmaps = 0
    start = time.perf_counter()
    for begin in range(0, len(items), batch_size):
        batch = items[begin : begin + batch_size]
        images, kept = [], []
        for path, label in batch:
            try:
                images.append(read_image(path))
                kept.append((path, label))
            except ImageDecodeError as exc:
                unreadable.append({"path": str(path), "reason": str(exc)})
        for (path, label), image, prediction in zip(kept, images, inspector.predict(images), strict=True):
            y_true.append(classes.index(truth_of(label)))
            y_pred.append(classes.index(prediction.label))
            scores.append(prediction.score)
            rows.append((str(path), label, prediction.label, prediction.score, prediction.raw_score,
                         prediction.decision.value))
            if masks and prediction.heatmap is not None and (path in masks or label == data_good):
                pixels.add(prediction.heatmap, masks.get(path), image.shape[:2])
            if prediction.decision is Decision.NG and prediction.heatmap is not None and heatmaps < max_heatmaps:
                name = f"{heatmaps:04d}_{label}_as_{prediction.defect_class}_{Path(path).stem}.png"
                write_image(out / "heatmaps" / name, overlay(image, prediction.heatmap))
                heatmaps += 1
        if progress is not None:
            progress(min(begin + batch_size, len(items)), len(items))
    if not y_true:
        raise DatasetError(f"{data}: none of the {len(items)} images could be read")
    seconds = time.perf_counter() - start
    report = classification_report(y_true, y_pred, scores, classes, good, false_reject)
    report["images_per_s"] = len(y_true) / seconds if seconds > 0 else None
    report["pixel_auroc"] = pixels.auroc()
    values = np.asarray(scores)
    truth_defect = np.asarray(y_true) != (classes.index(good) if good in classes else -1)
    if report.get("auroc_good_vs_defect") is not None:
        report["auroc_interval"] = roc_auc_interval(truth_defect, values)
        report["costliest"] = costliest_samples(truth_defect, values, [row[0] for row in rows])
        # A data set without a good class has no good parts to rank against: "" matches no label, as None did.
        report["auroc_per_defect_class"] = auroc_per_class([row[1] for row in rows], values, data_good or "")
    targets: dict[str, Any] = {}
    if target_escape is not None and truth_defect.any():
        threshold = threshold_for_escape_rate(values[truth_defect], target_escape)
        targets["escape_rate"] = {"target": target_escape, "threshold": threshold,
                                  "false_reject_rate": false_reject_rate(values[~truth_defect], threshold)}
    if target_false_reject is not None and (~truth_defect).any():
        threshold = threshold_for_false_reject(values[~truth_defect], target_false_reject)
        targets["false_reject_rate"] = {"target": target_false_reject, "threshold": threshold,
                                        "escape_rate": escape_rate(values[truth_defect], threshold)}
    report.update({
        "model": inspector.card.name, "data": str(data), "model_threshold": inspector.threshold,
        "model_review_band": inspector.review_band,
        "at_model_threshold": decision_rates(truth_defect, [row[5] for row in rows]),
        "targets": targets, "unreadable": unreadable, "heatmaps": heatmaps,
    })
    report["plots"] = _plots(report, truth_defect, values, out)
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "predicted", "score", "raw_score", "decision"])
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    (out / "evaluation.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    logger.info("evaluated %s on %d images: accuracy %.4f", inspector.card.name, len(y_true), report["accuracy"])
    return report
