"""HNSW graph at plant scale: build time, search rate and memory for a bank the size of a 10,000-image model.

The rows are synthetic (clustered Gaussian descriptors, 784,000 x 520 like the ``lite2`` bank of
``anomaly_memory_10k.py``), since that benchmark does not keep its bank; build and search cost depend on size and
dimension. Compares with exact chunked search on a slice of the queries. Run it alone on the machine::

    python benchmarks/hnsw_large_bank.py
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from inspect_app.models.anomaly import nearest_distances
from inspect_app.models.nn_search import HnswIndex

PATCHES_PER_IMAGE = 784  # a 224 px tile on the stride-8 grid


def clustered_rows(rows: int, dim: int, centres: int, generator: torch.Generator) -> torch.Tensor:
    """``rows`` descriptors around ``centres`` random centres (filled in slices to bound temporary memory)."""
    points = torch.randn(centres, dim, generator=generator) * 3.0
    out = torch.empty(rows, dim)
    for start in range(0, rows, 100_000):
        count = min(100_000, rows - start)
        picks = torch.randint(0, centres, (count,), generator=generator)
        out[start : start + count] = points[picks] + torch.randn(count, dim, generator=generator)
    return out


def main() -> int:
    """Build the graph, time both searches and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=784_000)
    parser.add_argument("--dim", type=int, default=520)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    bank = clustered_rows(args.rows, args.dim, 2000, generator)
    queries = bank[: 10 * PATCHES_PER_IMAGE] + 0.1 * torch.randn(10 * PATCHES_PER_IMAGE, args.dim, generator=generator)

    start = time.perf_counter()
    index = HnswIndex(bank, args.ef_search)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    approx = index.search(queries)
    graph_rate = queries.shape[0] / (time.perf_counter() - start)
    exact_queries = queries[:PATCHES_PER_IMAGE]
    start = time.perf_counter()
    exact = nearest_distances(exact_queries, bank)
    exact_rate = exact_queries.shape[0] / (time.perf_counter() - start)
    same = float(((approx[:PATCHES_PER_IMAGE] - exact).abs() <= 1e-3 * exact.clamp(min=1.0)).float().mean())

    print(f"bank: {args.rows} x {args.dim} ({bank.numel() * 4 / 2**20:.0f} MB)")
    print(f"graph_build_s: {build_s:.0f}")
    print(f"hnsw_images_per_s: {graph_rate / PATCHES_PER_IMAGE:.2f}")
    print(f"exact_images_per_s: {exact_rate / PATCHES_PER_IMAGE:.2f}")
    print(f"speedup: {graph_rate / exact_rate:.1f}")
    print(f"share_of_distances_exact: {same:.3f}")
    print(f"peak_rss_gb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
