"""The Overview on a wall screen (``?kiosk=1``): no sidebar or controls, and, large enough to read from across the
hall in a few seconds, the defect rate per line and per shift, the worst station and the last alarm. It redraws itself
every ``INSPECT_DASHBOARD_REFRESH_S`` seconds (60 by default).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from inspect_app.app import shifts
from inspect_app.config import load_settings
from inspect_app.config.plant import Shift
from inspect_app.storage import dashboard_queries, queries
from inspect_app.storage.alarms import AlarmStore
from inspect_app.ui.alarms import alarm_state
from inspect_app.ui.common import CACHE_TTL_S, database, format_percent, format_time, plant_zone

__all__ = ["HIDE_CHROME", "KIOSK_HOURS", "KIOSK_PARAM", "kiosk_requested", "line_rates", "render_kiosk", "shift_rates"]

KIOSK_PARAM = "kiosk"
# The wall screen shows the last day: every shift of it, and the lines over all of it.
KIOSK_HOURS = 24
# Streamlit's own sidebar, its collapse arrow and the top bar with the menu: a wall screen has no one to click them.
HIDE_CHROME = (
    "<style>section[data-testid='stSidebar'], [data-testid='stSidebarCollapsedControl'], "
    "header[data-testid='stHeader'], [data-testid='stToolbar'] {display: none !important;}</style>"
)
BIG = "font-size: 3.6rem; font-weight: 700; line-height: 1.1;"
NOTE = "font-size: 1.4rem;"


def kiosk_requested() -> bool:
    """Whether the page was opened with ``?kiosk=1`` (or ``true`` / ``yes``)."""
    return str(st.query_params.get(KIOSK_PARAM, "")).lower() in ("1", "true", "yes")


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def line_rates(url: str, since: datetime, until: datetime) -> list[tuple[str, float, int]]:
    """``(line, defect rate, decided parts)`` per line over ``[since, until)``, worst first."""
    sums: dict[str, list[int]] = {}
    for row in dashboard_queries.station_comparison(database(url), since=since, until=until):
        counts = sums.setdefault(row["line"], [0, 0])
        counts[0] += row["ng"]
        counts[1] += row["decided"]
    rates = [(line, ng / decided if decided else 0.0, decided) for line, (ng, decided) in sums.items()]
    return sorted(rates, key=lambda item: (-item[1], item[0]))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def shift_rates(url: str, now: datetime, zone_key: str,
                calendar: tuple[Shift, ...]) -> list[tuple[shifts.ShiftWindow, float, int]]:
    """``(shift, defect rate, decided parts)`` of every shift of the last ``KIOSK_HOURS`` that has started, oldest
    first; the running one counts up to ``now``."""
    windows = shifts.recent_shifts(calendar, plant_zone(), now, timedelta(hours=KIOSK_HOURS))
    rows = queries.rates_in_windows(database(url), [(w.start, min(w.end, now)) for w in windows])
    return [(w, r["rate"], r["decided"]) for w, r in zip(windows, rows, strict=True)]


def _figure(column: DeltaGenerator, value: str, note: str) -> None:
    """One large figure with its note under it (plant names escaped: they are data, not markup)."""
    column.markdown(f"<div style='{BIG}'>{html.escape(value)}</div><div style='{NOTE}'>{html.escape(note)}</div>",
                    unsafe_allow_html=True)


def render_kiosk(url: str) -> None:
    """The wall-screen figures, redrawn every ``dashboard_refresh_s`` seconds (never when it is 0)."""
    st.markdown(HIDE_CHROME, unsafe_allow_html=True)
    every = load_settings().dashboard_refresh_s
    st.fragment(_render_kiosk_body, run_every=every or None)(url, every)


def _render_kiosk_body(url: str, every: float) -> None:
    """Lines, shifts, worst station and last alarm for the last ``KIOSK_HOURS``."""
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    since = now - timedelta(hours=KIOSK_HOURS)
    refresh = f"refreshes every {every:g} s" if every else "auto-refresh off"
    st.caption(f"Last {KIOSK_HOURS} hours · updated {format_time(datetime.now(UTC))} · {refresh}")
    st.subheader("Defect rate by line")
    lines = line_rates(url, since, now)
    if not lines:
        st.markdown(f"<div style='{NOTE}'>No inspections in the last {KIOSK_HOURS} hours.</div>",
                    unsafe_allow_html=True)
    for column, (line, rate, decided) in zip(st.columns(max(1, len(lines))), lines, strict=False):
        _figure(column, format_percent(rate), f"{line} · {decided:,} parts")
    st.subheader("Defect rate by shift")
    calendar = load_settings().shifts
    by_shift = shift_rates(url, now, plant_zone().key, calendar)
    for column, (window, rate, decided) in zip(st.columns(max(1, len(by_shift))), by_shift, strict=False):
        running = " (now)" if window.start <= now < window.end else ""
        _figure(column, format_percent(rate) if decided else "–",
                f"Shift {window.shift.name} {window.day:%m-%d}{running} · {decided:,} parts")
    worst_col, alarm_col = st.columns(2)
    worst_col.subheader("Worst station")
    stations = dashboard_queries.station_comparison(database(url), since=since, until=now)
    if stations:
        worst = stations[0]
        _figure(worst_col, f"{worst['station']} {format_percent(worst['rate'])}",
                f"{worst['line']} · {worst['ng']:,} NG of {worst['decided']:,}")
    else:
        _figure(worst_col, "–", "no inspections")
    alarm_col.subheader("Last alarm")
    last = AlarmStore(database(url)).last()
    if last is None:
        _figure(alarm_col, "None", "no alarm so far")
    else:
        _figure(alarm_col, alarm_state(last), f"{format_time(last.raised_at)} · {last.message}")
