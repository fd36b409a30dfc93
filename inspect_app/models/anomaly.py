"""Good-only anomaly model (PatchCore-class): a memory bank of normal patch features and nearest-neighbour scores.

A patch is described by mid-level features of a pretrained timm backbone (``features_only``), averaged over its
3x3 neighbourhood so that each descriptor sees a little context, with the deeper layer upsampled to the finer one.
A part is anomalous where its patches are far from every patch in the bank of good parts. Fitting the bank (coreset
selection, thresholds) lives in ``engine.anomaly``; this module only holds the bank and scores with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from inspect_app.models.factory import create_backbone
from inspect_app.models.nn_search import DEFAULT_EF_SEARCH, HnswIndex, check_search_mode, resolve_search

if TYPE_CHECKING:
    from timm.models import FeatureInfo

# Stages 2-4 (strides 8, 16, 32): fine texture plus context; measured better than 2-3 on Magnetic Tile.
DEFAULT_LAYERS = (2, 3, 4)
# Rows of the bank compared at once: bounds the distance matrix to query_chunk x bank_chunk floats.
BANK_CHUNK = 8192
QUERY_CHUNK = 4096
# A bank larger than this stays in host memory and is streamed to an accelerator chunk by chunk.
MAX_DEVICE_BANK_BYTES = 2 << 30


def nearest_distances(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_sq: torch.Tensor | None = None,
    bank_chunk: int = BANK_CHUNK,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Euclidean distance from every query row to its nearest bank row, computed in chunks.

    Args:
        queries: (M, D) on the compute device.
        bank: (N, D); may live on another device (host memory), chunks are copied to the queries' device.
        bank_sq: squared norms of the bank rows (N,), to save recomputing them.
        bank_chunk: bank rows per distance block.
        exclude: (N,) bool, bank rows to ignore (leave-one-out scoring of an image whose own patches are in the
            bank); at least one row must stay.

    Returns:
        (M,) distances on the queries' device.
    """
    if bank.shape[0] == 0:
        raise ValueError("the memory bank is empty: fit the model on good images first")
    if exclude is not None and bool(exclude.all()):
        raise ValueError("every memory bank row is excluded: nothing is left to compare with")
    device = queries.device
    queries = queries.float()
    if bank_sq is None:
        bank_sq = bank.float().pow(2).sum(1)
    best = torch.empty(queries.shape[0], device=device)
    for q0 in range(0, queries.shape[0], QUERY_CHUNK):
        q = queries[q0 : q0 + QUERY_CHUNK]
        q_sq = q.pow(2).sum(1, keepdim=True)
        running = torch.full((q.shape[0],), math.inf, device=device)
        for b0 in range(0, bank.shape[0], bank_chunk):
            b = bank[b0 : b0 + bank_chunk].to(device, non_blocking=True).float()
            b_sq = bank_sq[b0 : b0 + bank_chunk].to(device, non_blocking=True)
            # |q - b|^2 = |q|^2 - 2 q.b + |b|^2, as one matrix product instead of a (M, N, D) difference tensor.
            d = torch.addmm(b_sq.unsqueeze(0), q, b.T, alpha=-2.0).add_(q_sq)
            if exclude is not None:
                d.masked_fill_(exclude[b0 : b0 + bank_chunk].to(device).unsqueeze(0), math.inf)
            torch.minimum(running, d.min(dim=1).values, out=running)
        best[q0 : q0 + q.shape[0]] = running.clamp_(min=0.0).sqrt_()
    return best


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, 1, H, W) maps with reflected borders; ``sigma`` <= 0 returns them as is."""
    if sigma <= 0:
        return maps
    radius = max(1, int(round(4.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(x**2) / (2.0 * sigma**2))
    kernel = kernel / kernel.sum()
    # Reflect padding needs the pad smaller than the side; a tiny map is padded by replication instead.
    mode = "reflect" if min(maps.shape[-2:]) > radius else "replicate"
    out = F.conv2d(F.pad(maps, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))


class PatchCore(nn.Module):
    """Backbone feature extractor + memory bank of normal patch descriptors.

    Args:
        backbone: name for ``create_backbone``.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        layers: backbone stages (timm ``out_indices``) whose features describe a patch; the first sets the grid.
        neighbourhood: side of the local averaging window (odd; 1 disables aggregation).
        bank_size: rows of the (empty) bank to allocate, so that a saved bank loads with ``strict=True``.
        pretrained: load pretrained backbone weights.
    """

    # Buffers, registered in __init__ (nn.Module's attribute lookup alone types them Tensor | Module).
    mean: torch.Tensor
    std: torch.Tensor
    memory_bank: torch.Tensor
    patch_scale: torch.Tensor
    probe_queries: torch.Tensor
    probe_distances: torch.Tensor

    def __init__(
        self,
        backbone: str,
        mean: Sequence[float],
        std: Sequence[float],
        layers: Sequence[int] = DEFAULT_LAYERS,
        neighbourhood: int = 3,
        bank_size: int = 0,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood {neighbourhood!r} must be a positive odd number")
        self.layers = tuple(int(i) for i in layers)
        self.neighbourhood = neighbourhood
        self.features = create_backbone(backbone, pretrained=pretrained, features_only=True, out_indices=self.layers)
        # timm's features_only models carry a FeatureInfo.
        self.feature_dim = int(sum(cast("FeatureInfo", self.features.feature_info).channels()))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("memory_bank", torch.zeros(bank_size, self.feature_dim))
        # Expected distance of a good patch at each grid position of a tile, relative to the mean over positions
        # (see ``set_patch_scale``); empty: every position counts alike (models saved before it existed).
        self.register_buffer("patch_scale", torch.empty(0))
        # Patches of training images with their exact distance to the bank: an approximate search is checked
        # against them whenever it is built (see ``set_probes``); empty in models saved before them.
        self.register_buffer("probe_queries", torch.empty(0, self.feature_dim))
        self.register_buffer("probe_distances", torch.empty(0))
        self._bank_sq: torch.Tensor | None = None
        self._search = ("exact", DEFAULT_EF_SEARCH)
        self._index: HnswIndex | None = None
        self._exact_only = False
        # Descriptors from elsewhere (an exported ONNX graph of ``embed``) instead of the backbone; the bank, the
        # search and everything after it stay here.
        self._embedder: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.eval()

    @property
    def bank_bytes(self) -> int:
        """Size of the memory bank in bytes."""
        return self.memory_bank.numel() * self.memory_bank.element_size()

    def set_bank(self, bank: torch.Tensor) -> None:
        """Replace the memory bank with (N, feature_dim) rows (kept on the bank's current device)."""
        if bank.ndim != 2 or bank.shape[1] != self.feature_dim:
            raise ValueError(f"bank must be (N, {self.feature_dim}), got {tuple(bank.shape)}")
        self.memory_bank = bank.detach().float().contiguous().to(self.memory_bank.device)
        self._forget_derived()

    def set_patch_scale(self, scale: torch.Tensor) -> None:
        """Divide every patch distance by its grid position's expected good distance from now on.

        Patches near a tile's border are described partly by the backbone's zero padding, so good parts sit farther
        from the bank there than in the middle; dividing by the position's own level makes a border defect stand out
        as much as one in the middle, and the border's noise no more than the middle's.

        Args:
            scale: (h, w) positive values on the patch grid of a tile.
        """
        if scale.ndim != 2 or not bool((scale > 0).all()):
            raise ValueError(f"patch scale must be a positive (h, w) grid, got shape {tuple(scale.shape)}")
        self.patch_scale = scale.detach().float().to(self.memory_bank.device)

    def set_probes(self, queries: torch.Tensor) -> None:
        """Keep (P, D) patch descriptors and their exact distances to the current bank, to check any faster search.

        Stored as float16 (half the size); the exact distances are those of the stored values.
        """
        if queries.ndim != 2 or queries.shape[1] != self.feature_dim:
            raise ValueError(f"probes must be (P, {self.feature_dim}), got {tuple(queries.shape)}")
        stored = queries.detach().cpu().to(torch.float16)
        device = self.memory_bank.device
        self.probe_queries = stored.to(device)
        self.probe_distances = nearest_distances(stored.float().to(device), self.memory_bank)
        self._forget_derived()

    def set_embedder(self, embedder: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """Compute patch descriptors with ``embedder`` (same input and output as ``embed``); ``None``: the backbone."""
        self._embedder = embedder

    @property
    def search_in_use(self) -> str:
        """``exact`` or ``hnsw ef N``: what scoring without ``exclude`` uses now (after ``prepare_search``)."""
        index = self.prepare_search()
        return "exact" if index is None else f"hnsw ef {index.ef_search}"

    def scale_patches(self, distances: torch.Tensor) -> torch.Tensor:
        """(B, h, w) patch distances divided by the patch scale, when the model has one."""
        if self.patch_scale.numel() == 0:
            return distances
        if distances.shape[-2:] != self.patch_scale.shape:
            raise ValueError(f"patch grid {tuple(distances.shape[-2:])} does not match the model's patch scale "
                             f"{tuple(self.patch_scale.shape)}: was the tile size changed?")
        return distances / self.patch_scale.to(distances.device)

    def _forget_derived(self) -> None:
        # Row norms and the search graph are computed from the bank: a new or moved bank needs new ones.
        self._bank_sq = None
        self._index = None
        self._exact_only = False

    def configure_search(self, mode: str, ef_search: int = DEFAULT_EF_SEARCH) -> None:
        """How patches find their nearest bank row: ``exact``, ``hnsw`` (faiss graph, CPU) or ``auto``.

        The graph is built on first use after the bank or the setting changed. Leave-one-out scoring (``exclude``)
        is always exact.
        """
        check_search_mode(mode, ef_search)
        if (mode, ef_search) != self._search:
            self._search = (mode, ef_search)
            self._index = None
            self._exact_only = False

    def place(self, device: torch.device, max_bank_bytes: int = MAX_DEVICE_BANK_BYTES) -> PatchCore:
        """Move to ``device``, but keep a bank larger than ``max_bank_bytes`` in host memory (streamed in chunks)."""
        bank = self.memory_bank
        self.to(device)
        if device.type != "cpu" and self.bank_bytes > max_bank_bytes:
            self.memory_bank = bank.cpu()
        self._forget_derived()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # The bank's row count is only known from the file: resize before the strict shape check.
        key = prefix + "memory_bank"
        # A bank of another descriptor size is left for the strict load to reject with both shapes named.
        if key in state_dict and state_dict[key].ndim == 2 and state_dict[key].shape[1] == self.feature_dim:
            self.memory_bank = torch.empty_like(state_dict[key], device=self.memory_bank.device)
            self._forget_derived()
        scale_key = prefix + "patch_scale"
        if scale_key in state_dict:
            self.patch_scale = torch.empty_like(state_dict[scale_key], device=self.memory_bank.device)
        else:
            # Saved before positions were normalised: those models were calibrated without it.
            state_dict[scale_key] = torch.empty(0)
        for name, empty in (("probe_queries", torch.empty(0, self.feature_dim)), ("probe_distances", torch.empty(0))):
            key = prefix + name
            if key not in state_dict:
                state_dict[key] = empty  # saved before probes: the search is not checked
            setattr(self, name, torch.empty_like(state_dict[key], device=self.memory_bank.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def prepare_search(self) -> HnswIndex | None:
        """Build the HNSW graph now if the configured search uses one (else ``None``), so no frame waits for it."""
        mode, ef_search = self._search
        if self._exact_only or resolve_search(mode, self.memory_bank.shape[0], self.mean.device) != "hnsw":
            return None
        if self._index is None:
            index = HnswIndex(self.memory_bank, ef_search)
            # A graph is built anew at every load (faiss builds in parallel, not reproducibly): check each one.
            if self.probe_queries.shape[0] and not index.tune(self.probe_queries.float(), self.probe_distances):
                self._exact_only = True
                return None
            self._index = index
        return self._index

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch descriptors (B, D, h, w) of [0, 1] images (B, 3, H, W), on the grid of the first layer."""
        feats = self.features((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))
        size = feats[0].shape[-2:]
        pad = self.neighbourhood // 2
        out = []
        for f in feats:
            if self.neighbourhood > 1:
                # Local aggregation: each descriptor averages its neighbourhood (more context, robust to shifts).
                f = F.avg_pool2d(f, self.neighbourhood, stride=1, padding=pad, count_include_pad=False)
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            out.append(f)
        return torch.cat(out, dim=1).float()

    def patch_scores(self, x: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Distance of every patch to the bank over its position's scale, (B, h, w), for [0, 1] images (B, 3, H, W).

        Args:
            x: the images.
            exclude: (N,) bool bank rows to ignore (see ``nearest_distances``).
        """
        return self.scale_patches(self.patch_distances(x, exclude))

    def patch_distances(self, x: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Distance of every patch to the bank, (B, h, w), for [0, 1] images (B, 3, H, W), before any scale.

        Args:
            x: the images.
            exclude: (N,) bool bank rows to ignore (see ``nearest_distances``).
        """
        return self.search_patches(self.descriptors(x), exclude)

    def descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """Patch descriptors (B, D, h, w) from the backbone or, when one is set, the exported embedder."""
        return self.embed(x) if self._embedder is None else self._embedder(x)

    def search_patches(
        self, emb: torch.Tensor, exclude: torch.Tensor | None = None, ef_search: int | None = None
    ) -> torch.Tensor:
        """Distance of every descriptor (B, D, h, w) to its nearest bank row, (B, h, w), with the configured search.

        Args:
            emb: the descriptors.
            exclude: (N,) bool bank rows to ignore (see ``nearest_distances``); searched exactly.
            ef_search: HNSW candidate list for this call (the tuned one when ``None``); ignored by exact search.
        """
        b, d, h, w = emb.shape
        flat = emb.permute(0, 2, 3, 1).reshape(-1, d)
        index = self.prepare_search() if exclude is None else None
        if index is not None:
            return index.search(flat, ef_search).view(b, h, w)
        if self._bank_sq is None or self._bank_sq.device != self.memory_bank.device:
            self._bank_sq = self.memory_bank.pow(2).sum(1)
        return nearest_distances(flat, self.memory_bank, self._bank_sq, exclude=exclude).view(b, h, w)

    def forward(self, x: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Patch-score maps upsampled to the input size, (B, H, W) (not smoothed: tiles are stitched first)."""
        return upsample_patches(self.patch_scores(x, exclude), x.shape[-2:])


def upsample_patches(scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, h, w) patch scores bilinearly upsampled to (B, *size) pixels of the tile they describe."""
    return F.interpolate(scores.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def stitch(
    tile_maps: torch.Tensor, origins: Sequence[tuple[int, int]], shape: tuple[int, int]
) -> torch.Tensor:
    """Average overlapping (T, t, t) tile maps into one (H, W) map placed at the tiles' (y, x) origins."""
    tile = tile_maps.shape[-1]
    total = torch.zeros(shape, device=tile_maps.device)
    weight = torch.zeros(shape, device=tile_maps.device)
    for m, (y, x) in zip(tile_maps, origins, strict=True):
        total[y : y + tile, x : x + tile] += m
        weight[y : y + tile, x : x + tile] += 1.0
    return total / weight.clamp_(min=1.0)
