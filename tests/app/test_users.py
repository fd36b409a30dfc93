"""`app.users` from the dashboard's side: a signed-in admin, re-checked against the database on every change."""

from __future__ import annotations

import pytest

from inspect_app.app import access, users
from inspect_app.errors import AccessDeniedError, LastAdminError
from inspect_app.storage import Database, Repository

PASSWORD = "correct-horse-battery"


@pytest.fixture
def people(db: Database) -> dict:
    """Two admins and an engineer, signed in the way the dashboard does it."""
    for name, role in (("ana", "admin"), ("ben", "admin"), ("eng", "engineer")):
        users.create_user(db, name, role, PASSWORD)
    return {name: access.sign_in(db, name, PASSWORD) for name in ("ana", "ben", "eng")}


def test_an_admin_changes_users_and_is_named_in_the_audit(db: Database, people: dict) -> None:
    assert users.set_user_role(db, people["ana"], "eng", "operator").role == "operator"
    assert not users.set_user_active(db, people["ana"], "eng", False).active
    users.reset_password(db, people["ana"], "eng", "another-long-password")
    entries = Repository(db).list_audit(limit=3)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("ana", "user.password_reset", "eng"), ("ana", "user.deactivate", "eng"), ("ana", "user.role", "eng")]


def test_non_admins_and_nobody_are_refused(db: Database, people: dict) -> None:
    with pytest.raises(AccessDeniedError, match="user 'eng' with role 'engineer' may not 'users'"):
        users.set_user_active(db, people["eng"], "ben", False)
    with pytest.raises(AccessDeniedError, match="sign in first"):
        users.set_user_role(db, None, "eng", "admin")
    assert Repository(db).get_user("eng").role == "engineer" and Repository(db).get_user("ben").active


def test_a_stale_session_of_a_deactivated_admin_is_refused(db: Database, people: dict) -> None:
    users.set_user_active(db, people["ana"], "ben", False)
    # ben's session still holds an active admin record; the database says otherwise.
    assert people["ben"].active
    with pytest.raises(AccessDeniedError, match="user 'ben' is inactive and may not 'users'"):
        users.set_user_role(db, people["ben"], "eng", "admin")
    assert Repository(db).get_user("eng").role == "engineer"


def test_an_admin_may_step_down_only_while_another_admin_is_active(db: Database, people: dict) -> None:
    users.set_user_role(db, people["ana"], "ana", "engineer")
    with pytest.raises(LastAdminError, match="cannot deactivate 'ben': it is the last active admin"):
        users.set_user_active(db, people["ben"], "ben", False)


def test_unknown_user_and_role_are_named(db: Database, people: dict) -> None:
    with pytest.raises(LookupError, match=r"user 'zed' not found; known users: \['ana', 'ben', 'eng'\]"):
        users.reset_password(db, people["ana"], "zed", "a-long-password")
    with pytest.raises(ValueError, match=r"role 'root' is not one of \['viewer', 'operator', 'engineer', 'admin'\]"):
        users.set_user_role(db, people["ana"], "eng", "root")
