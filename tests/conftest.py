"""Shared fixtures: offline model hub, small synthetic images, GPU marker handling, a tiny real checkpoint."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
