"""Manual promotion and rollback of model versions, each audited with the model it replaced (CLI, dashboard, worker)."""

from __future__ import annotations

import logging

from inspect_app.records import AuditEvent, ModelStatus, ModelVersion
from inspect_app.storage.repository import Repository

logger = logging.getLogger(__name__)

PROMOTE_ACTION = "model.promote"


def promotion_event(name: str, previous: str | None, actor: str, reason: str) -> AuditEvent:
    """The audit entry of a promotion, with the model it replaced (what ``rollback`` reads)."""
    return AuditEvent(actor=actor, action=PROMOTE_ACTION, target=name, details={"previous": previous, "reason": reason})


def promote(repository: Repository, name: str, actor: str, reason: str = "manual") -> ModelVersion:
    """Make ``name`` the active model and audit it with the previous active model's name, in one transaction.

    Raises:
        LookupError: no model version is called ``name`` (the known ones are listed).
    """
    previous = repository.active_model()
    changes = previous is None or previous.name != name
    event = promotion_event(name, previous.name if previous else None, actor, reason) if changes else None
    return repository.promote(name, audit=event)


ROLLBACK_REASON = "rollback from"


def _model_name(target: str) -> str:
    # Older dashboard builds audited the target as "model:<name>"; both forms name the same model.
    return target.removeprefix("model:")


def promotion_history(repository: Repository, limit: int = 10_000) -> list[str]:
    """The models that were active, oldest first, with rolled-back ones taken off: what a rollback walks down.

    A promotion puts its model on top (the model it replaced first, for the oldest entry); a rollback to a model takes
    off everything above it, so rolling back twice goes two models back instead of returning to where it began.
    """
    history: list[str] = []
    for event in reversed(repository.list_audit(limit=limit, action=PROMOTE_ACTION)):
        if event.target is None:
            continue  # every promotion audits its model as the target; an entry without one names no model
        name = _model_name(event.target)
        previous = event.details.get("previous")
        if str(event.details.get("reason", "")).startswith(ROLLBACK_REASON):
            if name in history:
                del history[len(history) - history[::-1].index(name):]
                continue
            history = [name]
            continue
        if not history and previous:
            history.append(str(previous))
        if not history or history[-1] != name:
            history.append(name)
    return history


def rollback_target(repository: Repository) -> ModelVersion | None:
    """The model a rollback would re-activate: the one below the active model in the promotion history, else ``None``.

    Without an audit trail (models promoted before the lifecycle existed), the newest retired model is taken.
    """
    active = repository.active_model()
    if active is None:
        return None
    history = promotion_history(repository)
    if history and history[-1] == active.name:
        for name in reversed(history[:-1]):
            found = repository.get_model_version(name)
            if found is not None and name != active.name:
                return found
        return None
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
    return promote(repository, target.name, actor, reason=f"{ROLLBACK_REASON} {active.name}")
