"""Thresholds from few good scores: a generalised Pareto tail fitted to the highest ones.

A good-only model sets its threshold where a target share of good parts (say 1 %) would score above it. With 40-160
held-out scores, the empirical 99th percentile is the highest or second-highest value: a maximum, as heavy-tailed as
the few unusual good images that happen to be in the set, so the share of *new* good parts above it lands anywhere
from a tenth to twice the target. Extreme-value theory says what the scores above a high level look like whatever the
distribution below: a generalised Pareto distribution. Fitting it to the top ``TAIL_SHARE`` of the scores by
probability-weighted moments (Hosking and Wallis, 1987: closed form, stable for small samples) uses every one of them
to place the quantile, and a bootstrap of the same fit says how far the promised rate can be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Share of the scores that the tail is fitted to, and the fewest that a fit is made from.
TAIL_SHARE = 0.2
MIN_TAIL = 8
# Shapes outside this range come from sampling noise at these sizes, not from the scores' real tail.
SHAPE_LIMIT = 0.5
BOOTSTRAP_ROUNDS = 200


@dataclass(frozen=True)
class Tail:
    """A generalised Pareto tail: ``P(score > level + y) = share * (1 - shape * y / scale) ** (1 / shape)``.

    Attributes:
        level: where the tail starts (the highest score below the fitted ones).
        share: the share of scores above ``level``.
        scale: the tail's scale (> 0).
        shape: Hosking's shape ``k`` (> 0: bounded tail, < 0: heavy tail, 0: exponential).
    """

    level: float
    share: float
    scale: float
    shape: float

    def quantile(self, rate: float) -> float:
        """The score that a share ``rate`` (below ``share``) of the parts reaches or exceeds."""
        q = min(max(rate / self.share, 1e-12), 1.0)
        if abs(self.shape) < 1e-9:
            return self.level - self.scale * math.log(q)
        return self.level + self.scale * (1.0 - q**self.shape) / self.shape

    def exceedance(self, value: float) -> float:
        """The share of parts scoring above ``value`` (at or above ``level``; below it, ``share``)."""
        y = max(value - self.level, 0.0)
        if abs(self.shape) < 1e-9:
            return self.share * math.exp(-y / self.scale)
        base = 1.0 - self.shape * y / self.scale
        return 0.0 if base <= 0.0 else self.share * base ** (1.0 / self.shape)


def fit_tail(scores: Sequence[float] | np.ndarray) -> Tail | None:
    """The tail of ``scores`` above their top ``TAIL_SHARE``; ``None`` with fewer than ``MIN_TAIL`` values there."""
    values = np.sort(np.asarray(scores, dtype=np.float64))
    count = max(MIN_TAIL, round(TAIL_SHARE * values.size))
    if values.size < count + 1:
        return None
    level = float(values[-count - 1])
    excess = values[-count:] - level
    # Probability-weighted moments a0 = E[Y], a1 = E[Y (1 - F(Y))] with plotting positions (i - 0.35) / n.
    position = (np.arange(1, count + 1) - 0.35) / count
    a0 = float(excess.mean())
    a1 = float((excess * (1.0 - position)).mean())
    if a0 <= 0.0 or a0 - 2.0 * a1 <= 0.0:
        return None
    # For this distribution a0 = scale / (1 + k) and a1 = scale / (2 (2 + k)), so a0 / (a0 - 2 a1) = 2 + k.
    shape = min(max(a0 / (a0 - 2.0 * a1) - 2.0, -SHAPE_LIMIT), SHAPE_LIMIT)
    scale = a0 * (1.0 + shape)
    return Tail(level=level, share=count / values.size, scale=scale, shape=shape)


def tail_threshold(scores: Sequence[float] | np.ndarray, rate: float) -> tuple[float, str]:
    """Threshold for a false-reject ``rate`` and how it was found (``"fitted tail"`` or ``"empirical"``).

    The fitted tail is used when the rate lies inside it; otherwise (a rate above ``TAIL_SHARE``, or too few scores
    to fit) the empirical quantile, which is then estimated from enough values or is all there is.
    """
    from inspect_app.engine.metrics import threshold_for_false_reject

    tail = fit_tail(scores)
    if tail is not None and 0.0 < rate < tail.share:
        return tail.quantile(rate), "fitted tail"
    return threshold_for_false_reject(scores, rate), "empirical"


def review_edge(scores: Sequence[float] | np.ndarray, rate: float) -> float:
    """The score that a share ``rate`` of good parts reaches: the fitted tail's, else the interpolated quantile.

    Unlike a threshold, a REVIEW band's lower edge need not err high: with a handful of scores it still lies below
    the highest one, so a small calibration set still gets a band.
    """
    tail = fit_tail(scores)
    if tail is not None and 0.0 < rate < tail.share:
        return tail.quantile(rate)
    return float(np.quantile(np.asarray(scores, dtype=np.float64), 1.0 - rate))


def false_reject_interval(
    scores: Sequence[float] | np.ndarray, threshold: float, seed: int = 0
) -> tuple[float, float] | None:
    """90 % bootstrap interval of the share of good parts above ``threshold`` (the tail refitted each round)."""
    values = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(BOOTSTRAP_ROUNDS):
        sample = rng.choice(values, values.size, replace=True)
        tail = fit_tail(sample)
        if tail is not None:
            rates.append(tail.exceedance(threshold) if threshold >= tail.level else float((sample >= threshold).mean()))
    if len(rates) < BOOTSTRAP_ROUNDS // 2:
        return None
    low, high = np.quantile(rates, [0.05, 0.95])
    return float(low), float(high)
