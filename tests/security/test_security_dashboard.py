"""The dashboard closed by default, driven headless by ``streamlit.testing`` against a real database.

Pages show nothing before sign-in; a session survives a reload or a second tab through its cookie (AppTest cannot
send cookies, so ``ui.session.browser_cookies`` is replaced by what a browser would send); void tokens are refused;
role changes take effect on the next run; viewers get no controls.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspect_app.app import users
from inspect_app.storage import Database, Repository, sessions, throttle
from inspect_app.ui import app, session

APP_FILE = Path(app.__file__).resolve()
TIMEOUT_S = 60
# The same values as the plant fixture in conftest.py (test code does not import conftest modules).
PASSWORD = "correct-horse-battery"
KEY = ("s" * 40).encode()
PAGE_NAMES = [script.removesuffix(".py") for script, _title, _icon in app.PAGES]


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _browser(monkeypatch: pytest.MonkeyPatch, token: str | None = None) -> AppTest:
    """A new browser connection (a reload or a second tab) carrying ``token`` in its session cookie."""
    monkeypatch.setattr(session, "browser_cookies", lambda: {session.COOKIE_NAME: token} if token else {})
    return _run(AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S))


def _sign_in(at: AppTest, user: str, password: str = PASSWORD) -> AppTest:
    at.sidebar.text_input(key="sign_in_user").input(user)
    at.sidebar.text_input(key="sign_in_password").input(password)
    next(b for b in at.sidebar.button if b.label == "Sign in").click()
    return _run(at)


def _signed_in_as(at: AppTest) -> str | None:
    shown = [m.value for m in at.sidebar.markdown if m.value.startswith("Signed in as")]
    return shown[0] if shown else None


def _page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"views/{name}.py")
    return _run(at)


def _shows_nothing(at: AppTest) -> None:
    """Only the title, the sign-in notice and the sign-in form: no figure, table, picture, path or log line."""
    assert [i.value for i in at.main.info] == [session.SIGN_IN_REQUIRED_MESSAGE]
    for kind in ("metric", "dataframe", "table", "code", "caption", "selectbox", "radio", "slider", "button"):
        assert not at.main.get(kind), f"{kind} shown before sign-in"
    assert not at.get("imgs") and not at.sidebar.selectbox
    assert not any("secret-cell" in m.value for m in at.markdown)
    assert [m.value for m in at.main.markdown] == []


@pytest.mark.parametrize("page", PAGE_NAMES)
def test_anonymous_sees_no_page_content_by_default(plant: Database, monkeypatch: pytest.MonkeyPatch,
                                                   page: str) -> None:
    at = _page(_browser(monkeypatch), page)
    _shows_nothing(at)
    assert _signed_in_as(at) is None and at.sidebar.text_input(key="sign_in_user")


def test_open_viewing_setting_shows_pages(plant: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "true")
    at = _browser(monkeypatch)
    assert {m.label: m.value for m in at.metric}["Inspected"] == "6"
    assert not at.main.button  # viewing only: controls still need a user
    assert at.main.get("metric") and at.main.get("dataframe")  # what _shows_nothing looks for is really there
    with pytest.raises(AssertionError):
        _shows_nothing(at)
    assert not any(b.key and b.key.startswith("purge_") for b in at.button)


def test_session_survives_reload_and_second_tab(plant: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _sign_in(_browser(monkeypatch), "viewer")
    assert "(viewer)" in _signed_in_as(at)
    token = at.session_state[session.TOKEN_KEY]
    # The script that stores the token as a SameSite=Strict cookie went to the browser.
    scripts = [h.proto.body for h in at.get("html")] if at.get("html") else []
    assert any("SameSite=Strict" in body and token in body for body in scripts)
    for _tab in range(2):  # a reload, then a second tab: both read the cookie
        again = _browser(monkeypatch, token)
        assert "(viewer)" in _signed_in_as(again)
        assert {m.label: m.value for m in again.metric}["Inspected"] == "6"


@pytest.mark.parametrize("kind", ["forged", "expired", "other key", "signed out"])
def test_void_tokens_are_refused(plant: Database, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    now = datetime.now(UTC)
    if kind == "forged":
        good = sessions.issue_token(plant, KEY, "viewer").split(".")
        admin_id = sessions.issue_token(plant, KEY, "admin").split(".")[0]
        token = ".".join([admin_id, *good[1:]])  # a viewer's signature on the admin's id
    elif kind == "expired":
        token = sessions.issue_token(plant, KEY, "admin", now=now - timedelta(minutes=31))
    elif kind == "other key":
        token = sessions.issue_token(plant, b"k" * 40, "admin")
    else:
        token = sessions.issue_token(plant, KEY, "admin")
        sessions.end_sessions(plant, "admin")
    at = _browser(monkeypatch, token)
    assert _signed_in_as(at) is None
    _shows_nothing(at)
    # The refused token is dropped and the browser told to forget the cookie (Max-Age=0).
    assert at.session_state[session.TOKEN_KEY] is None
    assert any("Max-Age=0" in h.proto.body for h in at.get("html"))
    if kind == "expired":
        assert any("expired after 30 minutes" in c.value for c in at.sidebar.caption)


def test_sign_out_voids_the_cookie_token(plant: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _sign_in(_browser(monkeypatch), "engineer")
    token = at.session_state[session.TOKEN_KEY]
    at.sidebar.button(key="sign_out").click()
    at = _run(at)
    assert _signed_in_as(at) is None
    _shows_nothing(at)
    assert _signed_in_as(_browser(monkeypatch, token)) is None  # a copied token no longer works anywhere
    assert [e.actor for e in Repository(plant).list_audit(action="auth.sign_out")] == ["engineer"]


def test_idle_limit_setting_applies(plant: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_SESSION_IDLE_MINUTES", "5")
    token = sessions.issue_token(plant, KEY, "viewer", now=datetime.now(UTC) - timedelta(minutes=6))
    assert _signed_in_as(_browser(monkeypatch, token)) is None


def test_activity_refreshes_the_token(plant: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    old = sessions.issue_token(plant, KEY, "viewer", now=datetime.now(UTC) - timedelta(minutes=20))
    at = _browser(monkeypatch, old)
    assert "(viewer)" in _signed_in_as(at)
    fresh = at.session_state[session.TOKEN_KEY]
    assert fresh != old and datetime.now(UTC) - sessions.token_issued_at(fresh) < timedelta(minutes=1)
    assert any(fresh in h.proto.body for h in at.get("html"))


def test_deactivation_mid_session_takes_effect_on_the_next_run(plant: Database,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(_sign_in(_browser(monkeypatch), "engineer"), "models")
    users.set_user_active(plant, "cli:test", "engineer", False)
    at = _run(at)
    assert _signed_in_as(at) is None
    _shows_nothing(at)


def test_demotion_mid_session_removes_controls_on_the_next_run(plant: Database,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(_sign_in(_browser(monkeypatch), "engineer"), "training")
    assert any(b.label == "Queue run" for b in at.button)
    users.set_user_role(plant, "cli:test", "engineer", "viewer")
    at = _run(at)
    assert "(viewer)" in _signed_in_as(at)
    assert not at.main.button
    assert any(c.value.startswith("Read-only") for c in at.caption)


def test_sign_in_is_throttled_and_the_right_password_refused_meanwhile(plant: Database,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    at = _browser(monkeypatch)
    for _ in range(throttle.MAX_USER_FAILURES):
        at = _sign_in(at, "admin", "wrong-password")
        assert "sign-in failed" in at.sidebar.error[0].value
    at = _sign_in(at, "admin")
    assert [e.value for e in at.sidebar.error] == ["too many failed sign-ins; try again in 15 minutes"]
    assert _signed_in_as(at) is None
    _shows_nothing(at)
    # Shared through the database: another browser (another dashboard process, too) is refused the same way.
    at = _sign_in(_browser(monkeypatch), "admin")
    assert "too many failed sign-ins" in at.sidebar.error[0].value


def test_throttle_counts_per_client_address(plant: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "client_address", lambda: "10.1.2.3")
    at = _browser(monkeypatch)
    for i in range(throttle.MAX_CLIENT_FAILURES):
        at = _sign_in(at, f"guess-{i}", "wrong-password")
    at = _sign_in(at, "viewer")
    assert "too many failed sign-ins" in at.sidebar.error[0].value
    monkeypatch.setattr(session, "client_address", lambda: "10.1.2.4")
    assert "(viewer)" in _signed_in_as(_sign_in(_browser(monkeypatch), "viewer"))


def test_viewer_sees_no_control_buttons(plant: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _sign_in(_browser(monkeypatch), "viewer")
    for page in PAGE_NAMES:
        at = _page(at, page)
        # Paging the review queue changes nothing; every other button would.
        controls = [b.label for b in at.main.button if b.key not in ("review_previous_page", "review_next_page")]
        assert not controls, (page, controls)
        assert not at.main.get("form"), page
        assert not any(t.type == "password" for t in at.main.text_input if hasattr(t, "type")), page
    assert [b.key for b in at.sidebar.button] == ["sign_out"]


def test_first_run_without_users_says_how_to_create_the_first_admin(db_url: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    Database.open(db_url).dispose()
    monkeypatch.setenv("INSPECT_DATABASE_URL", db_url)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    monkeypatch.delenv("INSPECT_DASHBOARD_OPEN_VIEWING", raising=False)
    at = _browser(monkeypatch)
    assert [i.value for i in at.sidebar.info] == [session.NO_USERS_MESSAGE]
    assert "inspect-app users add NAME --role admin" in session.NO_USERS_MESSAGE
