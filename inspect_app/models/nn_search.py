"""Approximate nearest-neighbour search over a memory bank: a faiss HNSW graph for CPU scoring.

Exact search compares every patch with every bank row (``models.anomaly.nearest_distances``); on a CPU that is most of
the scoring time. A hierarchical navigable small-world graph visits a few hundred rows per query instead. Measured on
the Magnetic Tile bank (59,663 x 520, 2 threads): 13x faster at ``ef_search`` 32 and 7x at 64, with 99 % of the
distances identical to the exact ones (``benchmarks/RESULTS.md``). faiss (``faiss-cpu``) is an optional import: without
it ``auto`` falls back to exact search.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import time

import torch

from inspect_app.errors import ConfigError

logger = logging.getLogger(__name__)

SEARCH_MODES = ("auto", "exact", "hnsw")
# Below this many bank rows exact search is fast enough that building a graph does not pay for itself.
MIN_HNSW_ROWS = 4096
# Graph degree and build-time candidate list: the faiss defaults' quality at a build time of ~8 s for 60k rows.
HNSW_LINKS = 32
HNSW_BUILD_EF = 80
# Candidate list per query: exact on 99 % of Magnetic Tile patches, 7x faster than exact search there.
DEFAULT_EF_SEARCH = 64
# The graph is checked against exact distances of probe patches saved with the bank (``HnswIndex.tune``): the
# candidate list doubles until the probes' summed distance is within ``MAX_PROBE_EXCESS`` of exact and no more than
# ``MAX_PROBE_MISSES`` of them are more than ``MISS_TOLERANCE`` too far; past ``MAX_EF_SEARCH`` the model searches
# exactly. On MVTec bottle's PNGs (flat black background) ef 64 left 1 % of patches up to 5x too far, enough to call
# every part NG; ef 256 was exact there.
MAX_PROBE_EXCESS = 0.002
MAX_PROBE_MISSES = 0.002
MISS_TOLERANCE = 0.02
MAX_EF_SEARCH = 1024
# Candidate list of the screening pass (``engine.screening``): every patch is searched with it first, and only parts
# whose screened score could be other than OK are searched again with the checked (tuned) list. Measured on the
# Magnetic Tile bank: 4x faster than ef 64 (ef 16: 3x; ef 4 refined more parts); it only over-estimates a distance.
SCREEN_EF_SEARCH = 8


@functools.cache
def faiss_available() -> bool:
    """Whether the faiss package can be imported here."""
    return importlib.util.find_spec("faiss") is not None


def check_search_mode(mode: str, ef_search: int = DEFAULT_EF_SEARCH) -> None:
    """Raise ``ConfigError`` naming a search mode or candidate-list size that cannot be used."""
    if mode not in SEARCH_MODES:
        raise ConfigError(f"nn_search {mode!r} is not one of {', '.join(SEARCH_MODES)}")
    if not isinstance(ef_search, int) or ef_search < 1:
        raise ConfigError(f"hnsw_ef_search {ef_search!r} must be a positive integer")


def resolve_search(mode: str, bank_rows: int, device: torch.device) -> str:
    """The search actually used, ``exact`` or ``hnsw``, for a model that computes on ``device``.

    ``auto`` takes HNSW on the CPU for a bank of at least ``MIN_HNSW_ROWS`` rows when faiss is installed; on an
    accelerator the exact matrix products are already fast. ``hnsw`` without faiss is an error that says what to install.
    """
    check_search_mode(mode)
    if mode == "exact":
        return "exact"
    if mode == "hnsw":
        if not faiss_available():
            raise ConfigError("nn_search 'hnsw' needs faiss: pip install faiss-cpu (or choose 'exact' or 'auto')")
        return "hnsw"
    if device.type == "cpu" and bank_rows >= MIN_HNSW_ROWS and faiss_available():
        return "hnsw"
    return "exact"


class HnswIndex:
    """An HNSW graph over the bank rows (a float32 copy lives inside faiss, on the CPU).

    Args:
        bank: (N, D) bank rows, on any device.
        ef_search: candidate list size per query; larger is slower and closer to exact.
    """

    def __init__(self, bank: torch.Tensor, ef_search: int) -> None:
        import faiss

        start = time.perf_counter()
        rows = bank.detach().float().cpu().contiguous().numpy()
        faiss.omp_set_num_threads(torch.get_num_threads())
        self.index = faiss.IndexHNSWFlat(rows.shape[1], HNSW_LINKS)
        self.index.hnsw.efConstruction = HNSW_BUILD_EF
        self.index.add(rows)
        self.index.hnsw.efSearch = ef_search
        self.rows = rows.shape[0]
        logger.info("HNSW graph over %d bank rows built in %.1f s (ef_search %d)", self.rows,
                    time.perf_counter() - start, ef_search)

    def agreement(self, queries: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
        """(summed distance excess, share of queries too far by more than ``MISS_TOLERANCE``) against exact ones."""
        found = self.search(queries).to(exact.device).float()
        exact = exact.float()
        excess = float((found - exact).clamp(min=0).sum() / exact.sum().clamp(min=1e-12))
        # Relative to the typical distance as well: a probe that is itself a bank row has a distance of rounding
        # noise, which the two computations round differently.
        slack = MISS_TOLERANCE * (exact + exact.mean())
        misses = float((found > exact + slack).float().mean())
        return excess, misses

    def tune(self, queries: torch.Tensor, exact: torch.Tensor) -> bool:
        """Raise ``ef_search`` until the probes' distances agree with exact ones; ``False`` if even the most fails.

        Args:
            queries: (P, D) probe patch descriptors.
            exact: (P,) their exact nearest-bank-row distances.
        """
        start = self.index.hnsw.efSearch
        ef = start
        while True:
            excess, misses = self.agreement(queries, exact)
            if excess <= MAX_PROBE_EXCESS and misses <= MAX_PROBE_MISSES:
                if ef != start:
                    logger.info("HNSW ef_search %d -> %d: probe distances %.2f %% over exact, %.2f %% of probes "
                                "off", start, ef, 100 * excess, 100 * misses)
                return True
            if ef >= MAX_EF_SEARCH:
                logger.warning("HNSW search stays %.2f %% over exact distances (%.2f %% of probes off) at ef_search "
                               "%d: this bank is searched exactly", 100 * excess, 100 * misses, ef)
                return False
            ef = min(2 * ef, MAX_EF_SEARCH)
            self.index.hnsw.efSearch = ef

    @property
    def ef_search(self) -> int:
        """The candidate list size in use."""
        return int(self.index.hnsw.efSearch)

    def search(self, queries: torch.Tensor, ef_search: int | None = None) -> torch.Tensor:
        """Distance of every (M, D) query row to its (approximately) nearest bank row, (M,) on the queries' device.

        Args:
            queries: the query rows.
            ef_search: candidate list for this call only (the tuned one when ``None``).
        """
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())
        rows = queries.detach().float().cpu().contiguous().numpy()
        if ef_search is None:
            squared, _ = self.index.search(rows, 1)
        else:
            # Per-call parameters, so a screening pass never changes what other callers of the graph get.
            # faiss's SWIG module defines SearchParametersHNSW at import time, out of mypy's sight.
            params = faiss.SearchParametersHNSW(efSearch=int(ef_search))  # type: ignore[attr-defined]
            squared, _ = self.index.search(rows, 1, params=params)
        return torch.from_numpy(squared[:, 0]).clamp_(min=0.0).sqrt_().to(queries.device)
