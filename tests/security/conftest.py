"""Fixtures for the database-role tests: a fresh PostgreSQL database with an owner and an application role.

Needs ``INSPECT_TEST_POSTGRES_ADMIN_URL``, a superuser URL (``.ci/run`` sets it); without it the tests are skipped
with a reason. Every module gets its own database and uniquely named roles, dropped afterwards, so runs beside each
other (or beside the storage tests' schemas) do not interfere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from unittest import mock

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from inspect_app.cli import main

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
