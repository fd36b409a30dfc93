"""Overview page: KPIs, defect rate over time (hour / shift / day), p-chart, Pareto, station comparison, latest NG;
the parts behind a clicked defect-rate point or Pareto bar are ``ui.overview_drill``.

Every number comes from ``storage.queries`` / ``storage.dashboard_queries``, which read the hourly rollups, so the
page stays fast over millions of inspections.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd
import streamlit as st

from inspect_app.app import shifts
from inspect_app.config import load_settings
from inspect_app.config.plant import Shift
from inspect_app.errors import StorageError
from inspect_app.records import InspectionSummary
from inspect_app.storage import dashboard_queries, queries
from inspect_app.ui.alarms import render_last_alarm
from inspect_app.ui.common import (
    CACHE_TTL_S,
    bucket_key,
    database,
    database_url,
    format_count,
    format_percent,
    format_time,
    load_lines,
    load_stations,
    plant_wall,
    plant_zone,
    render_filters,
    require_viewing,
    time_title,
)
from inspect_app.ui.maintenance import render_maintenance
from inspect_app.ui.overview_drill import (
    BUCKET_PICK,
    CLASS_PICK,
    DRILL_BUCKET_KEY,
    DRILL_CLASS_KEY,
    load_latest_ng,
    pick_from_chart,
    render_drill_down,
    render_latest_ng,
)
from inspect_app.ui.overview_kiosk import kiosk_requested, render_kiosk
from inspect_app.ui.overview_period import (
    chart_until,
    choose_span,
    kpi_deltas,
    render_date_picker,
    render_refresh_choice,
)

logger = logging.getLogger(__name__)

PAGE_TITLE = "Inspection overview"
BUCKET_LABELS = {"hour": "Hour", "shift": "Shift", "day": "Day"}
# Hours are UTC hours from the rollups; shifts and days are the plant's (``app.shifts.plant_buckets``).
HOUR = timedelta(hours=1)
BUCKET_CHOICES_KEY = "bucket_choices"
LINE_TOTAL = "(whole line)"
EMPTY_DATABASE_MESSAGE = (
    "No inspections recorded yet. Run `inspect-app inspect` on an image folder or a camera to fill this dashboard."
)
EMPTY_PERIOD_MESSAGE = "No inspections in the selected period and station. Widen the period in the sidebar."
OUT_OF_CONTROL_COLOR = "#d62728"
# Chart keys: their selections fill the click-through pickers (``ui.overview_drill``).
P_CHART_KEY, PARETO_KEY = "p_chart", "pareto"


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
def load_summary(url: str, since: datetime | None, until: datetime | None, station: str | None,
                 line: str | None) -> InspectionSummary:
    """KPI counts for the filters."""
    return queries.summary(database(url), since=since, until=until, station=station, line=line)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_p_chart(url: str, bucket: str, since: datetime | None, until: datetime, station: str | None,
                 line: str | None, zone_key: str, calendar: tuple[Shift, ...]) -> dict:
    """Defect rate per bucket with p-chart control limits: UTC hours, or plant days / shifts of ``calendar`` in zone
    ``zone_key`` (summed from the hourly rollups, exact at edges off the hour)."""
    db = database(url)
    if bucket == "hour":
        return queries.p_chart(db, bucket="hour", since=since, until=until, station=station, line=line)
    start = since if since is not None else queries.first_hour(db)
    if start is None:
        return queries.p_chart_of([])
    windows = shifts.plant_buckets(bucket, start, until, ZoneInfo(zone_key), calendar)
    return queries.p_chart_of(queries.rates_in_windows(db, windows, station=station, line=line))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_pareto(url: str, since: datetime | None, until: datetime | None, station: str | None,
                line: str | None) -> pd.DataFrame:
    """Pareto rows: NG per defect class with cumulative share."""
    rows = queries.pareto(database(url), since=since, until=until, station=station, line=line)
    return pd.DataFrame(
        {
            "Defect class": [r["defect_class"] for r in rows],
            "NG": [r["ng"] for r in rows],
            "Cumulative %": [r["cumulative"] * 100 for r in rows],
        }
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_station_comparison(url: str, since: datetime | None, until: datetime | None,
                            line: str | None) -> list[dict]:
    """One row per line and station: inspected, decided, NG, defect rate (worst first)."""
    return dashboard_queries.station_comparison(database(url), since=since, until=until, line=line)


def station_table(rows: list[dict]) -> pd.DataFrame:
    """The stations table as shown: line, station, formatted counts and defect rate, worst first."""
    return pd.DataFrame(
        [{"Line": r["line"], "Station": r["station"], "Inspected": format_count(r["total"]),
          "NG": format_count(r["ng"]), "Defect rate": format_percent(r["rate"])} for r in rows],
        columns=["Line", "Station", "Inspected", "NG", "Defect rate"],
    )


def heat_frame(rows: list[dict]) -> pd.DataFrame:
    """Line × station cells (plus one whole-line cell per line) with the defect rate in % and its label."""
    cells = [{"Line": r["line"], "Station": r["station"], "decided": r["decided"], "ng": r["ng"],
              "total": r["total"]} for r in rows]
    for line in sorted({r["line"] for r in rows}):
        mine = [r for r in rows if r["line"] == line]
        cells.append({"Line": line, "Station": LINE_TOTAL, "decided": sum(r["decided"] for r in mine),
                      "ng": sum(r["ng"] for r in mine), "total": sum(r["total"] for r in mine)})
    frame = pd.DataFrame(cells, columns=["Line", "Station", "decided", "ng", "total"])
    rate = [ng / decided if decided else 0.0 for ng, decided in zip(frame["ng"], frame["decided"], strict=True)]
    frame["Defect rate %"] = [round(r * 100, 1) for r in rate]
    frame["Label"] = [format_percent(r) for r in rate]
    frame["Inspected"] = [format_count(t) for t in frame["total"]]
    frame["NG"] = [format_count(n) for n in frame["ng"]]
    return frame


# --- charts ---------------------------------------------------------------------------------------------------------


def bucket_label(start: datetime, bucket: str) -> str:
    """How a bucket is named in tooltips and the parts picker: its plant date for days, else its start time."""
    if bucket == "day":
        return f"{start.astimezone(plant_zone()):%Y-%m-%d} {plant_zone().key}"
    return format_time(start)


def p_chart_frame(chart: dict, bucket: str) -> pd.DataFrame:
    """The p-chart's buckets as a frame: ``From`` / ``Until`` (aware UTC, what the parts behind a point are read
    with), the same on the chart's scale (``Start``, ``End``, ``Middle``), defect rate %, limits %, n, the
    out-of-control flag and the bucket's label for tooltips. Points without an ``end`` span one hour."""
    points = chart["points"]
    ends = [p.get("end", p["bucket"] + HOUR) for p in points]
    return pd.DataFrame(
        {
            "From": [p["bucket"] for p in points],
            "Until": ends,
            # Plant wall-clock times on the charts' UTC scale (see ``common.plant_wall``).
            "Start": [plant_wall(p["bucket"]) for p in points],
            "End": [plant_wall(end) for end in ends],
            "Middle": [plant_wall(p["bucket"] + (end - p["bucket"]) / 2) for p, end in zip(points, ends, strict=True)],
            time_title(): [bucket_label(p["bucket"], bucket) for p in points],
            "Defect rate %": [round(p["p"] * 100, 2) for p in points],
            "UCL %": [round(p["ucl"] * 100, 2) for p in points],
            "LCL %": [round(p["lcl"] * 100, 2) for p in points],
            "Inspected": [format_count(p["n"]) for p in points],
            "NG": [format_count(p["ng"]) for p in points],
            "Out of control": [p["out_of_control"] for p in points],
        }
    )


def time_axis(field: str, bucket: str = "hour") -> alt.X:
    """A UTC time axis titled with the time zone (Vega-Lite would otherwise draw the browser's local time), with
    24-hour labels (dates alone for day buckets)."""
    label = "%Y-%m-%d" if bucket == "day" else "%m-%d %H:%M"
    return alt.X(f"{field}:T", title=time_title(), scale=alt.Scale(type="utc"), axis=alt.Axis(format=label))


def render_kpis(summary: InspectionSummary, deltas: dict[str, tuple[str, str]] | None = None) -> None:
    """One metric per KPI, side by side, with its change against the previous period where ``deltas`` has one."""
    values = kpi_values(summary)
    deltas = deltas or {}
    for column, (label, value) in zip(st.columns(len(values)), values, strict=True):
        delta, color = deltas.get(label, (None, "normal"))
        column.metric(label, value, delta=delta, delta_color=color)  # type: ignore[arg-type]


def render_p_chart(chart: dict, bucket: str) -> None:
    """Defect rate per bucket with the centre line, 3-sigma limits drawn as steps (one level per bucket, since each
    bucket's limits depend on its own n) and out-of-control points in red."""
    st.subheader(f"Defect rate per {bucket} (p-chart)")
    frame = p_chart_frame(chart, bucket)
    if frame.empty:
        st.caption("No decided parts in this period.")
        return
    center = chart["center"] * 100
    tooltip = [time_title(), "Defect rate %:Q", "NG", "Inspected", "UCL %:Q", "LCL %:Q"]
    base = alt.Chart(frame)
    limits = [
        base.mark_rule(strokeDash=[4, 3], color="#888").encode(x=time_axis("Start", bucket), x2="End:T", y=f"{name}:Q",
                                                                tooltip=tooltip)
        for name in ("UCL %", "LCL %")
    ]
    rate = base.mark_line().encode(x=time_axis("Middle", bucket), y=alt.Y("Defect rate %:Q", title="Defect rate %"))
    # The points carry the click: one point selection on the bucket's label, which fills the parts picker below.
    pick = alt.selection_point(name=BUCKET_PICK, fields=[time_title()], on="click", clear="dblclick")
    points = base.mark_point(filled=True, size=60).encode(
        x=time_axis("Middle", bucket), y="Defect rate %:Q", tooltip=tooltip,
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.5)),
    ).add_params(pick)
    flagged = base.transform_filter(alt.datum["Out of control"]).mark_point(
        size=120, filled=True, color=OUT_OF_CONTROL_COLOR
    ).encode(x=time_axis("Middle", bucket), y="Defect rate %:Q", tooltip=tooltip)
    centre = alt.Chart(pd.DataFrame({"c": [center]})).mark_rule(color="#2ca02c").encode(y="c:Q")
    st.altair_chart(alt.layer(*limits, rate, flagged, points, centre), width="stretch", key=P_CHART_KEY,
                    on_select=partial(pick_from_chart, P_CHART_KEY, BUCKET_PICK, time_title(), DRILL_BUCKET_KEY),
                    selection_mode=BUCKET_PICK)
    out = int(frame["Out of control"].sum())
    st.caption(
        f"Centre line p̄ = {center:.1f} % (green); dashed: 3σ limits per {bucket}; times in {plant_zone().key}; "
        + (f"**{out} point(s) out of control** (red)." if out else "all points within limits.")
        + " Click a point for its parts."
    )


def render_pareto(frame: pd.DataFrame) -> None:
    """Pareto of defect classes: bars in descending order with the cumulative share line."""
    st.subheader("Pareto of defect classes")
    if frame.empty:
        st.caption("No NG parts in this period.")
        return
    order = list(frame["Defect class"])
    base = alt.Chart(frame).encode(x=alt.X("Defect class:N", sort=order, title="Defect class"))
    tooltip = ["Defect class", alt.Tooltip("NG:Q", format=","), alt.Tooltip("Cumulative %:Q", format=".1f")]
    pick = alt.selection_point(name=CLASS_PICK, fields=["Defect class"], on="click", clear="dblclick")
    bars = base.mark_bar().encode(
        y=alt.Y("NG:Q", title="NG parts"), tooltip=tooltip,
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.5)),
    ).add_params(pick)
    line = base.mark_line(point=True, color="#ff7f0e").encode(
        y=alt.Y("Cumulative %:Q", title="Cumulative %", scale=alt.Scale(domain=[0, 100])), tooltip=tooltip
    )
    st.altair_chart(alt.layer(bars, line).resolve_scale(y="independent"), width="stretch", key=PARETO_KEY,
                    on_select=partial(pick_from_chart, PARETO_KEY, CLASS_PICK, "Defect class", DRILL_CLASS_KEY),
                    selection_mode=CLASS_PICK)
    st.caption("Click a bar for its parts.")


def render_heat(rows: list[dict]) -> None:
    """Defect rate per line (rows) and station (columns), darker = worse, with each line's total in the last column."""
    st.subheader("Defect rate by line and station")
    if not rows:
        st.caption("No inspections in this period.")
        return
    frame = heat_frame(rows)
    stations = [*sorted({s for s in frame["Station"] if s != LINE_TOTAL}), LINE_TOTAL]
    base = alt.Chart(frame).encode(
        x=alt.X("Station:N", sort=stations, title="Station", axis=alt.Axis(labelAngle=-30, orient="top")),
        y=alt.Y("Line:N", title="Line"),
        tooltip=["Line", "Station", alt.Tooltip("Label:N", title="Defect rate"), "NG", "Inspected"],
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("Defect rate %:Q", scale=alt.Scale(scheme="reds"), title="Defect rate %")
    )
    labels = base.mark_text(fontSize=12).encode(
        text="Label:N",
        color=alt.condition(alt.datum["Defect rate %"] > frame["Defect rate %"].max() / 2, alt.value("white"),
                            alt.value("black")),
    )
    # A fixed height per line: the rotated station labels above would otherwise squeeze the cells to slivers.
    st.altair_chart((cells + labels).properties(height=alt.Step(40)), width="stretch")


def render_station_comparison(rows: list[dict]) -> None:
    """Stations side by side with their line, worst defect rate first."""
    st.subheader("Stations compared")
    if not rows:
        st.caption("No inspections in this period.")
        return
    st.dataframe(station_table(rows), hide_index=True, width="stretch")


def render() -> None:
    """Draw the Overview page (the wall-screen figures with ``?kiosk=1``), then the maintenance (purge) expander."""
    kiosk = kiosk_requested()
    if not kiosk:
        st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        if kiosk:
            render_kiosk(url)
            return
        render_last_alarm(url)
        render_figures(url)
        # Below the figures and reached even when the period is empty: old data is what a purge is for.
        render_maintenance(url)
    except StorageError as exc:
        # The message already names the database with its password masked.
        logger.error("dashboard cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")


def remember_bucket(period: str) -> None:
    """Keep the bucket just picked for ``period`` (a widget callback: it runs even if the period changes too)."""
    st.session_state.setdefault(BUCKET_CHOICES_KEY, {})[period] = st.session_state[bucket_key(period)]


def render_figures(url: str) -> None:
    """The sidebar filters, then the figures for them (redrawn on their own while auto-refresh is on)."""
    stations = load_stations(url)
    if not stations:
        st.info(EMPTY_DATABASE_MESSAGE)
        return
    station, line, period = render_filters(stations, load_lines(url))
    dates = render_date_picker()
    every = render_refresh_choice()
    # Sidebar widgets stay outside the fragment (a fragment may not draw into the sidebar).
    st.fragment(render_body, run_every=every)(url, station, line, period, dates)


def render_body(url: str, station: str | None, line: str | None, period: str,
                dates: tuple[date, ...] | list[date] | date | None) -> None:
    """KPIs with their change, charts and tables for the window (or a hint when there is nothing to show)."""
    now = datetime.now(UTC)
    span = choose_span(period, dates, now)
    since, until = span.since, span.until
    summary = load_summary(url, since, until, station, line)
    previous = load_summary(url, *span.previous, station, line) if span.previous else None
    render_kpis(summary, kpi_deltas(summary, previous, span.previous_label))
    if previous is not None and previous.total == 0:
        st.caption(f"No inspections in the {span.previous_label} to compare with.")
    if summary.total == 0:
        st.info(EMPTY_PERIOD_MESSAGE)
        return
    # One widget per period: a bucket picked for one period does not follow the user to the next one (30 days of
    # hourly points), and every period starts on its own default (hour for 24 h, day for 30 days and all time).
    # Streamlit forgets a widget that was not drawn in a run, so the choice per period is kept beside it.
    choices = st.session_state.setdefault(BUCKET_CHOICES_KEY, {})
    bucket = st.radio(
        "Group defect rate by", list(BUCKET_LABELS),
        index=list(BUCKET_LABELS).index(choices.get(span.period, span.default_bucket)),
        format_func=BUCKET_LABELS.get, horizontal=True, key=bucket_key(span.period), on_change=remember_bucket,
        args=(span.period,),
    )
    chart = load_p_chart(url, bucket, since, until or chart_until(now), station, line, plant_zone().key,
                         load_settings().shifts)
    pareto = load_pareto(url, since, until, station, line)
    left, right = st.columns(2)
    with left:
        render_p_chart(chart, bucket)
    with right:
        render_pareto(pareto)
    render_drill_down(url, p_chart_frame(chart, bucket), BUCKET_LABELS[bucket], list(pareto["Defect class"]),
                      station, line, since, until)
    comparison = load_station_comparison(url, since, until, line)
    render_heat(comparison)
    render_station_comparison(comparison)
    render_latest_ng(load_latest_ng(url, since, until, station))
