"""Dashboard sign-in and sessions: a signed, expiring token in a browser cookie; the user re-read on every run.

Streamlit keeps ``st.session_state`` per websocket connection, so a reload or a second tab starts empty. The token
(``storage.sessions``) is therefore also written to a ``SameSite=Strict`` cookie by a small script (Streamlit has no
API to set a cookie); a new connection reads it back through ``st.context.cookies``. The browser session only keeps
the token, never a ``User``: ``current_user`` verifies the token and loads the user from the database on each call,
so a role change or deactivation in another session takes effect on the next page run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import streamlit as st

from inspect_app.app import access
from inspect_app.config import load_settings
from inspect_app.errors import InspectAppError, SessionInvalidError, StorageError
from inspect_app.records import AuditEvent, User
from inspect_app.storage import Repository, sessions
from inspect_app.ui.connection import database, database_url

logger = logging.getLogger(__name__)

COOKIE_NAME = "inspect_session"
TOKEN_KEY = "session_token"
# What the browser's cookie holds now ("" = none): the script runs only when the token differs from it.
COOKIE_KEY = "session_cookie"
NOTICE_KEY = "session_notice"
# A token older than this is replaced on the next page run: activity keeps the session, an idle one expires.
REFRESH_AFTER = timedelta(minutes=1)
SIGN_IN_REQUIRED_MESSAGE = "This dashboard is open to signed-in users only. Sign in in the sidebar."
NO_USERS_MESSAGE = ("No user exists yet. On the dashboard server, create the first admin with "
                    "`inspect-app users add NAME --role admin`, then sign in here.")

__all__ = [
    "COOKIE_NAME",
    "NO_USERS_MESSAGE",
    "SIGN_IN_REQUIRED_MESSAGE",
    "browser_cookies",
    "client_address",
    "cookie_script",
    "current_user",
    "render_account",
    "require_viewing",
    "start_session",
    "viewing_allowed",
]


def browser_cookies() -> Mapping[str, str]:
    """The cookies the browser sent when this session connected (a seam for tests: AppTest cannot send any)."""
    return st.context.cookies


def _text(value: object) -> str | None:
    """``value`` when it is a non-empty string (headless runs hand back placeholders instead), else ``None``."""
    return value if isinstance(value, str) and value else None


def client_address() -> str | None:
    """The browser's address for the sign-in throttle, where known.

    Behind a reverse proxy every connection comes from the proxy, so with ``dashboard_trust_forwarded_for`` the last
    ``X-Forwarded-For`` entry (the one the proxy appended) is used; never by default, as a browser can send the
    header itself.
    """
    if load_settings().dashboard_trust_forwarded_for:
        forwarded = _text(st.context.headers.get("X-Forwarded-For")) or ""
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return _text(st.context.ip_address)


def _secret() -> bytes:
    return sessions.session_secret(load_settings())


def _idle() -> timedelta:
    return timedelta(minutes=load_settings().session_idle_minutes)


def _token() -> str | None:
    """This browser session's token; on its first run, the one in the cookie (a reload or a second tab)."""
    if TOKEN_KEY not in st.session_state:
        cookie = _text(browser_cookies().get(COOKIE_NAME)) or ""
        st.session_state[COOKIE_KEY] = cookie
        st.session_state[TOKEN_KEY] = cookie or None
    return st.session_state[TOKEN_KEY]


def current_user() -> User | None:
    """The signed-in user as the database has them now, or ``None`` (no token, or a void one, which is dropped)."""
    token = _token()
    if not token:
        return None
    try:
        return sessions.verify_token(database(database_url()), _secret(), token, _idle())
    except SessionInvalidError as exc:
        # Neither the token nor the key is logged; the reason says what was wrong with it.
        logger.info("dashboard session refused: %s", exc)
        st.session_state[TOKEN_KEY] = None
        st.session_state[NOTICE_KEY] = str(exc)
        return None


def cookie_script(token: str | None, max_age_s: int) -> str:
    """HTML that sets (or, for ``None``, deletes) the session cookie: SameSite=Strict, Secure over HTTPS."""
    value, age = (token, max_age_s) if token else ("", 0)
    # json.dumps quotes the value for JavaScript; tokens are only ever digits, dots and URL-safe base64.
    return (
        "<script>(() => {const secure = location.protocol === 'https:' ? '; Secure' : '';"
        f"document.cookie = {json.dumps(COOKIE_NAME)} + '=' + {json.dumps(value)} + "
        f"'; Path=/; Max-Age={int(age)}; SameSite=Strict' + secure;}})();</script>"
    )


def _sync_cookie() -> None:
    """Bring the browser's cookie in line with this session's token, only when they differ."""
    token = st.session_state.get(TOKEN_KEY) or ""
    if token == st.session_state.get(COOKIE_KEY, ""):
        return
    st.html(cookie_script(token or None, int(_idle().total_seconds())), width="content",
            unsafe_allow_javascript=True)
    st.session_state[COOKIE_KEY] = token


def _refresh(user: User) -> None:
    """Re-stamp the token after a minute of use, so that only inactivity ends the session."""
    token = st.session_state.get(TOKEN_KEY)
    if token and datetime.now(UTC) - sessions.token_issued_at(token) >= REFRESH_AFTER:
        st.session_state[TOKEN_KEY] = sessions.issue_token(database(database_url()), _secret(), user.username)


def start_session(user: User) -> None:
    """Give this browser session a fresh token for ``user`` (after signing in, or after changing one's password)."""
    st.session_state[TOKEN_KEY] = sessions.issue_token(database(database_url()), _secret(), user.username)
    st.session_state.pop(NOTICE_KEY, None)


def _sign_out(user: User) -> None:
    """End the user's sessions everywhere (every token issued so far is void) and clear this one."""
    db = database(database_url())
    sessions.end_sessions(db, user.username)
    Repository(db).audit(AuditEvent(actor=user.username, action="auth.sign_out"))
    st.session_state[TOKEN_KEY] = None


def _sign_in_form() -> None:
    """The sign-in form; a successful sign-in starts a session and reruns the page."""
    with st.form("sign_in", clear_on_submit=True):
        st.markdown("**Sign in**")
        username = st.text_input("User", key="sign_in_user")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            user = access.sign_in(database(database_url()), username, password, client=client_address())
        except InspectAppError as exc:
            st.error(str(exc))
            return
        start_session(user)
        st.rerun()
    notice = st.session_state.get(NOTICE_KEY)
    if notice:
        st.caption(notice)
    try:
        first_run = not Repository(database(database_url())).list_users()
    except StorageError:
        return  # the page says the database cannot be read; a sign-in attempt would say so too
    if first_run:
        st.info(NO_USERS_MESSAGE)


def render_account() -> User | None:
    """Sign-in form, or the signed-in user with a sign-out button, at the bottom of the sidebar."""
    user = current_user()
    with st.sidebar.container(border=True):
        if user is not None:
            _refresh(user)
            st.markdown(f"Signed in as **{user.display_name or user.username}** ({user.role})")
            if st.button("Sign out", key="sign_out"):
                _sign_out(user)
                st.rerun()
        else:
            _sign_in_form()
        _sync_cookie()
    return user


def viewing_allowed(user: User | None) -> bool:
    """Whether pages may be shown: someone signed in, or open viewing switched on (off by default)."""
    return user is not None or load_settings().dashboard_open_viewing


def require_viewing() -> User | None:
    """The signed-in user; stops the page with a sign-in hint when viewing needs a user and nobody is signed in."""
    user = current_user()
    if not viewing_allowed(user):
        st.info(SIGN_IN_REQUIRED_MESSAGE)
        st.stop()
    return user
