"""Alembic migrations: upgrade creates the schema, downgrade drops it, and they agree with the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from inspect_app.errors import StorageError
from inspect_app.storage import current_revision, downgrade, head_revision, make_engine, upgrade
from inspect_app.storage.db import MIGRATIONS_DIR
from inspect_app.storage.tables import Base

APP_TABLES = {
    "inspections", "model_versions", "training_runs", "lines", "stations", "inspection_hourly", "defect_hourly",
    "reviews", "dataset_snapshots", "schedules", "audit_log", "users", "model_comparisons", "pipeline_status", "alarms",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trip(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert _tables(db_url) >= APP_TABLES
    assert current_revision(db_url) == head_revision() == "0007"

    downgrade(db_url, "base")
    assert not APP_TABLES & _tables(db_url)
    assert current_revision(db_url) is None

    upgrade(db_url)
    assert _tables(db_url) >= APP_TABLES
    downgrade(db_url)  # leave nothing behind on a shared PostgreSQL server


def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    downgrade(db_url)


def test_upgrade_accepts_an_engine(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        downgrade(engine)
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"tables.py and the migrations disagree: {diff}"
    downgrade(db_url)


def test_dashboard_indexes_and_unique_constraint_exist(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        inspector = inspect(engine)
        indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("inspections")}
        uniques = {tuple(uq["column_names"]) for uq in inspector.get_unique_constraints("inspections")}
    finally:
        engine.dispose()
    assert {("created_at",), ("station", "created_at"), ("decision", "created_at")} <= indexes
    assert ("content_hash", "model_version", "station") in uniques
    downgrade(db_url)


def test_unknown_revision_raises_storage_error_naming_it(db_url: str) -> None:
    with pytest.raises(StorageError, match="nope"):
        upgrade(db_url, "nope")


def test_migrations_ship_inside_the_package_and_need_no_ini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()
    assert not (MIGRATIONS_DIR / "alembic.ini").exists()
    # Run from an unrelated working directory, as an installed package would be.
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{(tmp_path / 'elsewhere.db').as_posix()}"
    upgrade(url)
    assert _tables(url) >= APP_TABLES


def test_each_migration_steps_up_and_down_with_data(db_url: str, inspection_factory: Any) -> None:
    """0001 → 0002 backfills the rollups and the station registry from existing rows; 0002 → 0001 keeps the rows."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from inspect_app.storage import Database, queries
    from inspect_app.storage.inspections import inspection_to_values
    from inspect_app.storage.tables import InspectionRow

    upgrade(db_url, "0001")
    assert current_revision(db_url) == "0001"
    t0 = datetime(2024, 1, 1, 5, 30, tzinfo=UTC)
    rows = [
        inspection_factory(i, created_at=t0 + timedelta(minutes=17 * i), station=f"s{i % 3}", line=f"l{i % 2}",
                        score=(i % 11) / 10, decision=["OK", "NG", "REVIEW", "ERROR"][i % 4],
                        defect_class=None if i % 8 == 1 else "dent")
        for i in range(60)
    ]
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:  # written as 0001 knew them: no rollups yet
            # 0004's raw_score did not exist yet.
            connection.execute(InspectionRow.__table__.insert(),
                               [{k: v for k, v in inspection_to_values(r).items() if k != "raw_score"} for r in rows])
    finally:
        engine.dispose()

    upgrade(db_url, "0002")
    with Database.open(db_url, migrate=False) as db:
        assert queries.stations(db) == ["s0", "s1", "s2"]
        rollup = queries.summary(db, since=t0 + timedelta(minutes=30))  # whole hours from the rollups
        whole = [r for r in rows if r.created_at >= t0 + timedelta(minutes=30)]
        assert rollup.total == len(whole)
        assert rollup.ng == sum(r.decision == "NG" for r in whole)
        assert rollup.per_class == {
            name: sum(r.decision == "NG" and (r.defect_class or "(unclassified)") == name for r in whole)
            for name in ("dent", "(unclassified)")
        }
        dist = queries.score_distribution(db, bucket="day")
        assert sum(sum(d["bins"]) for d in dist) == len(rows)
        assert [sum(d["bins"][k] for d in dist) for k in range(10)] == [
            sum(min(int(r.score * 10), 9) == k for r in rows) for k in range(10)
        ]

    downgrade(db_url, "0001")
    assert current_revision(db_url) == "0001"
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM inspections")).scalar() == len(rows)
        assert not {"inspection_hourly", "stations", "audit_log", "users"} & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    downgrade(db_url, "base")


def _index_columns(url: str) -> dict[str, tuple[str, ...]]:
    engine = make_engine(url)
    try:
        return {ix["name"]: tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("inspections")}
    finally:
        engine.dispose()


def test_0007_adds_the_dashboard_indexes_and_downgrade_restores_0006(db_url: str, inspection_factory: Any) -> None:
    """0006 → 0007 keeps the rows and the answers the indexes serve; 0007 → 0006 puts the old indexes back."""
    from datetime import UTC, datetime, timedelta

    from inspect_app.storage import Database, Repository, queries, review_queries

    upgrade(db_url, "0006")
    t0 = datetime(2024, 1, 1, 5, 30, tzinfo=UTC)
    rows = [inspection_factory(i, created_at=t0 + timedelta(minutes=7 * i), station=f"s{i % 3}",
                               decision=["OK", "NG", "REVIEW"][i % 3 if i % 2 else 0], score=(i % 10) / 10)
            for i in range(40)]
    with Database.open(db_url, migrate=False) as db:
        Repository(db).add_inspections(rows)
        before_ng = [r.image_path for r in queries.latest_ng(db, limit=5, station="s1")]
        before_queue = [item.inspection_id for item in review_queries.review_queue(db, limit=50)]
    assert before_ng and before_queue
    assert _index_columns(db_url)["ix_inspections_review_queue"] == ("created_at", "id")

    upgrade(db_url, "0007")
    indexes = _index_columns(db_url)
    assert indexes["ix_inspections_station_decision_created_at"] == ("station", "decision", "created_at")
    assert indexes["ix_inspections_review_queue"] == ("created_at", "id", "station", "defect_class", "score")
    with Database.open(db_url, migrate=False) as db:
        assert [r.image_path for r in queries.latest_ng(db, limit=5, station="s1")] == before_ng
        assert [item.inspection_id for item in review_queries.review_queue(db, limit=50)] == before_queue

    downgrade(db_url, "0006")
    indexes = _index_columns(db_url)
    assert "ix_inspections_station_decision_created_at" not in indexes
    assert indexes["ix_inspections_review_queue"] == ("created_at", "id")
    with Database.open(db_url, migrate=False) as db:
        assert review_queries.review_queue_size(db) == len(before_queue)
    downgrade(db_url, "base")
