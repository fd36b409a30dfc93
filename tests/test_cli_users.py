"""``inspect-app users``: activate, deactivate, set-role, reset-password and list on a real SQLite file, audited."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from inspect_app.app import access
from inspect_app.cli import main
from inspect_app.errors import AccessDeniedError
from inspect_app.storage import Database, Repository

ROLES_TEXT = "['viewer', 'operator', 'engineer', 'admin']"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """A home with admin ``ana`` and engineer ``bob`` created through the CLI; returns the ``--home`` arguments."""
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    monkeypatch.setenv("USER", "tester")
    args = ["--home", str(tmp_path)]
    for name, role in (("ana", "admin"), ("bob", "engineer")):
        monkeypatch.setattr("sys.stdin", io.StringIO(f"{name}-first-password\n"))
        assert main([*args, "users", "add", name, "--role", role, "--password-stdin"]) == 0
    capsys.readouterr()
    return args


def _db(args: list[str]) -> Database:
    return Database.open(f"sqlite:///{(Path(args[1]) / 'inspect.db').as_posix()}")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and not captured.out
    return lines[0]


def _users(args: list[str], capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    assert main([*args, "users", "list"]) == 0
    return [line.split() for line in capsys.readouterr().out.splitlines()]


def test_deactivate_and_activate_stop_and_allow_sign_in(home: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*home, "users", "deactivate", "bob"]) == 0
    assert capsys.readouterr().out.strip() == "user bob is now inactive"
    assert _users(home, capsys) == [["ana", "admin", "active"], ["bob", "engineer", "inactive"]]
    with _db(home) as db, pytest.raises(AccessDeniedError, match="sign-in failed for user 'bob'"):
        access.sign_in(db, "bob", "bob-first-password")
    assert main([*home, "users", "activate", "bob"]) == 0
    with _db(home) as db:
        assert access.sign_in(db, "bob", "bob-first-password").active
        repo = Repository(db)
        entries = repo.list_audit(action="user.deactivate") + repo.list_audit(action="user.activate")
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("cli:tester", "user.deactivate", "bob"), ("cli:tester", "user.activate", "bob")]


def test_set_role_is_audited_with_old_and_new(home: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*home, "users", "set-role", "bob", "operator"]) == 0
    assert capsys.readouterr().out.strip() == "user bob now has role operator"
    assert _users(home, capsys)[1] == ["bob", "operator", "active"]
    with _db(home) as db:
        [entry] = Repository(db).list_audit(action="user.role")
    assert (entry.actor, entry.target, entry.details) == ("cli:tester", "bob", {"old": "engineer", "new": "operator"})


def test_reset_password_reads_one_line_and_never_stores_it(
    home: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("bob-second-password\n"))
    assert main([*home, "users", "reset-password", "bob", "--password-stdin"]) == 0
    assert capsys.readouterr().out.strip() == "password of user bob reset"
    with _db(home) as db:
        assert access.sign_in(db, "bob", "bob-second-password").username == "bob"
        with pytest.raises(AccessDeniedError):
            access.sign_in(db, "bob", "bob-first-password")
        [entry] = Repository(db).list_audit(action="user.password_reset")
    assert (entry.actor, entry.target) == ("cli:tester", "bob")
    assert "bob-second-password" not in repr(entry)
    capsys.readouterr()  # the sign-in checks above log; only the refused command's output counts below
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main([*home, "users", "reset-password", "bob", "--password-stdin"]) == 2
    assert "at least 8 characters" in _one_error_line(capsys)


def test_the_last_active_admin_cannot_be_deactivated_or_demoted(
    home: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["deactivate", "ana"], ["set-role", "ana", "engineer"]):
        assert main([*home, "users", *command]) == 2
        assert "'ana': it is the last active admin" in _one_error_line(capsys)
    with _db(home) as db:
        assert Repository(db).get_user("ana").role == "admin" and Repository(db).get_user("ana").active
        # A refused change leaves no audit entry: the entry is written in the change's own transaction.
        assert not Repository(db).list_audit(action="user.deactivate") and not Repository(db).list_audit(
            action="user.role")
    # An inactive admin does not count as a second one.
    assert main([*home, "users", "set-role", "bob", "admin"]) == 0
    assert main([*home, "users", "deactivate", "bob"]) == 0
    assert main([*home, "users", "set-role", "ana", "viewer"]) == 2
    assert "last active admin" in capsys.readouterr().err
    # With a second active admin, the first may go.
    assert main([*home, "users", "activate", "bob"]) == 0
    assert main([*home, "users", "deactivate", "ana"]) == 0
    assert ["ana", "admin", "inactive"] in _users(home, capsys)


def test_bad_names_and_roles_are_one_line_naming_the_allowed_ones(
    home: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main([*home, "users", "set-role", "bob", "superuser"]) == 2
    line = _one_error_line(capsys)
    assert "'superuser'" in line and ROLES_TEXT in line
    for command in (["deactivate", "nobody"], ["activate", "nobody"], ["set-role", "nobody", "viewer"]):
        assert main([*home, "users", *command]) == 2
        line = _one_error_line(capsys)
        assert "'nobody' not found" in line and "['ana', 'bob']" in line
    # Refused before anything is read from stdin: the line stays for whoever reads next.
    stdin = io.StringIO("never-used-password\n")
    monkeypatch.setattr("sys.stdin", stdin)
    assert main([*home, "users", "reset-password", "nobody", "--password-stdin"]) == 2
    assert "'nobody' not found" in _one_error_line(capsys)
    assert main([*home, "users", "add", "carl", "--role", "boss", "--password-stdin"]) == 2
    line = _one_error_line(capsys)
    assert "'boss'" in line and ROLES_TEXT in line
    assert stdin.read() == "never-used-password\n"
    assert [row[0] for row in _users(home, capsys)] == ["ana", "bob"]


def test_users_add_is_audited_as_the_shell_user(home: list[str]) -> None:
    with _db(home) as db:
        entries = Repository(db).list_audit(action="user.add")
    assert sorted((e.actor, e.target) for e in entries) == [("cli:tester", "ana"), ("cli:tester", "bob")]


def test_the_demo_first_admin_is_audited_as_the_shell_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inspect_app import cli_users

    monkeypatch.setenv("USER", "tester")
    url = f"sqlite:///{(tmp_path / 'demo.db').as_posix()}"
    assert "sign in with password" in cli_users.ensure_first_admin(url)
    with Database.open(url) as db:
        entries = Repository(db).list_audit(action="user.add")
    assert [(e.actor, e.target) for e in entries] == [("cli:tester", "admin")]
