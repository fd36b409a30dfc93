"""Manual promotion and rollback of model versions, each audited with the model it replaced (CLI, dashboard, worker)."""

from __future__ import annotations

import logging

from inspect_app.records import AuditEvent, ModelStatus, ModelVersion
from inspect_app.storage.repository import Repository

logger = logging.getLogger(__name__)

PROMOTE_ACTION = "model.promote"


def audit_promotion(repository: Repository, name: str, previous: str | None, actor: str, reason: str) -> None:
    """Record a promotion with the model it replaced (what ``rollback`` reads)."""
    repository.audit(AuditEvent(actor=actor, action=PROMOTE_ACTION, target=name,
                                details={"previous": previous, "reason": reason}))


def promote(repository: Repository, name: str, actor: str, reason: str = "manual") -> ModelVersion:
    """Make ``name`` the active model and audit it with the previous active model's name.

    Raises:
        LookupError: no model version is called ``name`` (the known ones are listed).
    """
    previous = repository.active_model()
    version = repository.promote(name)
    if previous is None or previous.name != name:
        audit_promotion(repository, name, previous.name if previous else None, actor, reason)
    return version


def rollback(repository: Repository, actor: str) -> ModelVersion:
    """Re-activate the model that the current active one replaced.

    Raises:
        LookupError: there is no active model, or no earlier model to go back to.
    """
    active = repository.active_model()
    if active is None:
        raise LookupError("no active model to roll back from")
    for event in repository.list_audit(limit=1000, action=PROMOTE_ACTION):
        if event.target == active.name and event.details.get("previous"):
            previous = event.details["previous"]
            logger.info("rolling back from %s to %s", active.name, previous)
            return promote(repository, previous, actor, reason=f"rollback from {active.name}")
    retired = [v for v in repository.list_model_versions() if v.status is ModelStatus.RETIRED]
    if not retired:
        raise LookupError(f"active model {active.name!r} replaced no earlier model; nothing to roll back to")
    # Without an audit trail (models promoted before the lifecycle existed), the newest retired model is the best guess.
    return promote(repository, retired[-1].name, actor, reason=f"rollback from {active.name}")
