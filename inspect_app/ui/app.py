"""Streamlit dashboard, "Overview" page: KPIs, defect rate over time, NG per defect class, latest NG parts.

Run with ``streamlit run inspect_app/ui/app.py``. The database comes from ``load_settings().resolved_database_url``
(``INSPECT_DATABASE_URL``, else a SQLite file under ``INSPECT_HOME``). The page reads through ``inspect_app.storage``
only, so it never loads torch.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import streamlit as st

from inspect_app.config import load_settings
from inspect_app.errors import StorageError
from inspect_app.records import InspectionSummary
from inspect_app.storage import Database, queries
from inspect_app.storage.live_stats import read_pipeline_stats, stats_rows

logger = logging.getLogger(__name__)

PAGE_TITLE = "Inspection overview"
ALL_STATIONS = "All stations"
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
LATEST_NG_LIMIT = 20
CACHE_TTL_S = 30
EMPTY_DATABASE_MESSAGE = (
    "No inspections recorded yet. Run `inspect-app inspect` on an image folder or a camera to fill this dashboard."
)
EMPTY_PERIOD_MESSAGE = "No inspections in the selected period and station. Widen the period in the sidebar."


def database_url() -> str:
    """The database URL in force for this process (environment or settings)."""
    return load_settings().resolved_database_url


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


def station_filter(choice: str) -> str | None:
    """Sidebar station choice → query filter (``None`` for all stations)."""
    return None if choice == ALL_STATIONS else choice


# --- cached reads: keyed by plain values (the URL string), never by engine objects ---------------------------------


@st.cache_resource(show_spinner=False)
def _database(url: str) -> Database:
    """One open database per URL for the whole server; migrates a fresh database so an empty one reads cleanly."""
    return Database.open(url, migrate=True)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_stations(url: str) -> list[str]:
    """Station names present in the database."""
    return queries.stations(_database(url))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_summary(url: str, since: datetime | None, station: str | None) -> InspectionSummary:
    """KPI counts for the filters."""
    return queries.summary(_database(url), since=since, station=station)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_defect_rate(url: str, bucket: str, since: datetime | None, station: str | None) -> pd.DataFrame:
    """Defect rate per time bucket as a chart-ready frame."""
    rows = queries.defect_rate_over_time(_database(url), bucket=bucket, since=since, station=station)
    return pd.DataFrame(
        {
            "Time (UTC)": [row["bucket"] for row in rows],
            "Defect rate %": [row["rate"] * 100 for row in rows],
            "NG": [row["ng"] for row in rows],
            "Inspected": [row["total"] for row in rows],
        }
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_defect_classes(url: str, since: datetime | None, station: str | None) -> pd.DataFrame:
    """NG count per defect class, most frequent first."""
    counts = queries.defect_class_counts(_database(url), since=since, station=station)
    return pd.DataFrame(counts, columns=["Defect class", "NG"])


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_latest_ng(url: str, since: datetime | None, station: str | None) -> pd.DataFrame:
    """The latest NG inspections as a display table."""
    rows = queries.latest_ng(_database(url), limit=LATEST_NG_LIMIT, station=station, since=since)
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


# --- rendering ----------------------------------------------------------------------------------------------------


def render_sidebar(stations: list[str]) -> tuple[str | None, str]:
    """Draw the filters; return (station filter, period label)."""
    st.sidebar.header("Filters")
    station = st.sidebar.selectbox("Station", [ALL_STATIONS, *stations], key="station")
    period = st.sidebar.selectbox("Period", list(PERIODS), index=list(PERIODS).index(DEFAULT_PERIOD), key="period")
    return station_filter(station), period


def render_kpis(summary: InspectionSummary) -> None:
    """One metric per KPI, side by side."""
    values = kpi_values(summary)
    for column, (label, value) in zip(st.columns(len(values)), values, strict=True):
        column.metric(label, value)


def render_defect_rate(frame: pd.DataFrame, bucket: str) -> None:
    """Defect rate over time; bars when there are too few buckets for a line to show."""
    st.subheader(f"Defect rate per {bucket}")
    if len(frame) < 3:
        st.bar_chart(frame, x="Time (UTC)", y="Defect rate %")
    else:
        st.line_chart(frame, x="Time (UTC)", y="Defect rate %")


def render_defect_classes(frame: pd.DataFrame) -> None:
    """NG count per defect class, sorted descending (Pareto order)."""
    st.subheader("NG per defect class")
    if frame.empty:
        st.caption("No NG parts in this period.")
        return
    st.bar_chart(frame, x="Defect class", y="NG", sort="-NG")


def render_latest_ng(frame: pd.DataFrame) -> None:
    """Table of the most recent NG parts."""
    st.subheader("Latest NG parts")
    if frame.empty:
        st.caption("No NG parts in this period.")
        return
    st.dataframe(frame, hide_index=True)


def render_live_pipelines(home: Path) -> None:
    """Live figures of the pipelines that write stats under ``<home>/stats`` (nothing when there are none)."""
    rows = stats_rows(read_pipeline_stats(home / "stats"))
    if rows:
        st.subheader("Pipelines")
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def main() -> None:
    """Draw the Overview page."""
    st.set_page_config(page_title=PAGE_TITLE, layout="wide")
    st.title(PAGE_TITLE)
    render_live_pipelines(load_settings().home)
    url = database_url()
    try:
        stations = load_stations(url)
        if not stations:
            st.info(EMPTY_DATABASE_MESSAGE)
            return
        station, period = render_sidebar(stations)
        since, bucket = period_window(period, datetime.now(UTC))
        summary = load_summary(url, since, station)
        render_kpis(summary)
        if summary.total == 0:
            st.info(EMPTY_PERIOD_MESSAGE)
            return
        left, right = st.columns(2)
        with left:
            render_defect_rate(load_defect_rate(url, bucket, since, station), bucket)
        with right:
            render_defect_classes(load_defect_classes(url, since, station))
        render_latest_ng(load_latest_ng(url, since, station))
    except StorageError as exc:
        # The message already names the database with its password masked.
        logger.error("dashboard cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")


if __name__ == "__main__":
    main()
