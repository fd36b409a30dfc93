"""``inspect-app db create-roles`` refuses bad input with one line and exit code 2; ``db upgrade --owner-url``.

These need no PostgreSQL server: every refusal happens before a connection, or on a closed port. The role tests
against a real server are in ``tests/security``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_app.cli import main
from inspect_app.storage import current_revision, head_revision

SECRET = "adm1n-s3cret"
ADMIN = f"postgresql+psycopg://postgres:{SECRET}@localhost:1/plant"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INSPECT_DATABASE_URL", "INSPECT_DB_ADMIN_URL", "INSPECT_DB_OWNER_URL", "INSPECT_DB_OWNER_PASSWORD",
                 "INSPECT_DB_APP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and not captured.out
    assert SECRET not in captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--admin-url", ADMIN, "--owner", "Inspect-Owner", "--app", "inspect_app"], "'Inspect-Owner'"),
        (["--admin-url", ADMIN, "--owner", "inspect_owner", "--app", "app; DROP ROLE x"], "'app; DROP ROLE x'"),
        (["--admin-url", ADMIN, "--owner", "pg_owner", "--app", "inspect_app"], "'pg_owner'"),
        (["--admin-url", ADMIN, "--owner", "same", "--app", "same"], "'same'"),
        (["--admin-url", ADMIN, "--owner", "o", "--app", "a", "--schema", "Plant"], "'Plant'"),
        (["--admin-url", "sqlite:///x.db", "--owner", "o", "--app", "a"], "sqlite"),
        (["--admin-url", "postgresql://u:p@h/db", "--owner", "o", "--app", "a"], "postgresql://"),
        (["--admin-url", "not a url", "--owner", "o", "--app", "a"], "not a valid"),
        (["--owner", "o", "--app", "a"], "INSPECT_DB_ADMIN_URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "create-roles", *argv]) == 2
    assert named in _one_error_line(capsys)


def test_unreachable_server_is_one_line_with_the_password_masked(capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DB_APP_PASSWORD", "app-secret-value")
    monkeypatch.setenv("INSPECT_DB_ADMIN_URL", ADMIN)
    assert main(["db", "create-roles", "--owner", "inspect_owner", "--app", "inspect_app"]) == 2
    line = _one_error_line(capsys)
    assert "postgres:***@localhost:1/plant" in line and "app-secret-value" not in line


def test_upgrade_migrates_with_the_owner_url(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """--owner-url (or INSPECT_DB_OWNER_URL) is the database the migrations run on, not --db."""
    app, owner = f"sqlite:///{tmp_path / 'app.db'}", f"sqlite:///{tmp_path / 'owner.db'}"
    assert main(["--db", app, "db", "upgrade", "--owner-url", owner]) == 0
    assert current_revision(owner) == head_revision() and not (tmp_path / "app.db").exists()
    monkeypatch.setenv("INSPECT_DB_OWNER_URL", owner)
    assert main(["--db", app, "db", "downgrade", "0001"]) == 0
    assert current_revision(owner) == "0001"
    assert "owner.db" in capsys.readouterr().out
