"""Plant database: tables, engine and migrations, the record repository and dashboard queries.

Depends only on ``inspect_app.config``/``records``/``errors`` and SQLAlchemy/Alembic, so that the dashboard and the
database tests never load torch.
"""

from inspect_app.storage import queries
from inspect_app.storage.db import (
    Database,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    mask_url,
    upgrade,
)
from inspect_app.storage.repository import Repository

__all__ = [
    "Database",
    "Repository",
    "current_revision",
    "downgrade",
    "head_revision",
    "make_engine",
    "mask_url",
    "queries",
    "upgrade",
]
