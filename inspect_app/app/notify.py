"""Where alarms are sent: a webhook (POST JSON), e-mail over SMTP, or a command (the alarm as JSON on stdin).

Each channel's ``send`` raises ``NotifyError`` with a message safe to log: webhook URLs are shown redacted and the
SMTP password never appears. ``app.alarms.notify_pending`` retries, at every check, the channels that failed.
"""

from __future__ import annotations

import json
import logging
import shlex
import smtplib
import subprocess
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any, Protocol

from inspect_app.config.alarms import AlarmSettings
from inspect_app.errors import InspectAppError
from inspect_app.records import Alarm
from inspect_app.redact import redact_url

logger = logging.getLogger(__name__)

__all__ = ["Channel", "CommandChannel", "NotifyError", "SmtpChannel", "WebhookChannel", "alarm_payload", "channels"]


class NotifyError(InspectAppError):
    """A channel did not take an alarm (the reason named, secrets hidden)."""


def alarm_payload(alarm: Alarm) -> dict[str, Any]:
    """The alarm as the JSON every channel sends."""
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": alarm.id, "kind": alarm.kind, "subject": alarm.subject, "station": alarm.station, "line": alarm.line,
        "rule": alarm.rule, "message": alarm.message, "value": alarm.value, "raised_at": iso(alarm.raised_at),
        "episode_start": iso(alarm.episode_start), "episode_end": iso(alarm.episode_end),
    }


class Channel(Protocol):
    """One way of telling the plant."""

    name: str

    def send(self, alarm: Alarm) -> None:
        """Deliver one alarm or raise ``NotifyError``."""


class WebhookChannel:
    """POST the alarm as JSON; any 2xx answer counts as taken."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url, self.timeout_s = url, timeout_s

    def send(self, alarm: Alarm) -> None:
        """POST one alarm."""
        body = json.dumps(alarm_payload(alarm)).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"webhook {redact_url(self.url)} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifyError(f"webhook {redact_url(self.url)} not reached: {reason}") from None
        if not 200 <= status < 300:
            raise NotifyError(f"webhook {redact_url(self.url)} answered HTTP {status}")


class SmtpChannel:
    """E-mail the alarm (subject: its message; body: the JSON) through one SMTP server."""

    name = "smtp"

    def __init__(self, settings: AlarmSettings) -> None:
        self.settings = settings

    def send(self, alarm: Alarm) -> None:
        """Send one e-mail."""
        s = self.settings
        if not s.smtp_host:  # channels() builds this channel only with a host; settings changed since then
            raise NotifyError("SMTP channel: smtp_host is not set")
        message = EmailMessage()
        message["Subject"] = f"[inspect_app alarm] {alarm.message}"[:200]
        message["From"] = s.smtp_from
        message["To"] = ", ".join(s.smtp_to)
        message.set_content(json.dumps(alarm_payload(alarm), indent=2) + "\n")
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=30) as server:
                if s.smtp_starttls:
                    server.starttls()
                if s.smtp_user and s.smtp_password is not None:
                    server.login(s.smtp_user, s.smtp_password.get_secret_value())
                server.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            # smtplib's messages carry the server's reply, never the password we sent.
            raise NotifyError(f"SMTP server {s.smtp_host}:{s.smtp_port} did not take the e-mail: "
                              f"{type(exc).__name__}: {exc}") from None


class CommandChannel:
    """Run a command with the alarm as JSON on stdin; exit code 0 counts as taken."""

    name = "command"

    def __init__(self, command: str, timeout_s: float = 30.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise NotifyError("the alarm command is empty")
        self.timeout_s = timeout_s

    def send(self, alarm: Alarm) -> None:
        """Run the command once."""
        body = json.dumps(alarm_payload(alarm)).encode("utf-8")
        try:
            done = subprocess.run(self.argv, input=body, capture_output=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NotifyError(f"alarm command {self.argv[0]!r} failed: {exc}") from None
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise NotifyError(f"alarm command {self.argv[0]!r} exited with {done.returncode}: {tail[0][:200]}")


def channels(settings: AlarmSettings) -> list[Channel]:
    """The channels the settings configure (none: alarms are only stored and shown)."""
    found: list[Channel] = []
    if settings.webhook_url:
        found.append(WebhookChannel(settings.webhook_url, settings.webhook_timeout_s))
    if settings.smtp_configured:
        found.append(SmtpChannel(settings))
    if settings.command:
        found.append(CommandChannel(settings.command, settings.command_timeout_s))
    return found
