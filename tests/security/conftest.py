"""Fixtures for the security tests.

* A real database with one user per role: SQLite always, PostgreSQL when ``INSPECT_TEST_POSTGRES_URL`` is set (a fresh
  schema per test, dropped after).
* For the database-role tests, a fresh PostgreSQL database with an owner and an application role; needs
  ``INSPECT_TEST_POSTGRES_ADMIN_URL``, a superuser URL (``.ci/run`` sets it). Every module gets its own database and
  uniquely named roles, dropped afterwards.

Without the servers those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from inspect_app.app import users
from inspect_app.cli import main
from inspect_app.records import Decision, Inspection
from inspect_app.storage import Database, Repository
from tests.streamlit_caches import fresh_caches  # noqa: F401 - an autouse fixture for every test in this folder

ADMIN_ENV = "INSPECT_TEST_POSTGRES_ADMIN_URL"
OWNER_PASSWORD = "owner-pw-9f3a1c"
APP_PASSWORD = "app-pw-7d2e4b"


@dataclass(frozen=True)
class RolesDatabase:
    """A database whose public schema belongs to ``owner``, migrated to head, with ``app`` as the row-only role."""

    admin_url: str
    owner: str
    app: str
    owner_url: str
    app_url: str
    name: str


def admin_server_url() -> URL:
    """The administrator URL from the environment; skips the test without it."""
    server = os.environ.get(ADMIN_ENV)
    if not server:
        pytest.skip(f"{ADMIN_ENV} is not set; set it to a PostgreSQL superuser URL to run the role tests")
    return make_url(server)


def role_url(admin: URL, role: str, password: str, database: str, schema: str | None = None) -> str:
    """A URL for ``role`` on the admin's server, optionally confined to ``schema``."""
    url = admin.set(username=role, password=password, database=database)
    if schema:
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def create_roles_cli(admin_url: str, owner: str, app: str, *extra: str) -> int:
    """``inspect-app db create-roles`` with the test passwords in the environment."""
    env = {"INSPECT_DB_OWNER_PASSWORD": OWNER_PASSWORD, "INSPECT_DB_APP_PASSWORD": APP_PASSWORD}
    with mock.patch.dict(os.environ, env):
        return main(["db", "create-roles", "--admin-url", admin_url, "--owner", owner, "--app", app, *extra])


@pytest.fixture(scope="module")
def roles_db() -> Iterator[RolesDatabase]:
    """A fresh database set up as a plant would: create-roles, then ``db upgrade`` as the owner."""
    admin = admin_server_url()
    suffix = uuid.uuid4().hex[:10]
    name, owner, app = f"inspect_sec_{suffix}", f"sec_owner_{suffix}", f"sec_app_{suffix}"
    server = create_engine(admin, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin_url = admin.set(database=name).render_as_string(hide_password=False)
    setup = RolesDatabase(
        admin_url=admin_url, owner=owner, app=app, name=name,
        owner_url=role_url(admin, owner, OWNER_PASSWORD, name), app_url=role_url(admin, app, APP_PASSWORD, name),
    )
    try:
        assert create_roles_cli(admin_url, owner, app) == 0
        assert main(["--db", setup.app_url, "db", "upgrade", "--owner-url", setup.owner_url]) == 0
        yield setup
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            for role in (app, owner):
                connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        server.dispose()


@pytest.fixture(scope="module")
def admin_engine(roles_db: RolesDatabase) -> Iterator[object]:
    """A superuser engine on the module's database, for inspecting privileges."""
    engine = create_engine(roles_db.admin_url)
    yield engine
    engine.dispose()


PASSWORD = "correct-horse-battery"
ROLES = ("viewer", "operator", "engineer", "admin")
SECRET = "s" * 40


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_schema) -> Iterator[str]:
    """An empty database URL: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
        return
    with postgres_schema("inspect_security") as url:
        yield url


@pytest.fixture
def plant(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A migrated database with a few inspections and one user per role (named after it), selected through the
    environment the dashboard reads; viewing is left at its default (closed)."""
    now = datetime.now(UTC)
    db = Database.open(db_url)
    Repository(db).add_inspections([
        Inspection(station="secret-cell", line="line-1", source="/in", image_path=f"/in/{i}.png",
                   decision=Decision.NG if i % 3 == 0 else Decision.OK, created_at=now - timedelta(minutes=5 + i),
                   content_hash=f"h{i}", model_version="m1", score=0.1 * i)
        for i in range(6)
    ])
    for role in ROLES:
        users.create_user(db, role, role, PASSWORD)
    monkeypatch.setenv("INSPECT_DATABASE_URL", db_url)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    monkeypatch.setenv("INSPECT_SESSION_SECRET", SECRET)
    monkeypatch.delenv("INSPECT_DASHBOARD_OPEN_VIEWING", raising=False)
    monkeypatch.delenv("INSPECT_SESSION_IDLE_MINUTES", raising=False)
    try:
        yield db
    finally:
        db.dispose()
