"""Screened scoring: a fast search for every part, the checked one only where the decision could be other than OK."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inspect_app.engine.anomaly_config import AnomalyConfig
from inspect_app.engine.anomaly_scoring import TileDescriptors, TileGrids, normalize, scores_from_grids
from inspect_app.engine.screening import refine_level, screen_descriptors
from inspect_app.models.anomaly import PatchCore
from inspect_app.models.factory import IMAGENET_MEAN, IMAGENET_STD
from inspect_app.models.nn_search import SCREEN_EF_SEARCH

TILE, GRID = 32, 8


def test_refine_level_is_the_raw_score_of_the_normalised_one() -> None:
    center, threshold = 31.9, 44.1
    for raw in (-50.0, 0.0, 31.9, 38.4, 44.1, 60.0, 400.0):
        score = float(normalize(raw, center, threshold))
        assert refine_level(score, center, threshold) == pytest.approx(raw, rel=1e-9, abs=1e-9)
    assert refine_level(0.5, center, threshold) == pytest.approx(threshold)
    assert refine_level(0.0, center, threshold) == -math.inf and refine_level(1.0, center, threshold) == math.inf


def _clustered(rows: int, dim: int, gen: torch.Generator, spread: float = 1.0) -> torch.Tensor:
    centres = torch.randn(60, dim, generator=gen) * 3.0
    return centres[torch.randint(0, 60, (rows,), generator=gen)] + spread * torch.randn(rows, dim, generator=gen)


@pytest.fixture(scope="module")
def setting() -> tuple[PatchCore, AnomalyConfig, TileDescriptors, list[float], list[float]]:
    """A bank large enough for a graph, 40 one-tile parts (half with far-off patches), exact and checked scores."""
    pytest.importorskip("faiss")
    torch.set_num_threads(2)
    model = PatchCore("efficientnet_lite0", IMAGENET_MEAN, IMAGENET_STD, layers=(2,), pretrained=False)
    gen = torch.Generator().manual_seed(7)
    dim = model.feature_dim
    model.set_bank(_clustered(8000, dim, gen))
    parts = _clustered(40 * GRID * GRID, dim, gen).view(40, GRID, GRID, dim)
    parts[20:, 2:5, 2:5] += 2.5 * torch.randn(20, 3, 3, dim, generator=gen)  # a "defect" patch group
    emb = parts.permute(0, 3, 1, 2).contiguous()
    layout = [(1, [(0, 0)], (TILE, TILE))] * 40
    config = AnomalyConfig(input_size=TILE, nn_search="hnsw", hnsw_ef_search=128, score_top_fraction=0.05)
    model.configure_search("exact")
    exact = scores_from_grids(TileGrids(model.search_patches(emb), layout, TILE), config)
    model.configure_search("hnsw", 128)
    checked = scores_from_grids(TileGrids(model.search_patches(emb), layout, TILE), config)
    return model, config, TileDescriptors(emb, layout, TILE), [r.score for r in exact], [r.score for r in checked]


@torch.inference_mode()
def test_parts_screened_ok_are_ok_under_exact_search_and_the_rest_are_refined(setting: tuple) -> None:
    model, config, descriptors, exact, checked = setting
    refine_at = float(np.median(exact))
    raws, refined = screen_descriptors(model, descriptors, config, refine_at)
    scores = [r.score for r in raws]
    # Only a part that could be other than OK is searched again: about half here, never all.
    assert 0 < refined < len(scores)
    for got, ex, ch in zip(scores, exact, checked, strict=True):
        assert got >= ex - 1e-3  # an approximate search never finds a nearer row than the nearest
        if got < refine_at:
            assert ex < refine_at  # screened OK: OK under exact search too
        else:
            assert got <= ch + 1e-3  # refined: the smaller of two upper bounds, no worse than the checked search
    assert [s >= refine_at for s in scores] == [e >= refine_at for e in exact]


@torch.inference_mode()
def test_nothing_is_refined_above_every_score_and_everything_below_it(setting: tuple) -> None:
    model, config, descriptors, exact, checked = setting
    raws, refined = screen_descriptors(model, descriptors, config, math.inf)
    assert refined == 0
    fast = model.search_patches(descriptors.descriptors, ef_search=SCREEN_EF_SEARCH)
    expected = scores_from_grids(TileGrids(fast, descriptors.layout, TILE), config)
    assert [r.score for r in raws] == pytest.approx([r.score for r in expected], abs=1e-5)
    raws, refined = screen_descriptors(model, descriptors, config, -math.inf)
    assert refined == len(exact)
    assert all(r.score <= c + 1e-3 for r, c in zip(raws, checked, strict=True))
