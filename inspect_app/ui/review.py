"""Review page: the REVIEW band and a random audit sample of OK parts; a person confirms or relabels each one.

Verdicts are stored through ``app.reviews.review_inspection`` (operator role or higher, audited) and become
training data: the Training page can hand them to the next fine-tuning run as a CSV manifest.
"""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from inspect_app.app import reviews
from inspect_app.errors import StorageError
from inspect_app.records import GOOD_CLASS, ReviewItem
from inspect_app.storage import Repository, dashboard_queries, queries
from inspect_app.ui.common import (
    ALL_STATIONS,
    CACHE_TTL_S,
    current_user,
    database,
    database_url,
    load_stations,
    may,
    render_picture,
    require_viewing,
    role_hint,
    run_control,
    station_filter,
)

logger = logging.getLogger(__name__)

PAGE_TITLE = "Review"
QUEUE_LIMIT = 12
# Pictures at a size that shows a defect without pushing the controls off the screen.
REVIEW_IMAGE_PX = 260
AUDIT_SIZES = (5, 10, 20)
SOURCES = ("Review band", "Audit sample (OK parts)")
OTHER_CLASS = "(other…)"


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_queue(url: str, station: str | None) -> tuple[int, list[ReviewItem]]:
    """Waiting REVIEW parts: total count and the newest ``QUEUE_LIMIT``."""
    db = database(url)
    return queries.review_queue_size(db, station=station), queries.review_queue(db, QUEUE_LIMIT, station=station)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_audit_sample(url: str, size: int, station: str | None, seed: int) -> list[ReviewItem]:
    """A seeded random sample of unreviewed OK parts."""
    return dashboard_queries.audit_sample(database(url), size, station=station, seed=seed)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_recent_reviews(url: str) -> pd.DataFrame:
    """The latest verdicts, with what the model had said."""
    rows = dashboard_queries.recent_reviews(database(url), limit=20)
    return pd.DataFrame(
        [
            {
                "Time (UTC)": r["at"], "Reviewer": r["reviewer"], "Model said": r["model_decision"],
                "Model class": r["model_class"], "Verdict": r["verdict"], "Defect class": r["defect_class"],
                "Relabelled": r["changed"], "Image": r["image_path"],
            }
            for r in rows
        ],
        columns=["Time (UTC)", "Reviewer", "Model said", "Model class", "Verdict", "Defect class", "Relabelled",
                 "Image"],
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_defect_classes(url: str) -> list[str]:
    """Defect classes a reviewer may pick: those of the registered models, then those seen in NG rows."""
    db = database(url)
    names: list[str] = []
    for version in Repository(db).list_model_versions():
        names += [c for c in version.classes if c != GOOD_CLASS and c not in names]
    names += [c for c, _ in queries.defect_class_counts(db) if c not in names]
    return names


def render_item(url: str, item: ReviewItem, classes: list[str], may_review: bool = True) -> None:
    """One part: picture, what the model said, and (for a user who may review) the confirm / relabel controls."""
    inspection = item.inspection
    with st.container(border=True):
        left, right = st.columns([1, 3])
        with left:
            render_picture((("heatmap", inspection.heatmap_path), ("image", inspection.image_path)),
                           width=REVIEW_IMAGE_PX)
        with right:
            score = "–" if inspection.score is None else f"{inspection.score:.3f}"
            st.markdown(
                f"**#{item.inspection_id}** · {inspection.station} · {inspection.created_at:%Y-%m-%d %H:%M:%S} UTC  \n"
                f"Model: **{inspection.decision.value}** {inspection.defect_class or ''} (score {score})  \n"
                f"`{inspection.image_path}`"
            )
            if not may_review:
                return
            key = f"item_{item.inspection_id}"
            options = [*classes, OTHER_CLASS]
            default = options.index(inspection.defect_class) if inspection.defect_class in options else 0
            chosen = st.selectbox("Defect class (for NG)", options, index=default, key=f"{key}_class")
            other = st.text_input("Other defect class", key=f"{key}_other") if chosen == OTHER_CLASS else ""
            comment = st.text_input("Comment", key=f"{key}_comment")
            ok_col, ng_col = st.columns(2)
            help_text = role_hint("review")
            if ok_col.button("Good part (OK)", key=f"{key}_ok", help=help_text):
                run_control(reviews.review_inspection, database(url), current_user(), item.inspection_id, "OK",
                            comment=comment, success=f"#{item.inspection_id} recorded as OK")
            if ng_col.button("Defective (NG)", key=f"{key}_ng", help=help_text):
                defect = other.strip() if chosen == OTHER_CLASS else chosen
                run_control(reviews.review_inspection, database(url), current_user(), item.inspection_id, "NG",
                            defect_class=defect, comment=comment,
                            success=f"#{item.inspection_id} recorded as NG {defect}")


def render() -> None:
    """Draw the Review page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        choice = st.sidebar.selectbox("Station", [ALL_STATIONS, *load_stations(url)], key="review_station")
        station = station_filter(choice)
        source = st.radio("Parts to review", SOURCES, horizontal=True, key="review_source")
        waiting, queue = load_queue(url, station)
        st.metric("Waiting for review", f"{waiting:,}")
        may_review = may("review")
        if not may_review:
            st.caption(f"Read-only: recording verdicts {role_hint('review')}.")
        classes = load_defect_classes(url)
        if source == SOURCES[0]:
            items = queue
            if not items:
                st.info("The review band is empty: every part got a clear OK or NG.")
        else:
            size = st.selectbox("Audit sample size", AUDIT_SIZES, index=0, key="audit_size")
            seed = st.session_state.setdefault("audit_seed", 0)
            if st.button("New sample", key="audit_reshuffle"):
                st.session_state["audit_seed"] = seed = seed + 1
            items = load_audit_sample(url, size, station, seed)
            if not items:
                st.info("No unreviewed OK parts to audit.")
        for item in items:
            render_item(url, item, classes, may_review)
        st.subheader("Recent verdicts")
        recent = load_recent_reviews(url)
        if recent.empty:
            st.caption("No verdicts yet.")
        else:
            st.dataframe(recent, hide_index=True)
    except StorageError as exc:
        logger.error("review page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
