"""``Repository``: every aggregate's repository behind one object.

Why a facade: some sixty callers (the CLI, the dashboard, the application layer, the engine's database sink, the
tests) hold one ``Repository`` and reach several aggregates through it; the per-aggregate classes below are where the
code lives, and new code may take just the one it needs. Training runs are ``storage.runs.RunQueue``'s and schedules
``storage.schedules.ScheduleStore``'s; they are not part of this facade.
"""

from __future__ import annotations

from inspect_app.storage.audit import AuditRepository
from inspect_app.storage.comparisons import ModelComparisonRepository
from inspect_app.storage.dataset_snapshots import DatasetSnapshotRepository
from inspect_app.storage.inspections import InspectionRepository
from inspect_app.storage.model_versions import ModelVersionRepository
from inspect_app.storage.reviews import ReviewRepository
from inspect_app.storage.users import UserRepository


class Repository(
    InspectionRepository,
    ModelVersionRepository,
    ModelComparisonRepository,
    ReviewRepository,
    UserRepository,
    AuditRepository,
    DatasetSnapshotRepository,
):
    """Reads and writes records through one ``Database``; built as ``InspectionRepository`` is (db, batch_size)."""


__all__ = ["Repository"]
