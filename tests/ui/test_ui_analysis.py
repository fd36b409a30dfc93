"""Threshold analysis of ``ui.analysis`` on hand-checkable score lists."""

from __future__ import annotations

import itertools

import pytest

from inspect_app.ui.analysis import rates_at, roc_curve, score_samples, threshold_tradeoff

GOOD = [0.1, 0.2, 0.3, 0.6]
DEFECT = [0.4, 0.7, 0.9]


def test_rates_at_threshold() -> None:
    expected = {"threshold": 0.5, "false_reject_rate": 0.25, "escape_rate": pytest.approx(1 / 3)}
    assert rates_at(GOOD, DEFECT, 0.5) == expected
    assert rates_at(GOOD, DEFECT, 0.0)["false_reject_rate"] == 1.0 and rates_at(GOOD, DEFECT, 1.0)["escape_rate"] == 1.0
    with pytest.raises(ValueError, match="at least one good and one defect"):
        rates_at([], DEFECT, 0.5)


def test_tradeoff_is_monotone() -> None:
    curve = threshold_tradeoff(GOOD, DEFECT, steps=11)
    assert len(curve) == 11
    assert all(a["false_reject_rate"] >= b["false_reject_rate"] for a, b in itertools.pairwise(curve))
    assert all(a["escape_rate"] <= b["escape_rate"] for a, b in itertools.pairwise(curve))


def test_roc_curve_corners_and_area() -> None:
    points = roc_curve(GOOD, DEFECT)
    assert (points[0]["fpr"], points[0]["tpr"]) == (0.0, 0.0) and (points[-1]["fpr"], points[-1]["tpr"]) == (1.0, 1.0)
    area = sum((b["fpr"] - a["fpr"]) * a["tpr"] for a, b in itertools.pairwise(points))
    # 11 of the 12 (good, defect) pairs are ordered correctly (0.6 > 0.4 is the only miss).
    assert area == pytest.approx(11 / 12)


def test_score_samples_from_metrics() -> None:
    assert score_samples({"score_samples": {"good": [0.1], "defect": [0.9]}}) == ([0.1], [0.9])
    assert score_samples({"accuracy": 0.9}) is None
    assert score_samples({"score_samples": {"good": [], "defect": [0.9]}}) is None
