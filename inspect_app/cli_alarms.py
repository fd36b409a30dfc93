"""The ``inspect-app alarms`` commands: check (the rules, then the notifiers), list, ack.

``alarms check`` is how alarms are evaluated: run it once a minute from cron or a systemd timer, or keep
``alarms check --every 60`` running beside the scheduler. Settings come from ``INSPECT_ALARM_*`` (``config.alarms``).
Acknowledging goes through ``app.alarms.acknowledge_alarm`` (audited, with ``cli:$USER`` as the actor).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from inspect_app.cli_common import open_database, settings_of
from inspect_app.cli_lifecycle import shell
from inspect_app.records import Alarm

logger = logging.getLogger(__name__)



def _line(alarm: Alarm) -> str:
    """One alarm as a terminal line: id, when, state, kind, message."""
    state = "acknowledged" if alarm.acknowledged_at else ("cleared" if alarm.cleared_at else "active")
    return f"{alarm.id:>5}  {alarm.raised_at:%Y-%m-%d %H:%M} UTC  {state:<12} {alarm.kind:<13} {alarm.message}"


def cmd_alarms_check(args: argparse.Namespace) -> int:
    """Evaluate the alarm rules once (or every ``--every`` seconds) and send new alarms."""
    from inspect_app.app.alarms import check_alarms
    from inspect_app.config.alarms import load_alarm_settings
    from inspect_app.errors import StorageError

    settings = load_alarm_settings(pipeline_down_minutes=args.pipeline_down_minutes)
    zone = settings_of(args).plant_zone
    db = open_database(args)
    while True:
        try:
            result = check_alarms(db, settings, zone=zone)
            for alarm in result.raised:
                print(f"raised: {_line(alarm)}", flush=True)
            for failure in result.failures:
                print(f"not sent (retried at the next check): {failure}", flush=True)
            if not result.raised:
                print(f"checked {result.stations} station(s): no new alarms", flush=True)
            if not args.every:
                return 0
        except StorageError as exc:
            if not args.every:
                raise
            logger.warning("alarm check skipped, the database did not answer: %s", exc)
        time.sleep(args.every)


def cmd_alarms_list(args: argparse.Namespace) -> int:
    """Newest alarms first (open ones only unless ``--all``)."""
    from inspect_app.storage.alarms import AlarmStore

    alarms = AlarmStore(open_database(args)).recent(open_only=not args.all, limit=args.limit)
    for alarm in alarms:
        print(_line(alarm))
    if not alarms:
        print("no alarms" if args.all else "no open alarms")
    return 0


def cmd_alarms_ack(args: argparse.Namespace) -> int:
    """Acknowledge an alarm (audited as ``cli:$USER``)."""
    from inspect_app.app.alarms import acknowledge_alarm

    try:
        alarm = acknowledge_alarm(open_database(args), shell(), args.id)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"alarm {alarm.id} acknowledged by {alarm.acknowledged_by}")
    return 0


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def add_alarm_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``alarms check|list|ack`` to the parser."""
    alarms = sub.add_parser("alarms", help="p-chart and pipeline alarms").add_subparsers(dest="alarms_command",
                                                                                          required=True)
    p = alarms.add_parser("check", help="evaluate the alarm rules and send new alarms (INSPECT_ALARM_* settings)")
    p.add_argument("--every", type=_positive, metavar="SECONDS", help="keep checking at this interval")
    p.add_argument("--pipeline-down-minutes", type=_positive, help="a running pipeline silent this long is down")
    p.set_defaults(func=cmd_alarms_check)
    p = alarms.add_parser("list", help="newest alarms first (open ones unless --all)")
    p.add_argument("--all", action="store_true", help="acknowledged alarms too")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_alarms_list)
    p = alarms.add_parser("ack", help="acknowledge an alarm (audited)")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_alarms_ack)
