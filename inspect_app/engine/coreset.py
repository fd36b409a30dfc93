"""Greedy k-center coreset of patch descriptors, in cache-sized chunks, streamed into the memory bank.

The memory bank is built in one streaming pass: patch descriptors of a few images at a time are reduced by a greedy
k-center coreset inside chunks that fit the CPU cache, and the union of those chunk coresets is reduced again to the
final size (composable coresets: covering every chunk covers their union). Only the selected rows are kept, so
memory grows with the coreset, not with every patch, and each greedy step works on a cache-sized chunk instead of
scanning every patch of the data set (see benchmarks/RESULTS.md for the measured difference).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from inspect_app.engine.anomaly_config import AnomalyConfig
from inspect_app.errors import DatasetError
from inspect_app.models.anomaly import nearest_distances

logger = logging.getLogger(__name__)


def greedy_k_center(
    points: torch.Tensor, count: int, min_dist: torch.Tensor | None = None, start: int = 0
) -> torch.Tensor:
    """Greedy k-center selection: repeatedly take the point farthest from everything chosen so far.

    Args:
        points: (N, p) projected descriptors.
        count: how many to select (at most N).
        min_dist: squared distance of every point to already chosen centres (an existing bank); ``None`` for none.
        start: first point when ``min_dist`` is ``None``.

    Returns:
        (count,) indices into ``points``.
    """
    n = points.shape[0]
    count = min(count, n)
    selected = torch.empty(count, dtype=torch.long)
    if count == 0:
        return selected
    sq = points.pow(2).sum(1)
    dist = torch.full((n,), math.inf) if min_dist is None else min_dist.clone()
    index = start if min_dist is None else int(torch.argmax(dist))
    for i in range(count):
        selected[i] = index
        # |x - c|^2 for all x in one matrix-vector product; the chunk stays in cache, so this is compute-bound.
        d = torch.addmv(sq, points, points[index], alpha=-2.0).add_(sq[index])
        torch.minimum(dist, d, out=dist)
        index = int(torch.argmax(dist))
    return selected


def _split_counts(sizes: Sequence[int], total: int) -> list[int]:
    """Share ``total`` among groups proportionally to ``sizes`` (largest remainder), each at most its size."""
    n = sum(sizes)
    exact = [total * s / n for s in sizes]
    counts = [min(s, math.floor(e)) for s, e in zip(sizes, exact, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - counts[i], reverse=True)
    left = total - sum(counts)
    for i in order:
        if left <= 0:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
            left -= 1
    return counts


def greedy_coreset(
    projected: torch.Tensor, count: int, chunk: int = 16384, oversample: float = 4.0, seed: int = 0
) -> torch.Tensor:
    """Indices of ``count`` rows forming a greedy k-center coreset, in chunks when there are many rows.

    While more than ``chunk`` rows remain, they are split at random into chunks, each reduced by greedy selection to
    its share of an intermediate target (``oversample`` x ``count``, at least halving); the last reduction is global.

    Args:
        projected: (N, p) descriptors (randomly projected: distances are kept approximately).
        count: rows to keep.
        chunk: rows per greedy chunk.
        oversample: intermediate stages keep this many times ``count``.
        seed: seed for the random chunking.
    """
    n = projected.shape[0]
    if count >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    idx = torch.arange(n)
    while idx.numel() > chunk and idx.numel() > count:
        target = max(count, min(int(oversample * count), idx.numel() // 2))
        perm = idx[torch.randperm(idx.numel(), generator=generator)]
        parts = list(torch.split(perm, chunk))
        quotas = _split_counts([p.numel() for p in parts], target)
        idx = torch.cat([p[greedy_k_center(projected[p], q)] for p, q in zip(parts, quotas, strict=True)])
    if idx.numel() > count:
        idx = idx[greedy_k_center(projected[idx], count)]
    return idx


def projection(dim_in: int, dim_out: int, seed: int) -> torch.Tensor | None:
    """Random Gaussian projection matrix (Johnson-Lindenstrauss) or ``None`` when no reduction is needed."""
    if dim_out >= dim_in:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(dim_in, dim_out, generator=generator) / math.sqrt(dim_out)


def _project(x: torch.Tensor, matrix: torch.Tensor | None) -> torch.Tensor:
    return x if matrix is None else x @ matrix


class BankBuilder:
    """Streams patch descriptors into chunk coresets and reduces them to the final memory bank.

    Args:
        feature_dim: descriptor size.
        config: the recipe (coreset ratio, chunk, oversampling, projection size, seed).
        existing: an existing bank to extend (incremental update): new rows are chosen far from it.

    After ``finish``, ``owners`` holds the source image id given to ``add`` for every bank row (-1 for rows of the
    existing bank), so that an image can later be scored without its own rows.
    """

    def __init__(self, feature_dim: int, config: AnomalyConfig, existing: torch.Tensor | None = None) -> None:
        self.config = config
        self.matrix = projection(feature_dim, config.coreset_dim, config.seed)
        self.existing = existing
        self.stage_ratio = min(1.0, config.coreset_ratio * config.coreset_oversample)
        self.kept: list[torch.Tensor] = []
        self.kept_owners: list[torch.Tensor] = []
        self.pending: list[torch.Tensor] = []
        self.pending_owners: list[torch.Tensor] = []
        self.pending_rows = 0
        self.owners: torch.Tensor | None = None
        self.patches_seen = 0
        self._chunks = 0

    def add(self, descriptors: torch.Tensor, owners: torch.Tensor | None = None) -> None:
        """Add (M, D) descriptors and their (M,) source image ids; full chunks are reduced at once (bounded memory)."""
        rows = descriptors.detach().float().cpu()
        self.patches_seen += rows.shape[0]
        self.pending.append(rows)
        self.pending_owners.append(
            torch.full((rows.shape[0],), -1, dtype=torch.long) if owners is None else owners.to("cpu", torch.long)
        )
        self.pending_rows += rows.shape[0]
        if self.pending_rows >= self.config.coreset_chunk:
            self._reduce_pending()

    def _reduce_pending(self) -> None:
        if not self.pending_rows:
            return
        rows = torch.cat(self.pending)
        owners = torch.cat(self.pending_owners)
        self.pending, self.pending_owners, self.pending_rows = [], [], 0
        keep = math.ceil(self.stage_ratio * rows.shape[0])
        selected = greedy_coreset(_project(rows, self.matrix), keep, self.config.coreset_chunk, 1.0,
                                  self.config.seed + self._chunks)
        self._chunks += 1
        self.kept.append(rows[selected])
        self.kept_owners.append(owners[selected])

    def finish(self) -> torch.Tensor:
        """The final bank: the existing rows (if any) followed by the newly selected ones."""
        self._reduce_pending()
        if not self.kept:
            raise DatasetError("no patch descriptors were added: the memory bank would be empty")
        # Select on the small projected copies, then gather full rows chunk by chunk: concatenating the full-size
        # chunk coresets first would hold them twice at the peak of a large build.
        projected = torch.cat([_project(rows, self.matrix) for rows in self.kept])
        pool_owners = torch.cat(self.kept_owners)
        count = max(1, math.ceil(self.config.coreset_ratio * self.patches_seen))
        if self.existing is None:
            chosen = greedy_coreset(projected, count, self.config.coreset_chunk, self.config.coreset_oversample,
                                    self.config.seed)
            self.owners = pool_owners[chosen]
            return self._gather(chosen)
        # Continue the greedy selection from the existing centres: only what they do not cover yet is added.
        old = _project(self.existing.float().cpu(), self.matrix)
        min_dist = nearest_distances(projected, old).pow(2)
        chosen = greedy_k_center(projected, count, min_dist=min_dist)
        self.owners = torch.cat([torch.full((self.existing.shape[0],), -1, dtype=torch.long), pool_owners[chosen]])
        return torch.cat([self.existing.float().cpu(), self._gather(chosen)])

    def _gather(self, chosen: torch.Tensor) -> torch.Tensor:
        """Rows ``chosen`` (indices into the concatenated chunk coresets), releasing each chunk once it is read."""
        out = torch.empty(chosen.numel(), self.kept[0].shape[1])
        start = 0
        for c, rows in enumerate(self.kept):
            end = start + rows.shape[0]
            where = torch.nonzero((chosen >= start) & (chosen < end)).squeeze(1)
            out[where] = rows[chosen[where] - start]
            self.kept[c] = torch.empty(0)
            del rows
            start = end
        self.kept, self.kept_owners = [], []
        return out


