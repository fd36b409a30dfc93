"""Session tokens, the session key and the sign-in throttle against a real database (SQLite; PostgreSQL when set)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspect_app.app import access, users
from inspect_app.config.settings import Settings
from inspect_app.errors import AccessDeniedError, ConfigError, SessionInvalidError, SignInThrottledError
from inspect_app.storage import Database, sessions, throttle

# The same values as the plant fixture in conftest.py (test code does not import conftest modules).
PASSWORD = "correct-horse-battery"
SECRET = "s" * 40
KEY = SECRET.encode()
IDLE = timedelta(minutes=30)


def test_a_token_names_the_user_as_the_database_has_them(plant: Database) -> None:
    token = sessions.issue_token(plant, KEY, "engineer")
    assert sessions.verify_token(plant, KEY, token, IDLE).role == "engineer"
    users.set_user_role(plant, "cli:test", "engineer", "viewer")
    assert sessions.verify_token(plant, KEY, token, IDLE).role == "viewer"  # no copy of the old role in the token


@pytest.mark.parametrize("tamper", ["user id", "issued", "version", "mac", "garbage", "empty"])
def test_forged_tokens_are_refused(plant: Database, tamper: str) -> None:
    token = sessions.issue_token(plant, KEY, "viewer")
    user_id, issued, version, mac = token.split(".")
    admin_id = sessions.issue_token(plant, KEY, "admin").split(".")[0]
    forged = {
        "user id": f"{admin_id}.{issued}.{version}.{mac}",
        "issued": f"{user_id}.{int(issued) + 3600}.{version}.{mac}",
        "version": f"{user_id}.{issued}.{int(version) + 1}.{mac}",
        "mac": f"{user_id}.{issued}.{version}.{mac[:-2]}AA",
        "garbage": "not-a-token",
        "empty": "",
    }[tamper]
    with pytest.raises(SessionInvalidError):
        sessions.verify_token(plant, KEY, forged, IDLE)


def test_a_token_signed_with_another_key_is_refused(plant: Database) -> None:
    token = sessions.issue_token(plant, b"another-key-" * 4, "admin")
    with pytest.raises(SessionInvalidError, match="signature"):
        sessions.verify_token(plant, KEY, token, IDLE)


def test_tokens_expire_after_the_idle_limit(plant: Database) -> None:
    now = datetime.now(UTC)
    token = sessions.issue_token(plant, KEY, "viewer", now=now - timedelta(minutes=31))
    with pytest.raises(SessionInvalidError, match="expired after 30 minutes"):
        sessions.verify_token(plant, KEY, token, IDLE, now=now)
    fresh = sessions.issue_token(plant, KEY, "viewer", now=now - timedelta(minutes=29))
    assert sessions.verify_token(plant, KEY, fresh, IDLE, now=now).username == "viewer"


def test_sign_out_deactivation_and_password_reset_void_tokens(plant: Database) -> None:
    for end in ("sign out", "deactivate", "password"):
        token = sessions.issue_token(plant, KEY, "operator")
        if end == "sign out":
            sessions.end_sessions(plant, "operator")
        elif end == "deactivate":
            users.set_user_active(plant, "cli:test", "operator", False)
            users.set_user_active(plant, "cli:test", "operator", True)  # reactivating does not revive the token
        else:
            users.reset_password(plant, "cli:test", "operator", "a-new-long-password")
        with pytest.raises(SessionInvalidError):
            sessions.verify_token(plant, KEY, token, IDLE)


def test_an_inactive_user_gets_no_token_and_loses_the_session(plant: Database) -> None:
    token = sessions.issue_token(plant, KEY, "viewer")
    users.set_user_active(plant, "cli:test", "viewer", False)
    with pytest.raises(SessionInvalidError):
        sessions.verify_token(plant, KEY, token, IDLE)
    with pytest.raises(SessionInvalidError, match="no active user 'viewer'"):
        sessions.issue_token(plant, KEY, "viewer")


def test_generated_key_file_is_private_stable_and_never_in_repr(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    key = sessions.session_secret(settings)
    path = tmp_path / "home" / sessions.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sessions.session_secret(settings) == key and len(key) >= sessions.MIN_SECRET_LENGTH
    configured = Settings(home=tmp_path, session_secret=SECRET)
    assert sessions.session_secret(configured) == KEY
    assert SECRET not in repr(configured) and SECRET not in str(configured.model_dump())


def test_a_short_configured_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="INSPECT_SESSION_SECRET has 9 characters") as caught:
        sessions.session_secret(Settings(home=tmp_path, session_secret="too-short"))
    assert "too-short" not in str(caught.value)


def test_throttle_refuses_the_right_password_during_the_back_off(plant: Database) -> None:
    now = datetime.now(UTC)
    for minute in range(throttle.MAX_USER_FAILURES):
        with pytest.raises(AccessDeniedError, match="sign-in failed"):
            access.sign_in(plant, "engineer", "wrong-password", now=now + timedelta(minutes=minute))
    later = now + timedelta(minutes=throttle.MAX_USER_FAILURES)
    with pytest.raises(SignInThrottledError, match="too many failed sign-ins; try again in 10 minutes"):
        access.sign_in(plant, "engineer", PASSWORD, now=later)
    # Locked until the oldest of the five failures (minute 0) leaves the window 15 minutes after it happened; then
    # the lock lifts and a sign-in forgets the name's failures.
    assert access.sign_in(plant, "engineer", PASSWORD, now=now + throttle.WINDOW + timedelta(seconds=1)).username \
        == "engineer"
    throttle.check(plant, "engineer", now=now + throttle.WINDOW + timedelta(seconds=2))


def test_unknown_names_are_throttled_with_the_same_message(plant: Database) -> None:
    now = datetime.now(UTC)
    messages = set()
    for name in ("admin", "nobody-here"):
        for _ in range(throttle.MAX_USER_FAILURES):
            with pytest.raises(AccessDeniedError):
                access.sign_in(plant, name, "wrong-password", now=now)
        with pytest.raises(SignInThrottledError) as caught:
            access.sign_in(plant, name, PASSWORD, now=now)
        messages.add(str(caught.value))
    assert len(messages) == 1 and "admin" not in messages.pop()


def test_throttle_per_client_spares_other_clients(plant: Database) -> None:
    now = datetime.now(UTC)
    for i in range(throttle.MAX_CLIENT_FAILURES):
        with pytest.raises(AccessDeniedError, match="sign-in failed"):
            access.sign_in(plant, f"guess-{i}", "wrong-password", client="10.0.0.9", now=now)
    with pytest.raises(SignInThrottledError):
        access.sign_in(plant, "viewer", PASSWORD, client="10.0.0.9", now=now)
    assert access.sign_in(plant, "viewer", PASSWORD, client="10.0.0.10", now=now).username == "viewer"
