"""Resizing and tiling for patch-level anomaly models: every image becomes a set of equal square tiles.

Equal tiles batch together whatever the image size, and an image of any aspect ratio is covered without distorting
its texture: ``keep_aspect`` scales the shorter side to the tile size and covers the longer side with overlapping
tiles. ``scale`` > 1 processes large images with small defects at a higher resolution, again as tiles.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inspect_app.errors import ConfigError

TILING_MODES = ("square", "keep_aspect")
# Longest side allowed relative to the tile size: bounds the work for a pathological strip-like image.
MAX_SIDE_FACTOR = 8


def check_tiling_mode(mode: str) -> None:
    """Raise ConfigError unless ``mode`` is one of ``TILING_MODES``."""
    if mode not in TILING_MODES:
        raise ConfigError(f"resize mode {mode!r} is not one of {', '.join(TILING_MODES)}")


def target_shape(height: int, width: int, tile: int, mode: str = "square", scale: float = 1.0) -> tuple[int, int]:
    """Height and width an image is resized to before tiling.

    Args:
        height: image height in pixels.
        width: image width in pixels.
        tile: tile side in pixels (the model's input size).
        mode: ``square`` (tile*scale on both sides) or ``keep_aspect`` (shorter side tile*scale).
        scale: resolution factor; 2 processes the image as a 2x2 grid of tiles (square mode).
    """
    check_tiling_mode(mode)
    if scale < 1.0:
        raise ConfigError(f"tile scale {scale!r} must be at least 1")
    short = max(tile, round(tile * scale))
    if mode == "square":
        return short, short
    factor = short / min(height, width)
    cap = tile * MAX_SIDE_FACTOR
    return min(cap, max(short, round(height * factor))), min(cap, max(short, round(width * factor)))


def tile_origins(length: int, tile: int, overlap: float = 0.25) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``length`` pixels, overlapping by at least ``overlap``.

    The tiles are spread evenly, the last one ending exactly at ``length``.
    """
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    count = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def resize_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 image to (height, width), with an area filter when shrinking (no aliasing)."""
    h, w = image.shape[:2]
    if (h, w) == tuple(shape):
        return image
    shrinking = shape[0] < h or shape[1] < w
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def standardize_intensity(image: np.ndarray, mean: float = 110.0, std: float = 40.0) -> np.ndarray:
    """Same brightness and contrast for every image: its grey levels shifted and scaled to ``mean`` and ``std``.

    Lighting and exposure drift between parts and shifts; without this, a darker good part looks as unusual to a
    patch model as a defect does.
    """
    values = image.astype(np.float32)
    spread = max(float(values.std()), 1.0)
    out = (values - float(values.mean())) * (std / spread) + mean
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# Side the illumination estimate is computed at: shading is smooth, so a small copy finds it at a fraction of the
# cost of blurring a large image with a kernel a fifth of its size.
FIELD_SIDE = 64


def flatten_field(image: np.ndarray, sigma_share: float) -> np.ndarray:
    """Divide out slow shading: every pixel over the image's own heavily blurred copy, rescaled to its mean level.

    Uneven lighting, vignetting and a part's overall finish vary from part to part; a patch model sees each as a
    change of texture everywhere. Defects are small next to the blur, so they survive the division.

    Args:
        image: HxWx3 (or HxW) uint8.
        sigma_share: Gaussian sigma of the illumination estimate as a share of the image's shorter side, > 0.
    """
    if sigma_share <= 0:
        raise ConfigError(f"flat-field sigma share {sigma_share!r} must be positive")
    h, w = image.shape[:2]
    factor = min(1.0, FIELD_SIDE / min(h, w))
    small_shape = (max(1, round(w * factor)), max(1, round(h * factor)))
    small = cv2.resize(image, small_shape, interpolation=cv2.INTER_AREA).astype(np.float32)
    field = cv2.GaussianBlur(small, (0, 0), sigma_share * min(small.shape[:2]), borderType=cv2.BORDER_REFLECT)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR).reshape(image.shape)
    # The floor keeps near-black background (outside the part) from being amplified into noise.
    level = np.maximum(field, 1.0)
    out = image.astype(np.float32) / level * float(field.mean())
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def cut_tiles(
    image: np.ndarray, tile: int, mode: str = "square", scale: float = 1.0, overlap: float = 0.25
) -> tuple[np.ndarray, list[tuple[int, int]], tuple[int, int]]:
    """Resize an image for tiling and cut it into square tiles.

    Returns:
        tiles (T, tile, tile, 3) uint8, the (y, x) origin of each tile, and the resized (height, width).
    """
    shape = target_shape(image.shape[0], image.shape[1], tile, mode, scale)
    resized = resize_to(image, shape)
    origins = [(y, x) for y in tile_origins(shape[0], tile, overlap) for x in tile_origins(shape[1], tile, overlap)]
    tiles = np.stack([resized[y : y + tile, x : x + tile] for y, x in origins])
    return tiles, origins, shape
