"""What the dashboard reads from a model card's validation scores; the ROC and rates themselves come from the
torch-free ``inspect_app.metrics`` (the figures ``engine`` wrote the card with)."""

from __future__ import annotations

from typing import Any

__all__ = ["score_samples"]


def score_samples(metrics: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    """(good scores, defect scores) stored in a model's metrics, or ``None`` when the card has none."""
    samples = metrics.get("score_samples")
    if not isinstance(samples, dict):
        return None
    good, defect = samples.get("good") or [], samples.get("defect") or []
    if not good or not defect:
        return None
    return [float(v) for v in good], [float(v) for v in defect]
