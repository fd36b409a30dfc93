"""Fixtures for the lifecycle tests: tiny real image sets, a real database, and a fast real training recipe.

The images are the project's synthetic parts at 64 px (generated once per session); "swapped" is the same training
set with the good and scratch folders exchanged, which trains a model that is genuinely worse, not a mocked one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspect_app.config.policy import FinetuneSpec, PromotionPolicy
from inspect_app.config.recipes import TrainConfig
from inspect_app.config.settings import Settings
from inspect_app.data.synthetic import generate_sample_data
from inspect_app.storage import Database

POSTGRES_ENV = "INSPECT_TEST_POSTGRES_URL"
FAST_TRAIN = TrainConfig(epochs=6, input_size=64, batch_size=8, lr=3e-3, device="cpu", val_fraction=0.25)


def fast_spec(test_dir: Path | None, **train: object) -> FinetuneSpec:
    """A run spec that trains in about a second on the tiny sets."""
    return FinetuneSpec(train=FAST_TRAIN.with_overrides(**train), test_dir=str(test_dir) if test_dir else None,
                        model_prefix="t", promotion=PromotionPolicy(false_reject_rate=0.0, class_tolerance=0.05))


@pytest.fixture
def spec_factory() -> object:
    """``fast_spec`` (test modules never import conftest: several conftest files would make it ambiguous)."""
    return fast_spec


@pytest.fixture(scope="session")
def tiny_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``train`` (good 12, scratch 10), ``swapped`` (labels exchanged), ``test`` (frozen, other seed), ``incoming``."""
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lifecycle_db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_schema) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a PostgreSQL schema dropped afterwards (skipped without a server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}"
        return
    with postgres_schema("inspect_life") as url:
        yield url


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """An open, migrated SQLite database file."""
    database = Database.open(f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose home (run folders) is this test's temporary folder."""
    return Settings(home=tmp_path / "home", device="cpu")
