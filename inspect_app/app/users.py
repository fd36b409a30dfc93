"""User administration: create, activate, deactivate, change a role, reset a password; each audited in the write's
transaction.

These are controls like the other use cases: a dashboard caller passes the signed-in ``User``, who must be an admin in
the database *now* (an admin deactivated or demoted in another session is refused at once). The CLI passes a string
naming the shell user instead (``cli:alice``), because whoever runs it on the server already owns the database.
No change may leave the plant without an active admin: nobody could administer users any more.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspect_app.app.access import authorize
from inspect_app.errors import LastAdminError
from inspect_app.records import AuditEvent, User
from inspect_app.storage.audit import write_audit
from inspect_app.storage.db import Database
from inspect_app.storage.passwords import hash_password
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import USER_ROLES, UserRow
from inspect_app.storage.users import user_from_row

logger = logging.getLogger(__name__)

ADMIN_ROLE = "admin"

__all__ = ["ADMIN_ROLE", "check_role", "create_user", "reset_password", "set_user_active", "set_user_role"]


def check_role(role: str) -> str:
    """Return ``role`` when it is one of ``USER_ROLES``.

    Raises:
        ValueError: the role is unknown (the role and the allowed ones named).
    """
    if role not in USER_ROLES:
        raise ValueError(f"role {role!r} is not one of {list(USER_ROLES)}")
    return role


def create_user(
    db: Database,
    username: str,
    role: str,
    password: str,
    actor: User | None = None,
    display_name: str | None = None,
    shell_actor: str | None = None,
) -> User:
    """Create a user with a hashed password, audited (``user.add``) in the same transaction.

    ``actor`` is the signed-in admin when the dashboard creates the user (checked); the CLI passes ``None`` because
    whoever runs it on the server already owns the database, and names that shell user as ``shell_actor``
    (``cli:$USER``) for the audit log.

    Raises:
        AccessDeniedError: ``actor`` is given and is not an admin.
        ValueError: empty name, unknown role (allowed roles named) or a too-short password.
        StorageError: the name is taken.
    """
    if actor is not None:
        authorize(actor, "users")
    if not username or not username.strip() or username != username.strip():
        raise ValueError(f"user name {username!r} must be non-empty without surrounding spaces")
    user = User(username=username, role=role, display_name=display_name)
    who = actor.username if actor is not None else shell_actor or "system"
    Repository(db).add_user(user, password, actor=who)
    return user


def _actor_name(db: Database, actor: User | str | None) -> str:
    """Who the audit entry names: a shell actor as given, or a signed-in user who is an admin right now."""
    if isinstance(actor, str):
        if not actor.strip():
            raise ValueError("the acting user's name must be non-empty")
        return actor
    # The session's copy of the user may be stale; the database says whether they may still administer users.
    current = Repository(db).get_user(actor.username) if actor is not None else None
    return authorize(current, "users").username


def _load(session: Session, username: str) -> UserRow:
    """The row of ``username``.

    Raises:
        LookupError: no such user (the known names listed).
    """
    row = session.scalar(select(UserRow).where(UserRow.username == username))
    if row is None:
        known = session.scalars(select(UserRow.username).order_by(UserRow.username)).all()
        raise LookupError(f"user {username!r} not found; known users: {list(known)}")
    return row


def _keep_an_admin(session: Session, row: UserRow, change: str) -> None:
    """Refuse ``change`` when ``row`` is the only active admin.

    The active admins are locked (``FOR UPDATE`` on PostgreSQL; SQLite allows one writer anyway), so that two admins
    deactivating each other at the same moment cannot both succeed.
    """
    if row.role != ADMIN_ROLE or not row.active:
        return
    admins = session.scalars(
        select(UserRow.username).where(UserRow.role == ADMIN_ROLE, UserRow.active.is_(True)).with_for_update()
    ).all()
    if [name for name in admins if name != row.username]:
        return
    raise LastAdminError(f"cannot {change} {row.username!r}: it is the last active admin; "
                         "make another user admin first")


def set_user_active(db: Database, actor: User | str | None, username: str, active: bool) -> User:
    """Activate or deactivate ``username`` (an inactive user cannot sign in); audited as ``user.(de)activate``.

    Raises:
        AccessDeniedError: ``actor`` is a user who is not an active admin.
        LookupError: no such user.
        LastAdminError: deactivating the last active admin.
    """
    name = _actor_name(db, actor)
    with db.session() as session:
        row = _load(session, username)
        if not active:
            _keep_an_admin(session, row, "deactivate")
        old = row.active
        row.active = bool(active)
        if not active:
            # Void the user's dashboard sessions too, so that reactivating later does not revive them.
            row.session_version += 1
        write_audit(session, AuditEvent(actor=name, action="user.activate" if active else "user.deactivate",
                                              target=username, details={"was_active": old}))
        session.flush()
        logger.info("%s %s user %r", name, "activated" if active else "deactivated", username)
        return user_from_row(row)


def set_user_role(db: Database, actor: User | str | None, username: str, role: str) -> User:
    """Give ``username`` another role, audited as ``user.role`` with the old and the new role.

    Raises:
        AccessDeniedError: ``actor`` is a user who is not an active admin.
        ValueError: unknown role (the allowed ones named).
        LookupError: no such user.
        LastAdminError: demoting the last active admin.
    """
    check_role(role)
    name = _actor_name(db, actor)
    with db.session() as session:
        row = _load(session, username)
        if role != ADMIN_ROLE:
            _keep_an_admin(session, row, f"make {role}")
        old = row.role
        row.role = role
        write_audit(session, AuditEvent(actor=name, action="user.role", target=username,
                                              details={"old": old, "new": role}))
        session.flush()
        logger.info("%s changed the role of user %r from %s to %s", name, username, old, role)
        return user_from_row(row)


def reset_password(db: Database, actor: User | str | None, username: str, password: str) -> User:
    """Replace the password hash of ``username``, audited as ``user.password_reset`` (the password never is).

    Raises:
        AccessDeniedError: ``actor`` is a user who is not an active admin.
        ValueError: the password is too short.
        LookupError: no such user.
    """
    name = _actor_name(db, actor)
    password_hash = hash_password(password)
    with db.session() as session:
        row = _load(session, username)
        row.password_hash = password_hash
        write_audit(session, AuditEvent(actor=name, action="user.password_reset", target=username))
        session.flush()
        logger.info("%s reset the password of user %r", name, username)
        return user_from_row(row)
