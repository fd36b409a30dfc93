"""Dashboard users: creation with an Argon2id hash, lookup and password checks."""

from __future__ import annotations

from sqlalchemy import select

from inspect_app.errors import StorageError
from inspect_app.records import AuditEvent, User
from inspect_app.storage.audit import write_audit
from inspect_app.storage.checks import require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.passwords import hash_password, needs_rehash, spend_verify_time, verify_password
from inspect_app.storage.tables import USER_ROLES, UserRow


def user_from_row(row: UserRow) -> User:
    """Record for a ``UserRow``, without the password hash."""
    return User(
        username=row.username, role=row.role, display_name=row.display_name, active=row.active,
        created_at=row.created_at,
    )



class UserRepository:
    """Users through one ``Database``."""

    def __init__(self, db: Database) -> None:
        """Bind to a database."""
        self.db = db

    def add_user(self, user: User, password: str, actor: str = "system") -> int:
        """Create a user with an Argon2id hash of ``password``, audited as ``actor`` in the same transaction.

        Raises:
            ValueError: the role is not one of ``USER_ROLES``, or the password is too short.
            StorageError: the user name is taken.
        """
        if user.role not in USER_ROLES:
            raise ValueError(f"role {user.role!r} is not one of {list(USER_ROLES)}")
        require_aware("created_at", user.created_at)
        password_hash = hash_password(password)
        with self.db.session() as session:
            if session.scalar(select(UserRow.id).where(UserRow.username == user.username)) is not None:
                raise StorageError(f"user {user.username!r} already exists")
            row = UserRow(
                username=user.username,
                display_name=user.display_name,
                role=user.role,
                password_hash=password_hash,
                active=user.active,
                created_at=user.created_at,
            )
            session.add(row)
            session.flush()
            write_audit(session, AuditEvent(actor=actor, action="user.add", target=user.username,
                                            details={"role": user.role}))
            return row.id

    def get_user(self, username: str) -> User | None:
        """The user called ``username``, or ``None``."""
        with self.db.session() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == username))
            return None if row is None else user_from_row(row)

    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self.db.session() as session:
            return [user_from_row(row) for row in session.scalars(select(UserRow).order_by(UserRow.username))]

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user whose password matches, else ``None`` (unknown name, wrong password, inactive).

        A hash made with weaker parameters than today's is replaced on success.
        """
        with self.db.session() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == username))
            if row is None:
                spend_verify_time(password)
                return None
            # The password is checked for inactive users too, so that the time taken says nothing about the flag.
            if not verify_password(row.password_hash, password) or not row.active:
                return None
            if needs_rehash(row.password_hash):
                row.password_hash = hash_password(password)
            return user_from_row(row)


__all__ = ["UserRepository", "user_from_row"]
