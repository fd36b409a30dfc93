"""Alarm use cases: check the rules (p-chart, pipeline down, score drift), send what is new, acknowledge (audited).

``inspect-app alarms check`` runs ``check_alarms`` once (``--every N`` in a loop; or from cron / a systemd timer).
A check raises each alarm once per episode: a p-chart episode is a run of consecutive points that break a rule,
matched to the station's stored alarm it overlaps (whichever rule raised it), so a station that stays out of control
extends its alarm instead of raising a new one per check or per rule;
a pipeline-down episode is one ``last_seen`` of a silent pipeline; a drift episode is a run of plant days on which
``app.drift`` raises its calibrated alarm (as the Drift page shows it). Alarms are stored before any notifier is tried;
a channel that fails is logged and tried again at the next check, so no alarm is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from inspect_app.app import drift, spc
from inspect_app.app.access import ACTION_ROLES, allowed, authorize
from inspect_app.app.notify import Channel, NotifyError, channels
from inspect_app.config.alarms import AlarmSettings
from inspect_app.records import Alarm, User, utcnow
from inspect_app.storage import queries
from inspect_app.storage.alarms import AlarmStore
from inspect_app.storage.db import Database
from inspect_app.storage.live_stats import list_pipeline_status

logger = logging.getLogger(__name__)

# The least role that may acknowledge an alarm: the operator at the line is who answers it.
ACKNOWLEDGE_ROLE = ACTION_ROLES["acknowledge"]
PIPELINE_RULE = "silent"
DRIFT_RULE = "psi_over_limit"
DRIFT_WINDOW_DAYS = 31  # the Drift page's default window: 7 reference days and the weeks after them
_BUCKET_HOURS = {"hour": 1, "shift": queries.SHIFT_HOURS, "day": 24}

__all__ = ["ACKNOWLEDGE_ROLE", "CheckResult", "acknowledge_alarm", "check_alarms", "may_acknowledge",
           "notify_pending", "stored_id"]


@dataclass
class CheckResult:
    """What one check did: alarms raised, episodes extended or cleared, notifications sent or failed."""

    raised: list[Alarm] = field(default_factory=list)
    extended: int = 0
    cleared: int = 0
    notified: int = 0
    failures: list[str] = field(default_factory=list)
    stations: int = 0  # stations whose p-chart was checked (what `alarms check` reports when nothing is new)


def may_acknowledge(user: User | None) -> bool:
    """Whether ``user`` may acknowledge alarms (the ``acknowledge`` action of ``app.access``)."""
    return allowed(user, "acknowledge")


def acknowledge_alarm(db: Database, user: User | None, alarm_id: int, now: datetime | None = None) -> Alarm:
    """Mark an alarm as taken by ``user``; the audit entry (``alarm.acknowledge``) is written in the same transaction.

    Raises:
        AccessDeniedError: nobody signed in, an inactive user, or a role below operator (named).
        LookupError: no alarm has ``alarm_id``.
        ValueError: the alarm was acknowledged already.
    """
    user = authorize(user, "acknowledge")
    return AlarmStore(db).acknowledge(alarm_id, actor=user.username, at=now)


def _complete_until(now: datetime, bucket: str) -> datetime:
    """Start of the bucket ``now`` falls in: only whole buckets are judged (a part-filled one is too noisy)."""
    hours = _BUCKET_HOURS[bucket]
    offset = queries.SHIFT_START_HOUR if bucket == "shift" else 0
    epoch_hour = int(now.timestamp() // 3600)
    start = ((epoch_hour - offset) // hours) * hours + offset
    return datetime.fromtimestamp(start * 3600, tz=now.tzinfo)


def _format_rate(value: float) -> str:
    return f"{100 * value:.1f} %"


def check_spc(db: Database, settings: AlarmSettings, now: datetime, result: CheckResult) -> None:
    """Western Electric rules on each station's p-chart (``queries.p_chart``, as the Overview draws it)."""
    store = AlarmStore(db)
    until = _complete_until(now, settings.spc_bucket)
    since = until - timedelta(hours=settings.spc_window_hours)
    recent = now - timedelta(hours=settings.spc_recent_hours)
    stations = queries.stations(db)
    result.stations = len(stations)
    for station in stations:
        chart = queries.p_chart(db, bucket=settings.spc_bucket, since=since, until=until, station=station)
        points = [p for p in chart["points"] if p["n"] >= settings.spc_min_parts]
        center = chart["center"]
        found = spc.episodes(points, center)
        for episode in found:
            message = (f"{station}: {episode.description} on the {settings.spc_bucket}ly defect rate; "
                       f"last {_format_rate(episode.value)} against a centre line of {_format_rate(center)}")
            # Rules that hold on overlapping points are one episode of the station: one alarm, not one per rule.
            known = store.episodes("spc", station)
            match = next((a for a in known if a.episode_start <= episode.end and a.episode_end >= episode.start),
                         None)
            if match is not None:
                if episode.end > match.episode_end:
                    store.extend(stored_id(match), episode.end, episode.value, message)
                    result.extended += 1
                continue
            if episode.end < recent:
                continue  # history from before the checker ran
            alarm = store.raise_alarm(Alarm(
                kind="spc", subject=station, station=station, line=_line_of(db, station), rule=episode.rule,
                message=message, value=episode.value, episode_start=episode.start, episode_end=episode.end,
                raised_at=now,
            ))
            if alarm is not None:
                result.raised.append(alarm)
        # An episode that stops before the newest judged point is over (it stays open until acknowledged).
        last_point = points[-1]["bucket"] if points else None
        for alarm in store.uncleared("spc"):
            if alarm.subject == station and last_point is not None and last_point > alarm.episode_end:
                store.clear(stored_id(alarm), now)
                result.cleared += 1


def stored_id(alarm: Alarm) -> int:
    """The id of an alarm read from the store (``Alarm.id`` is ``None`` only before it is stored)."""
    if alarm.id is None:
        raise ValueError(f"alarm {alarm.subject!r} ({alarm.kind}) has no id: it was never stored")
    return alarm.id


def _day_start(day: Any, zone: ZoneInfo) -> datetime:
    """The first instant of a plant day, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=zone)


def check_drift(db: Database, zone: ZoneInfo, now: datetime, result: CheckResult) -> None:
    """A ``drift`` alarm per station while ``app.drift`` raises its calibrated alarm; cleared when a day is normal."""
    store = AlarmStore(db)
    stations, _skipped = drift.plant_drift(db, zone, since=now - timedelta(days=DRIFT_WINDOW_DAYS), until=now)
    for station in stations:
        days = [d for d in station.days if not d.reference]
        runs: list[list[drift.DriftDay]] = []  # alarm days that follow each other
        for index, day in enumerate(days):
            if not day.alarm:
                continue
            if runs and index > 0 and days[index - 1] is runs[-1][-1]:
                runs[-1].append(day)
            else:
                runs.append([day])
        known = store.episodes("drift", station.station, DRIFT_RULE)
        for run in runs:
            start, end, last = _day_start(run[0].day, zone), _day_start(run[-1].day, zone), run[-1]
            message = (f"{station.station}: score drift on {len(run)} plant day(s) from {run[0].day}; "
                       f"PSI {last.psi:.2f} against a limit of {last.limit:.2f} on {last.day}")
            match = next((a for a in known if a.episode_start <= end and a.episode_end >= start), None)
            if match is not None:
                if end > match.episode_end:
                    store.extend(stored_id(match), end, last.psi, message)
                    result.extended += 1
                continue
            if run[-1] is not days[-1]:
                continue  # history: the episode ended before this check
            alarm = store.raise_alarm(Alarm(
                kind="drift", subject=station.station, station=station.station, line=_line_of(db, station.station),
                rule=DRIFT_RULE, message=message, value=last.psi, episode_start=start, episode_end=end, raised_at=now,
            ))
            if alarm is not None:
                result.raised.append(alarm)
        newest = days[-1] if days else None
        for alarm in store.uncleared("drift"):
            if alarm.subject == station.station and newest is not None and not newest.alarm:
                store.clear(stored_id(alarm), now)
                result.cleared += 1


def _line_of(db: Database, station: str) -> str | None:
    """The line a station belongs to, from the station comparison the Overview shows."""
    from inspect_app.storage import dashboard_queries

    for row in dashboard_queries.station_comparison(db):
        if row.get("station") == station:
            return row.get("line")
    return None


def _pipeline_subject(pipeline: str, station: str) -> str:
    """A pipeline alarm's subject: the pipeline at its station (one pipeline file may run at several)."""
    return f"{pipeline}@{station}"


def check_pipelines(db: Database, settings: AlarmSettings, now: datetime, result: CheckResult) -> None:
    """``pipeline_down`` for every running pipeline silent for ``pipeline_down_minutes``; cleared once it reports."""
    store = AlarmStore(db)
    statuses = list_pipeline_status(db)
    current = {_pipeline_subject(s.pipeline, s.station): s for s in statuses}
    for status in statuses:
        if status.final or now - status.last_seen <= settings.quiet_after:
            continue
        minutes = (now - status.last_seen).total_seconds() / 60
        message = (f"pipeline {status.pipeline} at {status.station} (host {status.host}) has not reported for "
                   f"{minutes:.0f} min (last seen {status.last_seen:%Y-%m-%d %H:%M} UTC)")
        subject = _pipeline_subject(status.pipeline, status.station)
        if any(a.episode_start == status.last_seen for a in store.episodes("pipeline_down", subject, PIPELINE_RULE)):
            continue
        alarm = store.raise_alarm(Alarm(
            kind="pipeline_down", subject=subject, station=status.station, line=status.line, rule=PIPELINE_RULE,
            message=message, value=round(minutes, 1), episode_start=status.last_seen, episode_end=status.last_seen,
            raised_at=now,
        ))
        if alarm is not None:
            result.raised.append(alarm)
    for alarm in store.uncleared("pipeline_down"):
        latest = current.get(alarm.subject)
        if latest is None or latest.final or latest.last_seen > alarm.episode_start:
            store.clear(stored_id(alarm), now)
            result.cleared += 1


def notify_pending(db: Database, targets: list[Channel], now: datetime | None = None) -> tuple[int, list[str]]:
    """Offer every open, not yet delivered alarm to each channel that has not taken it; returns (done, failures).

    Nothing is sent while no channel is configured: alarms are then only stored and shown on the dashboard.
    """
    if not targets:
        return 0, []
    store = AlarmStore(db)
    done = 0
    failures: list[str] = []
    for alarm in store.unnotified():
        delivered: dict[str, str] = {}
        errors = []
        for channel in targets:
            if channel.name in alarm.deliveries:
                continue
            try:
                channel.send(alarm)
                delivered[channel.name] = (now or utcnow()).isoformat()
            except NotifyError as exc:
                logger.warning("alarm %s not sent by %s (retried at the next check): %s", alarm.id, channel.name, exc)
                errors.append(f"{channel.name}: {exc}")
        complete = all(c.name in alarm.deliveries or c.name in delivered for c in targets)
        store.record_delivery(stored_id(alarm), delivered, "; ".join(errors) or None, complete, now or utcnow())
        done += complete
        failures.extend(f"alarm {alarm.id} {e}" for e in errors)
    return done, failures


def check_alarms(db: Database, settings: AlarmSettings, now: datetime | None = None,
                 targets: list[Channel] | None = None, zone: ZoneInfo | None = None) -> CheckResult:
    """One check: the p-chart rules per station, silent pipelines, score drift, then notifications (module doc).

    ``targets`` defaults to the channels ``settings`` configure; ``zone`` (the plant's, default UTC) makes the drift
    rule's plant days.
    """
    now = now or utcnow()
    result = CheckResult()
    check_spc(db, settings, now, result)
    check_pipelines(db, settings, now, result)
    check_drift(db, zone or ZoneInfo("UTC"), now, result)
    for alarm in result.raised:
        logger.warning("alarm raised: %s", alarm.message)
    result.notified, result.failures = notify_pending(db, channels(settings) if targets is None else targets, now)
    return result
