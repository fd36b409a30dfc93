"""Filling a good-only model's memory bank: streaming feature extraction into a greedy coreset, and search probes.

The memory bank is built in one streaming pass: patch descriptors of a few images at a time are reduced by a greedy
k-center coreset inside chunks that fit the CPU cache, and the union of those chunk coresets is reduced again to the
final size (composable coresets: covering every chunk covers their union). Only the selected rows are kept, so
memory grows with the coreset, not with every patch, and each greedy step works on a cache-sized chunk instead of
scanning every patch of the data set (see benchmarks/RESULTS.md for the measured difference).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inspect_app.data.image_io import read_image
from inspect_app.engine.anomaly_config import AnomalyConfig
from inspect_app.engine.anomaly_scoring import tile_images, to_device
from inspect_app.engine.coreset import BankBuilder
from inspect_app.models.anomaly import PatchCore


def read_batches(paths: Sequence[Path], size: int) -> Iterator[list[np.ndarray]]:
    """The images of ``paths``, decoded ``size`` at a time (a bank never needs the whole set in memory)."""
    for i in range(0, len(paths), size):
        yield [read_image(p) for p in paths[i : i + size]]


@dataclass(frozen=True)
class BankFit:
    """What filling a memory bank saw.

    Attributes:
        patches: patch descriptors seen.
        owners: (N,) for every bank row, the index of its source image in the order the images came (a mirrored
            copy shares its image's index; rows of an older bank are -1).
    """

    patches: int
    owners: torch.Tensor


# Patches kept, with their exact distances, to check an approximate search whenever one is built (see
# ``PatchCore.set_probes``): 2048 x 520 float16 is 2 MB beside a bank of tens of MB.
PROBE_PATCHES = 2048


class ProbeSampler:
    """A uniform random sample of ``size`` rows from a stream of descriptor batches (reservoir by random keys)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.rows: torch.Tensor | None = None
        self.keys = torch.empty(0)

    def add(self, rows: torch.Tensor) -> None:
        """Offer (M, D) rows; the ``size`` with the smallest random keys so far are kept."""
        keys = torch.rand(rows.shape[0], generator=self.generator)
        if self.rows is not None and self.keys.numel() >= self.size:
            wanted = keys < self.keys.max()  # only rows that would displace a kept one are copied
            rows, keys = rows[wanted.to(rows.device)], keys[wanted]
        rows = rows.detach().float().cpu()
        pool = rows if self.rows is None else torch.cat([self.rows, rows])
        keys = torch.cat([self.keys, keys])
        keep = torch.argsort(keys)[: self.size]
        self.rows, self.keys = pool[keep], keys[keep]


@torch.inference_mode()
def extend_bank(
    model: PatchCore, images: Iterable[Sequence[np.ndarray]], config: AnomalyConfig, incremental: bool = False
) -> BankFit:
    """Fit (or, with ``incremental``, extend) the model's bank from batches of good images.

    The bank's search probes are drawn from the same patches (an update keeps a share of the old ones).
    """
    device = model.mean.device
    builder = BankBuilder(model.feature_dim, config, existing=model.memory_bank if incremental else None)
    probes = ProbeSampler(PROBE_PATCHES, config.seed)
    if incremental and model.probe_queries.shape[0]:
        probes.add(model.probe_queries.float())
    first = 0
    for batch in images:
        ids = list(range(first, first + len(batch)))
        first += len(batch)
        if config.flip_augment:
            batch = [*batch, *(np.ascontiguousarray(im[:, ::-1]) for im in batch),
                     *(np.ascontiguousarray(im[::-1]) for im in batch)]
            ids = ids * 3
        tiles, layout = tile_images(batch, config)
        tile_ids = torch.tensor([i for i, (count, _, _) in zip(ids, layout, strict=True) for _ in range(count)])
        for i in range(0, len(tiles), config.batch_size):
            emb = model.embed(to_device(tiles[i : i + config.batch_size], device))
            owners = tile_ids[i : i + config.batch_size].repeat_interleave(emb.shape[2] * emb.shape[3])
            rows = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
            builder.add(rows, owners)
            probes.add(rows)
    model.set_bank(builder.finish())
    if probes.rows is not None:
        model.set_probes(probes.rows)
    assert builder.owners is not None and builder.owners.numel() == model.memory_bank.shape[0]
    return BankFit(builder.patches_seen, builder.owners)

