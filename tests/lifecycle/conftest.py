"""Fixtures for the lifecycle tests: a database per backend, settings and a fast real training recipe.

The tiny real image sets (``tiny_sets``) and ``sqlite_db`` are in the top-level conftest: the engine's hot-swap tests
use them too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inspect_app.config.policy import FinetuneSpec, PromotionPolicy
from inspect_app.config.recipes import TrainConfig
from inspect_app.config.settings import Settings

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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lifecycle_db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_schema) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a PostgreSQL schema dropped afterwards (skipped without a server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}"
        return
    with postgres_schema("inspect_life") as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose home (run folders) is this test's temporary folder."""
    return Settings(home=tmp_path / "home", device="cpu")
