"""Alarms page (open alarms with an Acknowledge button, then the recent history) and the Overview's last alarm.

Alarms are raised by ``inspect-app alarms check`` (``app.alarms``); this page only reads them and acknowledges
through ``app.alarms.acknowledge_alarm``, which checks the role next to the write and audits it.
"""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from inspect_app.app.alarms import ACKNOWLEDGE_ROLE, acknowledge_alarm, may_acknowledge, stored_id
from inspect_app.errors import StorageError
from inspect_app.records import Alarm
from inspect_app.storage.alarms import AlarmStore
from inspect_app.ui.common import current_user, database, database_url, format_time, require_viewing, run_control

logger = logging.getLogger(__name__)

PAGE_TITLE = "Alarms"
OPEN_LIMIT = 50
HISTORY_LIMIT = 200
KIND_LABELS = {"spc": "p-chart rule", "pipeline_down": "pipeline down", "drift": "drift"}


def alarm_state(alarm: Alarm) -> str:
    """``acknowledged``, ``cleared`` (the condition ended, nobody took it yet) or ``active``."""
    if alarm.acknowledged_at is not None:
        return "acknowledged"
    return "cleared" if alarm.cleared_at is not None else "active"


def alarm_table(alarms: list[Alarm]) -> pd.DataFrame:
    """History table with formatted times."""
    return pd.DataFrame(
        [
            {
                "Id": a.id, "Raised": format_time(a.raised_at), "State": alarm_state(a),
                "Kind": KIND_LABELS.get(a.kind, a.kind), "Station": a.station or "", "Message": a.message,
                "Acknowledged": f"{a.acknowledged_by} · {format_time(a.acknowledged_at)}" if a.acknowledged_by else "",
                "Notified": format_time(a.notified_at) or (a.notify_error or ""),
            }
            for a in alarms
        ],
        columns=["Id", "Raised", "State", "Kind", "Station", "Message", "Acknowledged", "Notified"],
    )


def render_last_alarm(url: str) -> None:
    """One line for the Overview: the newest alarm and its state, or that there is none."""
    last = AlarmStore(database(url)).last()
    if last is None:
        st.caption("No alarm so far.")
        return
    line = f"Last alarm ({alarm_state(last)}, {format_time(last.raised_at)}): {last.message}"
    if last.acknowledged_at is None:
        st.warning(line, icon=":material/notifications_active:")
    else:
        st.caption(line)


def render_open(url: str) -> None:
    """Open alarms, each with its Acknowledge button for users who may press it."""
    store = AlarmStore(database(url))
    open_alarms = store.recent(open_only=True, limit=OPEN_LIMIT)
    st.subheader(f"Open alarms ({len(open_alarms)})")
    if not open_alarms:
        st.caption("No open alarm.")
        return
    user = current_user()
    allowed = may_acknowledge(user)
    if not allowed:
        st.caption(f"Acknowledging needs role {ACKNOWLEDGE_ROLE} or higher.")
    for alarm in open_alarms:
        text, button = st.columns([5, 1])
        text.markdown(f"**{KIND_LABELS.get(alarm.kind, alarm.kind)}** · {format_time(alarm.raised_at)} · "
                      f"{alarm_state(alarm)}  \n{alarm.message}")
        # Keyed by the alarm's id, so a press always lands on the alarm it is drawn beside.
        pressed = allowed and button.button("Acknowledge", key=f"ack_{alarm.id}")
        if pressed and run_control(acknowledge_alarm, database(url), current_user(), stored_id(alarm),
                                   success=f"Alarm {alarm.id} acknowledged") is not None:
            st.rerun()


def render() -> None:
    """Draw the Alarms page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        render_open(url)
        st.subheader("Recent alarms")
        st.dataframe(alarm_table(AlarmStore(database(url)).recent(limit=HISTORY_LIMIT)), hide_index=True,
                     width="stretch")
        st.caption("Alarms are raised by `inspect-app alarms check` (p-chart rules per station, silent pipelines).")
    except StorageError as exc:
        logger.error("alarms page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
