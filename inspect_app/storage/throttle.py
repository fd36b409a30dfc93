"""Sign-in throttle: refuse attempts for a user name or from a client after too many recent failures.

Failures live in ``sign_in_failures`` (migration 0005), not in one process's memory, so that every dashboard process
sees the same count. A name is locked while it has ``MAX_USER_FAILURES`` failures within ``WINDOW``; a client while
it has ``MAX_CLIENT_FAILURES``, a higher bar because one address may be a shared control-room PC. Refused attempts are
not counted (the lock lifts a window after the failures that caused it), and a name is throttled whether or not such
a user exists, so that the refusal says nothing about which names are real.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from inspect_app.errors import SignInThrottledError
from inspect_app.storage.db import Database
from inspect_app.storage.tables import SignInFailureRow

logger = logging.getLogger(__name__)

MAX_USER_FAILURES = 5
MAX_CLIENT_FAILURES = 20
WINDOW = timedelta(minutes=15)
# Column width of sign_in_failures.key; longer names are cut to it for counting.
KEY_LENGTH = 200

__all__ = ["MAX_CLIENT_FAILURES", "MAX_USER_FAILURES", "WINDOW", "check", "clear_user", "record_failure"]


def _keys(username: str, client: str | None) -> list[tuple[str, str, int]]:
    """(kind, key, limit) for the name tried and, when known, the client."""
    keys = [("user", (username or "")[:KEY_LENGTH], MAX_USER_FAILURES)]
    if client:
        keys.append(("client", client[:KEY_LENGTH], MAX_CLIENT_FAILURES))
    return keys


def check(db: Database, username: str, client: str | None = None, now: datetime | None = None) -> None:
    """Return when an attempt for ``username`` from ``client`` may go ahead.

    Raises:
        SignInThrottledError: the name or the client is locked; the message gives the minutes left and the same
            wording for both, so it reveals neither which was locked nor whether the user exists.
    """
    now = now or datetime.now(UTC)
    wait = timedelta(0)
    with db.session() as session:
        for kind, key, limit in _keys(username, client):
            times = session.scalars(
                select(SignInFailureRow.at)
                .where(SignInFailureRow.kind == kind, SignInFailureRow.key == key, SignInFailureRow.at > now - WINDOW)
                .order_by(SignInFailureRow.at.desc())
                .limit(limit)
            ).all()
            if len(times) >= limit:
                # Locked until the oldest of the last `limit` failures leaves the window.
                wait = max(wait, times[-1] + WINDOW - now)
    if wait > timedelta(0):
        minutes = max(1, math.ceil(wait.total_seconds() / 60))
        logger.warning("sign-in for %r from %s refused: too many recent failures", username, client or "unknown")
        raise SignInThrottledError(f"too many failed sign-ins; try again in {minutes} minute"
                                   f"{'' if minutes == 1 else 's'}")


def record_failure(db: Database, username: str, client: str | None = None, now: datetime | None = None) -> None:
    """Count one failed attempt against the name and the client; failures older than the window are dropped."""
    now = now or datetime.now(UTC)
    with db.session() as session:
        session.execute(delete(SignInFailureRow).where(SignInFailureRow.at <= now - WINDOW))
        session.add_all([SignInFailureRow(kind=kind, key=key, at=now) for kind, key, _ in _keys(username, client)])


def clear_user(db: Database, username: str) -> None:
    """Forget the failures of a name after its user signed in (the client's stay: it may be guessing others)."""
    with db.session() as session:
        session.execute(delete(SignInFailureRow).where(SignInFailureRow.kind == "user",
                                                       SignInFailureRow.key == (username or "")[:KEY_LENGTH]))
