"""Alarm settings: the rules' parameters and where alarms are sent, from ``INSPECT_ALARM_*`` environment variables.

Kept beside ``settings`` (same pydantic-settings layering) rather than in it, since only ``inspect-app alarms`` and
the dashboard's Alarms page read them. The SMTP password comes from ``INSPECT_ALARM_SMTP_PASSWORD`` only: there is
no flag or file for it, and it is a ``SecretStr`` that ``repr`` and logs never show.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inspect_app.config.base import validation_message
from inspect_app.errors import ConfigError


class AlarmSettings(BaseSettings):
    """What ``inspect-app alarms check`` evaluates and whom it tells (``INSPECT_ALARM_<FIELD>``).

    Attributes:
        spc_bucket: p-chart bucket the Western Electric rules run on (``hour``, ``shift`` or ``day``).
        spc_window_hours: the p-chart's window (its centre line is the pooled rate over it).
        spc_min_parts: buckets with fewer decided parts are left out (their normal approximation is too rough).
        spc_recent_hours: only episodes that reach into this many last hours are raised, so a first check does not
            raise the whole window's history.
        pipeline_down_minutes: a running pipeline not seen for this long raises ``pipeline_down``.
        webhook_url: POST each alarm as JSON here.
        webhook_timeout_s: how long one POST may take.
        smtp_host / smtp_port / smtp_from / smtp_to / smtp_user / smtp_starttls: e-mail each alarm (``smtp_to``:
            comma-separated addresses).
        smtp_password: ``INSPECT_ALARM_SMTP_PASSWORD`` (environment only).
        command: run this command for each alarm, with the alarm as JSON on stdin (split like a shell would).
        command_timeout_s: how long the command may run.
    """

    model_config = SettingsConfigDict(env_prefix="INSPECT_ALARM_", extra="ignore")

    spc_bucket: Literal["hour", "shift", "day"] = "hour"
    spc_window_hours: float = Field(default=7 * 24, gt=0)
    spc_min_parts: int = Field(default=25, ge=1)
    spc_recent_hours: float = Field(default=24, gt=0)
    pipeline_down_minutes: float = Field(default=10, gt=0)
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=10, gt=0)
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, gt=0, lt=65536)
    smtp_from: str | None = None
    smtp_to: Annotated[tuple[str, ...], NoDecode] = ()
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    command: str | None = None
    command_timeout_s: float = Field(default=30, gt=0)

    @field_validator("smtp_to", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> Any:
        """``a@plant, b@plant`` as a tuple of addresses."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        """A webhook is an http(s) URL; anything else would fail at the first alarm instead of now."""
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value or None

    def __repr_args__(self) -> Any:
        """Fields for ``repr`` with the webhook URL's credentials hidden (the password is a ``SecretStr`` already)."""
        from inspect_app.redact import redact_url

        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "webhook_url" and value else value)

    @property
    def quiet_after(self) -> timedelta:
        """How long a running pipeline may stay silent before it is down."""
        return timedelta(minutes=self.pipeline_down_minutes)

    @property
    def smtp_configured(self) -> bool:
        """Whether e-mail is set up: a host, a sender and at least one recipient."""
        return bool(self.smtp_host and self.smtp_from and self.smtp_to)


def load_alarm_settings(**overrides: Any) -> AlarmSettings:
    """Alarm settings from the environment, then non-``None`` overrides (CLI flags).

    Raises:
        ConfigError: an ``INSPECT_ALARM_*`` variable or flag holds a value that cannot be used (one line naming it).
    """
    if overrides.get("smtp_password") is not None:
        raise ConfigError("the SMTP password is read from INSPECT_ALARM_SMTP_PASSWORD only")
    try:
        return AlarmSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, AlarmSettings, "alarm settings (INSPECT_ALARM_* environment)")) \
            from exc
