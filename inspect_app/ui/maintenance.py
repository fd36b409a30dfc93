"""Maintenance expander of the Overview page: purge old inspections (admin only, audited).

The control has two steps, like ``inspect-app db purge --dry-run`` followed by the real run: a dry run counts the
inspections older than the chosen age, then a confirm button deletes exactly those (the confirmed purge reuses the
dry run's reference time, so rows that age past the cut-off in between are not taken). Both steps go through
``app.maintenance.purge_inspections``, which checks the admin role next to the write; ``storage.retention`` writes
the audit entry.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import streamlit as st

from inspect_app.app import access, maintenance
from inspect_app.config import load_settings
from inspect_app.errors import InspectAppError
from inspect_app.records import User
from inspect_app.storage.retention import parse_age
from inspect_app.ui.common import current_user, database, role_hint, run_control

logger = logging.getLogger(__name__)

EXPANDER_LABEL = "Maintenance: purge old inspections"
DEFAULT_AGE = "90d"
# Session key of the counted-but-not-yet-confirmed purge.
PENDING_KEY = "purge_pending"


def _pending(user: User | None, age: str, keep_files: bool) -> dict | None:
    """The dry run awaiting confirmation, if it still matches who is signed in and what the form says.

    A changed age, file choice or user drops it: the confirm button must only ever delete what was just counted.
    """
    pending = st.session_state.get(PENDING_KEY)
    if pending is None:
        return None
    if user is None or pending["user"] != user.username or (pending["age"], pending["keep_files"]) != (age, keep_files):
        del st.session_state[PENDING_KEY]
        return None
    return pending


def _dry_run(url: str, user: User | None, age: str, keep_files: bool) -> None:
    """Validate the age, count what a purge would delete and keep the count for the confirm step."""
    try:
        parse_age(age)  # named error for a bad age before anything else (the role check comes next)
        now = datetime.now(UTC)
        result = maintenance.purge_inspections(database(url), user, age, keep_files, dry_run=True, now=now)
    except (InspectAppError, ValueError) as exc:
        logger.info("purge dry run refused: %s", exc)
        st.error(str(exc))
        return
    assert user is not None  # maintenance.purge_inspections refused anyone else
    st.session_state[PENDING_KEY] = {"user": user.username, "age": age, "keep_files": keep_files, "now": now,
                                     "cutoff": result.cutoff, "rows": result.rows}


def _confirm(url: str, user: User | None, pending: dict) -> None:
    """Run the counted purge and report rows and files."""
    del st.session_state[PENDING_KEY]
    result = run_control(maintenance.purge_inspections, database(url), user, pending["age"], pending["keep_files"],
                         now=pending["now"], evidence_root=load_settings().resolved_evidence_dir,
                         success=f"purge of inspections older than {pending['age']} done")
    if result is not None:
        files = "files kept" if pending["keep_files"] else (
            f"{result.files_deleted} file(s) deleted, {result.files_missing} already gone, "
            f"{result.files_kept} kept (still referenced)")
        st.caption(f"deleted {result.rows} inspection(s) created before {result.cutoff:%Y-%m-%d %H:%M} UTC; {files}")


def render_maintenance(url: str) -> None:
    """Draw the purge control: age, keep-files choice, dry-run count, then confirm or cancel.

    Admins only: anyone else does not see the section (``maintenance.purge_inspections`` refuses them anyway).
    """
    user = current_user()
    if not access.allowed(user, "purge"):
        return
    with st.expander(EXPANDER_LABEL):
        st.caption("Deletes inspection rows (with their reviews) and their image and heatmap files; the hourly "
                   "figures on this page stay. Counted first, deleted only after you confirm. Audited.")
        age = st.text_input("Delete inspections older than", DEFAULT_AGE, key="purge_age",
                            help="a whole number with a unit: m (minutes), h, d, w; for example 90d")
        keep_files = st.checkbox("Keep image and heatmap files", key="purge_keep_files")
        if st.button("Count (dry run)", key="purge_dry_run", help=role_hint("purge")):
            _dry_run(url, user, age.strip(), keep_files)
        pending = _pending(user, age.strip(), keep_files)
        if pending is None:
            return
        # A placeholder so that the "would delete" note goes away once the purge has run.
        note = st.empty()
        note.warning(f"Would delete {pending['rows']} inspection(s) older than {pending['age']} (created before "
                   f"{pending['cutoff']:%Y-%m-%d %H:%M} UTC)" + ("; files kept." if pending["keep_files"] else
                                                                 ", with their image and heatmap files."))
        confirm, cancel = st.columns(2)
        if confirm.button(f"Delete {pending['rows']} inspection(s)", key="purge_confirm", type="primary",
                          disabled=pending["rows"] == 0, help=role_hint("purge")):
            note.empty()
            _confirm(url, user, pending)
        elif cancel.button("Cancel", key="purge_cancel"):
            del st.session_state[PENDING_KEY]
            st.rerun()
