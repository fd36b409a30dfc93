"""Review page: the REVIEW band (paged and filtered) and a random audit sample of OK parts; a person confirms or
relabels each part, or ticks several and gives them one verdict.

Verdicts are stored through ``app.reviews.review_inspection`` (operator role or higher, one audit row per part)
and become training data: the Training page can hand them to the next fine-tuning run as a CSV manifest. The cards
themselves live in ``ui.review_cards``, the keyboard shortcuts in ``ui.review_shortcuts``.
"""

from __future__ import annotations

import logging
import math

import pandas as pd
import streamlit as st

from inspect_app.errors import StorageError
from inspect_app.records import GOOD_CLASS, ReviewItem
from inspect_app.storage import Repository, dashboard_queries, queries, review_paging, review_queries
from inspect_app.storage.review_paging import QueueKey
from inspect_app.storage.review_queries import ReviewFilters
from inspect_app.storage.tables import UNCLASSIFIED
from inspect_app.ui.common import (
    ALL_STATIONS,
    CACHE_TTL_S,
    database,
    database_url,
    date_window,
    load_stations,
    may,
    plant_zone,
    require_viewing,
    role_hint,
    station_filter,
)
from inspect_app.ui.review_cards import (
    MESSAGES_KEY,
    OTHER_CLASS,
    VIEWS,
    item_key,
    record_verdicts,
    render_card,
    selected_ids,
)
from inspect_app.ui.review_shortcuts import NEXT_PAGE_KEY, PREVIOUS_PAGE_KEY, legend, render_shortcuts

logger = logging.getLogger(__name__)

PAGE_TITLE = "Review"
PAGE_SIZES = (12, 24, 48)
PAGE_KEY = "review_page"
# (filters, page size) and, per page number shown, the queue key that page starts after (None: the newest part).
PAGE_KEYS_KEY = "review_page_keys"
AUDIT_SIZES = (5, 10, 20)
SOURCES = ("Review band", "Audit sample (OK parts)")
ALL_CLASSES = "All classes"
# Scores are normalised to [0, 1]; the full slider range means "no score filter".
SCORE_RANGE = (0.0, 1.0)
DEFAULT_OPACITY = 0.5

__all__ = ["PAGE_SIZES", "PAGE_TITLE", "SOURCES", "date_window", "render"]


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_waiting(url: str, station: str | None) -> int:
    """How many REVIEW parts wait for a verdict (one station or all)."""
    return review_queries.review_queue_size(database(url), station=station)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_after(url: str, filters: ReviewFilters, after: QueueKey | None, page_size: int) -> list[ReviewItem]:
    """One page of the waiting parts that match ``filters``: those after the key ``after``."""
    return review_paging.review_queue_after(database(url), filters, after, page_size)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_oldest(url: str, filters: ReviewFilters, count: int) -> list[ReviewItem]:
    """The last page: the ``count`` oldest waiting parts that match ``filters``."""
    return review_paging.review_queue_oldest(database(url), filters, count)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_start_key(
    url: str, filters: ReviewFilters, skip: int, matching: int, after: QueueKey | None
) -> QueueKey | None:
    """The key a page starts after, ``skip`` parts past ``after`` (a jump to a page not shown before)."""
    return review_paging.page_start_key(database(url), filters, skip, matching, after)


def load_page(url: str, filters: ReviewFilters, page: int, page_size: int, matching: int) -> list[ReviewItem]:
    """Page ``page`` by keyset: from the key the previous page ended on when this session showed it, else found
    from the nearest page it did show (or the queue's old end); remembers where this page ends for "Next".

    The keys kept are those of the current filters and page size; a verdict removes its part from the page it is
    on without moving the parts of any other page.
    """
    scope = (filters, page_size)
    marks = st.session_state.get(PAGE_KEYS_KEY)
    if not marks or marks[0] != scope:
        first_page: dict[int, QueueKey | None] = {1: None}
        marks = (scope, first_page)
    starts: dict[int, QueueKey | None] = marks[1]
    remaining = matching - (page - 1) * page_size
    if page in starts:
        items = load_after(url, filters, starts[page], page_size)
    elif 0 < remaining <= page_size:
        items = load_oldest(url, filters, remaining)  # the last page, read from the old end
    else:
        known = max(p for p in starts if p < page)
        starts[page] = load_start_key(url, filters, (page - known) * page_size, matching, starts[known])
        items = load_after(url, filters, starts[page], page_size)
    if items:
        # Later pages' keys may be stale after verdicts; the next one is known exactly now.
        starts = {p: key for p, key in starts.items() if p <= page}
        starts[page + 1] = review_paging.queue_key(items[-1])
    st.session_state[PAGE_KEYS_KEY] = (scope, starts)
    return items


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_matching(url: str, filters: ReviewFilters) -> int:
    """How many waiting parts match ``filters``."""
    return review_queries.review_queue_count(database(url), filters)


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
                "Part": f"#{r['inspection_id']}", "Time (UTC)": f"{r['at']:%Y-%m-%d %H:%M:%S}",
                "Reviewer": r["reviewer"], "Model said": r["model_decision"], "Model class": r["model_class"] or "",
                "Verdict": r["verdict"], "Defect class": r["defect_class"] or "",
                "Relabelled": "yes" if r["changed"] else "no", "Image": r["image_path"],
            }
            for r in rows
        ],
        columns=["Part", "Time (UTC)", "Reviewer", "Model said", "Model class", "Verdict", "Defect class",
                 "Relabelled", "Image"],
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


def render_filters(classes: list[str]) -> ReviewFilters:
    """Station, predicted class, score range and date range in the sidebar."""
    st.sidebar.header("Review filters")
    station = station_filter(
        st.sidebar.selectbox("Station", [ALL_STATIONS, *load_stations(database_url())], key="review_station"))
    choice = st.sidebar.selectbox("Predicted class", [ALL_CLASSES, *classes, UNCLASSIFIED], key="review_class")
    low, high = st.sidebar.slider("Score", *SCORE_RANGE, value=SCORE_RANGE, step=0.01, key="review_score")
    since, until = date_window(st.sidebar.date_input(
        f"Date range ({plant_zone().key})", value=(), key="review_dates"))  # type: ignore[arg-type]  # () = no range picked yet; stubs omit it
    return ReviewFilters(
        station=station, defect_class=None if choice == ALL_CLASSES else choice,
        min_score=None if low <= SCORE_RANGE[0] else low, max_score=None if high >= SCORE_RANGE[1] else high,
        since=since, until=until,
    )


def _turn(delta: int, pages: int) -> None:
    """Previous / next page callback."""
    st.session_state[PAGE_KEY] = min(max(1, int(st.session_state.get(PAGE_KEY, 1)) + delta), pages)


def render_paging(matching: int, waiting: int) -> tuple[int, int]:
    """Page size, page number and "n of N waiting"; returns (page, page size)."""
    size_col, prev_col, page_col, next_col = st.columns([2, 1, 2, 1], vertical_alignment="bottom")
    page_size = size_col.selectbox("Cards per page", PAGE_SIZES, key="review_page_size")
    pages = max(1, math.ceil(matching / page_size))
    # Verdicts and filters shrink the queue: a page past the end becomes the last page (before the widget exists).
    if int(st.session_state.get(PAGE_KEY, 1)) > pages:
        st.session_state[PAGE_KEY] = pages
    prev_col.button("← Previous", key=PREVIOUS_PAGE_KEY, on_click=_turn, args=(-1, pages))
    page = int(page_col.number_input("Page", min_value=1, max_value=pages, step=1, key=PAGE_KEY))
    next_col.button("Next →", key=NEXT_PAGE_KEY, on_click=_turn, args=(1, pages))
    first = (page - 1) * page_size + 1 if matching else 0
    last = min(page * page_size, matching)
    scope = "" if matching == waiting else f" that match the filters ({waiting:,} waiting in all)"
    st.caption(f"Cards {first:,}–{last:,} of {matching:,} waiting{scope} · page {page:,} of {pages:,}")
    return page, page_size


def _select(ids: list[int], ticked: bool) -> None:
    """Tick or untick every card on the page."""
    for inspection_id in ids:
        st.session_state[item_key(inspection_id, "select")] = ticked


def _on_batch(url: str, ids: list[int], verdict: str) -> None:
    """Batch button callback: one verdict for every ticked card on the page."""
    chosen = selected_ids(ids)
    if not chosen:
        st.session_state.setdefault(MESSAGES_KEY, []).append(("error", "Tick the cards for a batch verdict first."))
        return
    defect = st.session_state.get("review_batch_class") if verdict == "NG" else None
    record_verdicts(url, chosen, verdict, defect_class=defect)


def render_batch(url: str, ids: list[int], classes: list[str]) -> None:
    """Select all / none, and one verdict for every ticked card (each recorded and audited on its own)."""
    with st.container(border=True):
        cols = st.columns([2, 2, 3, 2, 2], vertical_alignment="bottom")
        cols[0].button("Select all on page", key="review_select_all", on_click=_select, args=(ids, True))
        cols[1].button("Clear selection", key="review_select_none", on_click=_select, args=(ids, False))
        cols[2].selectbox("Defect class for a batch NG", [c for c in classes if c != OTHER_CLASS],
                          key="review_batch_class")
        help_text = role_hint("review")
        cols[3].button("OK for selected", key="review_batch_ok", help=help_text, on_click=_on_batch,
                       args=(url, ids, "OK"))
        cols[4].button("NG for selected", key="review_batch_ng", help=help_text, on_click=_on_batch,
                       args=(url, ids, "NG"))
        st.caption(f"{len(selected_ids(ids))} of {len(ids)} cards on this page selected")


def _show_messages() -> None:
    """What the verdict callbacks left for this run."""
    for kind, text in st.session_state.pop(MESSAGES_KEY, []):
        (st.success if kind == "success" else st.error)(text)


def render() -> None:
    """Draw the Review page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        classes = load_defect_classes(url)
        filters = render_filters(classes)
        _show_messages()
        source_col, view_col, opacity_col = st.columns([3, 2, 2])
        source = source_col.radio("Parts to review", SOURCES, horizontal=True, key="review_source")
        view = view_col.radio("Pictures", VIEWS, horizontal=True, key="review_view")
        opacity = DEFAULT_OPACITY
        if view == VIEWS[1]:
            opacity = opacity_col.slider("Heatmap opacity", 0.0, 1.0, DEFAULT_OPACITY, step=0.05,
                                         key="review_opacity")
        waiting = load_waiting(url, filters.station)
        st.metric("Waiting for review", f"{waiting:,}")
        may_review = may("review")
        if not may_review:
            st.caption(f"Read-only: recording verdicts {role_hint('review')}.")
        if source == SOURCES[0]:
            matching = waiting if filters == ReviewFilters(station=filters.station) else load_matching(url, filters)
            page, page_size = render_paging(matching, waiting)
            items = load_page(url, filters, page, page_size, matching) if matching else []
            if not items:
                st.info("No part waits for review with these filters." if waiting
                        else "The review band is empty: every part got a clear OK or NG.")
        else:
            size = st.selectbox("Audit sample size", AUDIT_SIZES, index=0, key="audit_size")
            seed = st.session_state.setdefault("audit_seed", 0)
            if st.button("New sample", key="audit_reshuffle"):
                st.session_state["audit_seed"] = seed = seed + 1
            items = load_audit_sample(url, size, filters.station, seed)
            if not items:
                st.info("No unreviewed OK parts to audit.")
        ids = [item.inspection_id for item in items]
        if items:
            st.caption(legend())
            render_shortcuts(ids)
            if may_review:
                render_batch(url, ids, classes)
        for item in items:
            render_card(url, item, classes, view, opacity, may_review)
        st.subheader("Recent verdicts")
        recent = load_recent_reviews(url)
        if recent.empty:
            st.caption("No verdicts yet.")
        else:
            st.dataframe(recent, hide_index=True)
    except StorageError as exc:
        logger.error("review page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
