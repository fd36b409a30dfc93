"""HNSW nearest-neighbour search: agreement with exact search, when it is chosen, and how PatchCore uses it."""

from __future__ import annotations

import pytest
import torch

from inspect_app.engine.anomaly_config import AnomalyConfig
from inspect_app.errors import ConfigError
from inspect_app.models import nn_search
from inspect_app.models.anomaly import PatchCore, nearest_distances
from inspect_app.models.factory import IMAGENET_MEAN, IMAGENET_STD
from inspect_app.models.nn_search import MIN_HNSW_ROWS, HnswIndex, resolve_search

pytest.importorskip("faiss")


def _clustered(rows: int, dim: int, seed: int) -> torch.Tensor:
    # Patch descriptors are clustered, not uniform: draw around a few dozen centres.
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(40, dim, generator=gen) * 4.0
    return centres[torch.randint(0, 40, (rows,), generator=gen)] + torch.randn(rows, dim, generator=gen)


def test_hnsw_distances_agree_with_exact_search() -> None:
    bank = _clustered(6000, 32, 0)
    queries = _clustered(800, 32, 1)
    exact = nearest_distances(queries, bank)
    shares = []
    for ef_search in (16, 128):
        approx = HnswIndex(bank, ef_search=ef_search).search(queries)
        assert approx.shape == exact.shape
        over = (approx - exact) / exact
        # A graph search can miss the nearest row (a larger distance), never find a nearer one; misses are close.
        assert float(over.min()) > -1e-4
        assert float(over.mean()) < 0.02
        shares.append(float((over <= 1e-3).float().mean()))
    # These isotropic clusters are harder than real patch features (99 % exact at 64 on Magnetic Tile).
    assert shares[1] >= 0.95
    assert shares[1] > shares[0]  # a longer candidate list gets closer to exact


def test_auto_takes_hnsw_only_for_a_large_bank_in_host_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_search("auto", MIN_HNSW_ROWS, cpu) == "hnsw"
    assert resolve_search("auto", MIN_HNSW_ROWS - 1, cpu) == "exact"
    assert resolve_search("auto", 10 * MIN_HNSW_ROWS, cuda) == "exact"
    assert resolve_search("exact", 10 * MIN_HNSW_ROWS, cpu) == "exact"
    assert resolve_search("hnsw", 10, cpu) == "hnsw"
    # Without faiss, auto falls back to exact search and an explicit hnsw says what to install.
    monkeypatch.setattr(nn_search, "faiss_available", lambda: False)
    assert resolve_search("auto", 10 * MIN_HNSW_ROWS, cpu) == "exact"
    with pytest.raises(ConfigError, match="pip install faiss-cpu"):
        resolve_search("hnsw", 10 * MIN_HNSW_ROWS, cpu)


def test_bad_search_settings_are_named() -> None:
    with pytest.raises(ConfigError, match=r"nn_search 'fast' is not one of auto, exact, hnsw"):
        AnomalyConfig(nn_search="fast")
    with pytest.raises(ConfigError, match=r"hnsw_ef_search 0"):
        AnomalyConfig(hnsw_ef_search=0)


@torch.inference_mode()
def test_patchcore_scores_with_the_graph_and_leaves_one_out_exactly() -> None:
    model = PatchCore("efficientnet_lite0", IMAGENET_MEAN, IMAGENET_STD, layers=(2, 3))
    gen = torch.Generator().manual_seed(4)
    images = torch.rand(6, 3, 64, 64, generator=gen)
    emb = model.embed(images)
    rows = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
    owners = torch.arange(6).repeat_interleave(emb.shape[2] * emb.shape[3])
    model.set_bank(rows)
    model.configure_search("exact")
    exact = model.patch_scores(images[:2])
    model.configure_search("hnsw", ef_search=64)
    graph = model.patch_scores(images[:2])
    assert model._index is not None and model._index.rows == rows.shape[0]
    assert torch.allclose(graph, exact, atol=0.1)  # each patch is in the bank: ~0 either way (float rounding)
    # Leave-one-out: the image's own rows are masked, which the graph cannot do, so the exact path answers.
    own = owners == 0
    loo = model.patch_scores(images[:1], exclude=own)
    expected = nearest_distances(rows[own], rows[~own]).view(loo.shape)
    assert torch.allclose(loo, expected, atol=1e-3)
    assert float(loo.min()) > 0.1
    # A new bank drops the graph: far-away rows give large distances at once.
    model.set_bank(rows + 100.0)
    assert model._index is None
    assert float(model.patch_scores(images[:1]).min()) > 100.0


def test_tune_raises_the_candidate_list_until_probes_are_found_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    # Clustered rows, the kind of bank on which a short candidate list gets stuck in the wrong cluster.
    centres = torch.randn(40, 32, generator=generator) * 4
    bank = (centres.repeat_interleave(150, 0) + torch.randn(6000, 32, generator=generator)).contiguous()
    probes = centres.repeat_interleave(10, 0) + torch.randn(400, 32, generator=generator) * 1.5
    exact = nearest_distances(probes, bank)
    index = HnswIndex(bank, ef_search=1)
    excess_before, misses_before = index.agreement(probes, exact)
    assert misses_before > 0.002  # ef 1 is not exact here, so the check has something to find
    assert index.tune(probes, exact)
    excess, misses = index.agreement(probes, exact)
    assert index.ef_search > 1 and excess <= 0.002 and misses <= 0.002
