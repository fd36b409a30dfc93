"""Raw anomaly evidence beside the normalised score.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:30:00

``inspections.raw_score`` keeps the model's own, unbounded score (a good-only model's patch distance; ``NULL`` for a
classifier, whose probability is its score), so that ranking among NG parts and threshold changes above the old clip
point stay possible from the stored rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``inspections.raw_score``."""
    op.add_column("inspections", sa.Column("raw_score", sa.Double(), nullable=True))


def downgrade() -> None:
    """Drop ``inspections.raw_score``."""
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("raw_score")
