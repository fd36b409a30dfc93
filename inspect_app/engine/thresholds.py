"""Turning a defect score into a decision: OK, REVIEW (a band around the threshold) or NG."""

from __future__ import annotations

from inspect_app.errors import ConfigError
from inspect_app.records import Decision


def check_threshold(threshold: float, review_band: float = 0.0) -> None:
    """Reject thresholds outside [0, 1] and review bands that are negative or swallow the whole range."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold {threshold!r} must lie in [0, 1]")
    if not 0.0 <= review_band < 0.5:
        raise ConfigError(f"review_band {review_band!r} must lie in [0, 0.5)")


def decide(score: float, threshold: float, review_band: float = 0.0) -> Decision:
    """NG at or above ``threshold + review_band``, OK below ``threshold - review_band``, REVIEW between.

    With ``review_band`` 0 the decision is binary: NG when ``score >= threshold``.
    """
    if review_band > 0.0 and threshold - review_band <= score < threshold + review_band:
        return Decision.REVIEW
    return Decision.NG if score >= threshold else Decision.OK
