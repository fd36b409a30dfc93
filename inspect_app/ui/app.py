"""Streamlit dashboard entry point: sign-in in the sidebar (required unless open viewing is on) and the pages
(Overview, Live, Alarms, Review, Models, Training, Drift, Shift report, Admin) through ``st.navigation``.

Run with ``streamlit run inspect_app/ui/app.py`` (``inspect-app dashboard``). The database comes from
``load_settings().resolved_database_url`` (``INSPECT_DATABASE_URL``, else a SQLite file under ``INSPECT_HOME``). Pages
read through ``inspect_app.storage`` only, so the dashboard never loads torch. Each page is a thin script in
``views/`` (so ``AppTest.switch_page`` can open it) that calls the ``render`` of its module.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from inspect_app.errors import ConfigError, StorageError
from inspect_app.ui.common import (
    ALL_STATIONS,
    PERIODS,
    SIGN_IN_REQUIRED_MESSAGE,
    current_user,
    period_window,
    plant_zone,
    render_account,
    station_filter,
    viewing_allowed,
)
from inspect_app.ui.overview import PAGE_TITLE, kpi_values

VIEWS = Path(__file__).parent / "views"
# (script, title, icon) in menu order; the first is the default page.
PAGES = (
    ("overview.py", "Overview", ":material/monitoring:"),
    ("live.py", "Live", ":material/videocam:"),
    ("alarms.py", "Alarms", ":material/notifications:"),
    ("review.py", "Review", ":material/fact_check:"),
    ("models.py", "Models", ":material/model_training:"),
    ("training.py", "Training", ":material/play_circle:"),
    ("drift.py", "Drift", ":material/ssid_chart:"),
    ("shifts.py", "Shift report", ":material/schedule:"),
    ("admin.py", "Admin", ":material/admin_panel_settings:"),
)

__all__ = ["ALL_STATIONS", "PAGES", "PAGE_TITLE", "PERIODS", "kpi_values", "main", "period_window", "station_filter"]


def main() -> None:
    """Set up the page, the sign-in box and the navigation, then draw the chosen page.

    Closed by default: without a signed-in user (and without open viewing) no page runs, so no KPI, picture, path
    or log line reaches the browser; the menu is hidden too.
    """
    st.set_page_config(page_title="inspect_app", layout="wide")
    try:
        plant_zone()  # a bad INSPECT_PLANT_TIME_ZONE or INSPECT_SHIFTS is one line here, not a traceback per page
    except ConfigError as exc:
        st.error(str(exc))
        return
    pages = [
        st.Page(str(VIEWS / script), title=title, icon=icon, default=index == 0)
        for index, (script, title, icon) in enumerate(PAGES)
    ]
    try:
        open_to_this_session = viewing_allowed(current_user())
    except StorageError as exc:
        # A session token cannot be checked without the database; the message names the URL masked.
        st.error(f"Cannot read the plant database: {exc}")
        return
    page = st.navigation(pages, position="sidebar" if open_to_this_session else "hidden")
    user = render_account()
    if not viewing_allowed(user):
        st.title("inspect_app")
        st.info(SIGN_IN_REQUIRED_MESSAGE)
        return
    page.run()


if __name__ == "__main__":
    main()
