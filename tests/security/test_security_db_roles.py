"""The application role does what the product does and nothing more; create-roles is idempotent and quiet.

Real PostgreSQL (``INSPECT_TEST_POSTGRES_ADMIN_URL``): the schema is migrated as the owner role, then the storage
functions the dashboard, pipelines and workers call run as the application role; the statements that would let it
rewrite history (disable the audit trigger, truncate, delete, drop, create tables) must be refused by the server.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from inspect_app.app import reviews, users, versions
from inspect_app.app import runs as run_actions
from inspect_app.app import schedules as schedule_actions
from inspect_app.app.users import set_user_active
from inspect_app.cli import main
from inspect_app.records import AuditEvent, Decision, Inspection, ModelVersion, RunStatus
from inspect_app.storage import Database, Repository
from inspect_app.storage.retention import purge
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 3, 10, 8, 0, tzinfo=UTC)
OWNER_PASSWORD = "owner-pw-9f3a1c"  # the conftest's, repeated: test modules never import conftest
APP_PASSWORD = "app-pw-7d2e4b"


def _inspection(index: int, decision: Decision = Decision.NG) -> Inspection:
    return Inspection(
        station="station-1", line="line-1", source="/data/in", image_path=f"/data/in/img_{index:04d}.png",
        decision=decision, created_at=T0 + timedelta(seconds=index), content_hash=f"{index:064x}",
        model_version="m1", defect_class="scratch" if decision == Decision.NG else None, score=0.8, threshold=0.5,
        latency_ms=1.0, heatmap_path=None, error=None,
    )


@pytest.fixture
def app_db(roles_db) -> Iterator[Database]:
    """The database opened as the application would open it: the app role, ``Database.open`` (migrate on)."""
    database = Database.open(roles_db.app_url)
    yield database
    database.dispose()


def test_app_role_runs_the_product_path(app_db: Database, roles_db, tmp_path) -> None:
    """Inspect, review, register/promote/threshold, queue and run a training, schedules, users, purge: all audited."""
    assert make_url(app_db.engine.url).username == roles_db.app
    repository = Repository(app_db)
    assert repository.add_inspections([_inspection(i) for i in range(3)] + [_inspection(3, Decision.OK)]) == 4
    admin = users.create_user(app_db, "alice", "admin", "correct horse battery")
    operator = users.create_user(app_db, "olly", "operator", "correct horse battery")
    inspection_id = repository.inspection_id(f"{0:064x}", "m1", "station-1")
    assert inspection_id is not None
    reviews.review_inspection(app_db, operator, inspection_id, "NG", defect_class="scratch")

    for name in ("m1", "m2"):
        repository.add_model_version(ModelVersion(name=name, kind="classifier", backbone="b", path=f"/m/{name}",
                                                  classes=("good", "scratch")))
    versions.promote_model(app_db, admin, "m1")
    versions.promote_model(app_db, admin, "m2")
    versions.set_model_threshold(app_db, admin, "m2", 0.4)
    versions.rollback_model(app_db, admin)
    assert repository.active_model().name == "m1"

    queue = RunQueue(app_db)
    run_id = run_actions.enqueue_training(app_db, admin, str(tmp_path), {"epochs": 1})
    claimed = queue.claim("w1")
    assert claimed is not None and claimed.id == run_id
    queue.heartbeat(run_id, "w1")
    queue.finish(run_id, "w1", RunStatus.SUCCEEDED)
    run_actions.cancel_run(app_db, admin, queue.enqueue({"epochs": 1}, str(tmp_path)))

    schedule_actions.add_schedule(app_db, admin, "nightly", "0 2 * * *", str(tmp_path))
    schedule_actions.set_schedule_enabled(app_db, admin, "nightly", False)
    ScheduleStore(app_db).remove("nightly")
    set_user_active(app_db, "cli:test", "olly", False)

    result = purge(app_db, timedelta(days=1), now=datetime.now(UTC), delete_files=False, actor="alice")
    assert result.rows == 4
    actions = {event.action for event in repository.list_audit(limit=100)}
    expected = {"user.add", "review.add", "model.threshold", "training.enqueue", "training.cancel", "schedule.add",
                "user.deactivate", "db.purge"}
    assert expected <= actions, expected - actions


def _refused(roles_db, statement: str) -> str:
    """Run ``statement`` as the application role; return the server's refusal (fails if it was allowed)."""
    engine = create_engine(roles_db.app_url)
    try:
        with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
            connection.execute(text(statement))
        return str(caught.value.orig)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "TRUNCATE audit_log",
        "DELETE FROM audit_log",
        "UPDATE audit_log SET actor = 'someone else'",
        "DROP TABLE audit_log",
        "DROP TABLE inspections",
        "ALTER TABLE inspections ADD COLUMN note text",
        "TRUNCATE inspections",
        "CREATE TABLE shadow (id integer)",
        "CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NULL; END $$",
        "DROP TRIGGER audit_log_append_only ON audit_log",
        "UPDATE alembic_version SET version_num = '0001'",
        "CREATE SCHEMA shadow",
    ],
)
def test_app_role_cannot_rewrite_history(roles_db, app_db: Database, statement: str) -> None:
    Repository(app_db).audit(AuditEvent(actor="t", action="probe"))
    message = _refused(roles_db, statement)
    assert "permission denied" in message or "must be owner" in message, message
    assert any(event.action == "probe" for event in Repository(app_db).list_audit(limit=1000))


def _acl(admin_engine) -> dict[str, str]:
    with admin_engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT c.relname, pg_get_userbyid(c.relowner), coalesce(c.relacl::text, '') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')"
        )).all()
    return {name: f"{owner} {acl}" for name, owner, acl in rows}


def test_create_roles_is_idempotent(roles_db, admin_engine, app_db: Database, capsys) -> None:
    """Running create-roles and the owner's upgrade again changes no privilege and keeps the app working."""
    before = _acl(admin_engine)
    assert all(value.startswith(roles_db.owner + " ") for value in before.values()), before
    capsys.readouterr()
    for _ in range(2):
        with mock.patch.dict(os.environ, {"INSPECT_DB_OWNER_PASSWORD": OWNER_PASSWORD,
                                          "INSPECT_DB_APP_PASSWORD": APP_PASSWORD}):
            assert main(["db", "create-roles", "--admin-url", roles_db.admin_url, "--owner", roles_db.owner,
                         "--app", roles_db.app]) == 0
        assert main(["--db", roles_db.app_url, "db", "upgrade", "--owner-url", roles_db.owner_url]) == 0
    out = capsys.readouterr().out
    assert f"owner role {roles_db.owner}: exists" in out and f"application role {roles_db.app}: exists" in out
    assert _acl(admin_engine) == before
    assert f"{roles_db.app}=ar/" in before["audit_log"] and f"{roles_db.app}=arwd/" in before["inspections"]
    assert Repository(app_db).add_inspections([_inspection(100)]) == 1


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + (str(record.exc_info) if record.exc_info else ""))


def _run_logged(argv: list[str], capsys, env: dict[str, str]) -> tuple[int, str, str]:
    """``inspect-app -vv ARGV``; returns the exit code, stdout+stderr, and every log record of the run."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in ("inspect_app", "sqlalchemy", "alembic")]
    for logger in loggers:
        logger.addHandler(handler)
    sys.stdin = io.StringIO("")
    try:
        with mock.patch.dict(os.environ, env):
            code = main(["-vv", *argv])
    finally:
        sys.stdin = sys.__stdin__
        for logger in loggers:
            logger.removeHandler(handler)
    captured = capsys.readouterr()
    return code, captured.out + captured.err, "\n".join(handler.lines)


def test_passwords_never_in_output_or_logs(roles_db, capsys) -> None:
    env = {"INSPECT_DB_OWNER_PASSWORD": OWNER_PASSWORD, "INSPECT_DB_APP_PASSWORD": APP_PASSWORD}
    admin_password = make_url(roles_db.admin_url).password or "\0"
    runs = [
        _run_logged(["db", "create-roles", "--admin-url", roles_db.admin_url, "--owner", roles_db.owner,
                     "--app", roles_db.app], capsys, env),
        _run_logged(["--db", roles_db.app_url, "db", "upgrade"], capsys, {**env, "INSPECT_DB_OWNER_URL":
                                                                           roles_db.owner_url}),
        _run_logged(["--db", roles_db.app_url, "db", "current"], capsys, env),
    ]
    for code, output, logs in runs:
        assert code == 0, output
        for secret in (OWNER_PASSWORD, APP_PASSWORD, admin_password):
            assert secret not in output and secret not in logs
    assert "***" in runs[0][1]  # the URLs it prints are masked, not left out


def test_generated_passwords_are_printed_once_and_never_logged(roles_db, capsys) -> None:
    """--generate-passwords, on a schema of its own: each new password once on stdout, in no log record."""
    suffix = uuid.uuid4().hex[:8]
    owner, app, schema = f"gen_owner_{suffix}", f"gen_app_{suffix}", f"gen_{suffix}"
    admin = create_engine(roles_db.admin_url, isolation_level="AUTOCOMMIT")
    try:
        code, output, logs = _run_logged(
            ["db", "create-roles", "--admin-url", roles_db.admin_url, "--owner", owner, "--app", app,
             "--schema", schema, "--generate-passwords"], capsys, {})
        assert code == 0, output
        lines = [line for line in output.splitlines() if line.startswith("generated password for ")]
        assert [line.split()[3] for line in lines] == [owner, app]
        for line in lines:
            password = line.rsplit(" ", 1)[-1]
            assert len(password) >= 24 and output.count(password) == 1 and password not in logs
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            connection.execute(text(f'DROP OWNED BY "{owner}", "{app}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{app}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{owner}"'))
        admin.dispose()


def test_an_app_role_that_owned_the_tables_loses_ownership(roles_db, capsys) -> None:
    """The old set-up (the app's role migrated and owns everything): create-roles hands it all to the owner."""
    suffix = uuid.uuid4().hex[:8]
    legacy, owner, schema = f"legacy_{suffix}", f"legacy_owner_{suffix}", f"legacy_{suffix}"
    admin = create_engine(roles_db.admin_url, isolation_level="AUTOCOMMIT")
    database = make_url(roles_db.admin_url).database
    legacy_url = make_url(roles_db.admin_url).set(username=legacy, password=APP_PASSWORD).update_query_dict(
        {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE ROLE \"{legacy}\" LOGIN PASSWORD '{APP_PASSWORD}'"))
            connection.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{legacy}"'))
            connection.execute(text(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{legacy}"'))
        Database.open(legacy_url).dispose()  # migrates as the legacy role: it owns every table
        with mock.patch.dict(os.environ, {"INSPECT_DB_OWNER_PASSWORD": OWNER_PASSWORD}):
            assert main(["db", "create-roles", "--admin-url", roles_db.admin_url, "--owner", owner,
                         "--app", legacy, "--schema", schema]) == 0
        out = capsys.readouterr().out
        assert "table audit_log" in out and "function audit_log_refuse_change" in out
        engine = create_engine(legacy_url)
        try:
            with pytest.raises(DBAPIError, match="must be owner"), engine.begin() as connection:
                connection.execute(text("ALTER TABLE audit_log DISABLE TRIGGER ALL"))
        finally:
            engine.dispose()
        with Database.open(legacy_url) as database_handle:
            assert Repository(database_handle).add_inspections([_inspection(7)]) == 1
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            connection.execute(text(f'DROP OWNED BY "{owner}", "{legacy}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{legacy}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{owner}"'))
        admin.dispose()


@pytest.mark.parametrize(
    ("extra_env", "app", "named"),
    [
        ({"INSPECT_DB_OWNER_PASSWORD": OWNER_PASSWORD}, "fresh_app_without_password", "INSPECT_DB_APP_PASSWORD"),
        ({"INSPECT_DB_OWNER_PASSWORD": OWNER_PASSWORD, "INSPECT_DB_APP_PASSWORD": APP_PASSWORD}, "postgres",
         "superuser"),
    ],
)
def test_refusals_against_a_server_are_one_line(roles_db, capsys, monkeypatch, extra_env, app, named) -> None:
    """A new role without a password, or a superuser named as the app role: one line, exit 2, nothing changed."""
    for name in ("INSPECT_DB_OWNER_PASSWORD", "INSPECT_DB_APP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in extra_env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["db", "create-roles", "--admin-url", roles_db.admin_url, "--owner", roles_db.owner,
                 "--app", app]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], captured.err
    assert not captured.out
    with create_engine(roles_db.admin_url).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM pg_roles WHERE rolname = :r"), {"r": app}).scalar() \
            == (1 if app == "postgres" else 0)
        assert connection.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'")).scalar()


def test_tables_a_later_migration_creates_are_granted(roles_db, app_db: Database) -> None:
    """A table the owner creates after create-roles (as a later migration would) is readable and writable by the
    app through the default privileges, and ``db upgrade`` re-applies the policy (audit_log stays SELECT/INSERT)."""
    owner = create_engine(roles_db.owner_url)
    try:
        with owner.begin() as connection:
            connection.execute(text("CREATE TABLE later_table (id serial PRIMARY KEY, note text)"))
        with app_db.engine.begin() as connection:
            connection.execute(text("INSERT INTO later_table (note) VALUES ('x')"))
            assert connection.execute(text("SELECT count(*) FROM later_table")).scalar() == 1
        assert main(["--db", roles_db.app_url, "db", "upgrade", "--owner-url", roles_db.owner_url]) == 0
        assert "permission denied" in _refused(roles_db, "UPDATE audit_log SET actor = 'x'")
    finally:
        with owner.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS later_table"))
        owner.dispose()


def test_an_app_role_behind_the_schema_is_told_to_migrate_as_the_owner(roles_db, app_db: Database) -> None:
    from inspect_app.errors import StorageError
    from inspect_app.storage.db import downgrade, upgrade

    downgrade(roles_db.owner_url, "-1")
    try:
        with pytest.raises(StorageError) as refused:
            Database.open(roles_db.app_url)
        message = str(refused.value)
        assert "--owner-url" in message and "schema owner" in message
        assert APP_PASSWORD not in message and len(message.splitlines()) == 1
    finally:
        upgrade(roles_db.owner_url)
