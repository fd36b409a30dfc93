"""Overview page: KPIs, defect rate over time (hour / shift / day), p-chart, Pareto, station comparison, latest NG.

Every number comes from ``storage.queries`` / ``storage.dashboard_queries``, which read the hourly rollups, so the
page stays fast over millions of inspections.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from inspect_app.errors import StorageError
from inspect_app.records import InspectionSummary
from inspect_app.storage import dashboard_queries, queries
from inspect_app.ui.common import (
    CACHE_TTL_S,
    database,
    database_url,
    load_lines,
    load_stations,
    period_window,
    render_filters,
    require_viewing,
)
from inspect_app.ui.maintenance import render_maintenance

logger = logging.getLogger(__name__)

PAGE_TITLE = "Inspection overview"
LATEST_NG_LIMIT = 20
BUCKET_LABELS = {"hour": "Hour", "shift": "Shift", "day": "Day"}
EMPTY_DATABASE_MESSAGE = (
    "No inspections recorded yet. Run `inspect-app inspect` on an image folder or a camera to fill this dashboard."
)
EMPTY_PERIOD_MESSAGE = "No inspections in the selected period and station. Widen the period in the sidebar."
OUT_OF_CONTROL_COLOR = "#d62728"


def kpi_values(summary: InspectionSummary) -> list[tuple[str, str]]:
    """KPI (label, formatted value) pairs in display order."""
    return [
        ("Inspected", f"{summary.total:,}"),
        ("OK", f"{summary.ok:,}"),
        ("Review", f"{summary.review:,}"),
        ("NG", f"{summary.ng:,}"),
        ("Errors", f"{summary.errors:,}"),
        ("Yield %", f"{summary.yield_rate * 100:.1f} %"),
        ("Defect rate %", f"{summary.defect_rate * 100:.1f} %"),
    ]


# --- cached reads ---------------------------------------------------------------------------------------------------


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_summary(url: str, since: datetime | None, station: str | None, line: str | None) -> InspectionSummary:
    """KPI counts for the filters."""
    return queries.summary(database(url), since=since, station=station, line=line)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_p_chart(url: str, bucket: str, since: datetime | None, station: str | None, line: str | None) -> dict:
    """Defect rate per bucket with p-chart control limits."""
    return queries.p_chart(database(url), bucket=bucket, since=since, station=station, line=line)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_pareto(url: str, since: datetime | None, station: str | None, line: str | None) -> pd.DataFrame:
    """Pareto rows: NG per defect class with cumulative share."""
    rows = queries.pareto(database(url), since=since, station=station, line=line)
    return pd.DataFrame(
        {
            "Defect class": [r["defect_class"] for r in rows],
            "NG": [r["ng"] for r in rows],
            "Cumulative %": [r["cumulative"] * 100 for r in rows],
        }
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_station_comparison(url: str, since: datetime | None, line: str | None) -> pd.DataFrame:
    """One row per station: inspected, NG, defect rate."""
    rows = dashboard_queries.station_comparison(database(url), since=since, line=line)
    return pd.DataFrame(
        {
            "Station": [r["station"] for r in rows],
            "Inspected": [r["total"] for r in rows],
            "NG": [r["ng"] for r in rows],
            "Defect rate %": [round(r["rate"] * 100, 2) for r in rows],
        }
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_latest_ng(url: str, since: datetime | None, station: str | None) -> pd.DataFrame:
    """The latest NG inspections as a display table."""
    rows = queries.latest_ng(database(url), limit=LATEST_NG_LIMIT, station=station, since=since)
    return pd.DataFrame(
        [
            {
                "Time (UTC)": row.created_at,
                "Station": row.station,
                "Line": row.line,
                "Defect class": row.defect_class,
                "Score": row.score,
                "Model": row.model_version,
                "Image": row.image_path,
            }
            for row in rows
        ],
        columns=["Time (UTC)", "Station", "Line", "Defect class", "Score", "Model", "Image"],
    )


# --- charts ---------------------------------------------------------------------------------------------------------


def p_chart_frame(chart: dict) -> pd.DataFrame:
    """The p-chart's points as a frame: time, defect rate %, limits %, n and out-of-control flag."""
    points = chart["points"]
    return pd.DataFrame(
        {
            "Time (UTC)": [p["bucket"] for p in points],
            "Defect rate %": [p["p"] * 100 for p in points],
            "UCL %": [p["ucl"] * 100 for p in points],
            "LCL %": [p["lcl"] * 100 for p in points],
            "Inspected": [p["n"] for p in points],
            "NG": [p["ng"] for p in points],
            "Out of control": [p["out_of_control"] for p in points],
        }
    )


def render_kpis(summary: InspectionSummary) -> None:
    """One metric per KPI, side by side."""
    values = kpi_values(summary)
    for column, (label, value) in zip(st.columns(len(values)), values, strict=True):
        column.metric(label, value)


def render_p_chart(chart: dict, bucket: str) -> None:
    """Defect rate per bucket with the centre line, 3-sigma limits and out-of-control points in red."""
    st.subheader(f"Defect rate per {bucket} (p-chart)")
    frame = p_chart_frame(chart)
    if frame.empty:
        st.caption("No decided parts in this period.")
        return
    center = chart["center"] * 100
    base = alt.Chart(frame).encode(x=alt.X("Time (UTC):T", title=None))
    limits = base.mark_line(strokeDash=[4, 3], color="#888").encode(y="UCL %:Q") + base.mark_line(
        strokeDash=[4, 3], color="#888"
    ).encode(y="LCL %:Q")
    rate = base.mark_line(point=True).encode(
        y=alt.Y("Defect rate %:Q", title="Defect rate %"),
        tooltip=["Time (UTC):T", "Defect rate %:Q", "NG:Q", "Inspected:Q", "UCL %:Q", "LCL %:Q"],
    )
    flagged = base.transform_filter(alt.datum["Out of control"]).mark_point(
        size=120, filled=True, color=OUT_OF_CONTROL_COLOR
    ).encode(y="Defect rate %:Q")
    centre = alt.Chart(pd.DataFrame({"c": [center]})).mark_rule(color="#2ca02c").encode(y="c:Q")
    st.altair_chart(limits + rate + flagged + centre, width="stretch")
    out = int(frame["Out of control"].sum())
    st.caption(
        f"Centre line p̄ = {center:.2f} % (green); dashed: 3σ limits; "
        + (f"**{out} point(s) out of control** (red)." if out else "all points within limits.")
    )


def render_pareto(frame: pd.DataFrame) -> None:
    """Pareto of defect classes: bars in descending order with the cumulative share line."""
    st.subheader("Pareto of defect classes")
    if frame.empty:
        st.caption("No NG parts in this period.")
        return
    order = list(frame["Defect class"])
    base = alt.Chart(frame).encode(x=alt.X("Defect class:N", sort=order, title=None))
    bars = base.mark_bar().encode(y=alt.Y("NG:Q"), tooltip=["Defect class", "NG", "Cumulative %"])
    line = base.mark_line(point=True, color="#ff7f0e").encode(
        y=alt.Y("Cumulative %:Q", scale=alt.Scale(domain=[0, 100]))
    )
    st.altair_chart(alt.layer(bars, line).resolve_scale(y="independent"), width="stretch")


def render_station_comparison(frame: pd.DataFrame) -> None:
    """Stations side by side, worst defect rate first."""
    st.subheader("Stations compared")
    if frame.empty:
        st.caption("No inspections in this period.")
        return
    st.dataframe(frame, hide_index=True, width="stretch")


def render_latest_ng(frame: pd.DataFrame) -> None:
    """Table of the most recent NG parts."""
    st.subheader("Latest NG parts")
    if frame.empty:
        st.caption("No NG parts in this period.")
        return
    st.dataframe(frame, hide_index=True)


def render() -> None:
    """Draw the Overview page, then the maintenance (purge) expander below the figures."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        render_figures(url)
        # Below the figures and reached even when the period is empty: old data is what a purge is for.
        render_maintenance(url)
    except StorageError as exc:
        # The message already names the database with its password masked.
        logger.error("dashboard cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")


def render_figures(url: str) -> None:
    """KPIs, charts and tables for the sidebar filters (or a hint when there is nothing to show)."""
    stations = load_stations(url)
    if not stations:
        st.info(EMPTY_DATABASE_MESSAGE)
        return
    station, line, period = render_filters(stations, load_lines(url))
    since, default_bucket = period_window(period, datetime.now(UTC))
    summary = load_summary(url, since, station, line)
    render_kpis(summary)
    if summary.total == 0:
        st.info(EMPTY_PERIOD_MESSAGE)
        return
    bucket = st.radio(
        "Group defect rate by", list(BUCKET_LABELS), index=list(BUCKET_LABELS).index(default_bucket),
        format_func=BUCKET_LABELS.get, horizontal=True, key="bucket",
    )
    left, right = st.columns(2)
    with left:
        render_p_chart(load_p_chart(url, bucket, since, station, line), bucket)
    with right:
        render_pareto(load_pareto(url, since, station, line))
    render_station_comparison(load_station_comparison(url, since, line))
    render_latest_ng(load_latest_ng(url, since, station))
