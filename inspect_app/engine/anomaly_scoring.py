"""Scoring with a fitted PatchCore: loading it, tiles, patch grids, maps, the image score and its normalisation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspect_app.data.tiling import (
    cut_tiles,
    flatten_field,
    resize_to,
    standardize_intensity,
    target_shape,
)
from inspect_app.engine.anomaly_config import (
    ANOMALY_KIND,
    AUTO_RESIZE,
    AnomalyConfig,
    auto_resize,
)
from inspect_app.engine.device import to_input
from inspect_app.errors import ConfigError
from inspect_app.models.anomaly import (
    PatchCore,
    gaussian_blur,
    stitch,
    upsample_patches,
)
from inspect_app.models.checkpoint import ModelCard, load_checkpoint

logger = logging.getLogger(__name__)


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


def to_device(tiles: np.ndarray, device: torch.device) -> torch.Tensor:
    """(T, t, t, 3) uint8 tiles → (T, 3, t, t) float [0, 1] on the device (convert after the 4x smaller copy)."""
    return to_input(torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2))), device)


def tile_images(images: Sequence[np.ndarray], config: AnomalyConfig) -> tuple[np.ndarray, list[tuple[int, Any, Any]]]:
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


@dataclass(frozen=True)
class TileDescriptors:
    """Patch descriptors of the tiles of some images (before the search), and where the tiles lie.

    Attributes:
        descriptors: (T, D, h, w) descriptors of all tiles, in image order.
        layout: per image (tile count, tile origins, resized image shape).
        tile: tile side in pixels.
    """

    descriptors: torch.Tensor
    layout: list[tuple[int, Any, Any]]
    tile: int


def per_tile_batch(
    images: Sequence[np.ndarray], config: AnomalyConfig, device: torch.device,
    step: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, list[tuple[int, Any, Any]], int]:
    """``step`` over all tiles of the images in batches of ``config.batch_size`` (tiles batched across images).

    Returns the concatenated outputs, the layout per image and the tile side.
    """
    tiles, layout = tile_images(images, config)
    out = torch.cat([step(to_device(tiles[i : i + config.batch_size], device))
                     for i in range(0, len(tiles), config.batch_size)])
    return out, layout, int(tiles.shape[1])


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
    model.configure_search(config.nn_search, config.hnsw_ef_search)
    distances = model.patch_scores if scaled else model.patch_distances
    return TileGrids(*per_tile_batch(images, config, model.mean.device, lambda batch: distances(batch, exclude)))


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


def load_anomaly_model(folder: Path, device: str | torch.device = "cpu") -> tuple[PatchCore, ModelCard, AnomalyConfig]:
    """A saved good-only model ready to score as the line scores: its recipe from the card, its search built."""
    model, card = load_checkpoint(Path(folder), device)
    if card.kind != ANOMALY_KIND:
        raise ConfigError(f"{folder} holds a {card.kind!r} model, not a {ANOMALY_KIND!r} one")
    if not isinstance(model, PatchCore):  # the card says good-only: weights of another model cannot score as one
        raise ConfigError(f"{folder} has a {ANOMALY_KIND!r} card but holds a {type(model).__name__}")
    device = model.mean.device
    config = AnomalyConfig.from_card(card.train_config, device=device.type)
    model.configure_search(config.nn_search, config.hnsw_ef_search)
    model.prepare_search()  # the graph is built (and checked) at load time, not on the first frame of a live line
    return model, card, config
