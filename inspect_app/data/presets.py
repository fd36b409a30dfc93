"""Preprocessing presets shared by training and inference, so that both see images the same way.

Images stay uint8 RGB numpy arrays until the very end; conversion to float happens on the model's device.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspect_app.config.recipes import RESIZE_MODES


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


def letterbox_square(image: np.ndarray, size: int) -> np.ndarray:
    """Fit an HxWx3 uint8 image into size x size keeping its aspect ratio, centred on black padding.

    Elongated parts (tiles, strips) keep their defect shapes instead of being squashed.
    """
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def fit_square(image: np.ndarray, size: int, mode: str = "resize") -> np.ndarray:
    """Resize (``resize``) or letterbox (``letterbox``) to size x size; the one entry point for both modes."""
    if mode == "letterbox":
        return letterbox_square(image, size)
    if mode == "resize":
        return resize_square(image, size)
    raise ValueError(f"resize mode {mode!r} is not one of {', '.join(RESIZE_MODES)}")


def _small_affine(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate by up to ±10°, scale by ±8 % and shift by up to 4 % with reflected borders (no black wedges)."""
    h, w = image.shape[:2]
    angle = float(rng.uniform(-10.0, 10.0))
    scale = float(rng.uniform(0.92, 1.08))
    matrix: np.ndarray = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    matrix[:, 2] += rng.uniform(-0.04, 0.04, size=2) * (w, h)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def augment(image: np.ndarray, rng: np.random.Generator, preset: str = "inspection") -> np.ndarray:
    """Apply an augmentation preset to an HxWx3 uint8 image.

    Presets: ``none``; ``light`` (flips, 90° turns); ``inspection`` (light + mild brightness/contrast, as
    ``augment_inspection``); ``strong`` (inspection + small affine, Gaussian blur, Gaussian noise). None of them crops,
    so a small defect is never cut out of the picture.

    Raises:
        ValueError: unknown preset (the message lists the allowed ones).
    """
    if preset == "none":
        return image
    if preset == "light":
        out = image
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out[::-1, :]
        return np.ascontiguousarray(np.rot90(out, int(rng.integers(0, 4))))
    if preset == "inspection":
        return augment_inspection(image, rng)
    if preset == "strong":
        out = augment_inspection(image, rng)
        if rng.random() < 0.5:
            out = _small_affine(out, rng)
        if rng.random() < 0.2:
            out = cv2.GaussianBlur(out, (3, 3), float(rng.uniform(0.3, 1.0)))
        if rng.random() < 0.2:
            noise = rng.normal(0.0, float(rng.uniform(2.0, 6.0)), out.shape).astype(np.float32)
            out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(out)
    raise ValueError(f"augmentation preset {preset!r} is not one of none, light, inspection, strong")
