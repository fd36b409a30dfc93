"""Shared fixtures: offline model hub, GPU marker handling, a tiny real checkpoint, and a real database per test
(SQLite always, PostgreSQL when ``INSPECT_TEST_POSTGRES_URL`` is set) with record factories."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from inspect_app.records import Decision, Inspection, ModelVersion, TrainingRun
from inspect_app.storage import Database, Repository

# Tests never reach a model hub: bundled weights only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
# INSPECT_DATASETS points git worktrees (which do not sit next to ../shared) at the datasets.
SHARED_DATASETS = Path(os.environ.get("INSPECT_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests when CUDA is absent (without importing torch for DB/UI-only runs)."""
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class model at 64 px whose head calls bright parts "good" and dark ones "crack".

    The head reads the pooled features' response to brightness, so decisions depend on the image (both OK and NG
    occur) without any training.
    """
    # Imported here: the database and dashboard tests share this conftest and must not load torch.
    import torch

    from inspect_app.models.checkpoint import ModelCard, build_model, save_checkpoint

    card = ModelCard(
        name="tiny-pipe", kind="classifier", backbone="efficientnet_lite0", classes=("good", "crack", "pit"),
        input_size=64, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    )
    torch.manual_seed(0)
    model = build_model(card, pretrained=True).eval()
    generator = torch.Generator().manual_seed(0)

    def pooled(level: float) -> torch.Tensor:
        noisy = (level + 0.03 * torch.randn(4, 3, 64, 64, generator=generator)).clamp(0, 1)
        return model.net.forward_features(model.normalize(noisy)).mean(dim=(0, 2, 3))

    with torch.no_grad():
        dark, bright = pooled(0.06), pooled(0.9)
        direction = bright - dark
        low, high = float(dark @ direction), float(bright @ direction)
        scale = 16.0 / (high - low)  # logit margin of +-8 between typical dark and bright parts
        head = model.net.classifier
        head.weight.zero_()
        head.bias.zero_()
        head.weight[0] = scale * direction  # good: brighter than the midpoint
        head.bias[0] = -scale * (low + high) / 2
        head.weight[1] = -0.1 * scale * direction  # crack: the defect class named for dark parts
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-pipe", model, card)


@contextlib.contextmanager
def postgres_schema_url(prefix: str) -> Iterator[str]:
    """A URL confined to a fresh PostgreSQL schema (dropped afterwards); skips without ``INSPECT_TEST_POSTGRES_URL``."""
    from sqlalchemy import create_engine, make_url, text

    server = os.environ.get("INSPECT_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("INSPECT_TEST_POSTGRES_URL is not set; set it to a PostgreSQL URL to run the PostgreSQL variant")
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    # search_path confines the tables and alembic_version to this test's schema.
    url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_schema() -> Callable[[str], contextlib.AbstractContextManager[str]]:
    """``postgres_schema_url`` for fixtures in sub-folders (test code never imports conftest modules)."""
    return postgres_schema_url


# ------------------------------------------------------------------ databases and records (storage, app, ...)
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


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """An open, migrated SQLite database file."""
    database = Database.open(f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}")
    try:
        yield database
    finally:
        database.dispose()


# ------------------------------------------------------------------ tiny image sets (lifecycle, hot swap)
@pytest.fixture(scope="session")
def tiny_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``train`` (good 12, scratch 10), ``swapped`` (labels exchanged), ``test`` (frozen, other seed), ``incoming``."""
    from inspect_app.data.synthetic import generate_sample_data

    root = tmp_path_factory.mktemp("tiny")
    generate_sample_data(root / "a", seed=1, per_class={"good": 12, "scratch": 10}, incoming=12, size=64)
    generate_sample_data(root / "b", seed=2, per_class={"good": 8, "scratch": 8}, incoming=0, size=64)
    swapped = root / "swapped"
    swapped.mkdir()
    # Folder symlinks: the same files under each other's label.
    os.symlink(root / "a" / "train" / "scratch", swapped / "good")
    os.symlink(root / "a" / "train" / "good", swapped / "scratch")
    return {"train": root / "a" / "train", "swapped": swapped, "test": root / "b" / "train",
            "incoming": root / "a" / "incoming"}


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
