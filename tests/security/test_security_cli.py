"""The dashboard command listens on loopback unless told otherwise; the demo's first user can sign in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from inspect_app import cli, cli_users
from inspect_app.app import access
from inspect_app.storage import Database, Repository


def _address(command: list[str]) -> str:
    return command[command.index("--server.address") + 1]


def test_dashboard_command_binds_loopback_by_default() -> None:
    command = cli.dashboard_command(8501)
    assert _address(command) == "127.0.0.1" and command[command.index("--server.port") + 1] == "8501"


@pytest.mark.parametrize(("argv", "address", "url"), [
    ([], "127.0.0.1", "http://127.0.0.1:8502"),
    (["--address", "0.0.0.0"], "0.0.0.0", "http://0.0.0.0:8502"),
    (["--address", "::1"], "::1", "http://[::1]:8502"),
])
def test_cmd_dashboard_passes_the_address_and_prints_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], argv: list[str],
                                                        address: str, url: str) -> None:
    started: list[list[str]] = []
    # The seam is the process start: the command is built and printed for real, no server is run.
    monkeypatch.setattr(subprocess, "call", lambda command, env: started.append(command) or 0)
    monkeypatch.delenv("INSPECT_DASHBOARD_OPEN_VIEWING", raising=False)
    args = cli.build_parser().parse_args(["--home", str(tmp_path), "dashboard", "--port", "8502", *argv])
    assert args.func(args) == 0
    assert _address(started[0]) == address
    out = capsys.readouterr().out
    assert f"dashboard on {url} " in out and "sign-in required" in out


def test_first_admin_is_created_once_with_a_working_password(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'demo.db').as_posix()}"
    message = cli_users.ensure_first_admin(url)
    password = message.split("sign in with password ")[1].split()[0]
    with Database.open(url) as db:
        assert access.sign_in(db, "admin", password).role == "admin"
    again = cli_users.ensure_first_admin(url)
    assert password not in again and "sign in to the dashboard with your user" in again
    with Database.open(url) as db:
        assert [u.username for u in Repository(db).list_users()] == ["admin"]
