"""Engines, sessions and programmatic Alembic migrations for the plant database.

SQLite (a file under ``INSPECT_HOME``) is the default; PostgreSQL is used for a shared plant database. Every error
that leaves this module names the database URL with its password masked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from inspect_app.errors import StorageError
from inspect_app.storage.db_roles import apply_app_privileges

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
# Fail fast on an unreachable PostgreSQL host instead of waiting for the OS TCP timeout (minutes).
POSTGRES_CONNECT_TIMEOUT_S = 10


def mask_url(url: str | URL | Engine) -> str:
    """Render a database URL with its password replaced by ``***``, safe for logs and error messages."""
    if isinstance(url, Engine):
        url = url.url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        # Not parseable as a URL: there is no reliable way to find a password in it, so do not echo it at all.
        return "<unparseable database URL>"


def is_unreachable(exc: BaseException) -> bool:
    """Whether an error (or one it was raised from) means "the database cannot be reached right now".

    Connection refusals, dropped connections and a locked SQLite file count; constraint violations and SQL errors
    do not, so callers may retry or spool only what a later attempt could fix.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OperationalError, InterfaceError)):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def _describe(exc: BaseException, url: URL) -> str:
    """Short reason for a database error: the driver's own message, with the URL's password removed."""
    orig = getattr(exc, "orig", None)
    # One line: PostgreSQL's messages carry a LINE/caret context over several lines (a multi-line CREATE TABLE).
    message = " ".join(str(orig if orig is not None else exc).split())
    # Drivers may echo their connection string; never let the password through.
    if url.password:
        message = message.replace(str(url.password), "***")
    return message


def _json_default(value: Any) -> Any:
    """Make numpy scalars and arrays (common in metrics) JSON-serialisable without importing numpy."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"value {value!r} of type {type(value).__name__} cannot be stored as JSON")


def _json_dumps(value: Any) -> str:
    """JSON serializer used for every JSON column."""
    return json.dumps(value, default=_json_default, allow_nan=True)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings: WAL for concurrent readers, a busy timeout for writers, enforced FKs."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def make_engine(url: str | URL) -> Engine:
    """Create an engine configured for the backend; does not connect yet.

    SQLite: the parent folder is created, and each connection gets WAL mode, ``busy_timeout`` 5000 ms and foreign
    keys on. PostgreSQL: ``pool_pre_ping`` so a restarted server does not break long-running pipelines.

    Args:
        url: SQLAlchemy database URL.

    Returns:
        A new engine; call ``dispose()`` when done.

    Raises:
        StorageError: the URL cannot be parsed, names an unknown driver, or its SQLite folder cannot be created.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(f"database URL {mask_url(url)} is not a valid SQLAlchemy URL: {exc}") from exc
    masked = mask_url(parsed)
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder {str(folder)!r} for database {masked}: {exc}") from exc
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True
        if parsed.get_driver_name() in ("psycopg", "psycopg2") and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StorageError(f"cannot create an engine for database {masked}: {exc}") from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    logger.debug("engine created for %s", masked)
    return engine


def _alembic_config() -> Config:
    """Alembic config built in code: the migrations folder ships inside the package, no alembic.ini needed."""
    cfg = Config()
    # ConfigParser interpolates '%', which may appear in an install path.
    cfg.set_main_option("script_location", MIGRATIONS_DIR.as_posix().replace("%", "%%"))
    return cfg


@contextmanager
def _engine_for(url_or_engine: str | URL | Engine) -> Iterator[Engine]:
    """Use a given engine as is, or build (and afterwards dispose) one for a URL."""
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    engine = make_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


# PostgreSQL's SQLSTATE for "permission denied".
INSUFFICIENT_PRIVILEGE = "42501"


def _migrate(url_or_engine: str | URL | Engine, revision: str, direction: str) -> None:
    """Run ``alembic upgrade``/``downgrade`` to ``revision`` on one connection inside one transaction."""
    with _engine_for(url_or_engine) as engine:
        masked = mask_url(engine)
        cfg = _alembic_config()
        try:
            with engine.begin() as connection:
                cfg.attributes["connection"] = connection
                if direction == "upgrade":
                    command.upgrade(cfg, revision)
                    # Run as the owner role, this grants the application role its privileges on new tables.
                    apply_app_privileges(connection)
                else:
                    command.downgrade(cfg, revision)
        except CommandError as exc:
            raise StorageError(f"cannot {direction} database {masked} to revision {revision!r}: {exc}") from exc
        except SQLAlchemyError as exc:
            hint = ""
            if getattr(getattr(exc, "orig", None), "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
                # The application role cannot change the schema, by design: the owner migrates.
                hint = ("; this role may not change the schema: run `inspect-app db upgrade --owner-url URL` "
                        "as the schema owner (see `inspect-app db create-roles`)")
            raise StorageError(
                f"cannot {direction} database {masked} to revision {revision!r}: {_describe(exc, engine.url)}{hint}"
            ) from exc
        logger.debug("database %s: %s to %s done", masked, direction, revision)


def upgrade(url_or_engine: str | URL | Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest).

    Raises:
        StorageError: the database is unreachable or the revision is unknown.
    """
    _migrate(url_or_engine, revision, "upgrade")


def downgrade(url_or_engine: str | URL | Engine, revision: str = "base") -> None:
    """Revert migrations down to ``revision`` (default ``base``: drop every table).

    Raises:
        StorageError: the database is unreachable or the revision is unknown.
    """
    _migrate(url_or_engine, revision, "downgrade")


def current_revision(url_or_engine: str | URL | Engine) -> str | None:
    """The Alembic revision the database is at; ``None`` for a database never migrated.

    Raises:
        StorageError: the database is unreachable.
    """
    with _engine_for(url_or_engine) as engine:
        try:
            with engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot read the schema revision of {mask_url(engine)}: {_describe(exc, engine.url)}"
            ) from exc


def head_revision() -> str:
    """The newest revision shipped with this package."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships at least one revision
        raise StorageError(f"no migrations found in {MIGRATIONS_DIR.as_posix()!r}")
    return head


class Database:
    """An engine plus a session factory; the handle every storage function takes.

    Attributes:
        engine: the SQLAlchemy engine.
        sessions: ``sessionmaker`` with ``expire_on_commit=False`` so loaded rows stay readable after commit.
    """

    def __init__(self, engine: Engine) -> None:
        """Wrap an existing engine; prefer ``Database.open``."""
        self.engine = engine
        self.sessions: sessionmaker[Session] = sessionmaker(bind=engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | URL, migrate: bool = True) -> Database:
        """Connect to ``url``, check that it answers, and by default upgrade the schema to head.

        Args:
            url: SQLAlchemy database URL.
            migrate: run Alembic ``upgrade head`` first.

        Raises:
            StorageError: the database cannot be reached or migrated; the message masks the password.
        """
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            if migrate:
                upgrade(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StorageError(f"cannot connect to database {mask_url(engine)}: {_describe(exc, engine.url)}") from exc
        except StorageError:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return mask_url(self.engine)

    @property
    def dialect(self) -> str:
        """Backend name, e.g. ``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error.

        Raises:
            StorageError: the database refused the work (driver errors are wrapped, with the URL masked).
        """
        try:
            with self.sessions.begin() as session:
                yield session
        except DBAPIError as exc:
            raise StorageError(f"database {self.url} refused the operation: {_describe(exc, self.engine.url)}") from exc

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        """Use as a context manager that disposes the engine on exit."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Dispose the engine."""
        self.dispose()

    def __repr__(self) -> str:
        """Show the masked URL only."""
        return f"Database({self.url!r})"
