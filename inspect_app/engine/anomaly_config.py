"""Good-only model recipe (``AnomalyConfig``), its kind and class names, and the tile geometry it chooses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field, field_validator

from inspect_app.config.base import ConfigModel, choice
from inspect_app.config.settings import DEVICES
from inspect_app.data.tiling import TILING_MODES
from inspect_app.models.anomaly import DEFAULT_LAYERS
from inspect_app.models.nn_search import DEFAULT_EF_SEARCH, SEARCH_MODES
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)


ANOMALY_KIND = "patchcore"
ANOMALY_CLASS = "anomaly"
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


# Images whose long side is at least this many times their short one are tiled along it instead of squashed (a
# 500 x 1250 part squashed to a square loses 60 % of its length resolution, and with it small cracks); nearly square
# parts (bottle 1.0; Magnetic Tile's median 1.4, where keep_aspect was measured no better) keep one square.
AUTO_RESIZE = "auto"
KEEP_ASPECT_RATIO = 1.5
GEOMETRY_SAMPLE = 32


class AnomalyConfig(ConfigModel):
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

    what = "anomaly option"

    # lite2 over lite0 on Magnetic Tile: image AUROC 0.989 vs 0.987, escape rate at 1 % false reject 5.6 % vs 13 %.
    backbone: str = "efficientnet_lite2"
    layers: tuple[int, ...] = Field(default=DEFAULT_LAYERS, min_length=1)
    neighbourhood: int = Field(default=3, ge=1)
    input_size: int = Field(default=224, ge=1)
    resize: Annotated[str, choice(AUTO_RESIZE, *TILING_MODES)] = AUTO_RESIZE
    tile_scale: float = Field(default=1.0, ge=1)
    tile_overlap: float = Field(default=0.25, ge=0, lt=0.9)
    # Off by default: on Magnetic Tile (3 seeds) it moved image AUROC within the seed spread (0.9894 vs 0.9886 on
    # average) and doubled the escapes at 1 % false reject; it is for parts whose lighting varies across them.
    flat_field: float = Field(default=0.0, ge=0, le=1)
    standardize: bool = True
    flip_augment: bool = False
    coreset_ratio: float = Field(default=0.1, gt=0, le=1)
    coreset_dim: int = Field(default=64, ge=1)
    coreset_chunk: int = Field(default=16384, ge=1)
    coreset_oversample: float = 4.0
    blur_sigma: float = 4.0
    position_norm: bool = True
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_calibration_images: int = Field(default=300, ge=1)
    holdout_in_bank: bool = True
    score_top_fraction: float = Field(default=0.1, ge=0, le=1)
    false_reject_rate: float = Field(default=0.01, ge=0, lt=1)
    # A review_rate at or below false_reject_rate simply gives no band (its edge would not lie under the threshold).
    review_rate: float = Field(default=0.08, ge=0, lt=1)
    escape_rate: float = Field(default=0.01, ge=0, lt=1)
    nn_search: Annotated[str, choice(*SEARCH_MODES)] = "auto"
    hnsw_ef_search: int = Field(default=DEFAULT_EF_SEARCH, ge=1)
    batch_size: int = Field(default=16, ge=1)
    seed: int = 0
    device: Annotated[str, choice(*DEVICES)] = "auto"

    @field_validator("neighbourhood")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be a positive odd number")
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON/YAML (tuples as lists)."""
        data = self.model_dump()
        data["layers"] = list(self.layers)
        return data

    @classmethod
    def from_card(cls, train_config: dict[str, Any], **overrides: Any) -> AnomalyConfig:
        """The recipe saved in a model card; cards written before an option existed get the behaviour they had.

        Args:
            train_config: the card's ``train_config``.
            overrides: values that replace the saved ones (for example this process's ``device``).
        """
        return cls.from_dict({**LEGACY_CARD_DEFAULTS, **train_config, **overrides}, where="model card")


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


