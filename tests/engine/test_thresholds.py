"""Decision rule: NG at the threshold, REVIEW in the band below it, OK under the band."""

from __future__ import annotations

import pytest

from inspect_app.engine.thresholds import check_threshold, decide
from inspect_app.errors import ConfigError
from inspect_app.records import Decision


@pytest.mark.parametrize(
    ("score", "band", "expected"),
    [
        (0.49, 0.0, Decision.OK),
        (0.50, 0.0, Decision.NG),
        (0.39, 0.1, Decision.OK),
        (0.40, 0.1, Decision.REVIEW),
        (0.4999, 0.1, Decision.REVIEW),
        (0.50, 0.1, Decision.NG),
        (0.59, 0.1, Decision.NG),
    ],
)
def test_decide(score: float, band: float, expected: Decision) -> None:
    assert decide(score, 0.5, band) is expected


@pytest.mark.parametrize(("threshold", "band", "bad"), [(1.5, 0.0, "1.5"), (0.5, -0.1, "-0.1"), (0.5, 0.6, "0.6")])
def test_bad_thresholds_are_named(threshold: float, band: float, bad: str) -> None:
    with pytest.raises(ConfigError, match=bad):
        check_threshold(threshold, band)
