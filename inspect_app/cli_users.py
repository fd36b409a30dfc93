"""The ``inspect-app users`` commands: add, list, activate, deactivate, set-role, reset-password.

Kept apart from ``cli.py`` like ``cli_lifecycle``; ``cli`` adds these sub-commands with ``add_user_commands``. Every
change goes through the use cases in ``inspect_app.app``, which audit it in the same transaction, with the shell user
(``cli:$USER``) as the actor. A bad name, role or password is one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from inspect_app.cli_common import open_database
from inspect_app.cli_lifecycle import actor
from inspect_app.records import User
from inspect_app.storage.tables import USER_ROLES

if TYPE_CHECKING:
    from inspect_app.storage.db import Database

ROLES_HELP = "/".join(USER_ROLES)



def _refuse(exc: Exception) -> int:
    """One line on stderr and exit code 2 for a bad value (``main`` does the same for this package's errors)."""
    print(f"error: {exc}", file=sys.stderr)
    return 2


def read_new_password(args: argparse.Namespace) -> str:
    """The new password: one line on stdin with --password-stdin, else typed twice at a prompt.

    Raises:
        ValueError: the two typed passwords differ.
    """
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass(f"password for {args.name}: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


FIRST_ADMIN = "admin"


def ensure_first_admin(url: str) -> str:
    """What a first user needs to sign in: with no user yet, an ``admin`` with a generated password is created.

    For ``inspect-app demo``: the returned text (printed once by the caller, never logged) holds that password; the
    dashboard has no way to show it again. With users already there it only says how to sign in.
    """
    import secrets

    from inspect_app.app import users
    from inspect_app.storage import Database, Repository

    with Database.open(url) as db:
        if Repository(db).list_users():
            return ("sign in to the dashboard with your user (inspect-app users list shows them; "
                    "inspect-app users reset-password NAME sets a forgotten password)")
        password = secrets.token_urlsafe(12)
        users.create_user(db, FIRST_ADMIN, "admin", password, shell_actor=actor())  # audited as cli:$USER
    return (f"created the first dashboard user {FIRST_ADMIN!r} (role admin); sign in with password {password}\n"
            f"  it is shown only now: change it with  inspect-app users reset-password {FIRST_ADMIN}")


def cmd_users_add(args: argparse.Namespace) -> int:
    """Create a dashboard user with a role; the password is stored as an Argon2id hash."""
    from inspect_app.app import users
    from inspect_app.app.users import check_role

    try:
        check_role(args.role)  # before the prompt: nobody should type a password for a command that will fail
        user = users.create_user(open_database(args), args.name, args.role, read_new_password(args),
                                  display_name=args.display_name, shell_actor=actor())
    except ValueError as exc:
        return _refuse(exc)
    print(f"user {user.username} created with role {user.role}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    """List dashboard users, their roles and whether they may sign in."""
    from inspect_app.storage.repository import Repository

    for user in Repository(open_database(args)).list_users():
        print(f"{user.username:<24} {user.role:<10} {'active' if user.active else 'inactive':<9} "
              f"{user.display_name or ''}".rstrip())
    return 0


def _change(args: argparse.Namespace, change: Callable[[Database], User]) -> User | int:
    """Run one user change on the database; a bad value becomes exit code 2 (lookups are handled by ``main``)."""
    try:
        return change(open_database(args))
    except ValueError as exc:
        return _refuse(exc)


def cmd_users_activate(args: argparse.Namespace) -> int:
    """Let a user sign in again, or (``--deactivate``) stop them from signing in."""
    from inspect_app.app.users import set_user_active

    user = _change(args, lambda db: set_user_active(db, actor(), args.name, args.activate))
    if isinstance(user, int):
        return user
    print(f"user {user.username} is now {'active' if user.active else 'inactive'}")
    return 0


def cmd_users_set_role(args: argparse.Namespace) -> int:
    """Give a user another role."""
    from inspect_app.app.users import check_role, set_user_role

    try:
        check_role(args.role)
    except ValueError as exc:
        return _refuse(exc)
    user = _change(args, lambda db: set_user_role(db, actor(), args.name, args.role))
    if isinstance(user, int):
        return user
    print(f"user {user.username} now has role {user.role}")
    return 0


def cmd_users_reset_password(args: argparse.Namespace) -> int:
    """Set a new password for a user (prompted twice, or one line on stdin)."""
    from inspect_app.app.users import reset_password
    from inspect_app.storage.repository import Repository

    db = open_database(args)
    if Repository(db).get_user(args.name) is None:
        # Checked before the prompt; reset_password checks again (and names the known users) in its transaction.
        return _refuse(LookupError(f"user {args.name!r} not found; `inspect-app users list` shows the users"))
    try:
        user = reset_password(db, actor(), args.name, read_new_password(args))
    except ValueError as exc:
        return _refuse(exc)
    print(f"password of user {user.username} reset")
    return 0


def add_user_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``users add|list|activate|deactivate|set-role|reset-password`` to the parser."""
    users = sub.add_parser("users", help="dashboard users").add_subparsers(dest="users_command", required=True)
    # Roles are checked by the command, not by argparse: a bad one is then one line naming it and the allowed ones.
    p = users.add_parser("add", help="create a user (password prompted, or one line on stdin)")
    p.add_argument("name")
    p.add_argument("--role", required=True, help=ROLES_HELP)
    p.add_argument("--display-name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    p.set_defaults(func=cmd_users_add)
    p = users.add_parser("list", help="list users, roles and whether they may sign in")
    p.set_defaults(func=cmd_users_list)
    for verb, active in (("activate", True), ("deactivate", False)):
        p = users.add_parser(verb, help=f"{verb} a user (an inactive user cannot sign in)")
        p.add_argument("name")
        p.set_defaults(func=cmd_users_activate, activate=active)
    p = users.add_parser("set-role", help=f"give a user another role ({ROLES_HELP})")
    p.add_argument("name")
    p.add_argument("role", help=ROLES_HELP)
    p.set_defaults(func=cmd_users_set_role)
    p = users.add_parser("reset-password", help="set a new password (prompted, or one line on stdin)")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    p.set_defaults(func=cmd_users_reset_password)
