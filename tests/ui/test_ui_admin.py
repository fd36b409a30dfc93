"""The Admin page, driven headless by ``streamlit.testing`` against a real SQLite file: admins only, audited changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspect_app.app import access, users
from inspect_app.errors import AccessDeniedError
from inspect_app.storage import Database, Repository
from inspect_app.ui import app, common

APP_FILE = Path(app.__file__).resolve()
TIMEOUT_S = 60
PASSWORD = "correct-horse-battery"



@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database with one user per role (each named after it), selected through ``INSPECT_DATABASE_URL``."""
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    with Database.open(url) as db:
        for role in ("viewer", "operator", "engineer", "admin"):
            users.create_user(db, role, role, PASSWORD)
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    return url


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _admin_page(user: str | None) -> AppTest:
    at = _run(AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S))
    if user is not None:
        at.sidebar.text_input(key="sign_in_user").input(user)
        at.sidebar.text_input(key="sign_in_password").input(PASSWORD)
        next(b for b in at.sidebar.button if b.label == "Sign in").click()
        at = _run(at)
    at.switch_page("views/admin.py")
    return _run(at)


def _user(url: str, name: str):
    with Database.open(url) as db:
        return Repository(db).get_user(name)


@pytest.mark.parametrize(("user", "open_viewing"), [(None, False), (None, True), ("viewer", False),
                                                     ("engineer", False)])
def test_only_admins_see_the_page(url: str, user: str | None, open_viewing: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", str(open_viewing).lower())
    at = _admin_page(user)
    if user is None and not open_viewing:  # closed by default: not even the page's own notice
        assert at.info[0].value == common.SIGN_IN_REQUIRED_MESSAGE
    else:
        assert "User administration needs role admin or higher" in at.info[0].value
    assert not at.dataframe and not at.main.button and not at.main.selectbox and not at.main.text_input


def test_admin_deactivates_and_sets_roles_audited(url: str) -> None:
    at = _admin_page("admin")
    assert list(at.dataframe[0].value["User"]) == ["admin", "engineer", "operator", "viewer"]
    at.selectbox(key="admin_user").select("operator")
    at = _run(at)
    at.button(key="admin_toggle").click()
    at = _run(at)
    assert at.success[0].value == "user operator deactivated"
    assert not _user(url, "operator").active
    table = at.dataframe[0].value
    assert not table.loc[table["User"] == "operator", "Active"].iloc[0]  # the table shows the change at once
    at.selectbox(key="admin_role_operator").select("engineer")
    at.button(key="admin_set_role").click()
    at = _run(at)
    assert _user(url, "operator").role == "engineer"
    with Database.open(url) as db:
        entries = Repository(db).list_audit(limit=2)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("admin", "user.role", "operator"), ("admin", "user.deactivate", "operator")]


def test_the_last_admin_cannot_step_down_on_the_page(url: str) -> None:
    at = _admin_page("admin")
    at.selectbox(key="admin_user").select("admin")
    at = _run(at)
    at.button(key="admin_toggle").click()
    at = _run(at)
    assert "'admin': it is the last active admin" in at.error[0].value
    at.selectbox(key="admin_role_admin").select("viewer")
    at.button(key="admin_set_role").click()
    at = _run(at)
    assert "last active admin" in at.error[0].value
    assert _user(url, "admin").active and _user(url, "admin").role == "admin"


def test_admin_resets_a_password_and_adds_a_user(url: str) -> None:
    at = _admin_page("admin")
    at.selectbox(key="admin_user").select("viewer")
    at = _run(at)
    at.text_input(key="admin_password").input("viewer-new-password")
    at.text_input(key="admin_password_again").input("viewer-new-password")
    next(b for b in at.button if b.label == "Reset password").click()
    at = _run(at)
    assert at.success[0].value == "password of user viewer reset"
    at.text_input(key="admin_new_name").input("dora")
    at.selectbox(key="admin_new_role").select("operator")
    at.text_input(key="admin_new_password").input("dora-long-password")
    next(b for b in at.button if b.label == "Add user").click()
    at = _run(at)
    assert "dora" in list(at.dataframe[0].value["User"])
    with Database.open(url) as db:
        assert access.sign_in(db, "viewer", "viewer-new-password").username == "viewer"
        with pytest.raises(AccessDeniedError):
            access.sign_in(db, "viewer", PASSWORD)
        assert access.sign_in(db, "dora", "dora-long-password").role == "operator"
