"""Admin page: users and roles; activate, deactivate, change a role, reset a password, add a user.

Admins only: anyone else is told which role the page needs and sees nothing more (not even the user names). Every
change goes through the functions ``inspect-app users`` uses (``app.users``), which
check the admin role against the database and audit the change in its transaction; the last active admin is kept.
"""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from inspect_app.app import access, users
from inspect_app.errors import StorageError
from inspect_app.records import User
from inspect_app.storage import Repository
from inspect_app.storage.tables import USER_ROLES
from inspect_app.ui.common import (
    current_user,
    database,
    database_url,
    format_time,
    require_viewing,
    role_hint,
    run_control,
    time_title,
)
from inspect_app.ui.session import start_session

logger = logging.getLogger(__name__)

PAGE_TITLE = "Admin"


def users_table(people: list[User]) -> pd.DataFrame:
    """One row per user: name, display name, role, whether they may sign in, since when (plant time)."""
    created = time_title("Created")
    return pd.DataFrame(
        [{"User": u.username, "Name": u.display_name, "Role": u.role, "Active": u.active,
          created: format_time(u.created_at)} for u in people],
        columns=["User", "Name", "Role", "Active", created],
    )


def render_changes(url: str, people: list[User]) -> None:
    """Controls on one chosen user: activate or deactivate, set the role, reset the password."""
    db = database(url)
    st.subheader("Change a user")
    name = st.selectbox("User", [u.username for u in people], key="admin_user")
    chosen = next(u for u in people if u.username == name)
    left, middle = st.columns(2)
    verb = "Deactivate" if chosen.active else "Activate"
    if left.button(f"{verb} {name}", key="admin_toggle", help=role_hint("users")):
        run_control(users.set_user_active, db, current_user(), name, not chosen.active,
                    success=f"user {name} {verb.lower()}d")
    role = middle.selectbox("Role", USER_ROLES, index=USER_ROLES.index(chosen.role), key=f"admin_role_{name}")
    if middle.button("Set role", key="admin_set_role", help=role_hint("users")):
        run_control(users.set_user_role, db, current_user(), name, role, success=f"user {name} now has role {role}")
    with st.form("admin_reset_password", clear_on_submit=True):
        first = st.text_input(f"New password for {name}", type="password", key="admin_password")
        again = st.text_input("Again", type="password", key="admin_password_again")
        submitted = st.form_submit_button("Reset password", help=role_hint("users"))
    if submitted:
        if first != again:
            st.error("the two passwords differ")
        else:
            me = current_user()
            changed = run_control(users.reset_password, db, me, name, first, success=f"password of user {name} reset")
            if changed is not None and me is not None and changed.username == me.username:
                # A new password voids the admin's own token too; keep this browser signed in with a fresh one.
                start_session(changed)


def render_add(url: str) -> None:
    """The form that adds a user."""
    st.subheader("Add a user")
    with st.form("admin_add_user", clear_on_submit=True):
        cols = st.columns(3)
        name = cols[0].text_input("User name", key="admin_new_name")
        display = cols[1].text_input("Display name (optional)", key="admin_new_display")
        role = cols[2].selectbox("Role", USER_ROLES, key="admin_new_role")
        password = st.text_input("Password", type="password", key="admin_new_password")
        submitted = st.form_submit_button("Add user", help=role_hint("users"))
    if submitted:
        run_control(users.create_user, database(url), name.strip(), role, password, actor=current_user(),
                    display_name=display.strip() or None, success=f"user {name.strip()} added with role {role}")


def render() -> None:
    """Draw the Admin page (admins only)."""
    st.title(PAGE_TITLE)
    require_viewing()
    if not access.allowed(current_user(), "users"):
        st.info(f"User administration {role_hint('users')}. Sign in as an admin.")
        return
    url = database_url()
    try:
        # Filled last, so that the table shows the change a control just made in this run.
        table = st.empty()
        people = Repository(database(url)).list_users()
        render_changes(url, people)
        render_add(url)
        table.dataframe(users_table(Repository(database(url)).list_users()), hide_index=True)
    except StorageError as exc:
        logger.error("admin page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
