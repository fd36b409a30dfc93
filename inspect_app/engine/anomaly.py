"""Fitting good-only anomaly models: streaming feature extraction, greedy coreset, thresholds, incremental update.

The memory bank is built in one streaming pass: patch descriptors of a few images at a time are reduced by a greedy
k-center coreset inside chunks that fit the CPU cache, and the union of those chunk coresets is reduced again to the
final size (composable coresets: covering every chunk covers their union). Only the selected rows are kept, so
memory grows with the coreset, not with every patch, and each greedy step works on a cache-sized chunk instead of
scanning every patch of the data set (see benchmarks/RESULTS.md for the measured difference).

Scores are normalised per model so that 0.5 is always the decision threshold and nothing ties:
``0.5 + 0.5 x / (1 + |x|)`` with ``x = 4 (raw - t) / (t - c)`` (``normalize``), ``t`` the raw threshold (a false-reject
rate on held-out good images through a fitted tail, ``engine.tail``, or an escape rate on labelled defects) and ``c``
the median raw score of held-out good images, which maps to 0.1. The raw score travels beside it. The default REVIEW
band lies below the threshold, from the score that ``review_rate`` of the held-out good images reach. Maps get the same
treatment with their own ``t`` and ``c`` (from the held-out images' hottest pixels), because the image score, a mean
over the hottest share of the map, sits below the map's peak.

Held-out images also go into the bank by default and are scored leave-one-out, with the bank rows that came from
them masked: on Magnetic Tile the 20 % more coverage was worth more than any other single setting (see RESULTS).
Their unscaled patch distances also give each position of a tile's patch grid its own scale (``position_scale``),
which the model divides by from then on, before the threshold is set from their scaled scores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml

from inspect_app.config import check_known_keys
from inspect_app.data.folders import NO_GOOD_CLASS, find_good_class, fingerprint, list_images
from inspect_app.data.image_io import read_image
from inspect_app.data.tiling import (
    RESIZE_MODES,
    cut_tiles,
    flatten_field,
    resize_to,
    standardize_intensity,
    target_shape,
)
from inspect_app.engine.device import resolve_device
from inspect_app.engine.metrics import (
    auroc_per_class,
    costliest_samples,
    roc_auc,
    roc_auc_interval,
    threshold_for_escape_rate,
    threshold_for_false_reject,
)
from inspect_app.engine.tail import false_reject_interval, review_edge, tail_threshold
from inspect_app.errors import ConfigError, DatasetError, ReloadCheckError
from inspect_app.models.anomaly import (
    DEFAULT_LAYERS,
    PatchCore,
    gaussian_blur,
    nearest_distances,
    stitch,
    upsample_patches,
)
from inspect_app.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from inspect_app.models.factory import backbone_normalization
from inspect_app.models.nn_search import DEFAULT_EF_SEARCH, check_search_mode
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)

ANOMALY_KIND = "patchcore"
ANOMALY_CLASS = "anomaly"
ProgressFn = Callable[[dict[str, Any]], None]
# Options added after the first anomaly models were saved, with the values those models were calibrated under.
LEGACY_CARD_DEFAULTS: dict[str, Any] = {
    "score_top_fraction": 0.0, "holdout_in_bank": False, "flat_field": 0.0, "position_norm": False,
    "min_calibration_images": 1, "review_rate": 0.0,
}


def expected_label(kind: str, label: str, good_class: str = GOOD_CLASS) -> str:
    """The class a model of ``kind`` should answer for a part labelled ``label``.

    A good-only model knows only good and ``ANOMALY_CLASS``: every defect class is an anomaly to it. A classifier
    should answer the label itself.
    """
    return ANOMALY_CLASS if kind == ANOMALY_KIND and label != good_class else label


@dataclass(frozen=True)
class AnomalyConfig:
    """A good-only anomaly recipe, saved with every run and in the model card.

    Attributes:
        backbone: backbone name for ``create_backbone``.
        layers: backbone stages (timm ``out_indices``) that describe a patch.
        neighbourhood: side of the local feature averaging window (odd).
        input_size: square tile side in pixels.
        resize: ``square`` (distort to a square), ``keep_aspect`` (shorter side = tile, long side tiled) or ``auto``
            (the default: ``keep_aspect`` when the good images are far from square, see ``choose_geometry``).
        tile_scale: resolution factor; > 1 tiles large images with small defects at a finer scale.
        tile_overlap: least overlap between neighbouring tiles, as a share of the tile side.
        flat_field: divide out slow shading first (uneven lighting, vignetting): Gaussian sigma of the illumination
            estimate as a share of the image's shorter side (0.15 is a good start); 0, the default, turns it off.
        standardize: give every image the same mean grey level and contrast first (lighting drift).
        flip_augment: also put the mirrored good images into the bank (parts with no fixed orientation).
        coreset_ratio: share of all training patches kept in the memory bank, in (0, 1].
        coreset_dim: random projection size used to select the coreset (the bank keeps full descriptors).
        coreset_chunk: patches per greedy selection chunk (bounds time and memory per step).
        coreset_oversample: the chunk stage keeps this many times the final share before the final reduction.
        blur_sigma: Gaussian smoothing of the anomaly map, in pixels of the tile.
        holdout_fraction: share of the good images whose scores set the threshold.
        min_calibration_images: with ``holdout_in_bank``, score at least this many good images leave-one-out for
            the threshold (all of them in a smaller set): a false-reject rate of 1 % is a tail quantile, and 40 or
            150 scores place it about as well as their maximum would.
        holdout_in_bank: also put the held-out images into the bank and score each of them leave-one-out (its own
            bank rows masked), so every good image adds coverage; ``False`` keeps them out of the bank.
        position_norm: divide every patch distance by the distance good held-out images have at the same position
            of a tile (tile borders sit farther from the bank than the middle); needs ``MIN_SCALE_TILES`` held-out
            tiles.
        score_top_fraction: the image score is the mean of this share of the hottest pixels of the smoothed map;
            0 takes the single hottest pixel (PatchCore's maximum).
        false_reject_rate: target share of good parts called NG (threshold from held-out good images, through a
            tail fitted to their highest scores: ``engine.tail``).
        review_rate: share of good parts expected at or above the REVIEW band's lower edge (in REVIEW or NG): the
            default band sends the doubtful parts just under the threshold to a person; 0 gives no band.
        escape_rate: target share of defective parts called OK, used when labelled defects are given.
        nn_search: how patches find their nearest bank row: ``exact``, ``hnsw`` (a faiss graph on the CPU: 99 % of
            distances exact, several times faster scoring) or ``auto`` (HNSW for a model on the CPU with a bank of
            at least ``MIN_HNSW_ROWS`` rows, when faiss is installed). Leave-one-out scores are always exact.
        hnsw_ef_search: HNSW candidate list per query; larger is slower and closer to exact.
        batch_size: tiles per forward pass.
        seed: seed for the hold-out split, chunking and projection.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    # lite2 over lite0 on Magnetic Tile: image AUROC 0.989 vs 0.987, escape rate at 1 % false reject 5.6 % vs 13 %.
    backbone: str = "efficientnet_lite2"
    layers: tuple[int, ...] = DEFAULT_LAYERS
    neighbourhood: int = 3
    input_size: int = 224
    resize: str = "auto"
    tile_scale: float = 1.0
    tile_overlap: float = 0.25
    # Off by default: on Magnetic Tile (3 seeds) it moved image AUROC within the seed spread (0.9894 vs 0.9886 on
    # average) and doubled the escapes at 1 % false reject; it is for parts whose lighting varies across them.
    flat_field: float = 0.0
    standardize: bool = True
    flip_augment: bool = False
    coreset_ratio: float = 0.1
    coreset_dim: int = 64
    coreset_chunk: int = 16384
    coreset_oversample: float = 4.0
    blur_sigma: float = 4.0
    position_norm: bool = True
    holdout_fraction: float = 0.2
    min_calibration_images: int = 300
    holdout_in_bank: bool = True
    score_top_fraction: float = 0.1
    false_reject_rate: float = 0.01
    review_rate: float = 0.08
    escape_rate: float = 0.01
    nn_search: str = "auto"
    hnsw_ef_search: int = DEFAULT_EF_SEARCH
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if self.resize not in (AUTO_RESIZE, *RESIZE_MODES):
            raise ConfigError(f"resize {self.resize!r} is not one of {', '.join((AUTO_RESIZE, *RESIZE_MODES))}")
        if not 0.0 < self.coreset_ratio <= 1.0:
            raise ConfigError(f"coreset_ratio {self.coreset_ratio!r} must lie in (0, 1]")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction {self.holdout_fraction!r} must lie strictly between 0 and 1")
        if not 0.0 <= self.score_top_fraction <= 1.0:
            raise ConfigError(f"score_top_fraction {self.score_top_fraction!r} must lie in [0, 1]")
        # A review_rate at or below false_reject_rate simply gives no band (its edge would not lie under the threshold).
        if not 0.0 <= self.review_rate < 1.0:
            raise ConfigError(f"review_rate {self.review_rate!r} must lie in [0, 1) (0: no REVIEW band)")
        for name in ("false_reject_rate", "escape_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} {getattr(self, name)!r} must lie in [0, 1)")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ConfigError(f"neighbourhood {self.neighbourhood!r} must be a positive odd number")
        for name in ("input_size", "batch_size", "coreset_dim", "coreset_chunk", "min_calibration_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} {value!r} must be a positive integer")
        if self.tile_scale < 1.0:
            raise ConfigError(f"tile_scale {self.tile_scale!r} must be at least 1")
        if not 0.0 <= self.flat_field <= 1.0:
            raise ConfigError(f"flat_field {self.flat_field!r} must lie in [0, 1] (0 turns it off)")
        if not 0.0 <= self.tile_overlap < 0.9:
            raise ConfigError(f"tile_overlap {self.tile_overlap!r} must lie in [0, 0.9)")
        if not self.layers:
            raise ConfigError("layers must name at least one backbone stage")
        check_search_mode(self.nn_search, self.hnsw_ef_search)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON/YAML (tuples as lists)."""
        data = dataclasses.asdict(self)
        data["layers"] = list(self.layers)
        return data

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AnomalyConfig:
        """Build from a dict, rejecting unknown keys by name."""
        check_known_keys(cls, values, "anomaly")
        return cls(**values)

    @classmethod
    def from_card(cls, train_config: dict[str, Any], **overrides: Any) -> AnomalyConfig:
        """The recipe saved in a model card; cards written before an option existed get the behaviour they had.

        Args:
            train_config: the card's ``train_config``.
            overrides: values that replace the saved ones (for example this process's ``device``).
        """
        return cls.from_dict({**LEGACY_CARD_DEFAULTS, **train_config, **overrides})

    def with_overrides(self, **overrides: Any) -> AnomalyConfig:
        """Copy with the non-``None`` overrides applied."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


# Images whose long side is at least this many times their short one are tiled along it instead of squashed (a
# 500 x 1250 part squashed to a square loses 60 % of its length resolution, and with it small cracks); nearly square
# parts (bottle 1.0; Magnetic Tile's median 1.4, where keep_aspect was measured no better) keep one square.
AUTO_RESIZE = "auto"
KEEP_ASPECT_RATIO = 1.5
GEOMETRY_SAMPLE = 32


def auto_resize(height: float, width: float) -> str:
    """``keep_aspect`` for a shape whose long side is ``KEEP_ASPECT_RATIO`` times its short one, else ``square``."""
    return "keep_aspect" if max(height, width) >= KEEP_ASPECT_RATIO * max(min(height, width), 1.0) else "square"


def choose_geometry(shapes: Sequence[tuple[int, int]], config: AnomalyConfig) -> tuple[AnomalyConfig, dict[str, Any]]:
    """Resolve ``resize: auto`` from the good images' (height, width) and describe the choice for the card.

    Returns:
        The recipe with a concrete ``resize`` and a dict (median size, aspect, choice, reason) for the card.
    """
    sizes = np.asarray(shapes, dtype=np.float64).reshape(-1, 2)
    aspect = float(np.median(sizes.max(1) / np.maximum(sizes.min(1), 1.0))) if sizes.size else 1.0
    median = [int(v) for v in np.median(sizes, axis=0)] if sizes.size else None
    info: dict[str, Any] = {"median_size": median, "median_aspect": round(aspect, 3), "asked": config.resize}
    if config.resize != AUTO_RESIZE:
        info.update(resize=config.resize, reason="set in the recipe")
        return config, info
    chosen = auto_resize(aspect, 1.0)
    reason = (f"long side {aspect:.2f}x the short one: tiled along it, not squashed" if chosen == "keep_aspect"
              else f"nearly square (aspect {aspect:.2f})")
    info.update(resize=chosen, reason=reason)
    if median and min(median) >= 3 * config.input_size and config.tile_scale == 1.0:
        info["hint"] = (f"images are {min(median) / config.input_size:.1f}x the input size; if defects are only a few "
                        "pixels across, tile_scale 2 looks 2x closer (4x the scoring time)")
    logger.info("input geometry: %s (%s)%s", chosen, reason, f"; {info['hint']}" if "hint" in info else "")
    return config.with_overrides(resize=chosen), info


# --------------------------------------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class RawScore:
    """Un-normalised anomaly evidence for one image.

    Attributes:
        score: image score (mean of the hottest ``score_top_fraction`` of the smoothed map).
        peak: the map's hottest value.
        heatmap: (H', W') float32 smoothed distance map at the resized image's size.
    """

    score: float
    peak: float
    heatmap: np.ndarray


def top_fraction_mean(values: torch.Tensor, fraction: float) -> float:
    """Mean of the largest ``fraction`` of ``values`` (at least one value; 0 gives the maximum)."""
    flat = values.reshape(-1)
    count = max(1, min(flat.numel(), round(fraction * flat.numel())))
    return float(flat.topk(count).values.mean())


def _to_device(tiles: np.ndarray, device: torch.device) -> torch.Tensor:
    """(T, t, t, 3) uint8 tiles → (T, 3, t, t) float [0, 1] on the device (convert after the 4x smaller copy)."""
    tensor = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2)))
    return tensor.to(device, non_blocking=True).float().div_(255.0)


def _tiled(images: Sequence[np.ndarray], config: AnomalyConfig) -> tuple[np.ndarray, list[tuple[int, Any, Any]]]:
    """All tiles of all images stacked, and per image (tile count, origins, resized shape)."""
    all_tiles = []
    layout = []
    for image in images:
        # A fitted model's card holds the resolved mode; a recipe still at ``auto`` is resolved per image.
        resize = config.resize if config.resize != AUTO_RESIZE else auto_resize(image.shape[0], image.shape[1])
        if config.flat_field > 0:
            # At the size the tiles are cut from (cut_tiles then leaves it as is): the field is smooth, so this
            # equals flattening the full image, without the full-size float passes on a large camera frame.
            shape = target_shape(image.shape[0], image.shape[1], config.input_size, resize, config.tile_scale)
            image = flatten_field(resize_to(image, shape), config.flat_field)
        if config.standardize:
            image = standardize_intensity(image)
        tiles, origins, shape = cut_tiles(image, config.input_size, resize, config.tile_scale, config.tile_overlap)
        all_tiles.append(tiles)
        layout.append((len(tiles), origins, shape))
    return np.concatenate(all_tiles), layout


@dataclass(frozen=True)
class TileGrids:
    """Patch-grid distances of the tiles of some images, and where the tiles lie.

    Attributes:
        grids: (T, h, w) patch distances of all tiles, in image order.
        layout: per image (tile count, tile origins, resized image shape).
        tile: tile side in pixels.
    """

    grids: torch.Tensor
    layout: list[tuple[int, Any, Any]]
    tile: int


@torch.inference_mode()
def patch_grids(
    model: PatchCore, images: Sequence[np.ndarray], config: AnomalyConfig, exclude: torch.Tensor | None = None,
    scaled: bool = True,
) -> TileGrids:
    """Patch distances of every tile of the images, tiles batched across images.

    Args:
        model: a fitted PatchCore.
        images: HxWx3 uint8 RGB images.
        config: its recipe (tiling, search, batch size).
        exclude: (N,) bool bank rows to ignore for every image here (leave-one-out calibration).
        scaled: divide by the model's patch scale (``False`` gives the distances the scale is computed from).
    """
    device = model.mean.device
    model.configure_search(config.nn_search, config.hnsw_ef_search)
    tiles, layout = _tiled(images, config)
    distances = model.patch_scores if scaled else model.patch_distances
    grids = torch.cat([
        distances(_to_device(tiles[i : i + config.batch_size], device), exclude)
        for i in range(0, len(tiles), config.batch_size)
    ])
    return TileGrids(grids, layout, int(tiles.shape[1]))


@torch.inference_mode()
def scores_from_grids(tiles: TileGrids, config: AnomalyConfig) -> list[RawScore]:
    """Image scores and smoothed maps: each tile's grid upsampled to the tile, stitched, smoothed and summarised."""
    out: list[RawScore] = []
    start = 0
    for count, origins, shape in tiles.layout:
        maps = upsample_patches(tiles.grids[start : start + count], (tiles.tile, tiles.tile))
        start += count
        full = stitch(maps, origins, shape)
        smooth = gaussian_blur(full[None, None], config.blur_sigma * config.tile_scale)[0, 0]
        out.append(RawScore(score=top_fraction_mean(smooth, config.score_top_fraction), peak=float(smooth.max()),
                            heatmap=smooth.cpu().numpy().astype(np.float32)))
    return out


def score_raw(
    model: PatchCore, images: Sequence[np.ndarray], config: AnomalyConfig, exclude: torch.Tensor | None = None
) -> list[RawScore]:
    """Raw image scores and smoothed maps for HxWx3 uint8 RGB images.

    Args:
        model: a fitted PatchCore.
        images: the images.
        config: its recipe (tiling, smoothing, image score).
        exclude: (N,) bool bank rows to ignore for every image here (leave-one-out calibration).
    """
    if not images:
        return []
    return scores_from_grids(patch_grids(model, images, config, exclude), config)


# A per-position level estimated from fewer tiles would follow those few images' own defects and texture.
MIN_SCALE_TILES = 32


def position_scale(tiles: Sequence[TileGrids]) -> torch.Tensor | None:
    """Expected good distance per grid position, relative to its mean over positions, from good images' tiles.

    Lightly smoothed (one patch) and floored, so a position never divides by a value near zero. ``None`` when there
    are fewer than ``MIN_SCALE_TILES`` tiles to estimate it from.

    Args:
        tiles: unscaled patch distances of held-out good images (``patch_grids(..., scaled=False)``).
    """
    grids = torch.cat([t.grids for t in tiles]) if tiles else torch.empty(0)
    if grids.shape[0] < MIN_SCALE_TILES:
        return None
    level = gaussian_blur(grids.float().mean(0)[None, None], 1.0)[0, 0]
    return (level / level.mean()).clamp(min=0.25)


# A typical good part (the centre) scores 0.1: x = -4 in ``normalize``.
CENTER_UNITS = 4.0
SCORE_UNITS = ("score = 0.5 + 0.5 x / (1 + |x|), x = 4 (raw_score - raw_threshold) / (raw_threshold - raw_center); "
               "raw_score is the image's patch distance to the memory bank")


def normalize(raw: np.ndarray | float, center: float, threshold: float) -> np.ndarray | float:
    """Map raw scores (or maps) into (0, 1), the raw threshold at exactly 0.5, strictly increasing everywhere.

    ``0.5 + 0.5 x / (1 + |x|)`` with ``x = CENTER_UNITS (raw - threshold) / (threshold - center)``: unlike a clip,
    no two raw scores share a value (float64 keeps them apart up to x of about 1e15), so NG parts keep their order
    and a threshold can be moved anywhere; unlike a logistic, the tail is too slow to round to exactly 1.
    """
    scale = max(threshold - center, 1e-6 * max(1.0, abs(threshold))) / CENTER_UNITS
    x = (np.asarray(raw, dtype=np.float64) - threshold) / scale
    return 0.5 + 0.5 * x / (1.0 + np.abs(x))


def denormalize(score: float, center: float, threshold: float) -> float:
    """The raw score that ``normalize`` maps to ``score`` (in (0, 1)): the inverse, for thresholds set by hand."""
    if not 0.0 < score < 1.0:
        raise ValueError(f"normalised score {score!r} must lie strictly between 0 and 1")
    y = 2.0 * score - 1.0
    x = y / (1.0 - abs(y))
    scale = max(threshold - center, 1e-6 * max(1.0, abs(threshold))) / CENTER_UNITS
    return threshold + x * scale


# --------------------------------------------------------------------------------------------------------- coreset
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


# --------------------------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class GoodOnlyData:
    """Images for a good-only fit.

    Attributes:
        good: defect-free images (bank + held-out calibration).
        defects: optional labelled defective images (path, class), used only for the escape-rate threshold.
    """

    good: tuple[Path, ...]
    defects: tuple[tuple[Path, str], ...] = ()


def scan_good_only(data_dir: Path, good_class: str | None = None) -> GoodOnlyData:
    """A folder of good images, or a class-folder data set whose good class holds the good images.

    In the class-folder case, every other class folder holds labelled defects.

    Args:
        data_dir: the folder.
        good_class: the good class folder's name; ``None`` finds it (``data.folders.find_good_class``).

    Raises:
        DatasetError: no images, or class folders none (or several) of which is named as the good one.
    """
    data_dir = Path(data_dir)
    subdirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if data_dir.is_dir() else []
    if subdirs:
        names = [p.name for p in subdirs]
        if good_class == NO_GOOD_CLASS:
            raise DatasetError(f"{data_dir}: a good-only model needs good images; --good-class {NO_GOOD_CLASS} "
                               "leaves none")
        try:
            good_name = find_good_class(names, good_class)
        except DatasetError as exc:
            raise DatasetError(f"{data_dir}: {exc}; or pass a folder of good images only") from None
        good = tuple(list_images(data_dir / str(good_name)))
        defects = tuple((p, d.name) for d in subdirs if d.name != good_name for p in list_images(d))
    else:
        good = tuple(list_images(data_dir))
        defects = ()
    if len(good) < 2:
        raise DatasetError(f"{data_dir}: need at least 2 good images to fit and calibrate, found {len(good)}")
    return GoodOnlyData(good=good, defects=defects)


def split_holdout(
    paths: Sequence[Path], fraction: float, seed: int, at_least: int = 1, allow_all: bool = False
) -> tuple[list[Path], list[Path]]:
    """(bank, held-out) split of good images, reproducible from the seed and the sorted paths.

    Args:
        paths: the good images.
        fraction: share held out.
        seed: seed of the draw.
        at_least: hold out at least this many (as far as there are images).
        allow_all: every image may be held out (they all join the bank anyway); else one stays in the bank.
    """
    ordered = sorted(paths, key=str)
    n_hold = min(max(1, round(len(ordered) * fraction), at_least), len(ordered) - (0 if allow_all else 1))
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:n_hold].tolist())
    return [p for i, p in enumerate(ordered) if i not in chosen], [p for i, p in enumerate(ordered) if i in chosen]


def _batches(paths: Sequence[Path], size: int) -> Iterator[list[np.ndarray]]:
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
        tiles, layout = _tiled(batch, config)
        tile_ids = torch.tensor([i for i, (count, _, _) in zip(ids, layout, strict=True) for _ in range(count)])
        for i in range(0, len(tiles), config.batch_size):
            emb = model.embed(_to_device(tiles[i : i + config.batch_size], device))
            owners = tile_ids[i : i + config.batch_size].repeat_interleave(emb.shape[2] * emb.shape[3])
            rows = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
            builder.add(rows, owners)
            probes.add(rows)
    model.set_bank(builder.finish())
    if probes.rows is not None:
        model.set_probes(probes.rows)
    assert builder.owners is not None and builder.owners.numel() == model.memory_bank.shape[0]
    return BankFit(builder.patches_seen, builder.owners)


def calibration(
    good_scores: Sequence[float],
    defect_scores: Sequence[float],
    config: AnomalyConfig,
    good_peaks: Sequence[float] = (),
) -> dict[str, Any]:
    """Raw threshold and centre: from labelled defects (target escape rate) when there are any, else from good ones.

    Args:
        good_scores: image scores of held-out good images.
        defect_scores: image scores of labelled defects (may be empty).
        config: the recipe (target rates).
        good_peaks: the hottest map value of each held-out good image; sets the map's own units (``raw_map_*``),
            since a mean over the hottest pixels sits lower than the hottest pixel itself.

    Returns:
        ``raw_threshold``, ``raw_center``, ``threshold_source``, the rates measured on the calibration images and,
        with ``good_peaks``, ``raw_map_threshold`` and ``raw_map_center``.
    """
    good = np.asarray(good_scores, dtype=np.float64)
    defects = np.asarray(defect_scores, dtype=np.float64)
    if defects.size:
        threshold = threshold_for_escape_rate(defects, config.escape_rate)
        source = f"escape rate {config.escape_rate} on {defects.size} labelled defects"
    else:
        threshold, method = tail_threshold(good, config.false_reject_rate)
        source = f"false-reject rate {config.false_reject_rate} on {good.size} held-out good images ({method})"
    center = float(np.median(good))
    out: dict[str, Any] = {
        "raw_threshold": float(threshold),
        "raw_center": center,
        "threshold_source": source,
        "holdout_false_reject_rate": float((good >= threshold).mean()),
        # What a plant should expect on new good parts, and how sure the calibration can be of it.
        "expected_false_reject_rate": config.false_reject_rate if not defects.size else None,
        "false_reject_interval": false_reject_interval(good, float(threshold), config.seed),
        "review_band": 0.0,
        "score_units": SCORE_UNITS,
    }
    if config.review_rate > 0.0 and good.size:
        edge = review_edge(good, config.review_rate)
        if edge < threshold:
            # The band in normalised units: from the edge's score up to the threshold at 0.5.
            out["review_band"] = float(0.5 - normalize(edge, center, float(threshold)))
            out["raw_review_edge"] = float(edge)
    if defects.size:
        out["calibration_escape_rate"] = float((defects < threshold).mean())
        if good.size and out["holdout_false_reject_rate"] > max(0.1, 5 * config.false_reject_rate):
            # A plant would otherwise learn this from the reject bin: the defects given look like good parts here.
            logger.warning("the threshold for escape rate %s calls %.1f %% of the %d held-out good images NG; the "
                           "labelled defects overlap the good parts (more good images, a higher escape_rate, or no "
                           "defects and a false_reject_rate instead)", config.escape_rate,
                           100 * out["holdout_false_reject_rate"], good.size)
    if len(good_peaks):
        peaks = np.asarray(good_peaks, dtype=np.float64)
        out["raw_map_threshold"] = float(tail_threshold(peaks, config.false_reject_rate)[0])
        out["raw_map_center"] = float(np.median(peaks))
    return out


@dataclass(frozen=True)
class AnomalyFitResult:
    """What a finished good-only fit produced.

    Attributes:
        model_dir: the checkpoint folder.
        card: the saved model card.
        seconds: wall time.
        timings: seconds per phase (bank, calibration).
    """

    model_dir: Path
    card: ModelCard
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def _raw_scores(model: PatchCore, paths: Sequence[Path], config: AnomalyConfig) -> list[RawScore]:
    return [r for batch in _batches(paths, config.batch_size) for r in score_raw(model, batch, config)]


def _raw_grids(model: PatchCore, paths: Sequence[Path], config: AnomalyConfig) -> list[TileGrids]:
    return [patch_grids(model, batch, config, scaled=False) for batch in _batches(paths, config.batch_size)]


def _leave_one_out_grids(
    model: PatchCore, paths: Sequence[Path], owners: Sequence[int] | torch.Tensor, bank_owners: torch.Tensor,
    config: AnomalyConfig,
) -> list[TileGrids]:
    """Unscaled patch distances of images that are in the bank, each without its own bank rows (as if held out)."""
    out = []
    for path, owner in zip(paths, owners, strict=True):
        exclude = (bank_owners == int(owner)).to(model.memory_bank.device)
        if bool(exclude.all()):
            # A bank made of this one image only: nothing else to compare with, so score it as it is.
            logger.warning("%s: every bank row comes from this image; scored without leaving it out", path)
            exclude = None
        out.append(patch_grids(model, [read_image(path)], config, exclude=exclude, scaled=False))
    return out


def _calibrated_scores(model: PatchCore, held_out: Sequence[TileGrids], config: AnomalyConfig) -> list[RawScore]:
    """Set the model's patch scale from held-out good images (when the recipe normalises positions), then score them.

    With too few tiles for a scale, the model keeps the one it has (none for a new model).
    """
    if config.position_norm:
        scale = position_scale(held_out)
        if scale is None:
            logger.info("%d held-out tiles are too few for a per-position scale (need %d); %s",
                        sum(g.grids.shape[0] for g in held_out), MIN_SCALE_TILES,
                        "keeping the model's" if model.patch_scale.numel() else "all positions count alike")
        else:
            model.set_patch_scale(scale)
    return [
        r for g in held_out
        for r in scores_from_grids(dataclasses.replace(g, grids=model.scale_patches(g.grids)), config)
    ]


def _scale_range(model: PatchCore) -> list[float] | None:
    """Lowest and highest per-position scale, for the card (``None`` without one)."""
    if model.patch_scale.numel() == 0:
        return None
    return [round(float(model.patch_scale.min()), 4), round(float(model.patch_scale.max()), 4)]


def _card(
    name: str, config: AnomalyConfig, mean: Sequence[float], std: Sequence[float], anomaly: dict[str, Any],
    metrics: dict[str, Any], data_fingerprint: str | None,
) -> ModelCard:
    return ModelCard(
        name=name, kind=ANOMALY_KIND, backbone=config.backbone, classes=(GOOD_CLASS, ANOMALY_CLASS),
        input_size=config.input_size, mean=tuple(mean), std=tuple(std), threshold=0.5,
        review_band=float(anomaly.get("review_band", 0.0)), metrics=metrics,
        data_fingerprint=data_fingerprint, train_config=config.to_dict(), anomaly=anomaly,
    )


def fit_anomaly(
    data: GoodOnlyData | Path,
    run_dir: Path,
    config: AnomalyConfig | None = None,
    name: str | None = None,
    progress: ProgressFn | None = None,
) -> AnomalyFitResult:
    """Fit a good-only anomaly model and save it as a checkpoint (``safetensors`` bank + JSON model card).

    Args:
        data: a ``GoodOnlyData`` or a folder (see ``scan_good_only``).
        run_dir: checkpoint folder to create.
        config: the recipe; defaults to ``AnomalyConfig()``.
        name: model version name; defaults to the folder name.
        progress: called with a dict after each phase.
    """
    start = time.perf_counter()
    config = config or AnomalyConfig()
    data = data if isinstance(data, GoodOnlyData) else scan_good_only(Path(data))
    step = max(1, len(data.good) // GEOMETRY_SAMPLE)
    config, geometry = choose_geometry([read_image(p).shape[:2] for p in data.good[::step]], config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    bank_paths, held_out = split_holdout(data.good, config.holdout_fraction, config.seed,
                                         at_least=config.min_calibration_images if config.holdout_in_bank else 1,
                                         allow_all=config.holdout_in_bank)
    if config.holdout_in_bank:
        # The held-out images join the bank last (image ids len(bank_paths)...) and are scored leave-one-out.
        bank_paths = bank_paths + held_out
    logger.info("fitting %s anomaly bank on %d good images (%d scored for the threshold%s, %d labelled defects), "
                "device %s", config.backbone, len(bank_paths), len(held_out),
                ", leave-one-out" if config.holdout_in_bank else "", len(data.defects), device)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=True), encoding="utf-8")
    (run_dir / "split_bank.txt").write_text("\n".join(str(p) for p in bank_paths) + "\n", encoding="utf-8")
    (run_dir / "split_holdout.txt").write_text("\n".join(str(p) for p in held_out) + "\n", encoding="utf-8")

    mean, std = backbone_normalization(config.backbone)
    model = PatchCore(config.backbone, mean, std, config.layers, config.neighbourhood).to(device)
    fitted = extend_bank(model, _batches(bank_paths, config.batch_size), config)
    patches = fitted.patches
    t_bank = time.perf_counter() - start
    if progress is not None:
        progress({"phase": "bank", "patches": patches, "bank_rows": int(model.memory_bank.shape[0])})
    if config.holdout_in_bank:
        first = len(bank_paths) - len(held_out)
        grids = _leave_one_out_grids(model, held_out, range(first, len(bank_paths)), fitted.owners, config)
    else:
        grids = _raw_grids(model, held_out, config)
    good = _calibrated_scores(model, grids, config)
    good_scores = [r.score for r in good]
    defect_scores = [r.score for r in _raw_scores(model, [p for p, _ in data.defects], config)]
    calib = calibration(good_scores, defect_scores, config, good_peaks=[r.peak for r in good])
    t_calib = time.perf_counter() - start - t_bank
    anomaly = {
        **calib, "bank_rows": int(model.memory_bank.shape[0]), "patches_seen": patches,
        "bank_mb": model.bank_bytes / 2**20, "train_images": len(bank_paths), "holdout_images": len(held_out),
        "patch_scale_range": _scale_range(model), "geometry": geometry,
    }
    metrics: dict[str, Any] = {"holdout_false_reject_rate": calib["holdout_false_reject_rate"]}
    if data.defects:
        metrics["auroc_good_vs_defect"] = roc_auc([False] * len(good_scores) + [True] * len(defect_scores),
                                                  good_scores + defect_scores)
    items = [(p, GOOD_CLASS) for p in data.good] + list(data.defects)
    card = _card(name or run_dir.name, config, mean, std, anomaly, metrics, fingerprint(items))
    sample = [*bank_paths[:: max(1, len(bank_paths) // RELOAD_SAMPLE)][:RELOAD_SAMPLE],
              *held_out[:: max(1, len(held_out) // RELOAD_SAMPLE)][:RELOAD_SAMPLE]]
    expected = [r.score for r in _raw_scores(model, sample, config.with_overrides(nn_search="exact"))]
    save_checkpoint(run_dir, model, card)
    (run_dir / "calibration_scores.json").write_text(json.dumps(
        {"held_out": [str(p) for p in held_out], "raw_scores": good_scores}, indent=1), encoding="utf-8")
    check_reload(run_dir, calib, list(zip(sample, expected, strict=True)))
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, **anomaly}, indent=2), encoding="utf-8")
    seconds = time.perf_counter() - start
    logger.info("anomaly model %s: %d bank rows (%.1f MB) from %d patches in %.1f s", card.name,
                anomaly["bank_rows"], anomaly["bank_mb"], patches, seconds)
    return AnomalyFitResult(run_dir, card, seconds, {"bank_s": t_bank, "calibration_s": t_calib})


# Images scored again by the reloaded model after a fit (bank images, and held-out ones each).
RELOAD_SAMPLE = 8
# Scores of the reloaded model may differ from the calibrated ones by this share of (threshold - centre): exactly
# the same computation must agree to float rounding; the search the line uses (HNSW) to a small part of the margin.
EXACT_TOLERANCE = 1e-3
SEARCH_TOLERANCE = 0.05


def load_anomaly_model(folder: Path, device: str | torch.device = "cpu") -> tuple[PatchCore, ModelCard, AnomalyConfig]:
    """A saved good-only model ready to score as the line scores: its recipe from the card, its search built."""
    model, card = load_checkpoint(Path(folder), device)
    if card.kind != ANOMALY_KIND:
        raise ConfigError(f"{folder} holds a {card.kind!r} model, not a {ANOMALY_KIND!r} one")
    device = model.mean.device
    config = AnomalyConfig.from_card(card.train_config, device=device.type)
    model.configure_search(config.nn_search, config.hnsw_ef_search)
    model.prepare_search()  # the graph is built (and checked) at load time, not on the first frame of a live line
    return model, card, config


def check_reload(model_dir: Path, calib: dict[str, Any], expected: Sequence[tuple[Path, float]]) -> None:
    """Load the saved model back and check that it scores as the calibrated model did; raise if it does not.

    Each image is scored twice by the reloaded model: with exact search, which must agree with the model in memory
    to float rounding (the file holds the bank, the per-position scale and the recipe), and with the search the
    line will use (chosen and checked at load time), which must agree within ``SEARCH_TOLERANCE`` of the score
    margin: an approximate search that misses the nearest rows would call good parts NG although the calibration
    promised otherwise.

    Args:
        model_dir: the saved checkpoint.
        calib: the calibration (its raw threshold and centre set the tolerance).
        expected: (image, exact score of the model in memory) pairs: bank images and held-out ones.

    Raises:
        ReloadCheckError: naming the image, both scores and the tolerance.
    """
    # On the CPU, where the approximate search runs (an accelerator searches exactly).
    model, _, config = load_anomaly_model(model_dir, "cpu")
    margin = max(calib["raw_threshold"] - calib["raw_center"], 1e-6)
    exact = config.with_overrides(nn_search="exact")
    line = model.search_in_use
    for path, want in expected:
        image = read_image(path)
        for what, scoring, tolerance in (("exact search", exact, EXACT_TOLERANCE),
                                         (f"the line's search, {line}", config, SEARCH_TOLERANCE)):
            got = score_raw(model, [image], scoring)[0].score
            if abs(got - want) > tolerance * margin + 1e-5 * abs(want):
                raise ReloadCheckError(
                    f"the saved model {str(model_dir)!r} scores {path} {got:.4f} ({what}), the calibrated model "
                    f"{want:.4f}: more than {tolerance:g} x the threshold margin {margin:.4f} apart; it would not "
                    "decide as its calibration promised"
                )
    logger.info("reload check: %d images score as calibrated (search: %s)", len(expected), line)


def update_anomaly(
    model_dir: Path,
    new_good: Sequence[Path],
    out_dir: Path | None = None,
    recalibrate_with: Sequence[Path] = (),
    name: str | None = None,
) -> AnomalyFitResult:
    """Add good images to an existing anomaly model without rebuilding its bank.

    The existing rows stay; new rows are chosen greedily among the new patches that the bank does not cover yet.
    With ``recalibrate_with`` (held-out good images) the threshold, and the per-position scale when there are enough
    of their tiles, are set again; otherwise both are kept, which can only make the model more lenient on good parts
    since adding normal patches never raises a distance.

    Args:
        model_dir: checkpoint folder of a ``patchcore`` model.
        new_good: new defect-free images.
        out_dir: where to save the updated model; defaults to ``model_dir`` (in place).
        recalibrate_with: held-out good images for a new threshold.
        name: new model version name; defaults to the output folder name.
    """
    start = time.perf_counter()
    model, card = load_checkpoint(Path(model_dir), "cpu")
    if card.kind != ANOMALY_KIND:
        raise ConfigError(f"{model_dir} holds a {card.kind!r} model; only {ANOMALY_KIND!r} models can be updated")
    if not new_good:
        raise DatasetError("update_anomaly needs at least one new good image")
    config = AnomalyConfig.from_card(card.train_config)
    before = int(model.memory_bank.shape[0])
    patches = extend_bank(model, _batches(list(new_good), config.batch_size), config, incremental=True).patches
    anomaly = dict(card.anomaly)
    anomaly.update(bank_rows=int(model.memory_bank.shape[0]), bank_mb=model.bank_bytes / 2**20,
                   patches_seen=int(anomaly.get("patches_seen", 0)) + patches,
                   train_images=int(anomaly.get("train_images", 0)) + len(new_good))
    if recalibrate_with:
        scores = _calibrated_scores(model, _raw_grids(model, list(recalibrate_with), config), config)
        anomaly.update(calibration([r.score for r in scores], [], config, good_peaks=[r.peak for r in scores]),
                       patch_scale_range=_scale_range(model))
    out_dir = Path(out_dir) if out_dir is not None else Path(model_dir)
    new_card = card.replace(name=name or (out_dir.name if out_dir != Path(model_dir) else card.name),
                            anomaly=anomaly, review_band=float(anomaly.get("review_band", card.review_band)))
    save_checkpoint(out_dir, model, new_card)
    logger.info("updated %s: bank %d → %d rows from %d new patches", card.name, before, anomaly["bank_rows"], patches)
    return AnomalyFitResult(out_dir, new_card, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------------ evaluation
PIXEL_EVAL_SIDE = 192


def _eval_shape(shape: tuple[int, int], side: int = PIXEL_EVAL_SIDE) -> tuple[int, int]:
    """A smaller shape with the same aspect for pixel metrics (bounds memory over hundreds of images)."""
    factor = min(1.0, side / max(shape))
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def evaluate_anomaly(
    model: PatchCore,
    config: AnomalyConfig,
    test: Sequence[Any],
    false_reject_rate: float = 0.01,
    overlay_dir: Path | None = None,
    worst: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Image AUROC, pixel AUROC (when masks exist), escape rate at a false-reject rate, and worst-case overlays.

    Args:
        model: a fitted PatchCore.
        config: its recipe (tiling, smoothing).
        test: ``data.anomaly_sets.EvalImage`` items (path, label, mask).
        false_reject_rate: operating point set on the test's own good images, for the escape rate.
        overlay_dir: where to save map-on-image overlays of the worst good and defective images.
        worst: overlays per kind.
        progress: called with (done, total) after each batch.

    Returns:
        Plain JSON-able metrics; raw scores are kept under ``scores`` in test order.
    """
    from inspect_app.data.anomaly_sets import read_mask
    from inspect_app.data.image_io import write_image
    from inspect_app.engine.explain import overlay

    scores: list[float] = []
    peaks: list[float] = []
    pixel_scores: list[np.ndarray] = []
    pixel_truth: list[np.ndarray] = []
    has_masks = any(item.mask is not None for item in test)
    start = time.perf_counter()
    for i in range(0, len(test), config.batch_size):
        chunk = test[i : i + config.batch_size]
        images = [read_image(item.path) for item in chunk]
        for item, image, raw in zip(chunk, images, score_raw(model, images, config), strict=True):
            scores.append(raw.score)
            peaks.append(raw.peak)
            if has_masks:
                shape = _eval_shape(image.shape[:2])
                pixel_truth.append(read_mask(item.mask, shape).ravel())
                pixel_scores.append(cv2_resize(raw.heatmap, shape).ravel())
        if progress is not None:
            progress(min(i + config.batch_size, len(test)), len(test))
    seconds = time.perf_counter() - start
    is_defect = np.array([item.is_defect for item in test])
    values = np.asarray(scores)
    good = values[~is_defect]
    report: dict[str, Any] = {
        "images": len(test), "good": int((~is_defect).sum()), "defective": int(is_defect.sum()),
        "image_auroc": roc_auc(is_defect, values), "image_auroc_interval": roc_auc_interval(is_defect, values),
        "costliest": costliest_samples(is_defect, values, [str(item.path) for item in test]),
        "scoring_images_per_s": len(test) / seconds,
    }
    if good.size:
        threshold = threshold_for_false_reject(good, false_reject_rate)
        report["operating_point"] = {
            "false_reject_rate": float((good >= threshold).mean()), "target_false_reject_rate": false_reject_rate,
            "escape_rate": float((values[is_defect] < threshold).mean()) if is_defect.any() else None,
        }
    if has_masks and pixel_truth:
        report["pixel_auroc"] = roc_auc(np.concatenate(pixel_truth), np.concatenate(pixel_scores))
    report["image_auroc_per_class"] = auroc_per_class([item.label for item in test], values, GOOD_CLASS)
    if overlay_dir is not None:
        overlay_dir = Path(overlay_dir)
        overlay_dir.mkdir(parents=True, exist_ok=True)
        scale = max(max(peaks), 1e-6)
        # Worst cases: defects scored lowest (escapes first) and good parts scored highest (false rejects first).
        defects = sorted(np.flatnonzero(is_defect), key=lambda k: values[k])[:worst]
        goods = sorted(np.flatnonzero(~is_defect), key=lambda k: -values[k])[:worst]
        written = []
        for kind, indices in (("defect", defects), ("good", goods)):
            for rank, k in enumerate(indices):
                item = test[int(k)]
                image = read_image(item.path)
                raw = score_raw(model, [image], config)[0]
                path = overlay_dir / f"worst_{kind}_{rank}_{item.label}_{item.path.stem}.png"
                write_image(path, overlay(image, np.clip(raw.heatmap / scale, 0.0, 1.0)))
                written.append(str(path))
        report["overlays"] = written
    report["scores"] = [float(v) for v in values]
    return report


def cv2_resize(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (height, width)."""
    return cv2.resize(heatmap.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
