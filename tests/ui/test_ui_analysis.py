"""Reading a model card's validation scores (``ui.analysis``)."""

from __future__ import annotations

from inspect_app.ui.analysis import score_samples


def test_score_samples_from_metrics() -> None:
    assert score_samples({"score_samples": {"good": [0.1], "defect": [0.9]}}) == ([0.1], [0.9])
    assert score_samples({"accuracy": 0.9}) is None
    assert score_samples({"score_samples": {"good": [], "defect": [0.9]}}) is None
