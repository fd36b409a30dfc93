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
    is_unreachable,
    make_engine,
    mask_url,
    upgrade,
)
from inspect_app.storage.repository import Repository
from inspect_app.storage.retention import PurgeResult, parse_age, purge
from inspect_app.storage.spool import SpoolingRepository

__all__ = [
    "Database",
    "PurgeResult",
    "Repository",
    "SpoolingRepository",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_unreachable",
    "make_engine",
    "mask_url",
    "parse_age",
    "purge",
    "queries",
    "upgrade",
]
