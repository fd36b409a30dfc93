"""The application role of a database set up outside the tests (``.ci/run``: create-roles, then upgrade as owner).

``INSPECT_TEST_POSTGRES_APP_URL`` names that role's URL; without it the tests are skipped. The role must be able to do
the application's work there and be refused the statements that would bypass the audit log's triggers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from inspect_app.app import users
from inspect_app.records import AuditEvent
from inspect_app.storage import Database, Repository

pytestmark = pytest.mark.postgres
APP_URL_ENV = "INSPECT_TEST_POSTGRES_APP_URL"


@pytest.fixture
def app_db() -> Iterator[Database]:
    url = os.environ.get(APP_URL_ENV)
    if not url:
        pytest.skip(f"{APP_URL_ENV} is not set; .ci/run sets it to the application role of a plant database")
    database = Database.open(url)  # as the app opens it: migrate on, a no-op at head
    yield database
    database.dispose()


def test_app_role_writes_rows_and_audit_entries(app_db: Database) -> None:
    name = f"ci_{uuid.uuid4().hex[:8]}"
    users.create_user(app_db, name, "viewer", "correct horse battery")
    Repository(app_db).audit(AuditEvent(actor=name, action="ci.probe"))
    assert any(e.actor == name and e.action == "ci.probe" for e in Repository(app_db).list_audit(limit=1000))


@pytest.mark.parametrize("statement", ["ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
                                       "TRUNCATE audit_log", "DELETE FROM audit_log", "DROP TABLE users",
                                       "CREATE TABLE shadow (id integer)"])
def test_app_role_is_refused_schema_changes(app_db: Database, statement: str) -> None:
    with pytest.raises(DBAPIError, match=r"permission denied|must be owner"), app_db.engine.begin() as connection:
        connection.execute(text(statement))
