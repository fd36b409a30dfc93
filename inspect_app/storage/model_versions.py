"""Model versions: registration, lookup, promotion and the discarding of a failed run's candidates."""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy import select

from inspect_app.errors import ActiveModelChangedError, StorageError
from inspect_app.records import AuditEvent, ModelStatus, ModelVersion
from inspect_app.storage.audit import write_audit
from inspect_app.storage.checks import require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.tables import ModelVersionRow

logger = logging.getLogger(__name__)

# ``promote(expected_active=ANY_ACTIVE)``: promote whatever model is active now (a person's promotion).
ANY_ACTIVE: Final = "<any>"


def _model_version_to_row(version: ModelVersion) -> ModelVersionRow:
    """New ``ModelVersionRow`` for a record."""
    require_aware("created_at", version.created_at)
    return ModelVersionRow(
        name=version.name,
        kind=version.kind,
        backbone=version.backbone,
        path=version.path,
        classes=list(version.classes),
        metrics=dict(version.metrics),
        status=ModelStatus(version.status).value,
        threshold=float(version.threshold),
        data_fingerprint=version.data_fingerprint,
        training_run_id=version.training_run_id,
        created_at=version.created_at,
    )


def model_version_from_row(row: ModelVersionRow) -> ModelVersion:
    """Record for a ``ModelVersionRow``."""
    return ModelVersion(
        name=row.name,
        kind=row.kind,
        backbone=row.backbone,
        path=row.path,
        classes=tuple(row.classes),
        metrics=dict(row.metrics),
        status=ModelStatus(row.status),
        threshold=row.threshold,
        data_fingerprint=row.data_fingerprint,
        training_run_id=row.training_run_id,
        created_at=row.created_at,
    )



class ModelVersionRepository:
    """Model versions through one ``Database``."""

    def __init__(self, db: Database) -> None:
        """Bind to a database."""
        self.db = db

    def add_model_version(self, version: ModelVersion, audit: AuditEvent | None = None) -> int:
        """Register a model version and return its id; ``audit`` is written in the same transaction.

        Raises:
            StorageError: the name is taken, or the version is ``active`` while another one is.
        """
        row = _model_version_to_row(version)
        with self.db.session() as session:
            if session.scalar(select(ModelVersionRow.id).where(ModelVersionRow.name == version.name)) is not None:
                raise StorageError(f"model version {version.name!r} already exists")
            session.add(row)
            if audit is not None:
                write_audit(session, audit)
            session.flush()
            return row.id

    def discard_candidates(self, training_run_id: int) -> list[str]:
        """Remove the still-candidate model versions a (failed) training run registered; returns their names.

        A run that failed after registering its model must not leave it to be promoted by hand later.
        """
        stmt = select(ModelVersionRow).where(ModelVersionRow.training_run_id == training_run_id,
                                             ModelVersionRow.status == ModelStatus.CANDIDATE.value)
        with self.db.session() as session:
            rows = list(session.scalars(stmt))
            for row in rows:
                session.delete(row)
            return [row.name for row in rows]

    def get_model_version(self, name: str) -> ModelVersion | None:
        """The model version called ``name``, or ``None``."""
        with self.db.session() as session:
            row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.name == name))
            return None if row is None else model_version_from_row(row)

    def list_model_versions(self) -> list[ModelVersion]:
        """Every model version, oldest first."""
        stmt = select(ModelVersionRow).order_by(ModelVersionRow.created_at, ModelVersionRow.id)
        with self.db.session() as session:
            return [model_version_from_row(row) for row in session.scalars(stmt)]

    def active_model(self) -> ModelVersion | None:
        """The model version currently in use, or ``None`` before the first promotion."""
        stmt = select(ModelVersionRow).where(ModelVersionRow.status == ModelStatus.ACTIVE.value)
        with self.db.session() as session:
            row = session.scalar(stmt)
            return None if row is None else model_version_from_row(row)

    def promote(
        self, name: str, audit: AuditEvent | None = None, expected_active: str | None = ANY_ACTIVE
    ) -> ModelVersion:
        """Make ``name`` the active model and retire the previous one, in one transaction.

        Promoting the model that is already active changes nothing; a retired model may be promoted again (rollback).
        ``audit`` is written in the same transaction, when the promotion changes something. With ``expected_active``
        (a name, or ``None`` for no active model) the promotion happens only if that model is still the active one:
        two workers that judged their candidates against the same champion cannot both replace it (the active row is
        locked while it is checked, and a concurrent first promotion trips the one-active unique index).

        Returns:
            The promoted model version.

        Raises:
            LookupError: no model version is called ``name`` (the known ones are listed).
            ActiveModelChangedError: the active model is not ``expected_active`` (or became another one meanwhile).
        """
        checked = expected_active != ANY_ACTIVE
        try:
            with self.db.session() as session:
                current = session.scalar(
                    select(ModelVersionRow).where(ModelVersionRow.status == ModelStatus.ACTIVE.value).with_for_update()
                )
                current_name = current.name if current is not None else None
                if checked and current_name != expected_active:
                    raise ActiveModelChangedError(
                        f"model version {name!r} not promoted: the active model is {current_name!r}, not "
                        f"{expected_active!r}")
                row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.name == name).with_for_update())
                if row is None:
                    known = session.scalars(select(ModelVersionRow.name).order_by(ModelVersionRow.name)).all()
                    raise LookupError(f"model version {name!r} not found; known: {list(known)}")
                if row.status != ModelStatus.ACTIVE.value:
                    if current is not None:
                        # Retire first: the one-active unique index is checked per statement.
                        current.status = ModelStatus.RETIRED.value
                        session.flush()
                    row.status = ModelStatus.ACTIVE.value
                    if audit is not None:
                        write_audit(session, audit)
                    session.flush()
                    logger.info("model version %r promoted to active (replacing %r)", name, current_name)
                return model_version_from_row(row)
        except ActiveModelChangedError:
            raise
        except StorageError as exc:
            if not checked:
                raise
            raise ActiveModelChangedError(f"model version {name!r} not promoted: another promotion came first "
                                          f"({exc})") from exc


__all__ = ["ANY_ACTIVE", "ModelVersionRepository", "model_version_from_row"]
