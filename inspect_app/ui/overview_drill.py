"""The Overview's click-through: a defect-rate point or a Pareto bar (clicked, or picked in its selectbox) lists the
NG parts behind it, with thumbnails; the same parts view draws the latest NG parts.

The charts carry Vega-Lite point selections (``BUCKET_PICK``, ``CLASS_PICK``); their callbacks copy the clicked value
into the pickers, so a click and a pick are one path and the pickers survive a rerun.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from inspect_app.records import Inspection
from inspect_app.storage import detail_queries, queries
from inspect_app.ui.common import (
    CACHE_TTL_S,
    database,
    format_number,
    format_time,
    render_picture,
    time_title,
)

__all__ = [
    "BUCKET_PICK",
    "CLASS_PICK",
    "DRILL_BUCKET_KEY",
    "DRILL_CLASS_KEY",
    "LATEST_NG_LIMIT",
    "NOTHING_PICKED",
    "THUMBNAILS",
    "latest_ng_table",
    "load_latest_ng",
    "load_parts_behind",
    "pick_from_chart",
    "picked",
    "render_drill_down",
    "render_latest_ng",
    "render_parts",
]

LATEST_NG_LIMIT = 20
# Thumbnails drawn above a parts table (each one is a file read through ``ui.files``).
THUMBNAILS = 8
THUMBNAIL_WIDTH = 140
# The chart selections (Vega-Lite point parameters) and the two pickers they fill in.
BUCKET_PICK, CLASS_PICK = "bucket_pick", "class_pick"
DRILL_BUCKET_KEY, DRILL_CLASS_KEY = "drill_bucket", "drill_class"
NOTHING_PICKED = "—"


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_parts_behind(url: str, since: datetime | None, until: datetime | None, station: str | None,
                      line: str | None, defect_class: str | None) -> list[Inspection]:
    """The NG parts behind one bucket and/or one defect class, newest first (a page of them)."""
    return detail_queries.parts_behind(database(url), since=since, until=until, station=station, line=line,
                                       defect_class=defect_class)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_latest_ng(url: str, since: datetime | None, until: datetime | None, station: str | None) -> list[Inspection]:
    """The latest NG inspections, newest first (before ``until`` when the window ends in the past)."""
    if until is None:
        return queries.latest_ng(database(url), limit=LATEST_NG_LIMIT, station=station, since=since)
    return load_parts_behind(url, since, until, station, None, None)[:LATEST_NG_LIMIT]


def latest_ng_table(rows: list[Inspection]) -> pd.DataFrame:
    """NG parts as shown: plant times, scores with three decimals, blanks for what was not recorded."""
    return pd.DataFrame(
        [
            {
                time_title(): format_time(row.created_at),
                "Line": row.line or "",
                "Station": row.station or "",
                "Defect class": row.defect_class or "",
                "Score": format_number(row.score, 3),
                "Model": row.model_version or "",
                "Image": row.image_path or "",
            }
            for row in rows
        ],
        columns=[time_title(), "Line", "Station", "Defect class", "Score", "Model", "Image"],
    )


def render_parts(rows: list[Inspection]) -> None:
    """Thumbnails of the first parts (served only through ``ui.files``), then the table of all of them."""
    shown = rows[:THUMBNAILS]
    for column, row in zip(st.columns(len(shown)), shown, strict=True):
        with column:
            caption = f"{row.station} · {row.defect_class or 'NG'} · {format_time(row.created_at)}"
            render_picture([("image", row.image_path), ("heatmap", row.heatmap_path)], caption=caption,
                           width=THUMBNAIL_WIDTH)
    st.dataframe(latest_ng_table(rows), hide_index=True, width="stretch")


def render_latest_ng(rows: list[Inspection]) -> None:
    """Thumbnails of the newest NG parts (served only through ``ui.files``), then the table of the latest ones."""
    st.subheader("Latest NG parts")
    if not rows:
        st.caption("No NG parts in this period.")
        return
    render_parts(rows)


def picked(state: Any, param: str, field: str) -> str | None:
    """The value of ``field`` a point selection ``param`` holds in a chart's selection state, or ``None``."""
    try:
        chosen = state["selection"][param]
    except (KeyError, TypeError):
        return None
    if isinstance(chosen, list) and chosen and isinstance(chosen[0], dict) and chosen[0].get(field) is not None:
        return str(chosen[0][field])
    return None


def pick_from_chart(chart_key: str, param: str, field: str, picker_key: str) -> None:
    """Chart callback: put the clicked point's value into its picker (cleared by a click on empty space)."""
    value = picked(st.session_state.get(chart_key), param, field)
    st.session_state[picker_key] = NOTHING_PICKED if value is None else value


def render_drill_down(url: str, buckets: pd.DataFrame, bucket_label: str, classes: list[str], station: str | None,
                      line: str | None, since: datetime | None, until: datetime | None = None) -> None:
    """Two pickers (filled by clicking a defect-rate point or a Pareto bar) and the NG parts behind them.

    ``buckets`` is the p-chart frame (``overview.p_chart_frame``, whose ``From`` / ``Until`` bound the parts read);
    ``bucket_label`` names its bucket ("Hour").
    """
    st.subheader("Parts behind a chart point")
    labels = list(reversed(buckets[time_title()])) if not buckets.empty else []
    # A picked value the new period or bucket no longer has is dropped rather than failing the widget.
    for key, options in ((DRILL_BUCKET_KEY, labels), (DRILL_CLASS_KEY, classes)):
        if st.session_state.get(key, NOTHING_PICKED) not in (NOTHING_PICKED, *options):
            st.session_state[key] = NOTHING_PICKED
    left, right = st.columns(2)
    chosen_bucket = left.selectbox(f"{bucket_label} (defect-rate point)", [NOTHING_PICKED, *labels],
                                   key=DRILL_BUCKET_KEY)
    chosen_class = right.selectbox("Defect class (Pareto bar)", [NOTHING_PICKED, *classes], key=DRILL_CLASS_KEY)
    if chosen_bucket == NOTHING_PICKED and chosen_class == NOTHING_PICKED:
        st.caption("Click a point of the defect-rate chart or a Pareto bar (or pick one here) to list its NG parts.")
        return
    start, end = since, until
    if chosen_bucket != NOTHING_PICKED:
        row = buckets[buckets[time_title()] == chosen_bucket].iloc[0]
        start, end = row["From"].to_pydatetime(), row["Until"].to_pydatetime()
    defect_class = None if chosen_class == NOTHING_PICKED else chosen_class
    rows = load_parts_behind(url, start, end, station, line, defect_class)
    named = (chosen_bucket if chosen_bucket != NOTHING_PICKED else "", defect_class or "", station or "", line or "")
    what = " · ".join(v for v in named if v)
    if not rows:
        st.caption(f"No NG parts behind {what}.")
        return
    more = " (the newest shown)" if len(rows) >= detail_queries.PARTS_LIMIT else ""
    st.caption(f"{len(rows)} NG part(s) behind {what}{more}.")
    render_parts(rows)
