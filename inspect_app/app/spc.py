"""Western Electric rules on a p-chart: which points break which rule, and the runs (episodes) they form.

Each point is standardised by its own sigma (``(p - p̄) / σᵢ``, σᵢ from the point's part count, as the p-chart's
limits are), so the rules hold for buckets of unequal size. Both sides count: a defect rate that drops without a
reason can mean defects that are no longer caught.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# rule id -> (points in the window, how many of them must lie beyond, beyond how many sigma, description)
RULES: dict[str, tuple[int, int, float, str]] = {
    "beyond_3sigma": (1, 1, 3.0, "one point beyond 3σ"),
    "2_of_3_beyond_2sigma": (3, 2, 2.0, "2 of 3 points beyond 2σ on one side"),
    "4_of_5_beyond_1sigma": (5, 4, 1.0, "4 of 5 points beyond 1σ on one side"),
    "8_on_one_side": (8, 8, 0.0, "8 points in a row on one side of the centre line"),
}
SIDES = ("above", "below")


@dataclass(frozen=True)
class Episode:
    """Consecutive p-chart points where one rule held on one side.

    Attributes:
        rule: ``<rule id>_<side>``, e.g. ``beyond_3sigma_above``.
        start / end: the first and last point's bucket start.
        value: the last point's rate.
        description: what the rule says, for messages.
    """

    rule: str
    start: datetime
    end: datetime
    value: float
    description: str


def z_scores(points: Sequence[dict[str, Any]], center: float) -> list[float]:
    """Each point's distance from the centre line in its own sigmas (``points`` as ``queries.p_chart`` gives them)."""
    scores = []
    for point in points:
        sigma = math.sqrt(center * (1.0 - center) / point["n"]) if point["n"] else 0.0
        delta = point["p"] - center
        scores.append(delta / sigma if sigma > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta)))
    return scores


def rule_flags(scores: Sequence[float], rule: str, side: str) -> list[bool]:
    """Whether the window of ``rule`` that ends at each point breaks it on ``side``.

    Raises:
        ValueError: unknown rule or side (the allowed ones named).
    """
    if rule not in RULES:
        raise ValueError(f"unknown p-chart rule {rule!r}; allowed: {list(RULES)}")
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; allowed: {list(SIDES)}")
    window, needed, limit, _ = RULES[rule]
    sign = 1.0 if side == "above" else -1.0
    beyond = [sign * z > limit for z in scores]
    flags = []
    for index in range(len(scores)):
        start = index - window + 1
        flags.append(start >= 0 and sum(beyond[start:index + 1]) >= needed)
    return flags


def episodes(points: Sequence[dict[str, Any]], center: float) -> list[Episode]:
    """Every run of consecutive points where a rule holds, for every rule and side, oldest first per rule."""
    scores = z_scores(points, center)
    found = []
    for rule, (_, _, _, description) in RULES.items():
        for side in SIDES:
            flags = rule_flags(scores, rule, side)
            index = 0
            while index < len(flags):
                if not flags[index]:
                    index += 1
                    continue
                first = index
                while index + 1 < len(flags) and flags[index + 1]:
                    index += 1
                found.append(Episode(rule=f"{rule}_{side}", start=points[first]["bucket"],
                                     end=points[index]["bucket"], value=float(points[index]["p"]),
                                     description=f"{description} ({side} the centre line)"))
                index += 1
    return found
