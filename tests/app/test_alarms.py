"""Alarm use cases on a real database: p-chart rules raise exactly the expected alarms, once per episode; silent
pipelines; notifiers through a real local HTTP server, a real local SMTP server and a real command; audited
acknowledge."""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from inspect_app.app import alarms, spc
from inspect_app.app.notify import CommandChannel, NotifyError, SmtpChannel, WebhookChannel
from inspect_app.config.alarms import AlarmSettings, load_alarm_settings
from inspect_app.errors import AccessDeniedError, ConfigError
from inspect_app.records import Decision, Inspection, User
from inspect_app.storage import Database, Repository
from inspect_app.storage.alarms import ACKNOWLEDGE_ACTION, AlarmStore
from inspect_app.storage.live_stats import record_pipeline_status

# Whole hours, so that every seeded bucket is complete at the check times below.
BASE = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
PARTS = 100
# NG per hour of a stable station: alternating around the mean, so no run of 8 and no 4 of 5 beyond 1σ.
STABLE = (4, 7, 5, 8, 6, 9, 3, 6)
SPIKE = 30


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def plant_db(request: pytest.FixtureRequest, tmp_path: Path, postgres_schema: Any) -> Iterator[Database]:
    """An empty migrated plant database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        with Database.open(f"sqlite:///{(tmp_path / 'plant.db').as_posix()}") as db:
            yield db
        return
    with postgres_schema("inspect_alarms") as url, Database.open(url) as db:
        yield db


def _seed_hour(db: Database, station: str, hour: int, ng: int, parts: int = PARTS) -> None:
    """``parts`` inspections in hour ``hour`` after BASE, ``ng`` of them NG."""
    start = BASE + timedelta(hours=hour)
    Repository(db).add_inspections([
        Inspection(station=station, line="line-1", source="/in", image_path=f"/in/{station}/{hour}/{i}.png",
                   decision=Decision.NG if i < ng else Decision.OK, created_at=start + timedelta(seconds=10 * i),
                   content_hash=f"{station}-{hour}-{i}", model_version="m1", score=0.9 if i < ng else 0.1)
        for i in range(parts)
    ])


def _at(hour: int) -> datetime:
    """A check time just after hour ``hour`` (hours after BASE) has begun: hours before it are complete."""
    return BASE + timedelta(hours=hour, minutes=5)


SETTINGS = AlarmSettings(spc_window_hours=72, spc_recent_hours=6, spc_min_parts=20, pipeline_down_minutes=10)


# --- the rules on synthetic p-chart points ----------------------------------------------------------------------------


def _points(rates: list[float], n: int = 100) -> list[dict[str, Any]]:
    return [{"bucket": BASE + timedelta(hours=i), "n": n, "p": p} for i, p in enumerate(rates)]


# Centre 0.1 with n=100: σ = 0.03. Filler ±0.67σ alternates sides, so it breaks no rule.
FILL = [0.12, 0.08] * 5


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        (FILL, []),
        ([*FILL, 0.2, *FILL], [("beyond_3sigma_above", 10, 10)]),
        ([*FILL, 0.03, 0.12, 0.03, *FILL[1:]], [("2_of_3_beyond_2sigma_below", 12, 12)]),
        ([*FILL, 0.14, 0.14, 0.12, 0.14, 0.14, *FILL[1:]], [("4_of_5_beyond_1sigma_above", 14, 14)]),
        ([*FILL, *[0.11] * 9, *FILL[1:]], [("8_on_one_side_above", 17, 18)]),
    ],
)
def test_each_western_electric_rule_flags_exactly_its_pattern(rates: list[float], expected: list[tuple]) -> None:
    found = spc.episodes(_points(rates), center=0.1)
    assert [(e.rule, int((e.start - BASE).total_seconds() // 3600), int((e.end - BASE).total_seconds() // 3600))
            for e in found] == expected


def test_unknown_rule_is_named() -> None:
    with pytest.raises(ValueError, match=r"'nine_in_a_row'.*beyond_3sigma"):
        spc.rule_flags([0.0], "nine_in_a_row", "above")


# --- p-chart alarms on seeded rates --------------------------------------------------------------------------------


def test_spike_raises_one_alarm_per_episode(plant_db: Database) -> None:
    for hour in range(24):
        _seed_hour(plant_db, "cell-a", hour, STABLE[hour % len(STABLE)])
        _seed_hour(plant_db, "cell-b", hour, STABLE[(hour + 3) % len(STABLE)])
    _seed_hour(plant_db, "cell-a", 24, SPIKE)

    first = alarms.check_alarms(plant_db, SETTINGS, now=_at(25), targets=[])
    assert [(a.kind, a.subject, a.rule, a.episode_start) for a in first.raised] == [
        ("spc", "cell-a", "beyond_3sigma_above", BASE + timedelta(hours=24))]
    assert first.raised[0].line == "line-1" and first.raised[0].value == pytest.approx(SPIKE / PARTS)

    again = alarms.check_alarms(plant_db, SETTINGS, now=_at(25) + timedelta(minutes=1), targets=[])
    assert again.raised == [] and len(AlarmStore(plant_db).recent()) == 1

    # The spike goes on for a second hour: the same episode, extended, not a new alarm.
    _seed_hour(plant_db, "cell-a", 25, SPIKE)
    extended = alarms.check_alarms(plant_db, SETTINGS, now=_at(26), targets=[])
    assert extended.raised == [] and extended.extended == 1
    (alarm,) = AlarmStore(plant_db).recent()
    assert alarm.episode_end == BASE + timedelta(hours=25) and alarm.cleared_at is None

    # Back to normal. At hour 26, 2 of the last 3 points are still beyond 2σ (the same episode, still one alarm);
    # at hour 27 no rule holds any more and the episode is cleared. A later spike is a new episode, a new alarm.
    _seed_hour(plant_db, "cell-a", 26, 6)
    _seed_hour(plant_db, "cell-a", 27, 5)
    normal = alarms.check_alarms(plant_db, SETTINGS, now=_at(28), targets=[])
    assert (normal.raised, normal.cleared) == ([], 1)
    (alarm,) = AlarmStore(plant_db).recent()
    assert alarm.episode_end == BASE + timedelta(hours=26) and alarm.cleared_at == _at(28)
    _seed_hour(plant_db, "cell-a", 28, SPIKE)
    later = alarms.check_alarms(plant_db, SETTINGS, now=_at(29), targets=[])
    assert [(a.rule, a.episode_start) for a in later.raised] == [
        ("beyond_3sigma_above", BASE + timedelta(hours=28))]
    assert {a.subject for a in AlarmStore(plant_db).recent()} == {"cell-a"}  # the stable station raised nothing


def test_a_part_filled_bucket_and_old_history_raise_nothing(plant_db: Database) -> None:
    for hour in range(24):
        _seed_hour(plant_db, "cell-a", hour, STABLE[hour % len(STABLE)])
    _seed_hour(plant_db, "cell-a", 3, SPIKE, parts=PARTS)  # 3 → 30+ NG: an old spike, before spc_recent_hours
    _seed_hour(plant_db, "cell-a", 24, SPIKE)  # the hour in progress at the check
    result = alarms.check_alarms(plant_db, SETTINGS, now=_at(24), targets=[])
    assert result.raised == []


# --- pipeline down -----------------------------------------------------------------------------------------------


def _snapshot(frames: int = 10, final: bool = False) -> dict[str, Any]:
    return {"name": "cam", "frames": frames, "errors": 0, "fps": 2.0, "fps_recent": 2.0, "queue_depth": 0,
            "dropped": {}, "gaps": {}, "elapsed_s": 5.0, "latency_ms": {}, "final": final}


def test_silent_pipeline_raises_once_and_clears_when_it_reports(plant_db: Database) -> None:
    seen = BASE + timedelta(hours=1)
    record_pipeline_status(plant_db, "cam", "cell-a", "line-1", _snapshot(), host="st1", now=seen)
    record_pipeline_status(plant_db, "batch", "cell-b", "line-1", _snapshot(final=True), host="st2", now=seen)

    quiet = alarms.check_alarms(plant_db, SETTINGS, now=seen + timedelta(minutes=9), targets=[])
    assert quiet.raised == []
    down = alarms.check_alarms(plant_db, SETTINGS, now=seen + timedelta(minutes=11), targets=[])
    assert [(a.kind, a.subject, a.station, a.episode_start) for a in down.raised] == [
        ("pipeline_down", "cam@cell-a", "cell-a", seen)]  # the finished batch pipeline is not down
    assert "host st1" in down.raised[0].message
    assert alarms.check_alarms(plant_db, SETTINGS, now=seen + timedelta(minutes=30), targets=[]).raised == []

    back = seen + timedelta(minutes=31)
    record_pipeline_status(plant_db, "cam", "cell-a", "line-1", _snapshot(frames=20), host="st1", now=back)
    assert alarms.check_alarms(plant_db, SETTINGS, now=back + timedelta(minutes=1), targets=[]).cleared == 1
    again = alarms.check_alarms(plant_db, SETTINGS, now=back + timedelta(minutes=15), targets=[])
    assert [a.episode_start for a in again.raised] == [back]  # a new silence is a new episode


# --- notifiers --------------------------------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012 - shared with the test through the class
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).status == 200:
            type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        """Quiet."""


@pytest.fixture
def webhook() -> Iterator[type[_Hook]]:
    """A real HTTP server on loopback in a thread; ``_Hook.status`` sets its answer."""
    _Hook.received, _Hook.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.url = f"http://127.0.0.1:{server.server_address[1]}/alarm?token=abc"  # type: ignore[attr-defined]
    yield _Hook
    server.shutdown()
    server.server_close()


def _raise_one(db: Database) -> None:
    for hour in range(24):
        _seed_hour(db, "cell-a", hour, STABLE[hour % len(STABLE)])
    _seed_hour(db, "cell-a", 24, SPIKE)


def test_webhook_failure_is_retried_at_the_next_check_and_nothing_is_lost(plant_db: Database,
                                                                          webhook: type[_Hook]) -> None:
    _raise_one(plant_db)
    channel = WebhookChannel(webhook.url, timeout_s=5)  # type: ignore[attr-defined]
    webhook.status = 500
    failed = alarms.check_alarms(plant_db, SETTINGS, now=_at(25), targets=[channel])
    assert len(failed.raised) == 1 and failed.notified == 0
    assert "HTTP 500" in failed.failures[0] and "token=***" in failed.failures[0] and "abc" not in failed.failures[0]
    (stored,) = AlarmStore(plant_db).recent()
    assert stored.notified_at is None and stored.notify_attempts == 1 and "HTTP 500" in stored.notify_error

    webhook.status = 200
    retried = alarms.check_alarms(plant_db, SETTINGS, now=_at(25) + timedelta(minutes=1), targets=[channel])
    assert retried.raised == [] and retried.notified == 1
    assert [(m["kind"], m["subject"], m["rule"]) for m in webhook.received] == [
        ("spc", "cell-a", "beyond_3sigma_above")]
    (stored,) = AlarmStore(plant_db).recent()
    assert stored.notified_at is not None and "webhook" in stored.deliveries
    alarms.check_alarms(plant_db, SETTINGS, now=_at(25) + timedelta(minutes=2), targets=[channel])
    assert len(webhook.received) == 1  # delivered once


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: one message per connection, kept in ``messages``."""

    messages: list[dict[str, Any]] = []  # noqa: RUF012

    def handle(self) -> None:
        def say(line: str) -> None:
            self.wfile.write((line + "\r\n").encode())

        say("220 test ESMTP")
        envelope: dict[str, Any] = {"to": []}
        while line := self.rfile.readline().decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250 test")
            elif verb == "MAIL":
                envelope["from"] = line
                say("250 ok")
            elif verb == "RCPT":
                envelope["to"].append(line)
                say("250 ok")
            elif verb == "DATA":
                say("354 go on")
                data = []
                while (part := self.rfile.readline().decode()) not in (".\r\n", ""):
                    data.append(part)
                envelope["data"] = "".join(data)
                type(self).messages.append(envelope)
                say("250 queued")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("502 not here")


def test_smtp_sends_one_mail_to_every_recipient() -> None:
    _Smtp.messages = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = AlarmSettings(smtp_host="127.0.0.1", smtp_port=server.server_address[1],
                                 smtp_from="inspect@plant", smtp_to=("qa@plant", "shift@plant"))
        alarm = _sample_alarm()
        SmtpChannel(settings).send(alarm)
    finally:
        server.shutdown()
        server.server_close()
    (mail,) = _Smtp.messages
    assert len(mail["to"]) == 2 and "qa@plant" in mail["to"][0]
    parsed = email.message_from_string(mail["data"], policy=email.policy.default)
    assert parsed["Subject"] == "[inspect_app alarm] cell-a: one point beyond 3σ"
    assert json.loads(parsed.get_content())["rule"] == "beyond_3sigma_above"


def test_command_gets_the_alarm_as_json(tmp_path: Path) -> None:
    out = tmp_path / "alarm.json"
    script = tmp_path / "andon.py"
    script.write_text("import sys, pathlib\npathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())\n")
    CommandChannel(f"{sys.executable} {script} {out}").send(_sample_alarm())
    assert json.loads(out.read_text())["message"].startswith("cell-a: one point beyond 3")
    with pytest.raises(NotifyError, match="exited with 3"):
        CommandChannel(f"{sys.executable} -c 'import sys; sys.exit(3)'").send(_sample_alarm())


def _sample_alarm() -> Any:
    from inspect_app.records import Alarm

    return Alarm(kind="spc", subject="cell-a", station="cell-a", rule="beyond_3sigma_above",
                 message="cell-a: one point beyond 3σ", value=0.3, episode_start=BASE, episode_end=BASE, id=7)


def test_smtp_password_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="INSPECT_ALARM_SMTP_PASSWORD only"):
        load_alarm_settings(smtp_password="typed")
    monkeypatch.setenv("INSPECT_ALARM_SMTP_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("INSPECT_ALARM_WEBHOOK_URL", "https://gw/alarm?token=abc")
    settings = load_alarm_settings()
    assert settings.smtp_password.get_secret_value() == "hunter2-secret"
    assert "hunter2" not in repr(settings) and "abc" not in repr(settings)
    monkeypatch.setenv("INSPECT_ALARM_PIPELINE_DOWN_MINUTES", "soon")
    with pytest.raises(ConfigError, match="pipeline_down_minutes 'soon'"):
        load_alarm_settings()


# --- acknowledge --------------------------------------------------------------------------------------------------


def test_acknowledge_is_audited_and_needs_an_operator(plant_db: Database) -> None:
    _raise_one(plant_db)
    (alarm,) = alarms.check_alarms(plant_db, SETTINGS, now=_at(25), targets=[]).raised
    refused = "user 'v' with role 'viewer' may not 'acknowledge'; needs role operator or engineer or admin"
    with pytest.raises(AccessDeniedError, match=refused):
        alarms.acknowledge_alarm(plant_db, User(username="v", role="viewer"), int(alarm.id))
    with pytest.raises(AccessDeniedError, match="needs a signed-in user"):
        alarms.acknowledge_alarm(plant_db, None, int(alarm.id))
    assert Repository(plant_db).list_audit(action=ACKNOWLEDGE_ACTION) == []

    done = alarms.acknowledge_alarm(plant_db, User(username="olga", role="operator"), int(alarm.id))
    assert done.acknowledged_by == "olga" and done.acknowledged_at is not None
    (event,) = Repository(plant_db).list_audit(action=ACKNOWLEDGE_ACTION)
    assert (event.actor, event.target, event.details["rule"]) == ("olga", f"alarm:{alarm.id}", "beyond_3sigma_above")
    assert AlarmStore(plant_db).recent(open_only=True) == []
    with pytest.raises(ValueError, match="acknowledged already by olga"):
        alarms.acknowledge_alarm(plant_db, User(username="olga", role="operator"), int(alarm.id))
    with pytest.raises(LookupError, match="alarm 999 not found"):
        alarms.acknowledge_alarm(plant_db, User(username="olga", role="operator"), 999)
