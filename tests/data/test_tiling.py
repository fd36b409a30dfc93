"""Tiling for patch models: shapes, coverage with overlap, aspect handling, intensity standardisation, flat field."""

from __future__ import annotations

import numpy as np
import pytest

from inspect_app.data.tiling import cut_tiles, flatten_field, standardize_intensity, target_shape, tile_origins
from inspect_app.errors import ConfigError


def test_square_mode_ignores_aspect_and_scale_multiplies() -> None:
    assert target_shape(300, 120, 64) == (64, 64)
    assert target_shape(300, 120, 64, scale=2.0) == (128, 128)


def test_keep_aspect_scales_the_shorter_side() -> None:
    assert target_shape(300, 120, 64, mode="keep_aspect") == (160, 64)
    assert target_shape(120, 300, 64, mode="keep_aspect") == (64, 160)


@pytest.mark.parametrize("length", [64, 65, 100, 160, 333])
def test_tiles_cover_the_whole_length_with_overlap(length: int) -> None:
    origins = tile_origins(length, 64, overlap=0.25)
    assert origins[0] == 0 and origins[-1] + 64 == max(length, 64)
    covered = np.zeros(max(length, 64), bool)
    for o in origins:
        covered[o : o + 64] = True
    assert covered.all()
    steps = np.diff(origins)
    assert (steps <= 48).all() and (steps > 0).all()


def test_cut_tiles_returns_equal_tiles_from_the_resized_image() -> None:
    image = np.random.default_rng(0).integers(0, 256, (90, 200, 3), dtype=np.uint8)
    tiles, origins, shape = cut_tiles(image, 64, mode="keep_aspect")
    assert shape == (64, 142)
    assert tiles.shape == (len(origins), 64, 64, 3) and len(origins) == 3
    assert all(y == 0 for y, _ in origins)


def test_bad_mode_and_scale_are_named() -> None:
    with pytest.raises(ConfigError, match=r"'stretch'.*square, keep_aspect"):
        target_shape(10, 10, 8, mode="stretch")
    with pytest.raises(ConfigError, match=r"0\.5"):
        target_shape(10, 10, 8, scale=0.5)


def test_standardize_intensity_equalises_brightness_and_contrast() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, (32, 32, 1)).repeat(3, axis=2)
    dark = np.clip(60 + 10 * base, 0, 255).astype(np.uint8)
    bright = np.clip(150 + 30 * base, 0, 255).astype(np.uint8)
    a, b = standardize_intensity(dark), standardize_intensity(bright)
    assert abs(float(a.mean()) - float(b.mean())) < 1.5
    assert abs(float(a.std()) - float(b.std())) < 1.5
    assert np.corrcoef(a[..., 0].ravel(), b[..., 0].ravel())[0, 1] > 0.99


def _shaded_part(height: int = 120, width: int = 200) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Textured part lit from the left (grey level x0.4 on the right edge) with a small dark pit in the middle."""
    rng = np.random.default_rng(3)
    texture = 120 + 12 * rng.normal(0, 1, (height, width))
    pit = (slice(55, 63), slice(96, 104))
    texture[pit] -= 60
    light = np.linspace(1.0, 0.4, width)[None, :]
    image = np.clip(texture * light, 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2), pit


def test_flatten_field_removes_shading_and_keeps_a_small_defect() -> None:
    image, pit = _shaded_part()
    flat = flatten_field(image, 0.15)
    assert flat.shape == image.shape and flat.dtype == np.uint8

    def left_right(a: np.ndarray) -> float:
        return float(a[:, :30].mean()) / float(a[:, -30:].mean())

    assert left_right(image) > 2.0
    assert abs(left_right(flat) - 1.0) < 0.1
    # The pit is far smaller than the blur: it stays a pit, darker than the surface around it.
    around = flat[45:73, 86:114].astype(float)
    assert float(flat[pit].mean()) < 0.75 * float(np.median(around))


def test_flatten_field_takes_grey_images_and_rejects_a_bad_sigma() -> None:
    image, _ = _shaded_part()
    grey = image[..., 0]
    assert flatten_field(grey, 0.15).shape == grey.shape
    with pytest.raises(ConfigError, match=r"-0\.1"):
        flatten_field(grey, -0.1)
