"""Drift math and the calibrated alarm, on hand-made histograms and on the project's seeded plant (one station
shifted on its last two days)."""

from __future__ import annotations

import random
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inspect_app.app import alarms as alarms_app
from inspect_app.app import drift
from inspect_app.storage import Database, Repository, queries
from inspect_app.storage.inspections import score_bin
from inspect_app.storage.tables import SCORE_BINS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import seed_plant

BERLIN = ZoneInfo("Europe/Berlin")
# A calm station: about 1,000 parts a day over 10 bins, most in the low bins (the shape of an OK-heavy station).
CALM = [520, 250, 90, 40, 30, 20, 15, 15, 10, 10]


def _days(histograms: list[list[int]], first: date = date(2026, 11, 1)) -> list[dict]:
    return [{"day": first + timedelta(days=i), "n": sum(h), "mean": 0.1, "bins": h} for i, h in enumerate(histograms)]


def _sample(n: int, seed: int, weights: list[int] = CALM) -> list[int]:
    """A day of ``n`` parts drawn from ``weights``: the day-to-day noise a real station has."""
    counts = [0] * len(weights)
    for k in random.Random(seed).choices(range(len(weights)), weights=weights, k=n):
        counts[k] += 1
    return counts


def test_population_stability_is_zero_for_equal_shapes_and_names_bad_input() -> None:
    assert drift.population_stability([10, 10], [20, 20]) == pytest.approx(0.0)
    assert drift.population_stability([90, 10], [10, 90]) > 1.0
    with pytest.raises(ValueError, match="2 and 3 bins"):
        drift.population_stability([1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="non-empty"):
        drift.population_stability([0, 0], [1, 1])


def test_one_odd_day_is_not_an_alarm_but_two_in_a_row_are() -> None:
    shifted = [300, 200, 150, 100, 80, 60, 40, 30, 20, 20]
    calm = [_sample(1000, k) for k in range(10)]
    spike = drift.evaluate_days("s1", _days([*calm[:8], shifted, *calm[8:]]))
    assert [d.over for d in spike.days].count(True) == 1 and spike.alarm_days == []
    run = drift.evaluate_days("s1", _days([*calm[:8], shifted, shifted]))
    assert run.alarm_days == [date(2026, 11, 10)]
    assert all(d.reference for d in run.days[: drift.REFERENCE_DAYS]) and not run.days[-1].reference
    assert run.days[-1].limit >= drift.PSI_LIMIT_FLOOR


def test_limit_grows_for_a_day_with_few_parts() -> None:
    result = drift.evaluate_days("s1", _days([_sample(200, k) for k in range(8)] + [_sample(40, 99)]))
    full, partial = result.days[-2], result.days[-1]
    # The same calibrated scale over fewer effective parts: a wider limit for the half-empty day.
    assert partial.limit > full.limit


def test_too_few_days_and_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="station 's1' has 2 day"):
        drift.evaluate_days("s1", _days([CALM, CALM]))
    with pytest.raises(ValueError, match="consecutive 0"):
        drift.evaluate_days("s1", _days([CALM] * 8), consecutive=0)
    with pytest.raises(ValueError, match="at least 3 days"):
        drift.calibrated_scale([CALM, CALM])


def test_plant_days_follow_the_plant_zone_across_dst() -> None:
    # 2026-03-29 is the spring-forward day in Berlin: 23 plant hours, from 23:00 UTC the day before.
    start = datetime(2026, 3, 28, 23, tzinfo=UTC)
    hours = [{"bucket": start + timedelta(hours=h), "n": 1, "mean": 0.1, "bins": [1] + [0] * (SCORE_BINS - 1)}
             for h in range(24)]
    days = drift.plant_days(hours, BERLIN)
    assert [(d["day"], d["n"]) for d in days] == [(date(2026, 3, 29), 23), (date(2026, 3, 30), 1)]


def test_seeded_plant_alarms_only_at_the_shifted_station(tmp_path: Path) -> None:
    """The seeded plant: six stations over 30 days, paint-2 shifted (more NG, wider OK scores) on its last 2 days."""
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    seed_plant.seed(url, 120_000, days=30, now=now)
    with Database.open(url) as db:
        results, skipped = drift.plant_drift(db, BERLIN)
        by_station = {r.station: r for r in results}
        assert not skipped and set(by_station) == set(seed_plant.STATIONS)
        for station, result in by_station.items():
            if station != "paint-2":
                assert result.alarm_days == [], f"{station} alarms on a stable process"
        alarms = by_station["paint-2"].alarm_days
        last_days = {(now - timedelta(days=k)).astimezone(BERLIN).date() for k in range(3)}
        assert alarms and set(alarms) <= last_days
        # The alarm rule raises it once, for paint-2 only, and a second check extends nothing new.
        first, second = alarms_app.CheckResult(), alarms_app.CheckResult()
        alarms_app.check_drift(db, BERLIN, now, first)
        alarms_app.check_drift(db, BERLIN, now, second)
        assert [(a.kind, a.station, a.rule) for a in first.raised] == [("drift", "paint-2", "psi_over_limit")]
        assert "score drift" in first.raised[0].message and first.raised[0].value > 0.1
        assert second.raised == [] and second.extended == 0
        # What the old reference did: the active model's validation *good* scores against a day with its NG mix.
        model = next(m for m in Repository(db).list_model_versions() if m.name == "efnet-v2")
        validation = [0] * SCORE_BINS
        for score in model.metrics["score_samples"]["good"]:
            validation[score_bin(score)] += 1
        days = queries.score_distribution(db, bucket="day", station="press-1")
        flagged = sum(drift.population_stability(validation, d["bins"]) > 0.25 for d in days)
        assert flagged >= 5, "the validation-good reference no longer over-flags; revisit the module docstring"
