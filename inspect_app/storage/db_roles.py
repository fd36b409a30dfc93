"""PostgreSQL roles: an owner role that owns the schema, and an application role that can only read and write rows.

The audit log's triggers refuse UPDATE, DELETE and TRUNCATE, but a role that owns the table could disable them
(``ALTER TABLE audit_log DISABLE TRIGGER``). So the schema, its tables, sequences and functions belong to an owner
role that runs the migrations, and the dashboard, pipelines and workers connect as an application role that holds
row privileges only: ``SELECT, INSERT, UPDATE, DELETE`` on the tables the app changes, ``SELECT, INSERT`` on
``audit_log``, ``SELECT`` on ``alembic_version``, and no ownership, ``TRUNCATE``, ``TRIGGER`` or ``CREATE``.

``create_roles`` (run with an administrator URL) makes both roles and hands the schema to the owner;
``apply_app_privileges`` (run by ``db.upgrade`` after every migration) re-applies the per-table policy to every role
the owner's default privileges name, so tables created by later migrations follow it too.

Statements that carry a password go through the driver's own cursor, not SQLAlchemy, so that SQLAlchemy's statement
logging (``-vv``) never sees them; and the password is sent as a SCRAM verifier computed here, so neither does the
server's statement log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from inspect_app.errors import StorageError

logger = logging.getLogger(__name__)

ROW_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Tables the application may not change in place: the audit log is append-only, the schema revision is the owner's.
APP_TABLE_PRIVILEGES: dict[str, tuple[str, ...]] = {"audit_log": ("SELECT", "INSERT"), "alembic_version": ("SELECT",)}
# Lower-case SQL identifiers only: they need no quoting rules beyond double quotes, and no role named by accident
# with a different case (PostgreSQL folds unquoted names to lower case).
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RESERVED_PREFIX = "pg_"


class MissingPasswordError(ValueError):
    """A role that does not exist yet was given no password."""

    def __init__(self, role: str) -> None:
        super().__init__(f"role {role!r} does not exist yet and needs a password")
        self.role = role


@dataclass(frozen=True)
class RolesReport:
    """What ``create_roles`` did, for the CLI to print (never contains a password).

    Attributes:
        owner, app: the role names.
        schema: the schema now owned by ``owner``.
        created: the roles that did not exist before.
        password_set: the roles whose password was set in this call.
        reassigned: objects whose ownership moved to ``owner`` (e.g. ``table inspections``).
        tables: the tables the application role was granted privileges on.
        warnings: things the administrator should fix by hand.
    """

    owner: str
    app: str
    schema: str
    created: tuple[str, ...] = ()
    password_set: tuple[str, ...] = ()
    reassigned: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def check_role_name(name: str, what: str = "role") -> str:
    """Return ``name`` if it is a usable role or schema name.

    Raises:
        ValueError: not a lower-case SQL identifier of at most 63 characters, or a reserved ``pg_`` name.
    """
    if not isinstance(name, str) or not _ROLE_NAME.match(name) or name.startswith(_RESERVED_PREFIX):
        raise ValueError(
            f"{what} name {name!r} is not allowed: use 1-63 lower-case letters, digits and underscores, "
            f"starting with a letter or underscore, not starting with {_RESERVED_PREFIX!r}"
        )
    return name


def _ident(name: str) -> str:
    """A checked name as a quoted SQL identifier."""
    return '"' + check_role_name(name) + '"'


def table_privileges(table: str) -> tuple[str, ...]:
    """The privileges the application role gets on ``table``."""
    return APP_TABLE_PRIVILEGES.get(table, ROW_PRIVILEGES)


def _current_schema(connection: Connection) -> str:
    schema = connection.execute(text("SELECT current_schema()")).scalar()
    if schema is None:
        raise StorageError("no current schema: the search_path names no existing schema")
    return str(schema)


def _owned_tables(connection: Connection, schema: str, owner: str) -> list[str]:
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND pg_get_userbyid(c.relowner) = :owner ORDER BY c.relname"
        ),
        {"schema": schema, "owner": owner},
    )
    return [str(name) for name in rows.scalars()]


def grant_table_policy(connection: Connection, schema: str, owner: str, app: str) -> list[str]:
    """Give ``app`` exactly the policy's privileges on every table ``owner`` owns in ``schema``; returns the tables.

    Everything else (``TRUNCATE``, ``TRIGGER``, ``REFERENCES``, or ``UPDATE`` on the audit log from an older grant)
    is revoked first, so the result does not depend on what was granted before.
    """
    tables = _owned_tables(connection, schema, owner)
    for table in tables:
        qualified = f"{_ident(schema)}.\"{table}\""
        connection.execute(text(f"REVOKE ALL ON TABLE {qualified} FROM {_ident(app)}"))
        connection.execute(text(f"GRANT {', '.join(table_privileges(table))} ON TABLE {qualified} TO {_ident(app)}"))
    connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {_ident(schema)} TO {_ident(app)}"))
    return tables


def app_roles(connection: Connection, schema: str) -> list[str]:
    """The roles the current user's default privileges in ``schema`` grant to: the application roles."""
    rows = connection.execute(
        text(
            "SELECT DISTINCT pg_get_userbyid(acl.grantee) FROM pg_default_acl d "
            "JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) acl "
            "WHERE n.nspname = :schema AND d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) "
            "AND acl.grantee <> d.defaclrole AND acl.grantee <> 0"
        ),
        {"schema": schema},
    )
    return sorted(str(name) for name in rows.scalars() if _ROLE_NAME.match(str(name)))


def apply_app_privileges(connection: Connection) -> list[str]:
    """After migrations run by the owner: re-apply the table policy to each application role; returns their names.

    Does nothing on other databases, or when the current user has set no default privileges (a database that
    does not use separate roles).
    """
    if connection.dialect.name != "postgresql":
        return []
    schema = _current_schema(connection)
    owner = str(connection.execute(text("SELECT current_user")).scalar())
    roles = app_roles(connection, schema)
    for app in roles:
        grant_table_policy(connection, schema, owner, app)
        logger.info("privileges of role %s on schema %s re-applied", app, schema)
    return roles


# ----------------------------------------------------------------------------------------------- create_roles
def _check_admin_url(admin_url: str) -> Any:
    try:
        parsed = make_url(admin_url)
    except (ArgumentError, ValueError) as exc:
        raise ValueError("the administrator URL is not a valid SQLAlchemy URL") from exc
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg":
        raise ValueError(
            f"the administrator URL must be a postgresql+psycopg:// URL, not {parsed.drivername}://"
        )
    return parsed


def _scram(raw: Any, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password`` (libpq computes it on this side; the password never leaves)."""
    verifier = raw.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    if "'" in verifier or "\\" in verifier:  # pragma: no cover - SCRAM verifiers are base64 and '$:='
        raise StorageError(f"unexpected characters in the password verifier for role {role!r}")
    return verifier


def _role_row(connection: Connection, role: str) -> tuple[bool, bool] | None:
    """(is superuser, can log in) of ``role``, or ``None`` if it does not exist."""
    row = connection.execute(
        text("SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = :role"), {"role": role}
    ).first()
    return None if row is None else (bool(row[0]), bool(row[1]))


def _ensure_role(connection: Connection, role: str, password: str | None, admin: str) -> tuple[bool, bool]:
    """Create or reset one login role without special powers; returns (created, password set)."""
    existing = _role_row(connection, role)
    if existing is not None and (existing[0] or role == admin):
        raise ValueError(f"role {role!r} is a superuser or the administrator itself; name a role of its own")
    if existing is None and password is None:
        raise MissingPasswordError(role)
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    statement = f"{'CREATE' if existing is None else 'ALTER'} ROLE {_ident(role)} {attributes}"
    raw: Any = connection.connection.dbapi_connection  # psycopg's connection: its pgconn is beyond the DBAPI protocol
    if password is not None:
        statement += f" PASSWORD '{_scram(raw, role, password)}'"
    # The driver's cursor, in the same transaction: SQLAlchemy would log the statement at -vv.
    with raw.cursor() as cursor:
        cursor.execute(statement)
    return existing is None, password is not None


def _reassign_schema(connection: Connection, schema: str, owner: str) -> list[str]:
    """Hand the schema and every table, sequence and function in it to ``owner``; returns what moved."""
    moved: list[str] = []
    schema_owner = connection.execute(
        text("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
    ).scalar()
    if schema_owner is None:
        connection.execute(text(f"CREATE SCHEMA {_ident(schema)} AUTHORIZATION {_ident(owner)}"))
    elif schema_owner != owner:
        connection.execute(text(f"ALTER SCHEMA {_ident(schema)} OWNER TO {_ident(owner)}"))
        moved.append(f"schema {schema}")
    # Tables first: ALTER TABLE also moves the sequences their columns own.
    rows = connection.execute(
        text(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
            "AND pg_get_userbyid(c.relowner) <> :owner ORDER BY c.relkind = 'S', c.relname"
        ),
        {"schema": schema, "owner": owner},
    ).all()
    for name, kind in rows:
        if kind == "S" and _owner_of(connection, schema, name) == owner:
            continue  # moved with its table
        keyword = {"S": "SEQUENCE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}.get(kind, "TABLE")
        connection.execute(text(f'ALTER {keyword} {_ident(schema)}."{name}" OWNER TO {_ident(owner)}'))
        moved.append(f"{keyword.lower()} {name}")
    # A function owned by the application role could be replaced, e.g. the audit trigger's by a no-op.
    functions = connection.execute(
        text(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = :schema AND pg_get_userbyid(p.proowner) <> :owner"
        ),
        {"schema": schema, "owner": owner},
    ).all()
    for name, arguments in functions:
        connection.execute(text(f'ALTER ROUTINE {_ident(schema)}."{name}"({arguments}) OWNER TO {_ident(owner)}'))
        moved.append(f"function {name}")
    return moved


def _owner_of(connection: Connection, schema: str, relation: str) -> str | None:
    return connection.execute(
        text(
            "SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = :name"
        ),
        {"schema": schema, "name": relation},
    ).scalar()


def _grant(connection: Connection, schema: str, owner: str, app: str) -> list[str]:
    """Schema, database and default privileges, and the table policy on what the owner already owns."""
    s, o, a = _ident(schema), _ident(owner), _ident(app)
    database = '"' + str(connection.execute(text("SELECT current_database()")).scalar()).replace('"', '""') + '"'
    connection.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {o}, {a}"))
    # Before PostgreSQL 15 every role may create objects in "public"; nobody but the owner may here.
    connection.execute(text(f"REVOKE CREATE ON SCHEMA {s} FROM PUBLIC"))
    connection.execute(text(f"REVOKE ALL ON SCHEMA {s} FROM {a}"))
    connection.execute(text(f"GRANT USAGE ON SCHEMA {s} TO {a}"))
    # Membership in the owner role would hand the application every power of the owner.
    member = connection.execute(
        text("SELECT 1 FROM pg_auth_members WHERE roleid = (SELECT oid FROM pg_roles WHERE rolname = :owner) "
             "AND member = (SELECT oid FROM pg_roles WHERE rolname = :app)"),
        {"owner": owner, "app": app},
    ).first()
    if member is not None:
        connection.execute(text(f"REVOKE {o} FROM {a}"))
    connection.execute(text(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT {', '.join(ROW_PRIVILEGES)} ON TABLES TO {a}"
    ))
    connection.execute(text(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT ON SEQUENCES TO {a}"
    ))
    return grant_table_policy(connection, schema, owner, app)


def create_roles(
    admin_url: str,
    owner: str,
    app: str,
    owner_password: str | None = None,
    app_password: str | None = None,
    schema: str = "public",
) -> RolesReport:
    """Create (or bring up to date) the owner and application roles, in one transaction; safe to run again.

    Args:
        admin_url: ``postgresql+psycopg://`` URL of a superuser (it creates roles and changes owners).
        owner: the role that owns ``schema`` and runs migrations (``db upgrade --owner-url``).
        app: the role the dashboard, pipelines and workers connect as.
        owner_password, app_password: set as the role's password; ``None`` keeps an existing role's password
            (a new role needs one).
        schema: the schema the tables live in.

    Raises:
        ValueError: a bad role or schema name (named), the same name twice, a superuser named, a new role without
            a password, or an administrator URL that is not ``postgresql+psycopg``.
        StorageError: the server refused (message with the URL's password masked).
    """
    from inspect_app.storage.db import make_engine, mask_url

    check_role_name(owner, "owner role")
    check_role_name(app, "application role")
    check_role_name(schema, "schema")
    if owner == app:
        raise ValueError(f"the owner and the application role must differ, both are {owner!r}")
    parsed = _check_admin_url(admin_url)
    secrets = [s for s in (parsed.password, owner_password, app_password) if s]
    engine = make_engine(parsed)
    try:
        with engine.begin() as connection:
            admin = str(connection.execute(text("SELECT current_user")).scalar())
            created_owner, owner_set = _ensure_role(connection, owner, owner_password, admin)
            created_app, app_set = _ensure_role(connection, app, app_password, admin)
            moved = _reassign_schema(connection, schema, owner)
            tables = _grant(connection, schema, owner, app)
            database_owner = connection.execute(
                text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
            ).scalar()
    except (DBAPIError, engine.dialect.loaded_dbapi.Error) as exc:
        # One line: drivers add hints on lines of their own.
        message = " ".join(str(getattr(exc, "orig", None) or exc).split())
        for secret in secrets:
            message = message.replace(secret, "***")
        raise StorageError(f"cannot create roles {owner!r} and {app!r} on {mask_url(parsed)}: {message}") from exc
    finally:
        engine.dispose()
    warnings = []
    if database_owner == app:
        warnings.append(f"role {app!r} owns the database and may create schemas in it; "
                        f"make another role its owner (ALTER DATABASE ... OWNER TO {owner})")
    logger.info("roles %s (owner) and %s (application) ready on schema %s", owner, app, schema)
    return RolesReport(
        owner=owner, app=app, schema=schema,
        created=tuple(r for r, c in ((owner, created_owner), (app, created_app)) if c),
        password_set=tuple(r for r, c in ((owner, owner_set), (app, app_set)) if c),
        reassigned=tuple(moved), tables=tuple(tables), warnings=tuple(warnings),
    )
