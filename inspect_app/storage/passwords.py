"""Password hashing for the ``users`` table: Argon2id via ``argon2-cffi``; plain passwords are never stored."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# The library's defaults follow RFC 9106's recommendations; one shared hasher keeps them in one place.
_HASHER = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    """Argon2id hash (with its own salt and parameters) of ``password``.

    Raises:
        ValueError: the password is shorter than ``MIN_PASSWORD_LENGTH`` characters.
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; a malformed hash counts as no match."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: list[str] = []


def spend_verify_time(password: str) -> None:
    """Do the work of one verification against a throw-away hash (for a name with no user).

    Without it an unknown name would answer faster than a known one, telling an attacker which names exist.
    """
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_HASHER.hash("not-a-real-password"))
    verify_password(_DUMMY_HASH[0], password)


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than the current ones (rehash at the next sign-in)."""
    return _HASHER.check_needs_rehash(password_hash)
