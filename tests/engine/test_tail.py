"""Thresholds from a fitted generalised Pareto tail: where they land on new good parts, and the promised spread."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspect_app.engine.metrics import threshold_for_false_reject
from inspect_app.engine.tail import false_reject_interval, fit_tail, tail_threshold


def test_an_exponential_tail_is_recovered() -> None:
    scores = np.random.default_rng(0).exponential(2.0, 20000)
    tail = fit_tail(scores)
    assert tail is not None and abs(tail.shape) < 0.05 and tail.scale == pytest.approx(2.0, rel=0.05)
    assert tail.quantile(0.01) == pytest.approx(2.0 * math.log(100), rel=0.05)
    assert tail.exceedance(tail.quantile(0.01)) == pytest.approx(0.01, rel=1e-6)


@pytest.mark.parametrize("size", [40, 150])
def test_the_fitted_threshold_lands_nearer_its_target_than_the_empirical_maximum(size: int) -> None:
    """Heavy-tailed good scores (log-normal): the share of *new* good parts above the threshold, over 300 draws."""
    rng = np.random.default_rng(1)
    sigma = 0.25
    truth = lambda t: 0.5 * math.erfc(math.log(t) / (sigma * math.sqrt(2)))  # noqa: E731 - P(score >= t)
    fitted, empirical = [], []
    for _ in range(300):
        scores = rng.lognormal(0.0, sigma, size)
        fitted.append(truth(tail_threshold(scores, 0.01)[0]))
        empirical.append(truth(threshold_for_false_reject(scores, 0.01)))
    fitted_a, empirical_a = np.array(fitted), np.array(empirical)
    # Within 0.5x-2x of the 1 % target more often than the empirical quantile, and never wildly off on average.
    inside = lambda r: float(((r >= 0.005) & (r <= 0.02)).mean())  # noqa: E731
    assert inside(fitted_a) >= inside(empirical_a)
    assert 0.005 <= float(np.median(fitted_a)) <= 0.02


def test_few_scores_fall_back_to_the_empirical_quantile_and_say_so() -> None:
    scores = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert fit_tail(scores) is None
    assert tail_threshold(scores, 0.01) == (threshold_for_false_reject(scores, 0.01), "empirical")
    assert tail_threshold(np.arange(200.0), 0.01)[1] == "fitted tail"


def test_the_interval_brackets_the_rate_at_the_threshold() -> None:
    scores = np.random.default_rng(2).normal(20.0, 1.0, 300)
    threshold, _ = tail_threshold(scores, 0.01)
    low, high = false_reject_interval(scores, threshold)
    assert low < 0.01 < high < 0.05
