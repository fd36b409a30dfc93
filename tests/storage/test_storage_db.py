"""Engine set-up, connection errors and password masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from inspect_app.errors import StorageError
from inspect_app.storage import Database, current_revision, make_engine, mask_url

UNREACHABLE_POSTGRES = "postgresql+psycopg://inspector:s3cr3t-pw@127.0.0.1:1/plant"


def test_sqlite_engine_creates_folder_and_sets_pragmas(tmp_path: Path) -> None:
    db_file = tmp_path / "a" / "b" / "inspect.db"
    engine = make_engine(f"sqlite:///{db_file.as_posix()}")
    try:
        assert db_file.parent.is_dir()
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 5000
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_postgres_engine_pings_pooled_connections() -> None:
    engine = make_engine(UNREACHABLE_POSTGRES)  # creating an engine does not connect
    try:
        assert engine.pool._pre_ping is True
    finally:
        engine.dispose()


def test_unreachable_postgres_raises_storage_error_without_password() -> None:
    with pytest.raises(StorageError) as info:
        Database.open(UNREACHABLE_POSTGRES)
    message = str(info.value)
    assert "s3cr3t-pw" not in message
    assert "postgresql+psycopg://inspector:***@127.0.0.1:1/plant" in message


def test_uncreatable_sqlite_folder_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    url = f"sqlite:///{(blocker / 'sub' / 'inspect.db').as_posix()}"
    with pytest.raises(StorageError, match="not-a-folder"):
        Database.open(url)


def test_invalid_url_raises_storage_error() -> None:
    with pytest.raises(StorageError, match="not a valid"):
        make_engine("this is not a url")


def test_unknown_driver_raises_storage_error() -> None:
    with pytest.raises(StorageError, match="nosuchdb"):
        make_engine("nosuchdb://u:pw@host/db")


def test_mask_url_hides_the_password() -> None:
    assert mask_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "pw" not in mask_url("garbage with pw")


def test_open_without_migrate_leaves_schema_alone(db_url: str) -> None:
    with Database.open(db_url, migrate=False) as database:
        assert current_revision(database.engine) is None
        assert repr(database).startswith("Database(")


def test_session_wraps_driver_errors_in_storage_error(db: Database) -> None:
    with pytest.raises(StorageError, match="refused"), db.session() as session:
        session.execute(text("SELECT * FROM no_such_table"))
