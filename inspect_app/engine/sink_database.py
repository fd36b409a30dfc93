"""The database sink: decided inspections written through the storage repository."""

from __future__ import annotations

from collections.abc import Sequence

from inspect_app.engine.sink_base import SinkItem


class DatabaseSink:
    """Writes inspections through the storage repository (batched, idempotent on content hash)."""

    def __init__(self, repository: object) -> None:
        self.repository = repository
        self.inserted = 0

    def write(self, items: Sequence[SinkItem]) -> Sequence[SinkItem]:
        """Insert the batch's inspection rows."""
        self.inserted += self.repository.add_inspections([inspection for inspection, _, _ in items])
        return items
