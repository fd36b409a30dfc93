"""Drift page: each day's defect-score distribution against the model's validation scores, flagged when shifted.

The index is the population stability index (PSI) over the rollups' score bins; days above
``dashboard_queries.DRIFT_PSI_LIMIT`` are flagged. The reference is the validation scores of the *good* parts,
because production is almost all good parts and the validation set is deliberately rich in defects.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from inspect_app.errors import StorageError
from inspect_app.records import ModelStatus
from inspect_app.storage import dashboard_queries
from inspect_app.ui.analysis import score_samples
from inspect_app.ui.common import (
    ALL_STATIONS,
    CACHE_TTL_S,
    database,
    database_url,
    load_stations,
    require_viewing,
    station_filter,
)
from inspect_app.ui.models import load_models

logger = logging.getLogger(__name__)

PAGE_TITLE = "Score drift"
DAYS = (7, 30, 90)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_drift(url: str, reference: tuple[float, ...], since: datetime, station: str | None) -> pd.DataFrame:
    """Per-day PSI against the reference scores."""
    rows = dashboard_queries.score_drift(database(url), reference, since=since, station=station)
    return pd.DataFrame(
        {
            "Day (UTC)": [r["bucket"] for r in rows],
            "Scored parts": [r["n"] for r in rows],
            "Mean score": [round(r["mean"], 4) for r in rows],
            "PSI": [round(r["psi"], 4) for r in rows],
            "Drifted": [r["drifted"] for r in rows],
        }
    )


def render() -> None:
    """Draw the Drift page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        models = load_models(url)
        usable = [m for m in models if score_samples(m.metrics) is not None]
        if not usable:
            st.info("No model version with validation scores yet; drift needs the scores a model card records.")
            return
        names = [m.name for m in usable]
        active = next((m.name for m in usable if m.status == ModelStatus.ACTIVE), names[0])
        name = st.selectbox("Reference model", names, index=names.index(active), key="drift_model")
        choice = st.sidebar.selectbox("Station", [ALL_STATIONS, *load_stations(url)], key="drift_station")
        days = st.sidebar.selectbox("Days", DAYS, index=1, key="drift_days")
        version = next(m for m in usable if m.name == name)
        good, _ = score_samples(version.metrics)  # type: ignore[misc]
        since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
        frame = load_drift(url, tuple(good), since, station_filter(choice))
        if frame.empty:
            st.info("No scored inspections in this period.")
            return
        drifted = int(frame["Drifted"].sum())
        if drifted:
            limit = dashboard_queries.DRIFT_PSI_LIMIT
            st.warning(f"{drifted} day(s) with a shifted score distribution (PSI > {limit}).")
        else:
            st.success("Score distribution in line with the model's validation scores on every day.")
        base = alt.Chart(frame).encode(x=alt.X("Day (UTC):T", title=None))
        psi = base.mark_line(point=True).encode(y="PSI:Q", tooltip=["Day (UTC):T", "PSI:Q", "Scored parts:Q"])
        flagged = base.transform_filter(alt.datum["Drifted"]).mark_point(size=120, filled=True, color="#d62728").encode(
            y="PSI:Q"
        )
        rule = alt.Chart(pd.DataFrame({"l": [dashboard_queries.DRIFT_PSI_LIMIT]})).mark_rule(strokeDash=[4, 3])
        st.altair_chart(psi + flagged + rule.encode(y="l:Q"), width="stretch")
        st.dataframe(frame, hide_index=True)
    except StorageError as exc:
        logger.error("drift page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
