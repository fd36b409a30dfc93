"""Live page: frames/s, latency and failed frames of the last minute, every pipeline's reported figures (from the
database, so any dashboard sees every station), latest frames and NG parts with heatmaps.

The figures redraw on their own every ``REFRESH_S`` seconds (a Streamlit fragment) while auto-refresh is on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from inspect_app.config.alarms import load_alarm_settings
from inspect_app.errors import StorageError
from inspect_app.records import Inspection
from inspect_app.storage import Repository, dashboard_queries
from inspect_app.storage.live_stats import list_pipeline_status, stats_rows
from inspect_app.ui.common import (
    ALL_STATIONS,
    database,
    database_url,
    format_count,
    format_number,
    format_time,
    load_stations,
    render_picture,
    require_viewing,
    station_filter,
    time_title,
)

logger = logging.getLogger(__name__)

PAGE_TITLE = "Live"
REFRESH_S = 5
LIVE_WINDOW = timedelta(minutes=1)
LATEST_FRAMES = 30
NG_GALLERY = 8
GALLERY_COLUMNS = 4


def live_metric_values(figures: dict) -> list[tuple[str, str]]:
    """(label, value) of the live figures in display order."""
    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.0f} ms"

    return [
        ("Frames/s", f"{figures['fps']:.2f}"),
        ("Frames (1 min)", f"{figures['frames']:,}"),
        ("NG (1 min)", f"{figures['ng']:,}"),
        ("Failed frames (1 min)", f"{figures['errors']:,}"),
        ("Latency mean", ms(figures["latency_mean_ms"])),
        ("Latency p95", ms(figures["latency_p95_ms"])),
    ]


def _frames_table(rows: list[Inspection]) -> pd.DataFrame:
    """Display table of the latest frames, times in the plant zone."""
    time_column = time_title()
    return pd.DataFrame(
        [
            {
                time_column: format_time(r.created_at), "Station": r.station, "Decision": r.decision.value,
                "Defect class": r.defect_class or "", "Score": format_number(r.score, 3),
                "Latency ms": format_number(r.latency_ms, 1), "Image": r.image_path or "", "Error": r.error or "",
            }
            for r in rows
        ],
        columns=[time_column, "Station", "Decision", "Defect class", "Score", "Latency ms", "Image", "Error"],
    )


def render_gallery(rows: list[Inspection]) -> None:
    """NG parts as a grid of heatmap overlays (or the part image when no overlay was written)."""
    st.subheader("Latest NG parts")
    if not rows:
        st.caption("No NG parts yet.")
        return
    columns = st.columns(GALLERY_COLUMNS)
    for index, row in enumerate(rows):
        with columns[index % GALLERY_COLUMNS]:
            caption = f"{row.station} · {row.defect_class or 'NG'} · {row.score or 0:.2f} · {row.created_at:%H:%M:%S}"
            render_picture((("heatmap", row.heatmap_path), ("image", row.image_path)), caption=caption,
                           width="stretch")


def render_live_pipelines(url: str, station: str | None) -> None:
    """Figures every pipeline reports into the database: state, host, frames/s, latency, queue depth, drops.

    A pipeline that has not reported for ``INSPECT_ALARM_PIPELINE_DOWN_MINUTES`` shows as ``silent``, the same
    limit after which ``inspect-app alarms check`` raises it as down.
    """
    rows = stats_rows(list_pipeline_status(database(url), station=station), datetime.now(UTC),
                      load_alarm_settings().quiet_after)
    if rows:
        st.subheader("Pipelines")
        frame = pd.DataFrame(rows)
        frame["Last seen"] = frame["Last seen"].map(format_time)
        for column in ("Frames/s", "Latency p50 ms", "Latency p95 ms", "Latency p99 ms"):
            frame[column] = frame[column].map(lambda value: format_number(value, 1))
        for column in ("Frames", "Queue", "Dropped", "Errors", "Gaps"):
            frame[column] = frame[column].map(format_count)
        st.dataframe(frame, hide_index=True)
    else:
        st.caption("No pipeline has reported live figures yet.")


def render_live(url: str, station: str | None) -> None:
    """The refreshing part of the page."""
    repository = Repository(database(url))
    figures = dashboard_queries.live_figures(database(url), window=LIVE_WINDOW, station=station)
    values = live_metric_values(figures)
    for column, (label, value) in zip(st.columns(len(values)), values, strict=True):
        column.metric(label, value)
    last = figures["last_at"]
    st.caption(
        f"Updated {datetime.now(UTC):%H:%M:%S} UTC; "
        + (f"last frame {last:%H:%M:%S} UTC." if last else "no frame in the last minute.")
    )
    render_live_pipelines(url, station)
    render_gallery(repository.list_inspections(limit=NG_GALLERY, decision="NG", station=station))
    st.subheader("Latest frames")
    st.dataframe(_frames_table(repository.list_inspections(limit=LATEST_FRAMES, station=station)), hide_index=True)


def render() -> None:
    """Draw the Live page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        stations = load_stations(url)
        choice = st.sidebar.selectbox("Station", [ALL_STATIONS, *stations], key="live_station")
        auto = st.sidebar.toggle("Auto-refresh", value=True, key="live_auto")

        # Reads bypass the cache: this page is about the last seconds.
        @st.fragment(run_every=REFRESH_S if auto else None)
        def live() -> None:
            render_live(url, station_filter(choice))

        live()
    except StorageError as exc:
        logger.error("live page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
