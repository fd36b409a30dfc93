"""Process-wide settings, read from ``INSPECT_*`` environment variables (pydantic-settings).

Settings are layered: defaults → CLI flags → environment (``INSPECT_*``), the environment winning for secrets and
URLs such as ``INSPECT_DATABASE_URL``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from inspect_app.config.base import validation_message
from inspect_app.config.evidence import resolve_stored_path
from inspect_app.config.plant import DEFAULT_SHIFTS, Shift, check_shifts, check_time_zone, shifts_before
from inspect_app.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


class Settings(BaseSettings):
    """Process-wide settings, read from ``INSPECT_*`` environment variables.

    Attributes:
        home: folder where the database, models and run folders live by default.
        database_url: SQLAlchemy URL; defaults to a SQLite file under ``home``.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        station: station name written with every inspection when a pipeline does not name one.
        dashboard_open_viewing: dashboard pages readable without signing in (``INSPECT_DASHBOARD_OPEN_VIEWING``;
            off by default: every page needs a signed-in user).
        session_idle_minutes: a dashboard session ends after this many minutes without a page run
            (``INSPECT_SESSION_IDLE_MINUTES``).
        session_secret: key that signs dashboard session tokens (``INSPECT_SESSION_SECRET``); without it one is
            generated once into ``<home>/session_secret`` (mode 0600). Never shown in ``repr``.
        dashboard_trust_forwarded_for: take the client address for the sign-in throttle from the
            ``X-Forwarded-For`` header a reverse proxy sets (``INSPECT_DASHBOARD_TRUST_FORWARDED_FOR``); only behind
            such a proxy, since a browser can send the header itself.
        evidence_dir: folder of NG/REVIEW heatmaps and part images written by pipelines, filed by content hash
            (``INSPECT_EVIDENCE_DIR``; default ``<home>/ng``). Rows store paths relative to it, so a machine that
            mounts it elsewhere points this at its own mount (see ``config.evidence``).
        file_roots: further folders the dashboard may show files from, such as a camera's image folder
            (``INSPECT_FILE_ROOTS``, separated by ``os.pathsep``).
        plant_time_zone: IANA name of the plant's time zone (``INSPECT_PLANT_TIME_ZONE``, default ``UTC``); the
            dashboard shows times, plant days and shifts in it (the database keeps UTC).
        shifts: the shift calendar in plant time (``INSPECT_SHIFTS="A=06:00-14:00,B=14:00-22:00,C=22:00-06:00"``,
            the default); a shift whose end is not after its start runs across midnight.
        dashboard_refresh_s: seconds between the Overview's redraws on a wall screen (``?kiosk=1``) and with its
            auto-refresh toggle on (``INSPECT_DASHBOARD_REFRESH_S``, default 60; 0 turns auto-refresh off).
    """

    # extra="ignore": other INSPECT_* variables (test URLs, tools) live in the same environment.
    model_config = SettingsConfigDict(env_prefix="INSPECT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path("var"))
    database_url: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    station: str = "station-1"
    line: str = "line-1"
    # Closed by default: KPIs, part images and paths are plant data. Controls always need a signed-in user.
    dashboard_open_viewing: bool = False
    session_idle_minutes: float = Field(default=30.0, gt=0)
    session_secret: SecretStr | None = None
    dashboard_trust_forwarded_for: bool = False
    evidence_dir: Path | None = None
    # NoDecode: the environment gives a plain path list (a:b), not the JSON pydantic-settings expects for a tuple.
    file_roots: Annotated[tuple[Path, ...], NoDecode] = ()
    plant_time_zone: str = "UTC"
    shifts: Annotated[tuple[Shift, ...], NoDecode] = DEFAULT_SHIFTS
    dashboard_refresh_s: float = Field(default=60.0, ge=0)

    @field_validator("file_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        """``INSPECT_FILE_ROOTS`` as ``os.pathsep``-separated folders; empty parts are dropped."""
        if isinstance(value, str):
            return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())
        return value

    @field_validator("plant_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """Only IANA names zoneinfo can open."""
        return check_time_zone(value)

    @field_validator("shifts", mode="before")
    @classmethod
    def _parse_shifts(cls, value: Any) -> Any:
        """``INSPECT_SHIFTS`` as ``NAME=HH:MM-HH:MM`` entries separated by commas."""
        return shifts_before(value)

    @field_validator("shifts")
    @classmethod
    def _distinct_shifts(cls, value: tuple[Shift, ...]) -> tuple[Shift, ...]:
        """Distinct names, no overlap."""
        return check_shifts(value)

    @property
    def plant_zone(self) -> ZoneInfo:
        """The plant's time zone."""
        return ZoneInfo(self.plant_time_zone)

    def __repr_args__(self) -> Any:
        """Fields for ``repr``, with the database URL's password masked (settings may end up in a log or traceback)."""
        from inspect_app.storage.db import mask_url

        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "database_url" and value else value)

    @property
    def resolved_evidence_dir(self) -> Path:
        """Folder of NG heatmaps and evidence images: ``evidence_dir``, else ``<home>/ng``."""
        return self.evidence_dir if self.evidence_dir is not None else self.home / "ng"

    def local_path(self, stored: str | None) -> Path | None:
        """This machine's path of an image or heatmap path stored on a row (``evidence:...`` joined to
        ``resolved_evidence_dir``, older absolute paths as they are; ``None`` for a frame without a file)."""
        return resolve_stored_path(stored, self.resolved_evidence_dir)

    @property
    def served_roots(self) -> tuple[Path, ...]:
        """Folders the dashboard may show files from: the evidence folder, ``home`` and ``file_roots``."""
        return (self.resolved_evidence_dir, self.home, *self.file_roots)

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the explicit one, else a SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'inspect.db').as_posix()}"

    @property
    def models_dir(self) -> Path:
        """Folder that holds trained model folders by default."""
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        """Folder that holds training-run folders by default."""
        return self.home / "runs"

    @property
    def snapshots_dir(self) -> Path:
        """Content-addressed store of the images dataset snapshots hold (each distinct image once)."""
        return self.home / "snapshots"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, then apply non-``None`` overrides (CLI flags).

    The environment still wins for ``database_url`` because URLs may carry secrets that must not live in files.

    Raises:
        ConfigError: a flag or ``INSPECT_*`` variable holds a value that cannot be used (one line naming it).
    """
    env_url = os.environ.get("INSPECT_DATABASE_URL")
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, Settings, "settings (flags and INSPECT_* environment)")) from exc
    if env_url:
        settings = settings.model_copy(update={"database_url": env_url})
    return settings
