"""Score drift per station: each plant day's defect-score histogram against the station's own production reference,
with an alarm calibrated on that reference.

Why a production reference: the model card's validation *good* scores hold no NG parts, while production runs 2-5 %
NG and REVIEW parts whose scores sit in the upper bins; against that reference every normal day looks shifted (on the
seeded plant a stable station was flagged on 11 of 31 days). The first ``REFERENCE_DAYS`` plant days of the window
carry the station's real NG mix, so a day only differs from them when the station or its parts changed. (PSI on
predicted-good parts only would hide the commonest real drift: more parts crossing the threshold.)

Why the limit is calibrated: a day's PSI against a reference is noise of about ``(bins - 1) / n`` for ``n``
effective parts (``1 / (1/n_day + 1/n_reference)``), so a fixed limit is too strict for a low-volume station or a
half-finished day and too lax for a busy one. The reference days are scored leave-one-out (each against the pool of
the others); their PSI times their effective parts, ``z``, sets ``scale = mean(z) + SPREAD_SIGMAS * sd(z)``, and a
day's limit is ``scale / n_effective``, never below ``PSI_LIMIT_FLOOR`` (a shift below "moderate" is not worth
waking anyone for). A single odd day (a changeover, a batch of test parts) is not drift: the alarm needs
``CONSECUTIVE_DAYS`` days over their limits in a row.

Days are plant days (``Settings.plant_time_zone``), assembled from the hourly rollups, so the work is one rollup read
per station whatever the number of inspections.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from inspect_app.storage import Database, queries

__all__ = [
    "CONSECUTIVE_DAYS",
    "PSI_LIMIT_FLOOR",
    "REFERENCE_DAYS",
    "SPREAD_SIGMAS",
    "DriftDay",
    "StationDrift",
    "calibrated_scale",
    "evaluate_days",
    "plant_days",
    "plant_drift",
    "population_stability",
    "station_drift",
]

REFERENCE_DAYS = 7
CONSECUTIVE_DAYS = 2
# "Moderate shift" in the usual PSI reading (0.1 moderate, 0.25 major): the least a calibrated limit may be.
PSI_LIMIT_FLOOR = 0.1
SPREAD_SIGMAS = 4.0
# Floor of a bin's share in the PSI, so that an empty bin does not make the index infinite.
_SHARE_FLOOR = 1e-4


@dataclass(frozen=True)
class DriftDay:
    """One plant day of one station.

    Attributes:
        day: the plant-local date.
        n: scored parts.
        mean: mean defect score.
        psi: population stability index against the reference (leave-one-out for a reference day).
        limit: this day's alarm limit (the calibrated scale over its effective parts, at least the floor).
        over: ``psi > limit``.
        alarm: this day ends a run of ``consecutive`` days over their limits.
        reference: the day belongs to the reference.
    """

    day: date
    n: int
    mean: float
    psi: float
    limit: float
    over: bool
    alarm: bool
    reference: bool


@dataclass(frozen=True)
class StationDrift:
    """Drift of one station over a window: its calibrated scale and its days (oldest first)."""

    station: str
    scale: float
    days: tuple[DriftDay, ...] = field(default_factory=tuple)

    @property
    def alarm_days(self) -> list[date]:
        """Days on which the alarm is raised."""
        return [d.day for d in self.days if d.alarm]


def population_stability(reference: Sequence[int], observed: Sequence[int]) -> float:
    """Population stability index between two histograms over the same bins (0 = identical shape).

    Raises:
        ValueError: the histograms differ in length or one of them is empty.
    """
    if len(reference) != len(observed):
        raise ValueError(f"histograms have {len(reference)} and {len(observed)} bins; they must match")
    ref_total, obs_total = sum(reference), sum(observed)
    if not ref_total or not obs_total:
        raise ValueError("population stability needs two non-empty histograms")
    index = 0.0
    for r, o in zip(reference, observed, strict=True):
        p = max(r / ref_total, _SHARE_FLOOR)
        q = max(o / obs_total, _SHARE_FLOOR)
        index += (q - p) * math.log(q / p)
    return index


def _pool(histograms: Sequence[Sequence[int]]) -> list[int]:
    """Bin-wise sum of histograms."""
    return [sum(column) for column in zip(*histograms, strict=True)]


def _leave_one_out(histograms: Sequence[Sequence[int]]) -> list[float]:
    """PSI of each histogram against the pool of the others."""
    total = _pool(histograms)
    return [population_stability([t - h for t, h in zip(total, hist, strict=True)], hist) for hist in histograms]


def _effective(n_day: int, n_reference: int) -> float:
    """Effective sample size of a two-sample comparison: ``1 / (1/n_day + 1/n_reference)``."""
    return 1.0 / (1.0 / n_day + 1.0 / n_reference)


def calibrated_scale(reference_days: Sequence[Sequence[int]]) -> float:
    """Alarm scale from the reference days' own day-to-day PSI spread (see the module docstring).

    Raises:
        ValueError: fewer than three reference days (two give no spread worth the name).
    """
    if len(reference_days) < 3:
        raise ValueError(f"a drift reference needs at least 3 days with scored parts; got {len(reference_days)}")
    total = sum(sum(h) for h in reference_days)
    z = [psi * _effective(sum(h), total - sum(h)) for psi, h in zip(_leave_one_out(reference_days), reference_days,
                                                                     strict=True)]
    return statistics.fmean(z) + SPREAD_SIGMAS * statistics.stdev(z)


def evaluate_days(
    station: str,
    days: Sequence[dict[str, Any]],
    reference_days: int = REFERENCE_DAYS,
    consecutive: int = CONSECUTIVE_DAYS,
) -> StationDrift:
    """Drift of one station from its plant days (``plant_days`` output, oldest first).

    Raises:
        ValueError: ``reference_days`` or ``consecutive`` is not a positive integer, or there are fewer days than
            the reference needs (one line naming the station and the count).
    """
    for name, value in (("reference_days", reference_days), ("consecutive", consecutive)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} {value!r} must be a positive integer")
    needed = max(reference_days, 3)
    if len(days) < needed:
        raise ValueError(
            f"station {station!r} has {len(days)} day(s) with scored parts; drift needs {needed} reference days first"
        )
    reference = [d["bins"] for d in days[:needed]]
    scale = calibrated_scale(reference)
    pool = _pool(reference)
    pool_n = sum(pool)
    result, run = [], 0
    for index, (day, psi) in enumerate(
        zip(days, _leave_one_out(reference) + [population_stability(pool, d["bins"]) for d in days[needed:]],
            strict=True)
    ):
        n_reference = pool_n - day["n"] if index < needed else pool_n
        limit = max(PSI_LIMIT_FLOOR, scale / _effective(day["n"], n_reference))
        over = psi > limit
        run = run + 1 if over else 0
        result.append(DriftDay(day=day["day"], n=day["n"], mean=day["mean"], psi=psi, limit=limit, over=over,
                               alarm=run >= consecutive, reference=index < needed))
    return StationDrift(station=station, scale=scale, days=tuple(result))


def plant_days(hours: Sequence[dict[str, Any]], zone: ZoneInfo) -> list[dict[str, Any]]:
    """Hourly score histograms (``queries.score_distribution`` with ``bucket="hour"``) summed per plant-local date.

    An hour belongs to the date on which it starts in ``zone``; DST days therefore have 23 or 25 hours.
    """
    by_day: dict[date, dict[str, Any]] = {}
    for hour in hours:
        day = hour["bucket"].astimezone(zone).date()
        target = by_day.setdefault(day, {"day": day, "n": 0, "score_sum": 0.0, "bins": [0] * len(hour["bins"])})
        target["n"] += hour["n"]
        target["score_sum"] += hour["mean"] * hour["n"]
        target["bins"] = [a + b for a, b in zip(target["bins"], hour["bins"], strict=True)]
    return [
        {"day": d["day"], "n": d["n"], "mean": d["score_sum"] / d["n"], "bins": d["bins"]}
        for d in sorted(by_day.values(), key=lambda d: d["day"])
    ]


def station_drift(
    db: Database,
    station: str,
    zone: ZoneInfo,
    since: datetime | None = None,
    until: datetime | None = None,
    reference_days: int = REFERENCE_DAYS,
    consecutive: int = CONSECUTIVE_DAYS,
) -> StationDrift:
    """Drift of ``station`` over [since, until): the first ``reference_days`` plant days are its reference.

    Raises:
        ValueError: too few days with scored parts, or a bad argument (see ``evaluate_days``).
    """
    hours = queries.score_distribution(db, bucket="hour", since=since, until=until, station=station)
    return evaluate_days(station, plant_days(hours, zone), reference_days=reference_days, consecutive=consecutive)


def plant_drift(
    db: Database,
    zone: ZoneInfo,
    since: datetime | None = None,
    until: datetime | None = None,
    reference_days: int = REFERENCE_DAYS,
    consecutive: int = CONSECUTIVE_DAYS,
) -> tuple[list[StationDrift], dict[str, str]]:
    """Drift of every station; stations without enough days are returned apart with the reason."""
    results, skipped = [], {}
    for station in queries.stations(db):
        try:
            results.append(station_drift(db, station, zone, since, until, reference_days, consecutive))
        except ValueError as exc:
            skipped[station] = str(exc)
    return results, skipped
