"""The one place that turns ``inspect_app.records`` into database rows and back.

Every write runs in one transaction; database refusals surface as ``StorageError`` (see ``Database.session``), and
lookups of a name or id that does not exist raise ``LookupError`` naming it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inspect_app.errors import StorageError
from inspect_app.records import (
    AuditEvent,
    DatasetSnapshot,
    Decision,
    Inspection,
    ModelStatus,
    ModelVersion,
    Review,
    RunStatus,
    Schedule,
    TrainingRun,
    User,
    utcnow,
)
from inspect_app.storage.db import Database
from inspect_app.storage.passwords import hash_password, needs_rehash, spend_verify_time, verify_password
from inspect_app.storage.tables import (
    REVIEW_VERDICTS,
    SCORE_BIN_COLUMNS,
    SCORE_BINS,
    UNCLASSIFIED,
    USER_ROLES,
    AuditLogRow,
    DatasetSnapshotRow,
    DefectHourlyRow,
    InspectionHourlyRow,
    InspectionRow,
    LineRow,
    ModelVersionRow,
    ReviewRow,
    ScheduleRow,
    StationRow,
    TrainingRunRow,
    UserRow,
)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
# Columns of training_runs that update_training_run may change; id and created_at are fixed at insert.
UPDATABLE_RUN_FIELDS = frozenset(
    {"status", "config", "data_dir", "model_name", "metrics", "log_path", "error", "started_at", "finished_at"}
)
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


def _require_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes early, with the field name in the message."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} {value.isoformat()!r} is naive; pass a timezone-aware UTC datetime")


def _check_limit(limit: int) -> None:
    """Reject non-positive limits, which SQL would treat inconsistently across backends."""
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit {limit!r} must be a positive integer")


# --- records <-> rows ---------------------------------------------------------------------------------------------


def inspection_to_values(inspection: Inspection) -> dict[str, Any]:
    """Column values of one ``inspections`` row (without ``id``)."""
    _require_aware("created_at", inspection.created_at)
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


def _model_version_to_row(version: ModelVersion) -> ModelVersionRow:
    """New ``ModelVersionRow`` for a record."""
    _require_aware("created_at", version.created_at)
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


def _model_version_from_row(row: ModelVersionRow) -> ModelVersion:
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


def _run_to_row(run: TrainingRun) -> TrainingRunRow:
    """New ``TrainingRunRow`` for a record; ``run.id`` is kept when set, else the database assigns one."""
    for name in ("created_at", "started_at", "finished_at"):
        _require_aware(name, getattr(run, name))
    row = TrainingRunRow(
        status=RunStatus(run.status).value,
        config=dict(run.config),
        data_dir=run.data_dir,
        model_name=run.model_name,
        metrics=dict(run.metrics),
        log_path=run.log_path,
        error=run.error,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )
    if run.id is not None:
        row.id = run.id
    return row


def run_from_row(row: TrainingRunRow) -> TrainingRun:
    """Record for a ``TrainingRunRow``, queue columns included (the one row → run conversion)."""
    return TrainingRun(
        id=row.id,
        status=RunStatus(row.status),
        config=dict(row.config),
        data_dir=row.data_dir,
        model_name=row.model_name,
        metrics=dict(row.metrics),
        log_path=row.log_path,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        worker=row.worker,
        heartbeat_at=row.heartbeat_at,
        progress=dict(row.progress or {}),
        attempts=row.attempts or 0,
        cancel_requested=bool(row.cancel_requested),
        schedule=row.schedule,
        data_fingerprint=row.data_fingerprint,
    )


# --- repository ---------------------------------------------------------------------------------------------------


class Repository:
    """Reads and writes records through one ``Database``.

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

    # inspections -------------------------------------------------------------------------------------------------

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
        """Content hashes already inspected by ``model_version`` at ``station`` (to skip them before decoding)."""
        stmt = (
            select(InspectionRow.content_hash)
            .where(
                InspectionRow.model_version == model_version,
                InspectionRow.station == station,
                InspectionRow.content_hash.is_not(None),
            )
            .distinct()
        )
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
        _check_limit(limit)
        _require_aware("since", since)
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

    # model versions ----------------------------------------------------------------------------------------------

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
                self._audit(session, audit)
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
            return None if row is None else _model_version_from_row(row)

    def list_model_versions(self) -> list[ModelVersion]:
        """Every model version, oldest first."""
        stmt = select(ModelVersionRow).order_by(ModelVersionRow.created_at, ModelVersionRow.id)
        with self.db.session() as session:
            return [_model_version_from_row(row) for row in session.scalars(stmt)]

    def active_model(self) -> ModelVersion | None:
        """The model version currently in use, or ``None`` before the first promotion."""
        stmt = select(ModelVersionRow).where(ModelVersionRow.status == ModelStatus.ACTIVE.value)
        with self.db.session() as session:
            row = session.scalar(stmt)
            return None if row is None else _model_version_from_row(row)

    def promote(self, name: str, audit: AuditEvent | None = None) -> ModelVersion:
        """Make ``name`` the active model and retire the previous one, in one transaction.

        Promoting the model that is already active changes nothing; a retired model may be promoted again (rollback).
        ``audit`` is written in the same transaction, when the promotion changes something.

        Returns:
            The promoted model version.

        Raises:
            LookupError: no model version is called ``name``.
        """
        with self.db.session() as session:
            row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.name == name).with_for_update())
            if row is None:
                known = session.scalars(select(ModelVersionRow.name).order_by(ModelVersionRow.name)).all()
                raise LookupError(f"model version {name!r} not found; known: {list(known)}")
            if row.status != ModelStatus.ACTIVE.value:
                # Retire first: the one-active unique index is checked per statement.
                session.execute(
                    update(ModelVersionRow)
                    .where(ModelVersionRow.status == ModelStatus.ACTIVE.value)
                    .values(status=ModelStatus.RETIRED.value)
                )
                row.status = ModelStatus.ACTIVE.value
                if audit is not None:
                    self._audit(session, audit)
                session.flush()
                logger.info("model version %r promoted to active", name)
            return _model_version_from_row(row)

    # training runs -----------------------------------------------------------------------------------------------

    def add_training_run(self, run: TrainingRun) -> int:
        """Record a training run and return its id."""
        row = _run_to_row(run)
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return row.id

    def update_training_run(self, run_id: int, **fields: Any) -> TrainingRun:
        """Change some columns of a training run and return the updated record.

        Args:
            run_id: the run's id.
            **fields: any of ``UPDATABLE_RUN_FIELDS``; ``status`` may be a ``RunStatus`` or its value.

        Raises:
            ValueError: an unknown field name, a bad status or a naive datetime.
            LookupError: no run has ``run_id``.
        """
        unknown = sorted(set(fields) - UPDATABLE_RUN_FIELDS)
        if unknown:
            raise ValueError(f"cannot update training-run field(s) {unknown}; allowed: {sorted(UPDATABLE_RUN_FIELDS)}")
        if "status" in fields:
            fields["status"] = RunStatus(fields["status"]).value
        for name in ("started_at", "finished_at"):
            _require_aware(name, fields.get(name))
        for name in ("config", "metrics"):
            if name in fields:
                fields[name] = dict(fields[name])
        with self.db.session() as session:
            row = session.get(TrainingRunRow, run_id)
            if row is None:
                raise LookupError(f"training run {run_id!r} not found")
            for name, value in fields.items():
                setattr(row, name, value)
            session.flush()
            return run_from_row(row)

    def get_training_run(self, run_id: int) -> TrainingRun:
        """The training run with ``run_id``.

        Raises:
            LookupError: no run has ``run_id``.
        """
        with self.db.session() as session:
            row = session.get(TrainingRunRow, run_id)
            if row is None:
                raise LookupError(f"training run {run_id!r} not found")
            return run_from_row(row)

    def list_training_runs(self, limit: int = 50, status: RunStatus | str | None = None) -> list[TrainingRun]:
        """Newest training runs first, optionally only those with one status."""
        _check_limit(limit)
        stmt = select(TrainingRunRow)
        if status is not None:
            stmt = stmt.where(TrainingRunRow.status == RunStatus(status).value)
        stmt = stmt.order_by(TrainingRunRow.created_at.desc(), TrainingRunRow.id.desc()).limit(limit)
        with self.db.session() as session:
            return [run_from_row(row) for row in session.scalars(stmt)]


    # reviews -----------------------------------------------------------------------------------------------------

    def inspection_id(self, content_hash: str, model_version: str | None, station: str) -> int | None:
        """Database id of the inspection recorded for (content hash, model, station), or ``None``."""
        stmt = select(InspectionRow.id).where(
            InspectionRow.content_hash == content_hash,
            InspectionRow.model_version == model_version,
            InspectionRow.station == station,
        )
        with self.db.session() as session:
            return session.scalar(stmt)

    def add_review(self, review: Review) -> int:
        """Record a person's verdict on an inspection (and an audit entry); return the review's id.

        Raises:
            ValueError: the verdict is not one of ``REVIEW_VERDICTS`` or ``created_at`` is naive.
            LookupError: no inspection has ``review.inspection_id``.
            StorageError: the inspection already has a review.
        """
        verdict = str(getattr(review.verdict, "value", review.verdict))
        if verdict not in REVIEW_VERDICTS:
            raise ValueError(f"review verdict {review.verdict!r} is not one of {list(REVIEW_VERDICTS)}")
        _require_aware("created_at", review.created_at)
        with self.db.session() as session:
            if session.get(InspectionRow, review.inspection_id) is None:
                raise LookupError(f"inspection {review.inspection_id!r} not found")
            existing = select(ReviewRow.id).where(ReviewRow.inspection_id == review.inspection_id)
            if session.scalar(existing) is not None:
                raise StorageError(f"inspection {review.inspection_id!r} already has a review")
            row = ReviewRow(
                inspection_id=review.inspection_id,
                verdict=verdict,
                defect_class=review.defect_class,
                reviewer=review.reviewer,
                comment=review.comment,
                created_at=review.created_at,
            )
            session.add(row)
            session.flush()
            self._audit(
                session,
                AuditEvent(
                    actor=review.reviewer,
                    action="review.add",
                    target=f"inspection:{review.inspection_id}",
                    details={"verdict": verdict, "defect_class": review.defect_class},
                    at=review.created_at,
                ),
            )
            return row.id

    def get_review(self, inspection_id: int) -> Review | None:
        """The review of one inspection, or ``None`` while it waits."""
        with self.db.session() as session:
            row = session.scalar(select(ReviewRow).where(ReviewRow.inspection_id == inspection_id))
            if row is None:
                return None
            return Review(
                inspection_id=row.inspection_id,
                verdict=Decision(row.verdict),
                reviewer=row.reviewer,
                created_at=row.created_at,
                defect_class=row.defect_class,
                comment=row.comment,
            )

    # users -------------------------------------------------------------------------------------------------------

    def add_user(self, user: User, password: str, actor: str = "system") -> int:
        """Create a user with an Argon2id hash of ``password``, audited as ``actor`` in the same transaction.

        Raises:
            ValueError: the role is not one of ``USER_ROLES``, or the password is too short.
            StorageError: the user name is taken.
        """
        if user.role not in USER_ROLES:
            raise ValueError(f"role {user.role!r} is not one of {list(USER_ROLES)}")
        _require_aware("created_at", user.created_at)
        password_hash = hash_password(password)
        with self.db.session() as session:
            if session.scalar(select(UserRow.id).where(UserRow.username == user.username)) is not None:
                raise StorageError(f"user {user.username!r} already exists")
            row = UserRow(
                username=user.username,
                display_name=user.display_name,
                role=user.role,
                password_hash=password_hash,
                active=user.active,
                created_at=user.created_at,
            )
            session.add(row)
            session.flush()
            self._audit(session, AuditEvent(actor=actor, action="user.add", target=user.username,
                                            details={"role": user.role}))
            return row.id

    def get_user(self, username: str) -> User | None:
        """The user called ``username``, or ``None``."""
        with self.db.session() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == username))
            return None if row is None else _user_from_row(row)

    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self.db.session() as session:
            return [_user_from_row(row) for row in session.scalars(select(UserRow).order_by(UserRow.username))]

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user whose password matches, else ``None`` (unknown name, wrong password, inactive).

        A hash made with weaker parameters than today's is replaced on success.
        """
        with self.db.session() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == username))
            if row is None:
                spend_verify_time(password)
                return None
            # The password is checked for inactive users too, so that the time taken says nothing about the flag.
            if not verify_password(row.password_hash, password) or not row.active:
                return None
            if needs_rehash(row.password_hash):
                row.password_hash = hash_password(password)
            return _user_from_row(row)

    # audit log ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _audit(session: Session, event: AuditEvent) -> None:
        """Append one audit entry inside the caller's transaction."""
        _require_aware("at", event.at)
        session.add(
            AuditLogRow(at=event.at, actor=event.actor, action=event.action, target=event.target,
                        details=dict(event.details))
        )

    def audit(self, event: AuditEvent) -> None:
        """Append one entry to the audit log (the database refuses to change or delete entries)."""
        with self.db.session() as session:
            self._audit(session, event)

    def list_audit(self, limit: int = 100, action: str | None = None) -> list[AuditEvent]:
        """Newest audit entries first, optionally only one action."""
        _check_limit(limit)
        stmt = select(AuditLogRow)
        if action is not None:
            stmt = stmt.where(AuditLogRow.action == action)
        stmt = stmt.order_by(AuditLogRow.at.desc(), AuditLogRow.id.desc()).limit(limit)
        with self.db.session() as session:
            return [
                AuditEvent(actor=r.actor, action=r.action, target=r.target, details=dict(r.details), at=r.at)
                for r in session.scalars(stmt)
            ]

    # dataset snapshots and schedules -----------------------------------------------------------------------------

    def add_dataset_snapshot(self, snapshot: DatasetSnapshot) -> int:
        """Record a dataset snapshot, or return the id of the one with the same fingerprint (idempotent)."""
        _require_aware("created_at", snapshot.created_at)
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
            return session.scalar(
                select(DatasetSnapshotRow.id).where(DatasetSnapshotRow.fingerprint == snapshot.fingerprint)
            )

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

    def add_schedule(self, schedule: Schedule, audit: AuditEvent | None = None) -> int:
        """Record a schedule and return its id; ``audit`` is written in the same transaction.

        Raises:
            StorageError: the name is taken.
        """
        for name in ("created_at", "last_run_at", "next_run_at"):
            _require_aware(name, getattr(schedule, name))
        with self.db.session() as session:
            if session.scalar(select(ScheduleRow.id).where(ScheduleRow.name == schedule.name)) is not None:
                raise StorageError(f"schedule {schedule.name!r} already exists")
            row = ScheduleRow(
                name=schedule.name, kind=schedule.kind, cron=schedule.cron, config=dict(schedule.config),
                enabled=schedule.enabled, last_run_at=schedule.last_run_at, next_run_at=schedule.next_run_at,
                created_at=schedule.created_at,
            )
            session.add(row)
            if audit is not None:
                self._audit(session, audit)
            session.flush()
            return row.id

    def list_schedules(self, enabled_only: bool = False) -> list[Schedule]:
        """Schedules by name, optionally only the enabled ones."""
        stmt = select(ScheduleRow).order_by(ScheduleRow.name)
        if enabled_only:
            stmt = stmt.where(ScheduleRow.enabled.is_(True))
        with self.db.session() as session:
            return [
                Schedule(
                    name=r.name, kind=r.kind, cron=r.cron, config=dict(r.config), enabled=r.enabled,
                    last_run_at=r.last_run_at, next_run_at=r.next_run_at, created_at=r.created_at,
                )
                for r in session.scalars(stmt)
            ]


def _user_from_row(row: UserRow) -> User:
    """Record for a ``UserRow``, without the password hash."""
    return User(
        username=row.username, role=row.role, display_name=row.display_name, active=row.active,
        created_at=row.created_at,
    )

def _decision_value(decision: Decision | str) -> str:
    """Validated decision string, naming the allowed values when it is not one."""
    try:
        return Decision(decision).value
    except ValueError as exc:
        allowed = [d.value for d in Decision]
        raise ValueError(f"decision {decision!r} is not one of {allowed}") from exc


__all__ = ["UPDATABLE_RUN_FIELDS", "Repository", "inspection_from_row", "inspection_to_values"]
