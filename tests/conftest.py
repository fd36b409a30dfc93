"""Shared fixtures: offline model hub, small synthetic images, GPU marker handling."""

from __future__ import annotations

import os
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
