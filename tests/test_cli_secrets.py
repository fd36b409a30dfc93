"""No database password reaches stdout, stderr or a log record: the real commands, run with a password in the URL.

The PostgreSQL URL points at a closed port, so every command fails on its first connection and prints the error it
gets; the PostgreSQL-marked test runs the commands that succeed (and print the URL on success) against a real server.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from inspect_app.cli import main
from inspect_app.config.settings import load_settings

SECRET = "s3cret"
UNREACHABLE = f"postgresql+psycopg://u:{SECRET}@localhost:1/x"


class _Records(logging.Handler):
    """Keeps every record of the loggers it is attached to (``setup_logging`` replaces the root handlers)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def records() -> Iterator[_Records]:
    """Log records of the package, SQLAlchemy and Alembic at debug level, tracebacks included."""
    handler = _Records()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("inspect_app", "sqlalchemy", "alembic")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], records: _Records, stdin: str = "") -> tuple[int, str]:
    """Run ``inspect-app -vv ARGV`` in process; return the exit code and everything it wrote and logged."""
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(["-vv", *argv])
    finally:
        sys.stdin = sys.__stdin__
    captured = capsys.readouterr()
    return code, captured.out + captured.err + "\n".join(records.lines)


COMMANDS = [
    ["db", "upgrade"], ["db", "downgrade", "base"], ["db", "current"], ["db", "purge", "--older-than", "1d"],
    ["models", "list"], ["models", "promote", "m1"], ["models", "rollback"],
    ["users", "list"], ["users", "add", "eve", "--role", "viewer", "--password-stdin"],
    ["users", "deactivate", "eve"], ["users", "set-role", "eve", "admin"],
    ["users", "reset-password", "eve", "--password-stdin"],
    ["runs", "list"], ["schedules", "list"], ["scheduler", "--once"], ["worker", "--once"],
]


@pytest.mark.parametrize("via", ["flag", "environment"])
@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_unreachable_database_errors_mask_the_password(
    command: list[str], via: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], records: _Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if via == "flag":
        monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
        argv = ["--home", str(tmp_path), "--db", UNREACHABLE, *command]
    else:
        monkeypatch.setenv("INSPECT_DATABASE_URL", UNREACHABLE)
        argv = ["--home", str(tmp_path), *command]
    code, text = _run(argv, capsys, records, stdin="a-long-password\n")
    assert code == 2
    assert SECRET not in text
    assert "u:***@localhost:1/x" in text  # the URL is named, masked
    assert "Traceback" not in text.split("\n", 1)[0]


def test_inspect_with_an_unreachable_database_masks_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], records: _Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    (tmp_path / "in").mkdir()
    code, text = _run(["--home", str(tmp_path), "--db", UNREACHABLE, "inspect", str(tmp_path / "in"), "--model",
                       str(tmp_path / "model")], capsys, records)
    assert code == 2 and SECRET not in text and "u:***@" in text


@pytest.mark.parametrize("url", [f"postgresql://u:{SECRET}@h:abc/x", f"postgresql+nodriver://u:{SECRET}@h/x"])
def test_malformed_urls_are_one_line_without_the_password(
    url: str, capsys: pytest.CaptureFixture[str], records: _Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    code, text = _run(["--db", url, "db", "current"], capsys, records)
    assert code == 2 and SECRET not in text and "Traceback" not in text
    assert "error: " in text and ("'abc'" in text or "nodriver" in text)


def test_sqlite_commands_print_the_url_they_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], records: _Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    code, text = _run(["--db", url, "db", "upgrade"], capsys, records)
    assert code == 0 and f"database {url} is at the latest schema" in text


def test_settings_repr_masks_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DATABASE_URL", UNREACHABLE)
    settings = load_settings()
    assert settings.resolved_database_url == UNREACHABLE  # the URL itself is intact for connecting
    assert SECRET not in repr(settings) and SECRET not in str(settings) and "u:***@localhost" in repr(settings)


def _leaks(text: str, url: str) -> bool:
    """Whether ``text`` shows the password of ``url``.

    CI's password may also be the user or database name ("inspect"), so the URL form is always checked and the bare
    word only when it is not part of the URL's other fields.
    """
    parts = make_url(url)
    password = str(parts.password)
    if f":{password}@" in text:
        return True
    others = " ".join(str(v) for v in (parts.username, parts.host, parts.database) if v)
    return password not in others and password in text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dashboard_banner_masks_the_password(tmp_path: Path) -> None:
    session_key = "session-key-that-must-not-be-printed-0123456789"
    env = {**os.environ, "INSPECT_DATABASE_URL": UNREACHABLE, "PYTHONUNBUFFERED": "1", "INSPECT_HOME": str(tmp_path),
           "INSPECT_SESSION_SECRET": session_key}
    command = [sys.executable, "-m", "inspect_app", "dashboard", "--port", str(_free_port())]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        banner = process.stdout.readline()
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    assert "dashboard on http://127.0.0.1:" in banner and "u:***@localhost:1/x" in banner
    assert SECRET not in banner and session_key not in banner


@pytest.mark.postgres
def test_successful_commands_mask_the_password(
    postgres_schema, tmp_path: Path, capsys: pytest.CaptureFixture[str], records: _Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    with postgres_schema("inspect_secrets") as url:
        password = make_url(url).password
        if not password:
            pytest.skip("INSPECT_TEST_POSTGRES_URL has no password to leak")
        base = ["--home", str(tmp_path), "--db", url]
        for command, stdin in ((["db", "upgrade"], ""), (["db", "current"], ""),
                               (["users", "add", "ana", "--role", "admin", "--password-stdin"], "ana-long-password\n"),
                               (["users", "set-role", "ana", "admin"], ""), (["users", "list"], ""),
                               (["models", "list"], ""), (["db", "purge", "--older-than", "1d"], ""),
                               (["db", "downgrade", "base"], "")):
            code, text = _run([*base, *command], capsys, records, stdin=stdin)
            assert code == 0, text
            assert not _leaks(text, url), command


@pytest.mark.postgres
def test_inspect_summary_masks_the_password(
    postgres_schema, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], records: _Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cv2
    import numpy as np

    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, level in enumerate((40, 220)):
        cv2.imwrite(str(folder / f"part{i}.png"), np.full((64, 64, 3), level, np.uint8))
    with postgres_schema("inspect_secrets") as url:
        password = make_url(url).password
        if not password:
            pytest.skip("INSPECT_TEST_POSTGRES_URL has no password to leak")
        code, text = _run(["--home", str(tmp_path), "--db", url, "inspect", str(folder), "--model",
                           str(tiny_checkpoint), "--device", "cpu"], capsys, records)
    assert code == 0, text
    assert "results in postgresql+psycopg://" in text and ":***@" in text and not _leaks(text, url)
