"""Model versions: register, promote, roll back along the promotion history, set the threshold the line decides with.

Every promotion (a person's, a rollback, the first registered model, the worker's champion/challenger win) is audited
with the model it replaced (``promotion_event``): that trail is what a rollback walks back. The database write itself
is the storage primitive ``Repository.promote``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from sqlalchemy import select

from inspect_app.app.access import authorize
from inspect_app.records import AuditEvent, DatasetSnapshot, ModelStatus, ModelVersion, User
from inspect_app.storage.audit import write_audit
from inspect_app.storage.db import Database
from inspect_app.storage.model_versions import model_version_from_row
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import ModelVersionRow

logger = logging.getLogger(__name__)

__all__ = [
    "PROMOTE_ACTION", "promote_model", "promotion_event", "promotion_history", "register_model", "rollback_model",
    "rollback_target", "set_model_threshold",
]

PROMOTE_ACTION = "model.promote"
ROLLBACK_REASON = "rollback from"


def promotion_event(name: str, previous: str | None, actor: str, reason: str) -> AuditEvent:
    """The audit entry of a promotion, with the model it replaced (what a rollback reads)."""
    return AuditEvent(actor=actor, action=PROMOTE_ACTION, target=name, details={"previous": previous, "reason": reason})


def _promote(repository: Repository, name: str, actor: str, reason: str) -> ModelVersion:
    """Make ``name`` active, audited with the model it replaced, in one transaction (no entry when nothing changes)."""
    previous = repository.active_model()
    changes = previous is None or previous.name != name
    event = promotion_event(name, previous.name if previous else None, actor, reason) if changes else None
    return repository.promote(name, audit=event)


def promote_model(db: Database, user: User | None, name: str, reason: str = "dashboard") -> ModelVersion:
    """Make ``name`` the active model, audited with the model it replaced.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no model version is called ``name`` (known names listed).
    """
    user = authorize(user, "promote")
    return _promote(Repository(db), name, actor=user.username, reason=reason)


def _model_name(target: str) -> str:
    # Older dashboard builds audited the target as "model:<name>"; both forms name the same model.
    return target.removeprefix("model:")


def promotion_history(db: Database, limit: int = 10_000) -> list[str]:
    """The models that were active, oldest first, with rolled-back ones taken off: what a rollback walks down.

    A promotion puts its model on top (the model it replaced first, for the oldest entry); a rollback to a model takes
    off everything above it, so rolling back twice goes two models back instead of returning to where it began.
    """
    history: list[str] = []
    for event in reversed(Repository(db).list_audit(limit=limit, action=PROMOTE_ACTION)):
        if event.target is None:
            continue  # every promotion names its model; an entry without one says nothing about the history
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


def rollback_target(db: Database) -> ModelVersion | None:
    """The model a rollback would re-activate: the one below the active model in the promotion history, else ``None``.

    Without an audit trail (models promoted before the lifecycle existed), the newest retired model is taken.
    """
    repository = Repository(db)
    active = repository.active_model()
    if active is None:
        return None
    history = promotion_history(db)
    if history and history[-1] == active.name:
        for name in reversed(history[:-1]):
            found = repository.get_model_version(name)
            if found is not None and name != active.name:
                return found
        return None
    retired = [v for v in repository.list_model_versions() if v.status is ModelStatus.RETIRED]
    return retired[-1] if retired else None


def rollback_model(db: Database, user: User | None) -> ModelVersion:
    """Re-activate the model that the current active one replaced (see ``rollback_target``), audited.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: there is no active model, or no earlier model to go back to.
    """
    user = authorize(user, "rollback")
    repository = Repository(db)
    active = repository.active_model()
    if active is None:
        raise LookupError("no active model to roll back from")
    target = rollback_target(db)
    if target is None:
        raise LookupError(f"active model {active.name!r} replaced no earlier model; nothing to roll back to")
    logger.info("rolling back from %s to %s", active.name, target.name)
    return _promote(repository, target.name, user.username, reason=f"{ROLLBACK_REASON} {active.name}")


def set_model_threshold(db: Database, user: User | None, name: str, threshold: float) -> ModelVersion:
    """Store a new decision threshold on a model version and audit the old and new value, in one transaction.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        ValueError: the threshold is not a number strictly between 0 and 1.
        LookupError: no model version is called ``name``.
    """
    user = authorize(user, "threshold")
    if not isinstance(threshold, int | float) or math.isnan(threshold) or not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold {threshold!r} must be a number strictly between 0 and 1")
    with db.session() as session:
        row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.name == name))
        if row is None:
            known = session.scalars(select(ModelVersionRow.name).order_by(ModelVersionRow.name)).all()
            raise LookupError(f"model version {name!r} not found; known: {list(known)}")
        old = row.threshold
        row.threshold = float(threshold)
        write_audit(session, AuditEvent(actor=user.username, action="model.threshold", target=f"model:{name}",
                                              details={"old": old, "new": float(threshold)}))
        session.flush()
        return model_version_from_row(row)


def register_model(
    repository: Repository, card: Any, model_dir: Path, actor: str = "system", promote_if_first: bool = True,
    snapshot: DatasetSnapshot | None = None,
) -> ModelVersion:
    """Record a trained model (its card and folder) as a version, audited; the first one becomes active.

    Registering a model that is already known changes nothing, so a pipeline may register its model on every start.
    ``snapshot``, the frozen data it trained on, is recorded with it (once per fingerprint).

    Raises:
        ValueError: the snapshot's fingerprint is not the card's (both named): they would describe other data.
    """
    if snapshot is not None:
        if snapshot.fingerprint != card.data_fingerprint:
            raise ValueError(f"model {card.name}: snapshot fingerprint {snapshot.fingerprint} is not the card's data "
                             f"fingerprint {card.data_fingerprint}")
        repository.add_dataset_snapshot(snapshot)
    version = ModelVersion(
        name=card.name,
        kind=card.kind,
        backbone=card.backbone,
        path=str(Path(model_dir).resolve()),
        classes=tuple(card.classes),
        metrics=card.metrics,
        threshold=card.threshold,
        data_fingerprint=card.data_fingerprint,
    )
    if repository.get_model_version(card.name) is None:
        repository.add_model_version(version, audit=AuditEvent(
            actor=actor, action="model.register", target=card.name,
            details={"kind": card.kind, "backbone": card.backbone, "path": version.path}))
    if promote_if_first and repository.active_model() is None:
        _promote(repository, card.name, actor=actor, reason="first model")
    return version
