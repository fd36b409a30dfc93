"""Stored champion/challenger comparisons: what a fine-tuning run's candidate was judged against, and the verdict."""

from __future__ import annotations

from sqlalchemy import select

from inspect_app.records import ModelComparison
from inspect_app.storage.checks import require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.tables import ModelComparisonRow

__all__ = ["ModelComparisonRepository"]


def _comparison_from_row(row: ModelComparisonRow) -> ModelComparison:
    """Record for a ``ModelComparisonRow``."""
    return ModelComparison(
        candidate=row.candidate, champion=row.champion, promoted=row.promoted, reason=row.reason,
        details=dict(row.details), training_run_id=row.training_run_id, created_at=row.created_at,
    )


class ModelComparisonRepository:
    """Model comparisons through one ``Database``."""

    def __init__(self, db: Database) -> None:
        """Bind to a database."""
        self.db = db

    def add_comparison(self, comparison: ModelComparison) -> int:
        """Store a champion/challenger evaluation and return its id."""
        require_aware("created_at", comparison.created_at)
        row = ModelComparisonRow(
            training_run_id=comparison.training_run_id, candidate=comparison.candidate, champion=comparison.champion,
            promoted=comparison.promoted, reason=comparison.reason, details=dict(comparison.details),
            created_at=comparison.created_at,
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return row.id

    def list_comparisons(self, limit: int = 20, candidate: str | None = None) -> list[ModelComparison]:
        """Newest comparisons first, optionally only those of one candidate."""
        stmt = select(ModelComparisonRow)
        if candidate is not None:
            stmt = stmt.where(ModelComparisonRow.candidate == candidate)
        stmt = stmt.order_by(ModelComparisonRow.created_at.desc(), ModelComparisonRow.id.desc()).limit(limit)
        with self.db.session() as session:
            return [_comparison_from_row(row) for row in session.scalars(stmt)]
