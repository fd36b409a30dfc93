"""Heatmaps that show *where* the defect evidence is, and overlays of them on the part image."""

from __future__ import annotations

import cv2
import numpy as np


def normalize_map(heatmap: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1] (a flat map becomes all zeros)."""
    values = heatmap.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (any size) over an HxWx3 uint8 RGB image, with a JET colour map."""
    h, w = image.shape[:2]
    resized = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(np.clip(resized * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, colored, alpha, 0.0)
