"""Screened scoring of good-only models: a fast search for every patch, the checked search only where it can matter.

An approximate nearest-neighbour search returns the distance to *some* bank row, so it can only over-estimate a
patch's distance, never under-estimate it; the smoothing and the top-fraction image score only add and average with
positive weights, so an image's screened score is never below the one exact search would give. A part whose screened
score is already below the lowest non-OK level is therefore OK under exact search too, and needs nothing more. Only
the others (REVIEW/NG candidates, a few per cent of a line's parts) are searched again with the model's checked
candidate list, keeping the smaller of the two distances per patch (both are upper bounds of the exact one).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from inspect_app.engine.anomaly_config import AnomalyConfig
from inspect_app.engine.anomaly_scoring import (
    RawScore,
    TileDescriptors,
    TileGrids,
    denormalize,
    per_tile_batch,
    score_raw,
    scores_from_grids,
)
from inspect_app.models.anomaly import PatchCore
from inspect_app.models.nn_search import SCREEN_EF_SEARCH

logger = logging.getLogger(__name__)


def refine_level(score: float, center: float, threshold: float) -> float:
    """The raw score from which parts are searched again: ``denormalize`` of ``score``, ±inf outside (0, 1)."""
    if score <= 0.0:
        return -math.inf
    if score >= 1.0:
        return math.inf
    return denormalize(score, center, threshold)


@torch.inference_mode()
def score_screened(
    model: PatchCore, images: Sequence[np.ndarray], config: AnomalyConfig, refine_at: float
) -> list[RawScore]:
    """Raw image scores and smoothed maps, as ``score_raw``, searching most parts with the fast screening list.

    Args:
        model: a fitted PatchCore.
        images: HxWx3 uint8 RGB images.
        config: its recipe (tiling, search, smoothing).
        refine_at: raw score from which a part is not OK (the REVIEW edge, or the threshold without a band); parts
            screened at or above it are searched again with the checked candidate list.
    """
    if not images:
        return []
    model.configure_search(config.nn_search, config.hnsw_ef_search)
    index = model.prepare_search()
    if index is None or index.ef_search <= SCREEN_EF_SEARCH:
        # Exact search (an accelerator, a small bank, a graph that failed its check) or no faster list to screen with.
        return score_raw(model, images, config)
    descriptors = TileDescriptors(*per_tile_batch(images, config, model.mean.device, model.descriptors))
    raws, refined = screen_descriptors(model, descriptors, config, refine_at)
    logger.debug("screened %d parts at ef %d, %d searched again at ef %d", len(images), SCREEN_EF_SEARCH, refined,
                 index.ef_search)
    return raws


def screen_descriptors(
    model: PatchCore, descriptors: TileDescriptors, config: AnomalyConfig, refine_at: float
) -> tuple[list[RawScore], int]:
    """Scores from tile descriptors, and how many parts were refined.

    The search step of ``score_screened`` alone (the benchmark times it apart from the backbone).
    """
    emb, layout, tile = descriptors.descriptors, descriptors.layout, descriptors.tile
    grids = model.scale_patches(model.search_patches(emb, ef_search=SCREEN_EF_SEARCH))
    raws = scores_from_grids(TileGrids(grids, layout, tile), config)
    starts = np.cumsum([0, *(count for count, _, _ in layout)])
    flagged = [i for i, raw in enumerate(raws) if raw.score >= refine_at]
    if flagged:
        rows = torch.cat([torch.arange(int(starts[i]), int(starts[i + 1])) for i in flagged]).to(grids.device)
        checked = torch.minimum(grids[rows], model.scale_patches(model.search_patches(emb[rows])))
        refined = scores_from_grids(TileGrids(checked, [layout[i] for i in flagged], tile), config)
        for i, raw in zip(flagged, refined, strict=True):
            raws[i] = raw
    return raws, len(flagged)
