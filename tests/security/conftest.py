"""Fixtures for the security tests: a real database with one user per role, SQLite always, PostgreSQL when configured.

The PostgreSQL variants read the server from ``INSPECT_TEST_POSTGRES_URL`` (a fresh schema per test, dropped after);
without it they are skipped with that reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st

from inspect_app.records import Decision, Inspection
from inspect_app.storage import Database, Repository, access

PASSWORD = "correct-horse-battery"
ROLES = ("viewer", "operator", "engineer", "admin")
SECRET = "s" * 40


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Streamlit caches live in the process (one Database per URL); start and end every test without them."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_schema) -> Iterator[str]:
    """An empty database URL: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
        return
    with postgres_schema("inspect_security") as url:
        yield url


@pytest.fixture
def plant(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A migrated database with a few inspections and one user per role (named after it), selected through the
    environment the dashboard reads; viewing is left at its default (closed)."""
    now = datetime.now(UTC)
    db = Database.open(db_url)
    Repository(db).add_inspections([
        Inspection(station="secret-cell", line="line-1", source="/in", image_path=f"/in/{i}.png",
                   decision=Decision.NG if i % 3 == 0 else Decision.OK, created_at=now - timedelta(minutes=5 + i),
                   content_hash=f"h{i}", model_version="m1", score=0.1 * i)
        for i in range(6)
    ])
    for role in ROLES:
        access.create_user(db, role, role, PASSWORD)
    monkeypatch.setenv("INSPECT_DATABASE_URL", db_url)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    monkeypatch.setenv("INSPECT_SESSION_SECRET", SECRET)
    monkeypatch.delenv("INSPECT_DASHBOARD_OPEN_VIEWING", raising=False)
    monkeypatch.delenv("INSPECT_SESSION_IDLE_MINUTES", raising=False)
    try:
        yield db
    finally:
        db.dispose()
