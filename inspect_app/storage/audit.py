"""The append-only audit log: who did what, when (the database refuses to change or delete entries)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspect_app.records import AuditEvent
from inspect_app.storage.checks import check_limit, require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.tables import AuditLogRow


def write_audit(session: Session, event: AuditEvent) -> None:
    """Append one audit entry inside the caller's transaction (so an action and its entry commit together)."""
    require_aware("at", event.at)
    session.add(
        AuditLogRow(at=event.at, actor=event.actor, action=event.action, target=event.target,
                    details=dict(event.details))
    )



class AuditRepository:
    """The audit log through one ``Database``."""

    def __init__(self, db: Database) -> None:
        """Bind to a database."""
        self.db = db

    def audit(self, event: AuditEvent) -> None:
        """Append one entry to the audit log (the database refuses to change or delete entries)."""
        with self.db.session() as session:
            write_audit(session, event)

    def list_audit(self, limit: int = 100, action: str | None = None) -> list[AuditEvent]:
        """Newest audit entries first, optionally only one action."""
        check_limit(limit)
        stmt = select(AuditLogRow)
        if action is not None:
            stmt = stmt.where(AuditLogRow.action == action)
        stmt = stmt.order_by(AuditLogRow.at.desc(), AuditLogRow.id.desc()).limit(limit)
        with self.db.session() as session:
            return [
                AuditEvent(actor=r.actor, action=r.action, target=r.target, details=dict(r.details), at=r.at)
                for r in session.scalars(stmt)
            ]


__all__ = ["AuditRepository", "write_audit"]
