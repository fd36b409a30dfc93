"""Fixtures for the storage tests: a real database per test, SQLite always and PostgreSQL when configured.

The PostgreSQL variant reads its server URL from ``INSPECT_TEST_POSTGRES_URL`` and runs every test in a fresh schema
that is dropped afterwards; without the variable those variants are skipped with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from inspect_app.records import Decision, Inspection, ModelVersion, TrainingRun
from inspect_app.storage import Database, Repository

POSTGRES_ENV = "INSPECT_TEST_POSTGRES_URL"
T0 = datetime(2024, 3, 10, 8, 0, tzinfo=UTC)


def sqlite_url(folder: Path) -> str:
    """URL of a SQLite file in a not-yet-existing subfolder (make_engine must create it)."""
    return f"sqlite:///{(folder / 'plant' / 'inspect.db').as_posix()}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_schema) -> Iterator[str]:
    """A database URL with nothing in it yet: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with postgres_schema("inspect_test") as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An open, migrated database."""
    database = Database.open(db_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def repo(db: Database) -> Repository:
    """A repository over ``db``."""
    return Repository(db)


def make_inspection(index: int = 0, **overrides: Any) -> Inspection:
    """An inspection with every field set; ``overrides`` replace fields."""
    values: dict[str, Any] = {
        "station": "station-1",
        "line": "line-1",
        "source": "/data/in",
        "image_path": f"/data/in/img_{index:04d}.png",
        "decision": Decision.NG,
        "created_at": T0 + timedelta(seconds=index),
        "content_hash": f"{index:064x}",
        "model_version": "resnet-v1",
        "defect_class": "scratch",
        "score": 0.8125 + index * 1e-6,
        "threshold": 0.5,
        "latency_ms": 12.345678901,
        "heatmap_path": f"/data/heatmaps/img_{index:04d}.png",
        "error": None,
    }
    values.update(overrides)
    return Inspection(**values)


def make_model_version(name: str = "resnet-v1", **overrides: Any) -> ModelVersion:
    """A model version with every field set; ``overrides`` replace fields."""
    values: dict[str, Any] = {
        "name": name,
        "kind": "classifier",
        "backbone": "resnet18",
        "path": f"/models/{name}",
        "classes": ("good", "scratch", "dent"),
        "metrics": {"accuracy": 0.9375, "f1": {"scratch": 0.8, "dent": 0.7}, "confusion": [[1, 2], [3, 4]]},
        "threshold": 0.4375,
        "data_fingerprint": "abc123",
        "training_run_id": None,
        "created_at": T0,
    }
    values.update(overrides)
    return ModelVersion(**values)


def make_training_run(**overrides: Any) -> TrainingRun:
    """A training run with every field set; ``overrides`` replace fields."""
    values: dict[str, Any] = {
        "config": {"backbone": "resnet18", "epochs": 3, "lr": 0.001, "extra": {"mixup": False}},
        "data_dir": "/data/train",
        "model_name": "resnet-v2",
        "metrics": {"val_accuracy": 0.90625},
        "log_path": "/runs/1/train.log",
        "error": None,
        "created_at": T0,
        "started_at": T0 + timedelta(seconds=5),
        "finished_at": T0 + timedelta(minutes=10, microseconds=123456),
    }
    values.update(overrides)
    return TrainingRun(**values)


# Factories are handed out as fixtures so test modules never import conftest (ambiguous with several conftest files).
@pytest.fixture
def inspection_factory() -> Any:
    """``make_inspection``."""
    return make_inspection


@pytest.fixture
def model_version_factory() -> Any:
    """``make_model_version``."""
    return make_model_version


@pytest.fixture
def training_run_factory() -> Any:
    """``make_training_run``."""
    return make_training_run
