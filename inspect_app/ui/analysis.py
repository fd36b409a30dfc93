"""Threshold analysis from a model card's validation scores: ROC curve and escape vs false-reject trade-off.

A part is called NG when its defect score is ≥ the threshold (as ``engine.thresholds`` decides). A *false reject*
is a good part called NG; an *escape* is a defective part called OK. Plain Python over sorted lists (``bisect``):
validation sets hold hundreds of parts, and the dashboard keeps to its few allowed dependencies.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

__all__ = ["rates_at", "roc_curve", "score_samples", "threshold_tradeoff"]


def score_samples(metrics: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    """(good scores, defect scores) stored in a model's metrics, or ``None`` when the card has none."""
    samples = metrics.get("score_samples")
    if not isinstance(samples, dict):
        return None
    good, defect = samples.get("good") or [], samples.get("defect") or []
    if not good or not defect:
        return None
    return [float(v) for v in good], [float(v) for v in defect]


def _share_at_or_above(sorted_scores: Sequence[float], threshold: float) -> float:
    """Share of (ascending) ``sorted_scores`` that are ≥ ``threshold``."""
    return (len(sorted_scores) - bisect_left(sorted_scores, threshold)) / len(sorted_scores)


def rates_at(good: Sequence[float], defect: Sequence[float], threshold: float) -> dict[str, float]:
    """False-reject and escape rate at one threshold.

    Raises:
        ValueError: one of the score lists is empty.
    """
    if len(good) == 0 or len(defect) == 0:
        raise ValueError("rates need at least one good and one defect score")
    return _rates(sorted(good), sorted(defect), float(threshold))


def _rates(good: list[float], defect: list[float], threshold: float) -> dict[str, float]:
    """``rates_at`` on already sorted lists."""
    return {
        "threshold": threshold,
        "false_reject_rate": _share_at_or_above(good, threshold),
        "escape_rate": 1.0 - _share_at_or_above(defect, threshold),
    }


def threshold_tradeoff(good: Sequence[float], defect: Sequence[float], steps: int = 101) -> list[dict[str, float]]:
    """False-reject and escape rate for ``steps`` thresholds evenly spaced over [0, 1]."""
    if steps < 2:
        raise ValueError(f"steps {steps!r} must be at least 2")
    if len(good) == 0 or len(defect) == 0:
        raise ValueError("rates need at least one good and one defect score")
    good_sorted, defect_sorted = sorted(good), sorted(defect)
    return [_rates(good_sorted, defect_sorted, k / (steps - 1)) for k in range(steps)]


def roc_curve(good: Sequence[float], defect: Sequence[float]) -> list[dict[str, float]]:
    """ROC points (false-positive rate, true-positive rate) over every distinct score, from (0, 0) to (1, 1).

    Defective is the positive class; each distinct score is tried as a threshold (NG when ≥ it).
    """
    if len(good) == 0 or len(defect) == 0:
        raise ValueError("a ROC curve needs at least one good and one defect score")
    good_sorted, defect_sorted = sorted(good), sorted(defect)
    points = [{"fpr": 0.0, "tpr": 0.0, "threshold": float("inf")}]
    for t in sorted(set(good_sorted) | set(defect_sorted), reverse=True):
        points.append({"fpr": _share_at_or_above(good_sorted, t), "tpr": _share_at_or_above(defect_sorted, t),
                       "threshold": float(t)})
    if points[-1]["fpr"] < 1.0 or points[-1]["tpr"] < 1.0:
        points.append({"fpr": 1.0, "tpr": 1.0, "threshold": float("-inf")})
    return points
