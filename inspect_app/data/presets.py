"""Preprocessing presets shared by training and inference, so that both see images the same way.

Images stay uint8 RGB numpy arrays until the very end; conversion to float happens on the model's device.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HxWx3 uint8 image to size x size (area filter when shrinking, to avoid aliasing)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interpolation = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def augment_inspection(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-preserving augmentation suited to inspection: flips, 90° turns, mild brightness/contrast.

    Parts on a line have no canonical orientation, but defect appearance must not be distorted, so no crops that could
    cut a small defect out and no strong colour changes.
    """
    out = image
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1, :]
    turns = int(rng.integers(0, 4))
    if turns:
        out = np.rot90(out, turns)
    if rng.random() < 0.8:
        gain = rng.uniform(0.85, 1.15)
        bias = rng.uniform(-12.0, 12.0)
        out = np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def to_chw_uint8(image: np.ndarray) -> np.ndarray:
    """HxWx3 → 3xHxW, contiguous, still uint8 (4x less to copy than float32)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))
