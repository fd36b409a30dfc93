"""Drift page: each station's daily defect-score distribution against its own production reference, with an alarm
only when something changed.

The math lives in ``inspect_app.app.drift`` (why the reference is the first plant days of production, how the limit
is calibrated, why two consecutive days): this page reads it per station over the chosen window and draws it in the
plant's time zone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from inspect_app.app import drift
from inspect_app.errors import StorageError
from inspect_app.ui.common import (
    ALL_STATIONS,
    CACHE_TTL_S,
    database,
    database_url,
    format_count,
    format_number,
    load_stations,
    plant_zone,
    require_viewing,
    time_title,
)

logger = logging.getLogger(__name__)

PAGE_TITLE = "Score drift"
DAYS = (14, 30, 90)
ALARM_COLOR = "#d62728"
PSI_TITLE = "PSI (population stability index)"
CHART_FLOOR = 1e-4

__all__ = ["DAYS", "PAGE_TITLE", "drift_frame", "load_drift", "render", "window_start"]


def window_start(days: int, now: datetime) -> datetime:
    """Plant midnight ``days - 1`` days before today (so the window holds ``days`` whole plant days), in UTC."""
    zone = plant_zone()
    today = now.astimezone(zone).date()
    return datetime.combine(today - timedelta(days=days - 1), time(0), tzinfo=zone).astimezone(UTC)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_drift(url: str, since: datetime, zone_key: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every station's drift days as one frame, and the stations left out with the reason."""
    results, skipped = drift.plant_drift(database(url), plant_zone(), since=since)
    return drift_frame(results), skipped


def drift_frame(results: list[drift.StationDrift]) -> pd.DataFrame:
    """One row per station and plant day: the chart's and the tables' input."""
    rows = [
        {
            "Station": r.station, "Day": datetime.combine(d.day, time(0), tzinfo=UTC), "Date": d.day.isoformat(),
            "Scored parts": d.n, "Mean score": d.mean, "PSI": d.psi, "Limit": d.limit, "Over limit": d.over,
            "Alarm": d.alarm, "Reference": d.reference,
        }
        for r in results for d in r.days
    ]
    columns = ["Station", "Day", "Date", "Scored parts", "Mean score", "PSI", "Limit", "Over limit", "Alarm",
               "Reference"]
    return pd.DataFrame(rows, columns=columns)


def _summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per station: alarm days, last alarm, highest PSI and its limit on the newest day."""
    rows = []
    for station, days in frame.groupby("Station", sort=True):
        alarms = days[days["Alarm"]]
        worst = days.loc[days["PSI"].idxmax()]
        rows.append({
            "Station": station, "Alarm days": format_count(len(alarms)),
            "Last alarm": alarms["Date"].iloc[-1] if len(alarms) else "",
            "Highest PSI": format_number(worst["PSI"], 3), "On": worst["Date"],
            "Limit today": format_number(days["Limit"].iloc[-1], 3),
        })
    return pd.DataFrame(rows)


def _chart(frame: pd.DataFrame, day_title: str) -> alt.LayerChart | alt.FacetChart:
    """PSI per day and station (log scale: calm days sit near 0.001, drift above 0.1), alarm days in red and each
    station's limit dashed."""
    x = alt.X("Day:T", title=day_title, scale=alt.Scale(type="utc"), axis=alt.Axis(format="%Y-%m-%d"))
    y = alt.Y("Shown PSI:Q", title=PSI_TITLE, scale=alt.Scale(type="log"))
    tooltip = ["Station:N", "Date:N", alt.Tooltip("PSI:Q", format=".4f"), alt.Tooltip("Limit:Q", format=".3f"),
               alt.Tooltip("Scored parts:Q", format=","), "Alarm:N"]
    # A log scale cannot draw 0 (two identical days): such points sit on the chart's floor instead of vanishing.
    base = alt.Chart(frame).transform_calculate(**{"Shown PSI": f"max(datum.PSI, {CHART_FLOOR})"})
    lines = base.mark_line(point=True).encode(x=x, y=y, color=alt.Color("Station:N", title="Station"),
                                              tooltip=tooltip)
    limits = base.mark_line(strokeDash=[4, 3], opacity=0.6).encode(
        x=x, y=alt.Y("Limit:Q", title=PSI_TITLE, scale=alt.Scale(type="log")), color="Station:N", detail="Station:N"
    )
    alarms = base.transform_filter(alt.datum["Alarm"]).mark_point(size=140, filled=True, color=ALARM_COLOR).encode(
        x=x, y=y, tooltip=tooltip
    )
    return alt.layer(limits, lines, alarms)


def render() -> None:
    """Draw the Drift page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        zone = plant_zone()
        choice = st.sidebar.selectbox("Station", [ALL_STATIONS, *load_stations(url)], key="drift_station")
        days = st.sidebar.selectbox("Days", DAYS, index=1, key="drift_days")
        since = window_start(days, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
        frame, skipped = load_drift(url, since, zone.key)
        if choice != ALL_STATIONS:
            frame = frame[frame["Station"] == choice]
            skipped = {k: v for k, v in skipped.items() if k == choice}
        for reason in skipped.values():
            st.info(reason)
        if frame.empty:
            if not skipped:
                st.info("No scored inspections in this period.")
            return
        alarming = sorted(set(frame.loc[frame["Alarm"], "Station"]))
        if alarming:
            st.error(f"Drift alarm at {', '.join(alarming)}: the score distribution left the station's limit on "
                     f"{drift.CONSECUTIVE_DAYS} or more days in a row.")
        else:
            st.success("No drift alarm: every station's score distribution stays within its limit.")
        st.caption(
            f"Reference: each station's first {drift.REFERENCE_DAYS} plant days in the window (with their NG mix); "
            f"limit from the reference's own day-to-day spread, at least {drift.PSI_LIMIT_FLOOR}; alarm after "
            f"{drift.CONSECUTIVE_DAYS} days over it in a row. Days in {zone.key}."
        )
        st.altair_chart(_chart(frame, time_title("Day")), width="stretch")
        st.dataframe(_summary(frame), hide_index=True)
        if choice != ALL_STATIONS:
            table = frame.assign(
                **{"Scored parts": frame["Scored parts"].map(format_count),
                   "Mean score": frame["Mean score"].map(lambda v: format_number(v, 3)),
                   "PSI": frame["PSI"].map(lambda v: format_number(v, 4)),
                   "Limit": frame["Limit"].map(lambda v: format_number(v, 3))}
            ).drop(columns=["Day", "Station"]).rename(columns={"Date": time_title("Day")})
            st.dataframe(table, hide_index=True)
    except StorageError as exc:
        logger.error("drift page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
