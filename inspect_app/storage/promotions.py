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


def rollback_target(repository: Repository) -> ModelVersion | None:
    """The model a rollback would re-activate: the one the active model replaced, else ``None``.

    Without an audit trail (models promoted before the lifecycle existed), the newest retired model is taken.
    """
    active = repository.active_model()
    if active is None:
        return None
    # Older dashboard builds audited the target as "model:<name>"; both forms name the same promotion.
    targets = (active.name, f"model:{active.name}")
    for event in repository.list_audit(limit=1000, action=PROMOTE_ACTION):
        previous = event.details.get("previous")
        if event.target in targets and previous and previous != active.name:
            found = repository.get_model_version(previous)
            if found is not None:
                return found
            break
    retired = [v for v in repository.list_model_versions() if v.status is ModelStatus.RETIRED]
    return retired[-1] if retired else None


def rollback(repository: Repository, actor: str) -> ModelVersion:
    """Re-activate the model that the current active one replaced (see ``rollback_target``).

    Raises:
        LookupError: there is no active model, or no earlier model to go back to.
    """
    active = repository.active_model()
    if active is None:
        raise LookupError("no active model to roll back from")
    target = rollback_target(repository)
    if target is None:
        raise LookupError(f"active model {active.name!r} replaced no earlier model; nothing to roll back to")
    logger.info("rolling back from %s to %s", active.name, target.name)
    return promote(repository, target.name, actor, reason=f"rollback from {active.name}")
