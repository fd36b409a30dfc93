"""Inspections and their hourly rollups: the batched, idempotent insert and the reads of raw rows.

The rollups (``inspection_hourly``, ``defect_hourly``) and the station registry change in the same transaction as the
rows, so they never drift from them; database refusals surface as ``StorageError`` (see ``Database.session``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inspect_app.errors import StorageError
from inspect_app.records import Decision, Inspection, utcnow
from inspect_app.storage.checks import check_limit, require_aware
from inspect_app.storage.db import Database
from inspect_app.storage.tables import (
    SCORE_BIN_COLUMNS,
    SCORE_BINS,
    UNCLASSIFIED,
    DefectHourlyRow,
    InspectionHourlyRow,
    InspectionRow,
    LineRow,
    StationRow,
)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
_INSPECTIONS: Table = InspectionRow.__table__  # type: ignore[assignment]
_HOURLY: Table = InspectionHourlyRow.__table__  # type: ignore[assignment]
_DEFECTS: Table = DefectHourlyRow.__table__  # type: ignore[assignment]
# Columns RETURNING hands back for every inserted inspection: exactly what the rollups need.
_ROLLUP_SOURCE = ("created_at", "station", "line", "decision", "defect_class", "score")
# PostgreSQL array type of every inspection column, for the unnest() bulk insert.
_PG_ARRAY_TYPES = {
    "created_at": "timestamptz[]", "station": "varchar[]", "line": "varchar[]", "source": "text[]",
    "image_path": "text[]", "content_hash": "varchar[]", "model_version": "varchar[]", "decision": "varchar[]",
    "defect_class": "varchar[]", "score": "float8[]", "raw_score": "float8[]", "threshold": "float8[]",
    "latency_ms": "float8[]",
    "heatmap_path": "text[]", "error": "text[]",
}
_PG_INSERT = text(
    f"INSERT INTO inspections ({', '.join(_PG_ARRAY_TYPES)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{n} AS {t})' for n, t in _PG_ARRAY_TYPES.items())}) "
    f"ON CONFLICT DO NOTHING RETURNING {', '.join(_ROLLUP_SOURCE)}"
)
_HOURLY_COUNTERS = ("total", "ok", "review", "ng", "errors", "scored", "score_sum", *SCORE_BIN_COLUMNS)


def epoch_hour(moment: datetime) -> int:
    """Hours since the Unix epoch of an aware datetime: the key of the hourly rollups."""
    return int(moment.timestamp() // 3600)


def score_bin(score: float) -> int:
    """Histogram bin of a defect score: ``SCORE_BINS`` equal bins over [0, 1], outliers in the end bins."""
    return min(max(int(score * SCORE_BINS // 1), 0), SCORE_BINS - 1)


def rollup_counts(rows: Iterable[Any]) -> tuple[dict[tuple[int, str, str], dict[str, float]], dict[tuple, int]]:
    """Hourly counters and NG-per-class counts of inserted rows, keyed like the rollup tables' primary keys."""
    hourly: dict[tuple[int, str, str], dict[str, float]] = {}
    defects: dict[tuple, int] = defaultdict(int)
    for row in rows:
        key = (epoch_hour(row.created_at), row.station, row.line)
        counters = hourly.get(key)
        if counters is None:
            counters = hourly[key] = dict.fromkeys(_HOURLY_COUNTERS, 0)
        counters["total"] += 1
        decision = row.decision
        counters[{"OK": "ok", "REVIEW": "review", "NG": "ng", "ERROR": "errors"}[decision]] += 1
        if row.score is not None:
            counters["scored"] += 1
            counters["score_sum"] += row.score
            counters[SCORE_BIN_COLUMNS[score_bin(row.score)]] += 1
        if decision == "NG":
            defects[(*key, row.defect_class or UNCLASSIFIED)] += 1
    return hourly, defects


# --- records <-> rows ---------------------------------------------------------------------------------------------


def inspection_to_values(inspection: Inspection) -> dict[str, Any]:
    """Column values of one ``inspections`` row (without ``id``)."""
    require_aware("created_at", inspection.created_at)
    return {
        "created_at": inspection.created_at,
        "station": inspection.station,
        "line": inspection.line,
        "source": inspection.source,
        "image_path": inspection.image_path,
        "content_hash": inspection.content_hash,
        "model_version": inspection.model_version,
        "decision": Decision(inspection.decision).value,
        "defect_class": inspection.defect_class,
        "score": inspection.score,
        "raw_score": inspection.raw_score,
        "threshold": inspection.threshold,
        "latency_ms": inspection.latency_ms,
        "heatmap_path": inspection.heatmap_path,
        "error": inspection.error,
    }


def inspection_from_row(row: Any) -> Inspection:
    """Build an ``Inspection`` from an ``InspectionRow`` or a Core row with the same columns."""
    return Inspection(
        station=row.station,
        line=row.line,
        source=row.source,
        image_path=row.image_path,
        decision=Decision(row.decision),
        created_at=row.created_at,
        content_hash=row.content_hash,
        model_version=row.model_version,
        defect_class=row.defect_class,
        score=row.score,
        raw_score=row.raw_score,
        threshold=row.threshold,
        latency_ms=row.latency_ms,
        heatmap_path=row.heatmap_path,
        error=row.error,
    )



class InspectionRepository:
    """Writes and reads inspections through one ``Database``.

    Args:
        db: the open database.
        batch_size: rows per INSERT statement in ``add_inspections``.
    """

    def __init__(self, db: Database, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        """Bind to a database."""
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size!r} must be a positive integer")
        self.db = db
        self.batch_size = batch_size
        # Stations this repository has already registered: saves two statements per batch in a long run.
        self._known_stations: set[str] = set()

    def add_inspections(self, inspections: Iterable[Inspection]) -> int:
        """Insert inspections in batches, skipping ones already recorded; all in one transaction.

        A row is "already recorded" when (content_hash, model_version, station) exists, so re-running a batch job on
        the same folder with the same model inserts nothing. Rows without a content hash (read errors) always insert.
        The hourly rollups and the station registry are updated in the same transaction, so they never drift from
        the rows.

        Returns:
            Number of rows actually inserted.
        """
        values = [inspection_to_values(inspection) for inspection in inspections]
        if not values:
            return 0
        inserted = 0
        with self.db.session() as session:
            registered = self._register_stations(session, {(v["station"], v["line"]) for v in values})
            for start in range(0, len(values), self.batch_size):
                new_rows = self._insert_new(session, values[start : start + self.batch_size])
                self._add_to_rollups(session, new_rows)
                inserted += len(new_rows)
        # Cached only once committed: a rolled-back registration must be retried by the next call.
        self._known_stations.update(registered)
        logger.debug("inserted %d of %d inspections", inserted, len(values))
        return inserted

    def _insert_new(self, session: Session, batch: list[dict[str, Any]]) -> list[Any]:
        """Insert one batch with ON CONFLICT DO NOTHING; return the rows the database really added."""
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            # One INSERT ... SELECT FROM unnest(arrays): the statement text is the same for every batch, so the driver
            # and the server reuse its parsed form; a multi-row VALUES list is re-parsed per batch (3x slower here).
            params = {name: [row[name] for row in batch] for name in _PG_ARRAY_TYPES}
            return list(session.execute(_PG_INSERT, params).all())
        if dialect == "sqlite":
            # RETURNING yields only the rows that were inserted, which is portable where executemany rowcount is not.
            columns = [_INSPECTIONS.c[name] for name in _ROLLUP_SOURCE]
            stmt = sqlite.insert(_INSPECTIONS).on_conflict_do_nothing().returning(*columns)
            return list(session.execute(stmt, batch).all())
        # ON CONFLICT and RETURNING are what make the insert idempotent and the rollups exact.
        raise StorageError(f"database dialect {dialect!r} is not supported; supported: sqlite, postgresql")

    def _register_stations(self, session: Session, pairs: set[tuple[str, str]]) -> list[str]:
        """Add unseen (station, line) pairs to the registry and return their station names.

        A station already registered keeps its first line; inspections carry their own line name anyway.
        """
        new = sorted(pair for pair in pairs if pair[0] not in self._known_stations)
        if not new:
            return []
        dialect = session.get_bind().dialect.name
        module = sqlite if dialect == "sqlite" else postgresql
        now = utcnow()
        for station, line in new:
            session.execute(
                module.insert(LineRow.__table__).values(name=line, created_at=now).on_conflict_do_nothing()
            )
            line_id = select(LineRow.id).where(LineRow.name == line).scalar_subquery()
            session.execute(
                module.insert(StationRow.__table__)
                .values(name=station, line_id=line_id, created_at=now)
                .on_conflict_do_nothing()
            )
        return [station for station, _ in new]

    def _add_to_rollups(self, session: Session, new_rows: list[Any]) -> None:
        """Add freshly inserted rows to ``inspection_hourly`` and ``defect_hourly`` with atomic upserts."""
        if not new_rows:
            return
        hourly, defects = rollup_counts(new_rows)
        dialect = session.get_bind().dialect.name
        module = sqlite if dialect == "sqlite" else postgresql
        # Sorted keys: concurrent writers take row locks in the same order and cannot deadlock each other.
        hourly_values = [
            {"hour": h, "station": s, "line": ln, **counters} for (h, s, ln), counters in sorted(hourly.items())
        ]
        stmt = module.insert(_HOURLY)
        stmt = stmt.on_conflict_do_update(
            index_elements=["hour", "station", "line"],
            set_={name: _HOURLY.c[name] + stmt.excluded[name] for name in _HOURLY_COUNTERS},
        )
        session.execute(stmt, hourly_values)
        if defects:
            defect_values = [
                {"hour": h, "station": s, "line": ln, "defect_class": c, "ng": n}
                for (h, s, ln, c), n in sorted(defects.items())
            ]
            stmt = module.insert(_DEFECTS)
            stmt = stmt.on_conflict_do_update(
                index_elements=["hour", "station", "line", "defect_class"],
                set_={"ng": _DEFECTS.c.ng + stmt.excluded.ng},
            )
            session.execute(stmt, defect_values)

    def known_hashes(self, model_version: str | None, station: str) -> set[str]:
        """Content hashes already inspected by ``model_version`` (``None``: by any model) at ``station``, to skip
        them before decoding."""
        conditions = [InspectionRow.station == station, InspectionRow.content_hash.is_not(None)]
        if model_version is not None:
            conditions.append(InspectionRow.model_version == model_version)
        stmt = select(InspectionRow.content_hash).where(*conditions).distinct()
        with self.db.session() as session:
            return {value for value in session.scalars(stmt) if value is not None}

    def unreadable_paths(self, station: str) -> set[str]:
        """Paths that already have an ERROR row without a content hash at ``station`` (unreadable files, e.g. a
        dangling symlink), so a re-run does not write their ERROR row again."""
        stmt = (
            select(InspectionRow.image_path)
            .where(
                InspectionRow.station == station,
                InspectionRow.decision == Decision.ERROR.value,
                InspectionRow.content_hash.is_(None),
            )
            .distinct()
        )
        with self.db.session() as session:
            return set(session.scalars(stmt))

    def list_inspections(
        self,
        limit: int = 100,
        decision: Decision | str | None = None,
        station: str | None = None,
        since: datetime | None = None,
    ) -> list[Inspection]:
        """Newest inspections first, optionally only one decision, one station and/or from ``since`` on.

        Raises:
            ValueError: ``limit`` is not positive, ``decision`` is not a ``Decision`` value or ``since`` is naive.
        """
        check_limit(limit)
        require_aware("since", since)
        stmt = select(InspectionRow)
        if since is not None:
            stmt = stmt.where(InspectionRow.created_at >= since)
        if decision is not None:
            stmt = stmt.where(InspectionRow.decision == _decision_value(decision))
        if station is not None:
            stmt = stmt.where(InspectionRow.station == station)
        stmt = stmt.order_by(InspectionRow.created_at.desc(), InspectionRow.id.desc()).limit(limit)
        with self.db.session() as session:
            return [inspection_from_row(row) for row in session.scalars(stmt)]

    def inspection_id(self, content_hash: str, model_version: str | None, station: str) -> int | None:
        """Database id of the inspection recorded for (content hash, model, station), or ``None``."""
        stmt = select(InspectionRow.id).where(
            InspectionRow.content_hash == content_hash,
            InspectionRow.model_version == model_version,
            InspectionRow.station == station,
        )
        with self.db.session() as session:
            return session.scalar(stmt)


def _decision_value(decision: Decision | str) -> str:
    """Validated decision string, naming the allowed values when it is not one."""
    try:
        return Decision(decision).value
    except ValueError as exc:
        allowed = [d.value for d in Decision]
        raise ValueError(f"decision {decision!r} is not one of {allowed}") from exc



__all__ = [
    "DEFAULT_BATCH_SIZE",
    "InspectionRepository",
    "epoch_hour",
    "inspection_from_row",
    "inspection_to_values",
    "rollup_counts",
    "score_bin",
]
