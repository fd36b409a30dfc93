"""Dataset snapshots: the fingerprinted image lists a model version was trained on."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from inspect_app.records import DatasetSnapshot
from inspect_app.storage.checks import require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.tables import DatasetSnapshotRow


class DatasetSnapshotRepository:
    """Dataset snapshots through one ``Database``."""

    def __init__(self, db: Database) -> None:
        """Bind to a database."""
        self.db = db

    def add_dataset_snapshot(self, snapshot: DatasetSnapshot) -> int:
        """Record a dataset snapshot, or return the id of the one with the same fingerprint (idempotent)."""
        require_aware("created_at", snapshot.created_at)
        with self.db.session() as session:
            # One atomic insert-or-ignore, so two workers recording the same data set at once cannot clash.
            module = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
            session.execute(
                module.insert(DatasetSnapshotRow.__table__).values(
                    fingerprint=snapshot.fingerprint, path=snapshot.path, classes=list(snapshot.classes),
                    image_count=snapshot.image_count, manifest_path=snapshot.manifest_path,
                    created_at=snapshot.created_at,
                ).on_conflict_do_nothing(index_elements=["fingerprint"])
            )
            # The row exists now (inserted here or by an earlier snapshot of the same data), so its id is found.
            return session.scalars(
                select(DatasetSnapshotRow.id).where(DatasetSnapshotRow.fingerprint == snapshot.fingerprint)
            ).one()

    def get_dataset_snapshot(self, fingerprint: str) -> DatasetSnapshot | None:
        """The snapshot with ``fingerprint`` (a model's ``data_fingerprint``), or ``None``."""
        with self.db.session() as session:
            row = session.scalar(select(DatasetSnapshotRow).where(DatasetSnapshotRow.fingerprint == fingerprint))
            if row is None:
                return None
            return DatasetSnapshot(
                fingerprint=row.fingerprint, path=row.path, classes=tuple(row.classes), image_count=row.image_count,
                manifest_path=row.manifest_path, created_at=row.created_at,
            )


__all__ = ["DatasetSnapshotRepository"]
