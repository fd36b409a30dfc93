"""The metrics ``engine`` computes for model cards; they live in the torch-free ``inspect_app.metrics`` so that the
dashboard draws the same ROC and rates without loading torch."""

from __future__ import annotations

from inspect_app.metrics import (
    SCORE_SAMPLE_DECIMALS,
    auroc_per_class,
    classification_report,
    confusion_matrix,
    costliest_samples,
    escape_rate,
    false_reject_rate,
    misordered_pairs,
    per_class_scores,
    roc_auc,
    roc_auc_interval,
    roc_curve,
    threshold_for_escape_rate,
    threshold_for_false_reject,
)

__all__ = [
    "SCORE_SAMPLE_DECIMALS",
    "auroc_per_class",
    "classification_report",
    "confusion_matrix",
    "costliest_samples",
    "escape_rate",
    "false_reject_rate",
    "misordered_pairs",
    "per_class_scores",
    "roc_auc",
    "roc_auc_interval",
    "roc_curve",
    "threshold_for_escape_rate",
    "threshold_for_false_reject",
]
