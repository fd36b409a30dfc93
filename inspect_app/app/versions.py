"""Model versions: promote, roll back along the promotion history, set the threshold the line decides with."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import select

from inspect_app.app.access import authorize
from inspect_app.records import AuditEvent, DatasetSnapshot, ModelVersion, User
from inspect_app.storage import promotions
from inspect_app.storage.audit import write_audit
from inspect_app.storage.db import Database
from inspect_app.storage.model_versions import model_version_from_row
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import ModelVersionRow

__all__ = ["promote_model", "register_model", "rollback_model", "rollback_target", "set_model_threshold"]


def promote_model(db: Database, user: User | None, name: str, reason: str = "dashboard") -> ModelVersion:
    """Make ``name`` the active model through ``promotions.promote`` (audited with the model it replaced).

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no model version is called ``name`` (known names listed).
    """
    user = authorize(user, "promote")
    return promotions.promote(Repository(db), name, actor=user.username, reason=reason)


def rollback_target(db: Database) -> ModelVersion | None:
    """The model a rollback would re-activate (``promotions.rollback_target``), else ``None``."""
    return promotions.rollback_target(Repository(db))


def rollback_model(db: Database, user: User | None) -> ModelVersion:
    """Re-activate the model the current one replaced, through ``promotions.rollback`` (audited).

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: there is no earlier model to roll back to.
    """
    user = authorize(user, "rollback")
    return promotions.rollback(Repository(db), actor=user.username)


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
        promotions.promote(repository, card.name, actor=actor, reason="first model")
    return version
