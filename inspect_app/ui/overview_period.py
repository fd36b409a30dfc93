"""The Overview's time window: a sidebar period or a range of plant days picked beside it, the window of the same
length just before it (the headline figures show their change against it), and the auto-refresh choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import streamlit as st

from inspect_app.config import load_settings
from inspect_app.records import InspectionSummary
from inspect_app.ui.common import HOURLY_MAX_SPAN, date_window, period_window, plant_zone

__all__ = ["DATES_KEY", "DATES_PERIOD", "REFRESH_KEY", "Span", "chart_until", "choose_span", "kpi_deltas",
           "render_date_picker", "render_refresh_choice"]

DATES_KEY = "overview_dates"
REFRESH_KEY = "overview_refresh"
# The bucket choice of a picked date range is remembered under this name (the periods use their own labels).
DATES_PERIOD = "Picked dates"


@dataclass(frozen=True)
class Span:
    """The window the figures cover and the one they are compared with.

    Attributes:
        since, until: ``[since, until)`` aware UTC; ``None`` for no lower bound / up to now.
        period: the period label (``DATES_PERIOD`` for picked dates), which keys the bucket choice.
        default_bucket: ``hour`` up to ``HOURLY_MAX_SPAN``, else ``day``.
        previous: the window of the same length just before, or ``None`` (all time).
        previous_label: ``previous 7 days``.
    """

    since: datetime | None
    until: datetime | None
    period: str
    default_bucket: str
    previous: tuple[datetime, datetime] | None
    previous_label: str


def chart_until(now: datetime) -> datetime:
    """End of the charts' window: the end of ``now``'s minute (so that cached reads repeat within a minute and the
    newest parts are in)."""
    return now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)


def _days(count: int) -> str:
    return "day" if count == 1 else f"{count} days"


def choose_span(period: str, dates: tuple[date, ...] | list[date] | date | None, now: datetime) -> Span:
    """The window of the picked plant days (when any), else of ``period`` up to ``now``.

    Raises:
        ValueError: ``period`` is not one of ``common.PERIODS``.
    """
    since, until = date_window(dates)
    if since is not None and until is not None:
        picked = [dates] if isinstance(dates, date) else [d for d in dates or () if d is not None]
        count = (max(picked) - min(picked)).days + 1
        bucket = "hour" if until - since <= HOURLY_MAX_SPAN else "day"
        return Span(since, until, DATES_PERIOD, bucket, (since - (until - since), since), f"previous {_days(count)}")
    since, bucket = period_window(period, now)
    if since is None:
        return Span(None, None, period, bucket, None, "")
    length = now - since
    return Span(since, None, period, bucket, (since - length, since), period.replace("Last", "previous", 1))


def kpi_deltas(summary: InspectionSummary, previous: InspectionSummary | None,
               label: str) -> dict[str, tuple[str, str]]:
    """KPI label → (change against ``previous``, Streamlit delta colour); empty when there is nothing to compare.

    Rates change in percentage points (``+0.4 pp vs previous 7 days``); a higher defect rate is drawn red.
    """
    if previous is None or previous.total == 0:
        return {}
    suffix = f" vs {label}"

    def points(now: float, before: float) -> str:
        return f"{(now - before) * 100:+.1f} pp{suffix}"

    return {
        "Inspected": (f"{summary.total - previous.total:+,}{suffix}", "off"),
        "NG": (f"{summary.ng - previous.ng:+,}{suffix}", "inverse"),
        "Yield %": (points(summary.yield_rate, previous.yield_rate), "normal"),
        "Defect rate %": (points(summary.defect_rate, previous.defect_rate), "inverse"),
    }


def render_date_picker() -> tuple[date, ...] | list[date] | date | None:
    """The sidebar's range of plant days, used instead of the period when picked."""
    value = st.sidebar.date_input(f"Or dates ({plant_zone().key})", value=[], key=DATES_KEY,
                                  help="First and last plant day, both included; the period is then ignored.")
    return value  # type: ignore[return-value]


def render_refresh_choice() -> float | None:
    """The sidebar's auto-refresh toggle; the period in seconds when on (``INSPECT_DASHBOARD_REFRESH_S``), else
    ``None``. Not drawn when the setting is 0."""
    every = load_settings().dashboard_refresh_s
    if not every:
        return None
    on = st.sidebar.toggle(f"Auto-refresh every {every:g} s", value=False, key=REFRESH_KEY)
    return every if on else None
