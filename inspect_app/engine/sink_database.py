"""The database sink: decided inspections written through the storage repository."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from inspect_app.engine.sink_base import SinkItem
from inspect_app.records import Inspection


class InspectionWriter(Protocol):
    """What the sink needs of a repository (the storage one, or the spooling one while the database is away)."""

    def add_inspections(self, inspections: Iterable[Inspection]) -> int:
        """Insert the rows not yet stored; return how many were new."""
        ...


class DatabaseSink:
    """Writes inspections through the storage repository (batched, idempotent on content hash)."""

    def __init__(self, repository: InspectionWriter) -> None:
        self.repository = repository
        self.inserted = 0

    def write(self, items: Sequence[SinkItem]) -> Sequence[SinkItem]:
        """Insert the batch's inspection rows."""
        self.inserted += self.repository.add_inspections([inspection for inspection, _, _ in items])
        return items
