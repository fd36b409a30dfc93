"""Shift report page: one shift of the plant calendar (a date and a shift, or the last completed one) — parts,
OK/REVIEW/NG, defect rate per line and station, top defect classes, the worst station — with CSV and PDF downloads.

The shift calendar and the time zone come from the settings (``INSPECT_SHIFTS``, ``INSPECT_PLANT_TIME_ZONE``); the
figures come from the hourly rollups through ``inspect_app.app.shifts``, so a shift costs a few rollup rows.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import altair as alt
import pandas as pd
import streamlit as st

from inspect_app.app import shifts
from inspect_app.config import load_settings
from inspect_app.errors import StorageError
from inspect_app.ui.common import (
    CACHE_TTL_S,
    database,
    database_url,
    format_count,
    format_percent,
    format_time,
    plant_zone,
    require_viewing,
)

logger = logging.getLogger(__name__)

PAGE_TITLE = "Shift report"
LAST_COMPLETED = "Last completed shift"
PICK = "Pick a date and shift"

__all__ = ["LAST_COMPLETED", "PAGE_TITLE", "PICK", "load_report", "render", "station_table"]


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_report(url: str, shift_name: str, day: date, zone_key: str) -> shifts.ShiftReport:
    """The report of ``shift_name`` on plant date ``day``."""
    calendar = load_settings().shifts
    window = shifts.shift_window(shifts.find_shift(calendar, shift_name), day, plant_zone())
    return shifts.shift_report(database(url), window)


def station_table(report: shifts.ShiftReport) -> pd.DataFrame:
    """Per line and station, formatted, worst defect rate first."""
    return pd.DataFrame(
        [
            {"Line": r["line"], "Station": r["station"], "Parts": format_count(r["total"]), "OK": format_count(r["ok"]),
             "REVIEW": format_count(r["review"]), "NG": format_count(r["ng"]), "Errors": format_count(r["errors"]),
             "Defect rate": format_percent(r["rate"])}
            for r in report.stations
        ],
        columns=["Line", "Station", "Parts", "OK", "REVIEW", "NG", "Errors", "Defect rate"],
    )


def _choose_window() -> tuple[str, date]:
    """The sidebar choice: the last completed shift, or a date and a shift."""
    calendar = load_settings().shifts
    zone = plant_zone()
    mode = st.sidebar.radio("Shift", [LAST_COMPLETED, PICK], key="shift_mode")
    if mode == LAST_COMPLETED:
        window = shifts.last_completed_shift(calendar, zone, datetime.now(UTC))
        return window.shift.name, window.day
    day = st.sidebar.date_input("Date (plant)", value=datetime.now(UTC).astimezone(zone).date(), key="shift_date")
    name = st.sidebar.selectbox("Which shift", [s.name for s in calendar], key="shift_name",
                                format_func=lambda n: shifts.find_shift(calendar, n).label())
    return name, day


def render() -> None:
    """Draw the Shift report page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        zone = plant_zone()
        name, day = _choose_window()
        report = load_report(url, name, day, zone.key)
        window = report.window
        st.subheader(window.title)
        st.caption(f"{format_time(window.start)} to {format_time(window.end)} "
                   f"({(window.end - window.start).total_seconds() / 3600:g} h)")
        if not report.total:
            st.info("No inspections in this shift.")
            return
        columns = st.columns(5)
        for column, (label, value) in zip(columns, [
            ("Parts", format_count(report.total)), ("OK", format_count(report.ok)),
            ("REVIEW", format_count(report.review)), ("NG", format_count(report.ng)),
            ("Defect rate", format_percent(report.defect_rate)),
        ], strict=True):
            column.metric(label, value)
        worst = report.worst_station
        if worst is not None:
            st.warning(f"Worst station: **{worst['station']}** ({worst['line']}) at {format_percent(worst['rate'])} "
                       f"NG of {format_count(worst['decided'])} decided parts.")
        st.dataframe(station_table(report), hide_index=True)
        if report.top_classes:
            st.subheader("Top defect classes")
            classes = pd.DataFrame(report.top_classes, columns=["Defect class", "NG"])
            st.altair_chart(alt.Chart(classes).mark_bar().encode(
                x=alt.X("NG:Q", title="NG parts"), y=alt.Y("Defect class:N", sort="-x", title="Defect class"),
                tooltip=["Defect class:N", alt.Tooltip("NG:Q", format=",")]), width="stretch")
        stem = f"shift_{window.shift.name}_{window.day.isoformat()}"
        left, right = st.columns(2)
        left.download_button("Download CSV", shifts.report_csv(report), file_name=f"{stem}.csv", mime="text/csv",
                             key="shift_csv")
        right.download_button("Download PDF", shifts.report_pdf(report, zone), file_name=f"{stem}.pdf",
                              mime="application/pdf", key="shift_pdf")
    except StorageError as exc:
        logger.error("shift report cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
