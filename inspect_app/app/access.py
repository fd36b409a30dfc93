"""Who may do what: sign-in, roles, and the check every use case makes before it writes.

Every control (review, train, promote, roll back, threshold change, schedule, user admin, purge) is a function in this
package that first calls ``authorize``: the check lives next to the write, so a page that forgot to hide a button still
cannot change anything without the role. Each use case appends its audit entry (who, what, when) in the same
transaction as its write where the repository allows it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from inspect_app.errors import AccessDeniedError
from inspect_app.records import AuditEvent, User
from inspect_app.storage import throttle
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import USER_ROLES

logger = logging.getLogger(__name__)

# Roles in increasing power; a role may do everything the roles before it may.
ROLE_RANK = {role: rank for rank, role in enumerate(USER_ROLES)}
# The least role each control needs.
ACTION_ROLES: dict[str, str] = {
    "review": "operator",
    "train": "engineer",
    "cancel": "engineer",
    "schedule": "engineer",
    "threshold": "engineer",
    "promote": "engineer",
    "rollback": "engineer",
    "purge": "admin",
    "users": "admin",
}

__all__ = ["ACTION_ROLES", "ROLE_RANK", "allowed", "authorize", "shell_user", "sign_in"]


def shell_user(os_user: str) -> User:
    """The acting user of a CLI command run on a machine that holds the database's credentials, audited as ``cli:NAME``.

    Whoever can run ``inspect-app`` with the plant's database URL can already write every table, so the shell acts
    with every role; what the audit log gains is the operating-system user's name beside each action.
    """
    return User(username=f"cli:{os_user}", role=USER_ROLES[-1])


def allowed(user: User | None, action: str) -> bool:
    """Whether ``user`` (``None`` = nobody signed in) may perform ``action``.

    Raises:
        ValueError: ``action`` is not one of ``ACTION_ROLES``.
    """
    if action not in ACTION_ROLES:
        raise ValueError(f"unknown action {action!r}; allowed: {sorted(ACTION_ROLES)}")
    if user is None or not user.active or user.role not in ROLE_RANK:
        return False
    return ROLE_RANK[user.role] >= ROLE_RANK[ACTION_ROLES[action]]


def authorize(user: User | None, action: str) -> User:
    """Return ``user`` when it may perform ``action``, else refuse.

    Raises:
        AccessDeniedError: nobody is signed in, the user is inactive, or the user's role is below the one the action
            needs (both named).
    """
    if allowed(user, action):
        assert user is not None
        return user
    needed = ACTION_ROLES[action]
    roles = [r for r in USER_ROLES if ROLE_RANK[r] >= ROLE_RANK[needed]]
    if user is None:
        raise AccessDeniedError(f"{action!r} needs a signed-in user with role {' or '.join(roles)}; sign in first")
    if not user.active:
        raise AccessDeniedError(f"user {user.username!r} is inactive and may not {action!r}")
    raise AccessDeniedError(
        f"user {user.username!r} with role {user.role!r} may not {action!r}; needs role {' or '.join(roles)}"
    )


def sign_in(db: Database, username: str, password: str, client: str | None = None,
            now: datetime | None = None) -> User:
    """The active user whose name and password match; both outcomes are audited, failures throttled.

    ``client`` (the browser's address, where known) is throttled beside the name (``storage.throttle``). While either
    is locked the password is not even checked, so a right guess during the back-off is refused too.

    Raises:
        SignInThrottledError: too many recent failures for the name or the client (the minutes left named).
        AccessDeniedError: unknown user, wrong password or inactive user (one message for all, naming the user,
            so that the dashboard does not reveal which names exist).
    """
    throttle.check(db, username, client, now=now)
    repository = Repository(db)
    user = repository.authenticate(username, password)
    if user is None:
        throttle.record_failure(db, username, client, now=now)
        repository.audit(AuditEvent(actor=username or "(empty)", action="auth.sign_in_failed",
                                    details={"client": client} if client else {}))
        raise AccessDeniedError(f"sign-in failed for user {username!r}: unknown user, wrong password or inactive")
    throttle.clear_user(db, username)
    repository.audit(AuditEvent(actor=user.username, action="auth.sign_in", details={"role": user.role}))
    logger.info("user %r signed in (role %s)", user.username, user.role)
    return user
