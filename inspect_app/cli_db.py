"""``inspect-app db create-roles`` and the owner URL that ``db upgrade``/``db downgrade`` migrate with.

Kept apart from ``cli.py`` like ``cli_users``. On PostgreSQL the schema belongs to an owner role that runs the
migrations, and the application connects with a role that can only read and write rows (``storage.db_roles``). URLs
and passwords come from the environment by preference: a flag's value is visible to every user of the machine in
the process list. No password is printed or logged, except one generated on request, printed once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

OWNER_URL_ENV = "INSPECT_DB_OWNER_URL"
ADMIN_URL_ENV = "INSPECT_DB_ADMIN_URL"
PASSWORD_ENV = {"owner": "INSPECT_DB_OWNER_PASSWORD", "app": "INSPECT_DB_APP_PASSWORD"}
GENERATED_PASSWORD_BYTES = 24


def migration_url(args: argparse.Namespace, database_url: str) -> str:
    """The URL migrations run with: ``--owner-url``, else ``INSPECT_DB_OWNER_URL``, else the database URL."""
    return getattr(args, "owner_url", None) or os.environ.get(OWNER_URL_ENV) or database_url


def add_owner_url_option(parser: argparse.ArgumentParser) -> None:
    """``--owner-url`` for the commands that change the schema."""
    parser.add_argument("--owner-url", metavar="URL",
                        help=f"migrate as the schema's owner role (env {OWNER_URL_ENV}, preferred: a flag shows in "
                             "the process list); default: the database URL")


def _password(args: argparse.Namespace, which: str, role: str, generated: dict[str, str]) -> str | None:
    """A role's new password: its environment variable, else generated with --generate-passwords, else none."""
    value = os.environ.get(PASSWORD_ENV[which])
    if value:
        return value
    if args.generate_passwords:
        generated[role] = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        return generated[role]
    return None


def _refuse(message: str) -> int:
    """One line on stderr and exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_db_create_roles(args: argparse.Namespace) -> int:
    """Create the owner and application roles on PostgreSQL (idempotent) and print what the app may do."""
    from inspect_app.storage.db import mask_url
    from inspect_app.storage.db_roles import APP_TABLE_PRIVILEGES, ROW_PRIVILEGES, MissingPasswordError, create_roles

    admin_url = args.admin_url or os.environ.get(ADMIN_URL_ENV)
    if not admin_url:
        return _refuse(f"create-roles needs an administrator URL: --admin-url or {ADMIN_URL_ENV}")
    generated: dict[str, str] = {}
    try:
        report = create_roles(
            admin_url, args.owner, args.app,
            owner_password=_password(args, "owner", args.owner, generated),
            app_password=_password(args, "app", args.app, generated),
            schema=args.schema,
        )
    except MissingPasswordError as exc:
        env = PASSWORD_ENV["owner" if exc.role == args.owner else "app"]
        return _refuse(f"{exc}: set {env} or pass --generate-passwords")
    except ValueError as exc:
        return _refuse(str(exc))
    for role, kind in ((report.owner, "owner"), (report.app, "application")):
        state = "created" if role in report.created else "exists"
        password = "password set" if role in report.password_set else "password unchanged"
        print(f"{kind} role {role}: {state}, {password}")
    moved = f"; now owned by it: {', '.join(report.reassigned)}" if report.reassigned else ""
    print(f"schema {report.schema} belongs to {report.owner}{moved}")
    limited = ", ".join(f"{'/'.join(p)} on {t}" for t, p in APP_TABLE_PRIVILEGES.items())
    others = len([t for t in report.tables if t not in APP_TABLE_PRIVILEGES])
    scope = f"{others} table(s)" if report.tables else "the tables `db upgrade` creates"
    print(f"{report.app} may {'/'.join(ROW_PRIVILEGES)} on {scope}, only {limited}; "
          "it cannot alter, truncate or drop tables, or create any")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for role, password in generated.items():
        # Asked for with --generate-passwords: the only time a password is shown, and only here, never logged.
        print(f"generated password for {role} (shown once, store it now): {password}")
    server = mask_url(admin_url).split("@", 1)[-1]
    print(f"next: {OWNER_URL_ENV}=postgresql+psycopg://{report.owner}:***@{server} inspect-app db upgrade; "
          f"the app connects as postgresql+psycopg://{report.app}:***@{server}")
    return 0


def add_role_commands(db: argparse._SubParsersAction) -> None:
    """Add ``create-roles`` to the ``db`` sub-commands."""
    p = db.add_parser("create-roles", help="PostgreSQL: an owner role for the schema and a row-only role for the app")
    p.add_argument("--admin-url", metavar="URL",
                   help=f"postgresql+psycopg:// URL of a superuser (env {ADMIN_URL_ENV}, preferred)")
    p.add_argument("--owner", required=True, metavar="NAME", help="role that owns the schema and runs migrations")
    p.add_argument("--app", required=True, metavar="NAME", help="role the dashboard, pipelines and workers use")
    p.add_argument("--schema", default="public", help="schema of the tables (default public)")
    p.add_argument("--generate-passwords", action="store_true",
                   help=f"generate a password for a role whose {PASSWORD_ENV['owner']} / {PASSWORD_ENV['app']} is "
                        "unset, and print it once")
    p.set_defaults(func=cmd_db_create_roles)

