"""Turning a defect score into a decision: OK, REVIEW (a band around the threshold) or NG."""

from __future__ import annotations

from inspect_app.errors import ConfigError
from inspect_app.records import Decision


def check_threshold(threshold: float, review_band: float = 0.0) -> None:
    """Reject thresholds outside [0, 1] and review bands that are negative or swallow the whole range."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold {threshold!r} must lie in [0, 1]")
    if not 0.0 <= review_band <= threshold:
        raise ConfigError(f"review_band {review_band!r} must lie in [0, threshold {threshold!r}]")


def decide(score: float, threshold: float, review_band: float = 0.0) -> Decision:
    """NG at or above ``threshold``, REVIEW in the band ``[threshold - review_band, threshold)`` below it, else OK.

    The threshold always means NG, so a band only ever sends doubtful OK parts to a person, never NG ones; with
    ``review_band`` 0 the decision is binary.
    """
    if score >= threshold:
        return Decision.NG
    return Decision.REVIEW if review_band > 0.0 and score >= threshold - review_band else Decision.OK
