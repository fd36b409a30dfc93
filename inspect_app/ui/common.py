"""Pieces every dashboard page shares: the database, sidebar filters, sign-in (``ui.session``), running a control.

Reads go through cached loaders keyed by plain values (the URL string); controls go through
the use cases in ``inspect_app.app``, which checks the role next to the write and audits it, so a page cannot change
anything on behalf of someone without the role even if it shows the button.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from inspect_app.app import access
from inspect_app.config import load_settings
from inspect_app.errors import InspectAppError
from inspect_app.storage import queries
from inspect_app.ui import files
from inspect_app.ui.connection import database, database_url
from inspect_app.ui.session import (
    SIGN_IN_REQUIRED_MESSAGE,
    current_user,
    render_account,
    require_viewing,
    viewing_allowed,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_TTL_S = 30
ALL_STATIONS = "All stations"
ALL_LINES = "All lines"
# Sidebar periods; None means no lower bound.
PERIODS: dict[str, timedelta | None] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "All time": None,
}
DEFAULT_PERIOD = "Last 24 hours"
# Periods up to this long are charted per hour; longer ones per day (hourly bars would be unreadable).
HOURLY_MAX_SPAN = timedelta(hours=48)
# Every time on the dashboard is shown in the plant's time zone (``Settings.plant_time_zone``) and says so; the
# storage keeps UTC.
TIME_FORMAT = "%Y-%m-%d %H:%M"

# Re-exported so that pages import their shared pieces from one place.
__all__ = [
    "ALL_LINES",
    "ALL_STATIONS",
    "PERIODS",
    "SIGN_IN_REQUIRED_MESSAGE",
    "bucket_key",
    "current_user",
    "database",
    "database_url",
    "date_window",
    "format_count",
    "format_number",
    "format_percent",
    "format_time",
    "line_filter",
    "load_lines",
    "load_stations",
    "may",
    "period_window",
    "plant_wall",
    "plant_zone",
    "render_account",
    "render_filters",
    "render_picture",
    "require_viewing",
    "role_hint",
    "run_control",
    "station_filter",
    "time_title",
    "viewing_allowed",
]


def period_window(period: str, now: datetime) -> tuple[datetime | None, str]:
    """Lower time bound and chart bucket for a sidebar period.

    ``now`` is floored to the minute so that the cached queries see the same arguments across reruns within a minute.

    Raises:
        ValueError: ``period`` is not one of ``PERIODS``.
    """
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}; allowed: {list(PERIODS)}")
    span = PERIODS[period]
    if span is None:
        return None, "day"
    start = now.astimezone(UTC).replace(second=0, microsecond=0) - span
    return start, "hour" if span <= HOURLY_MAX_SPAN else "day"


@lru_cache(maxsize=8)
def _zone_for(setting: str | None) -> ZoneInfo:
    """The validated plant zone for one value of ``INSPECT_PLANT_TIME_ZONE`` (settings are read once per value)."""
    return load_settings().plant_zone


def plant_zone() -> ZoneInfo:
    """The plant's time zone (``INSPECT_PLANT_TIME_ZONE``).

    Raises:
        ConfigError: the setting is not an IANA zone name (one line naming it).
    """
    return _zone_for(os.environ.get("INSPECT_PLANT_TIME_ZONE"))


def time_title(what: str = "Time") -> str:
    """A column or axis title that names the plant zone: ``Time (Europe/Berlin)``."""
    return f"{what} ({plant_zone().key})"


def plant_wall(value: datetime) -> datetime:
    """``value``'s plant wall-clock time labelled UTC, for charts on a UTC scale (Vega-Lite can only draw UTC or the
    browser's zone, so the plant's hours are handed to it as if they were UTC). Naive values are read as UTC."""
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return moment.astimezone(plant_zone()).replace(tzinfo=UTC)


def format_time(value: datetime | None, zone: ZoneInfo | None = None) -> str:
    """``2026-12-01 22:09 Europe/Berlin`` in the plant zone (or ``zone``); blank for no time. Naive values are read
    as UTC (how the storage keeps them)."""
    if value is None or pd.isna(value):
        return ""
    zone = zone or plant_zone()
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return f"{moment.astimezone(zone).strftime(TIME_FORMAT)} {zone.key}"


def format_count(value: float | None) -> str:
    """A count with thousands separators (``166,624``); blank for none."""
    return "" if value is None or pd.isna(value) else f"{int(value):,}"


def format_percent(share: float | None) -> str:
    """A share in [0, 1] as a percentage with one decimal (``12.3 %``); blank for none."""
    return "" if share is None or pd.isna(share) else f"{share * 100:.1f} %"


def format_number(value: float | None, digits: int = 2) -> str:
    """A measurement with ``digits`` decimals and thousands separators (``342.23``); blank for none."""
    return "" if value is None or pd.isna(value) else f"{value:,.{digits}f}"


def date_window(dates: tuple[date, ...] | list[date] | date | None,
                zone: ZoneInfo | None = None) -> tuple[datetime | None, datetime | None]:
    """A date-range picker's value → (since, until) in UTC: whole plant days (local midnight to local midnight in
    ``zone``, default the plant zone), the last one included.

    One picked date (the second not chosen yet) is that day alone; none is no bound.
    """
    if dates is None:
        return None, None
    if isinstance(dates, date):
        dates = (dates,)
    picked = [d for d in dates if d is not None]
    if not picked:
        return None, None
    zone = zone or plant_zone()
    first, last = min(picked), max(picked)
    return (datetime.combine(first, time(), zone).astimezone(UTC),
            datetime.combine(last + timedelta(days=1), time(), zone).astimezone(UTC))


def bucket_key(period: str) -> str:
    """Widget key of the chart-bucket choice for ``period``: one per period, so that switching the period brings
    that period's default bucket back instead of keeping the previous period's choice."""
    return f"bucket:{period}"


def station_filter(choice: str) -> str | None:
    """Sidebar station choice → query filter (``None`` for all stations)."""
    return None if choice == ALL_STATIONS else choice


def line_filter(choice: str) -> str | None:
    """Sidebar line choice → query filter (``None`` for all lines)."""
    return None if choice == ALL_LINES else choice


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_stations(url: str) -> list[str]:
    """Station names present in the database."""
    return queries.stations(database(url))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_lines(url: str) -> list[str]:
    """Line names present in the database."""
    return queries.lines(database(url))


def render_filters(stations: list[str], lines: list[str]) -> tuple[str | None, str | None, str]:
    """Draw station, line and period filters in the sidebar; return (station, line, period label)."""
    st.sidebar.header("Filters")
    station = st.sidebar.selectbox("Station", [ALL_STATIONS, *stations], key="station")
    line = ALL_LINES
    if len(lines) > 1:
        line = st.sidebar.selectbox("Line", [ALL_LINES, *lines], key="line")
    period = st.sidebar.selectbox("Period", list(PERIODS), index=list(PERIODS).index(DEFAULT_PERIOD), key="period")
    return station_filter(station), line_filter(line), period


def run_control(action: Callable[..., T], *args: Any, success: str, **kwargs: Any) -> T | None:
    """Run a control action and report the outcome on the page.

    Refusals (no role), bad values and missing records are shown as errors with the action's own message; on
    success the read caches are cleared so that every page shows the change at once.
    """
    try:
        result = action(*args, **kwargs)
    except (InspectAppError, ValueError, LookupError) as exc:
        logger.info("control %s refused: %s", getattr(action, "__name__", action), exc)
        st.error(str(exc))
        return None
    st.cache_data.clear()
    st.success(success)
    return result


def may(action: str) -> bool:
    """Whether the signed-in user (re-read from the database) may use the control for ``action``.

    Pages draw a control only when this holds; the ``inspect_app.app`` use case behind it checks again.
    """
    return access.allowed(current_user(), action)


def role_hint(action: str) -> str:
    """Help text naming the least role a control needs."""
    return f"needs role {access.ACTION_ROLES[action]} or higher"


# --- files from database rows -------------------------------------------------------------------------------------


def render_picture(candidates: Sequence[tuple[str, str | None]], caption: str = "",
                   width: int | Literal["stretch", "content"] = "content", *,
                   roots: Sequence[Path] | None = None) -> bool:
    """Show the first ``(label, path)`` candidate that ``ui.files`` lets the dashboard serve; return whether one was.

    Otherwise a placeholder caption names, per recorded file, why it is not shown ("heatmap outside the evidence and
    data folders"); the file itself is never sent.
    """
    settings = load_settings()
    roots = files.served_roots(settings) if roots is None else roots
    reasons = []
    for label, stored in candidates:
        # Rows store evidence relative to the evidence folder; this machine's mount of it resolves them.
        if (path := settings.local_path(stored)) is None:
            continue
        served = files.served_image(path, roots)
        if served.data is not None:
            st.image(served.data, caption=caption or None, width=width)
            return True
        reasons.append(f"{label} {served.reason}")
    placeholder = f"(no picture: {'; '.join(reasons) if reasons else files.NOT_RECORDED})"
    st.caption(f"{caption} {placeholder}" if caption else placeholder)
    return False
