"""Signed dashboard session tokens and the key that signs them.

A token is ``<user id>.<issued at, unix seconds>.<session version>.<MAC>``, the MAC being HMAC-SHA256 under the
server's session key over those three fields and a fingerprint of the user's password hash. So a token is void when
it is altered, signed with another key, older than the idle limit, issued before the user's last sign-out or
deactivation (``users.session_version``) or before a password change (the fingerprint). Verifying always reads the
user's row, so the role and the active flag are the database's, never a copy the browser session kept.

The key comes from ``INSPECT_SESSION_SECRET`` or is generated once into ``<home>/session_secret`` (mode 0600); it is
never logged, printed or put in an exception message, and neither is a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from inspect_app.config.settings import Settings
from inspect_app.errors import ConfigError, SessionInvalidError
from inspect_app.records import User
from inspect_app.storage.db import Database
from inspect_app.storage.tables import UserRow
from inspect_app.storage.users import user_from_row

logger = logging.getLogger(__name__)

SECRET_FILE = "session_secret"
MIN_SECRET_LENGTH = 32
# A token stamped this far in the future comes from a clock that is off, or was made up.
CLOCK_SKEW = timedelta(minutes=1)

__all__ = [
    "MIN_SECRET_LENGTH",
    "SECRET_FILE",
    "end_sessions",
    "issue_token",
    "session_secret",
    "token_issued_at",
    "verify_token",
]


def session_secret(settings: Settings) -> bytes:
    """The key that signs session tokens: ``settings.session_secret``, else the one in ``<home>/session_secret``.

    The file is created on first use with mode 0600 (``O_EXCL``, so two processes starting together agree on one key).

    Raises:
        ConfigError: the configured secret is shorter than ``MIN_SECRET_LENGTH`` characters, or the key file is empty
            (the file's path named; the secret itself never is).
    """
    if settings.session_secret is not None:
        value = settings.session_secret.get_secret_value()
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(f"INSPECT_SESSION_SECRET has {len(value)} characters; it needs at least "
                              f"{MIN_SECRET_LENGTH}")
        return value.encode()
    path = Path(settings.home) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it in between; use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            logger.info("generated a dashboard session key in %s", path)
    value = path.read_text().strip()
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(f"session key file {path} holds fewer than {MIN_SECRET_LENGTH} characters; delete it to "
                          "have a new key generated (every dashboard session then ends)")
    return value.encode()


def _fingerprint(password_hash: str) -> str:
    """A digest of the password hash: changes with every password reset, reveals nothing about the hash."""
    return hashlib.sha256(password_hash.encode()).hexdigest()


def _mac(secret: bytes, user_id: int, issued: int, version: int, password_hash: str) -> str:
    """URL-safe HMAC-SHA256 of the token fields and the password fingerprint."""
    message = f"inspect-session-v1|{user_id}|{issued}|{version}|{_fingerprint(password_hash)}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_token(db: Database, secret: bytes, username: str, now: datetime | None = None) -> str:
    """A fresh token for the active user ``username``, stamped ``now``.

    Raises:
        SessionInvalidError: no active user is called ``username``.
    """
    issued = int((now or datetime.now(UTC)).timestamp())
    with db.session() as session:
        row = session.scalar(select(UserRow).where(UserRow.username == username))
        if row is None or not row.active:
            raise SessionInvalidError(f"no active user {username!r} to start a session for")
        mac = _mac(secret, row.id, issued, row.session_version, row.password_hash)
        return f"{row.id}.{issued}.{row.session_version}.{mac}"


def _fields(token: str) -> tuple[int, int, int, str]:
    """(user id, issued at, session version, MAC) of a well-formed token."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]) or not parts[3]:
        raise SessionInvalidError("the session token is malformed")
    return int(parts[0]), int(parts[1]), int(parts[2]), parts[3]


def token_issued_at(token: str) -> datetime:
    """When a well-formed token was issued (unverified: only for deciding when to refresh one already verified).

    Raises:
        SessionInvalidError: the token is malformed.
    """
    return datetime.fromtimestamp(_fields(token)[1], UTC)


def verify_token(db: Database, secret: bytes, token: str, idle: timedelta, now: datetime | None = None) -> User:
    """The user a token names, as the database has them now, when the token is genuine, current and active.

    Raises:
        SessionInvalidError: malformed, bad signature (another key, altered, password changed), signed out,
            older than ``idle``, stamped in the future, or the user is unknown or inactive.
    """
    user_id, issued, version, mac = _fields(token)
    now = now or datetime.now(UTC)
    with db.session() as session:
        row = session.get(UserRow, user_id)
        expected = _mac(secret, user_id, issued, version, row.password_hash) if row is not None else ""
        # compare_digest against a value of the same shape, so that an unknown id takes the same path.
        if row is None or not hmac.compare_digest(mac, expected or _mac(secret, 0, 0, 0, "")):
            raise SessionInvalidError("the session token's signature does not match; sign in again")
        if version != row.session_version:
            raise SessionInvalidError(f"the session of user {row.username!r} was ended; sign in again")
        issued_at = datetime.fromtimestamp(issued, UTC)
        if issued_at > now + CLOCK_SKEW:
            raise SessionInvalidError(f"the session token of user {row.username!r} is stamped in the future")
        if now - issued_at > idle:
            raise SessionInvalidError(f"the session of user {row.username!r} expired after "
                                      f"{idle.total_seconds() / 60:g} minutes without activity; sign in again")
        if not row.active:
            raise SessionInvalidError(f"user {row.username!r} is inactive")
        return user_from_row(row)


def end_sessions(db: Database, username: str) -> None:
    """Void every token issued to ``username`` so far (sign-out ends the user's sessions in every browser)."""
    with db.session() as session:
        session.execute(update(UserRow).where(UserRow.username == username)
                        .values(session_version=UserRow.session_version + 1))
