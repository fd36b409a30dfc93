"""Champion/challenger: judge two models on one frozen test set at the plant's operating point, keep the better.

The operating point is the plant's false-reject rate: each model's threshold is set on the test set's good parts so
that it rejects at most that share of them, and the model that lets fewer defective parts through (the escape rate)
at that threshold is better. A candidate must also not detect any single defect class worse than the champion by
more than the tolerance, so an improvement on common defects cannot hide a regression on a rare one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspect_app.config.policy import PromotionPolicy
from inspect_app.data.folders import Item, content_hashes, refuse_overlap
from inspect_app.data.image_io import read_image
from inspect_app.engine.anomaly_config import expected_label
from inspect_app.engine.infer import Inspector
from inspect_app.engine.metrics import escape_rate, roc_auc, threshold_for_false_reject
from inspect_app.errors import DatasetError
from inspect_app.records import GOOD_CLASS, ModelComparison

logger = logging.getLogger(__name__)

# Escape rates closer than this are a tie (floating-point noise on identical counts).
_TIE = 1e-12


def evaluate_model(
    model_dir: Path, items: Sequence[Item], policy: PromotionPolicy, device: str = "auto", batch_size: int = 32
) -> dict[str, Any]:
    """A model's figures on a test set, by class name (so models with other class orders compare).

    Returns:
        ``images``, ``accuracy``, ``auroc``, ``threshold`` (at the policy's false-reject rate),
        ``false_reject_rate`` (achieved), ``escape_rate`` and ``detection`` (per defect class, at that threshold).

    Raises:
        DatasetError: the test set has no good or no defective image.
    """
    if not any(label == GOOD_CLASS for _, label in items) or all(label == GOOD_CLASS for _, label in items):
        raise DatasetError(f"a test set needs good and defective images; got {len(items)} image(s)")
    inspector = Inspector(Path(model_dir), device=device, heatmaps=False)
    scores: list[float] = []
    correct = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        predictions = inspector.predict([read_image(path) for path, _ in chunk])
        for (_, label), prediction in zip(chunk, predictions, strict=True):
            scores.append(prediction.score)
            correct += int(prediction.label == expected_label(inspector.card.kind, label, inspector.card.good_class))
    labels = np.array([label for _, label in items])
    values = np.asarray(scores, dtype=np.float64)
    is_defect = labels != GOOD_CLASS
    threshold = threshold_for_false_reject(values[~is_defect], policy.false_reject_rate)
    detection = {
        name: float((values[labels == name] >= threshold).mean())
        for name in sorted(set(labels[is_defect].tolist()))
    }
    return {
        "model": inspector.card.name,
        "images": len(items),
        "accuracy": correct / len(items),
        "auroc": roc_auc(is_defect, values),
        "threshold": threshold,
        "false_reject_rate": float((values[~is_defect] >= threshold).mean()),
        "escape_rate": escape_rate(values[is_defect], threshold),
        "detection": detection,
    }


def judge_challenger(
    candidate: dict[str, Any], champion: dict[str, Any] | None, policy: PromotionPolicy
) -> tuple[bool, str, dict[str, Any]]:
    """Whether the candidate wins, why (one sentence), and the per-class deltas.

    Args:
        candidate: ``evaluate_model`` figures of the candidate.
        champion: the same for the active model, or ``None`` when no model is active.
        policy: operating point and tolerances.
    """
    if champion is None:
        return True, "no active model: the candidate becomes the first one", {}
    deltas = {
        name: rate - champion["detection"].get(name, 0.0) for name, rate in candidate["detection"].items()
    }
    frr = f"{policy.false_reject_rate:.2%} false rejects"
    worse = {name: delta for name, delta in deltas.items() if delta < -policy.class_tolerance - _TIE}
    if worse:
        name = min(worse, key=worse.__getitem__)
        return False, (
            f"detects {name!r} worse than {champion['model']} by {-worse[name]:.1%} at {frr} "
            f"(tolerance {policy.class_tolerance:.1%})"
        ), deltas
    cand_escape, champ_escape = candidate["escape_rate"], champion["escape_rate"]
    if cand_escape < champ_escape - policy.min_improvement - _TIE:
        return True, f"escape rate {cand_escape:.1%} < champion {champ_escape:.1%} at {frr}", deltas
    if abs(cand_escape - champ_escape) <= _TIE and policy.min_improvement == 0.0:
        cand_auc, champ_auc = candidate.get("auroc") or 0.0, champion.get("auroc") or 0.0
        if cand_auc > champ_auc + _TIE:
            return True, (f"same escape rate {cand_escape:.1%} at {frr}; better ranking (AUROC {cand_auc:.3f} > "
                          f"{champ_auc:.3f})"), deltas
    return False, (f"escape rate {cand_escape:.1%} is not better than champion {champion['model']}'s "
                   f"{champ_escape:.1%} at {frr}"), deltas


def compare(
    candidate_dir: Path,
    candidate_name: str,
    champion_dir: Path | None,
    champion_name: str | None,
    test_items: Sequence[Item],
    policy: PromotionPolicy,
    device: str = "auto",
    training_run_id: int | None = None,
    trained_on: Mapping[str, Collection[str]] | None = None,
) -> ModelComparison:
    """Evaluate candidate and champion on the same test items and return the (unsaved) comparison.

    Args:
        trained_on: the content hashes each model trained on (``"model 'name'"`` → hashes): a test set sharing an
            image with any of them is refused before anything is evaluated.

    Raises:
        DatasetError: the test set overlaps a training split (count and one path named), or lacks good or defective
            images.
    """
    if trained_on:
        test = content_hashes(test_items)
        for trained, hashes in trained_on.items():
            refuse_overlap(test, hashes, trained)
    cand = evaluate_model(candidate_dir, test_items, policy, device)
    champ = evaluate_model(champion_dir, test_items, policy, device) if champion_dir is not None else None
    promoted, reason, deltas = judge_challenger(cand, champ, policy)
    logger.info("candidate %s vs %s: %s (%s)", candidate_name, champion_name, "WIN" if promoted else "keep", reason)
    details = {"candidate": cand, "champion": champ, "detection_delta": deltas, "policy": policy.to_dict(),
               "test_images": len(test_items)}
    return ModelComparison(candidate=candidate_name, champion=champion_name, promoted=promoted, reason=reason,
                           details=details, training_run_id=training_run_id)
