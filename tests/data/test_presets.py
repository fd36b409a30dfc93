"""Preprocessing: letterbox keeps the aspect ratio, augmentation presets are seeded and keep shape and dtype."""

from __future__ import annotations

import numpy as np
import pytest

from inspect_app.data.presets import augment, fit_square, letterbox_square


def test_letterbox_keeps_aspect_ratio_on_black_padding() -> None:
    image = np.full((50, 100, 3), 200, np.uint8)
    out = letterbox_square(image, 64)
    assert out.shape == (64, 64, 3)
    assert (out[:16] == 0).all() and (out[-16:] == 0).all()  # 32 rows of content, centred
    assert (out[16:48] == 200).all()
    stretched = fit_square(image, 64, "resize")
    assert (stretched == 200).all()
    with pytest.raises(ValueError, match="'crop' is not one of resize, letterbox"):
        fit_square(image, 64, "crop")


@pytest.mark.parametrize("preset", ["none", "light", "inspection", "strong"])
def test_presets_are_seeded_and_keep_shape(preset: str) -> None:
    image = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    first = augment(image, np.random.default_rng(5), preset)
    again = augment(image, np.random.default_rng(5), preset)
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, again)
    if preset == "none":
        assert np.array_equal(first, image)
    else:
        outputs = {augment(image, np.random.default_rng(s), preset).tobytes() for s in range(8)}
        assert len(outputs) > 1


def test_unknown_preset_is_named() -> None:
    with pytest.raises(ValueError, match=r"'heavy'.*none, light, inspection, strong"):
        augment(np.zeros((8, 8, 3), np.uint8), np.random.default_rng(0), "heavy")
