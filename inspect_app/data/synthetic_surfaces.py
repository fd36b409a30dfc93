"""Clean synthetic surfaces: brushed metal plate, a turned flange on a dark fixture, a ceramic tile with its edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

SURFACES: tuple[str, ...] = ("brushed", "machined", "ceramic")


@dataclass
class Canvas:
    """A clean surface being rendered: grey level, colour tint, where defects may go, lighting direction."""

    grey: np.ndarray  # HxW float32, roughly 0..1
    tint: np.ndarray  # (3,) RGB multipliers
    region: np.ndarray  # HxW float32 0/1: the part's face, where defects are drawn
    light: float  # angle the light comes from, radians
    surface: str


def blurred_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise rescaled to unit standard deviation."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _lighting(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, float]:
    """A gentle linear gradient plus vignette, and the angle the light comes from."""
    light = float(rng.uniform(0.0, 2.0 * np.pi))
    strength = rng.uniform(0.04, 0.09)
    u = ((xx - s / 2) * -np.cos(light) + (yy - s / 2) * -np.sin(light)) / s
    r2 = ((xx - s / 2) ** 2 + (yy - s / 2) ** 2) / (s * s)
    return (-strength * u * 2.0 - rng.uniform(0.05, 0.12) * r2).astype(np.float32), light


def _brushed(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray) -> Canvas:
    """Brushed metal plate: long directional streaks, an anisotropic highlight band across them."""
    m = int(s * 1.5) + 2
    noise = rng.standard_normal((m, m)).astype(np.float32)
    long_k = int(rng.integers(41, 121))
    coarse = cv2.blur(noise, (long_k, 1))  # ksize is (width, height): averaging along x makes horizontal streaks
    fine = cv2.blur(noise, (11, 1))
    streaks = 0.75 * coarse / coarse.std() + 0.25 * fine / fine.std()
    band_pos = rng.uniform(0.3, 0.7) * m
    band_w = rng.uniform(0.12, 0.3) * s
    band = np.exp(-(((np.arange(m, dtype=np.float32) - band_pos) / band_w) ** 2))
    # The highlight of brushed metal runs across the brushing direction, so it varies along x like the streaks.
    layers: np.ndarray = np.dstack([streaks, np.broadcast_to(band[None, :], (m, m))]).astype(np.float32)
    angle = float(rng.uniform(-25.0, 25.0) + rng.choice([0.0, 90.0]))
    rot: np.ndarray = cv2.getRotationMatrix2D((m / 2, m / 2), angle, 1.0)
    rot[:, 2] -= (m - s) / 2  # land the centre of the big canvas on the centre of the output
    layers = cv2.warpAffine(layers, rot, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    light, light_angle = _lighting(rng, s, yy, xx)
    grey = (
        rng.uniform(0.42, 0.6)
        + rng.uniform(0.03, 0.055) * layers[:, :, 0]
        + rng.uniform(0.05, 0.14) * layers[:, :, 1]
        + light
    )
    tint = np.array([0.97, 1.0, 1.04], np.float32) * rng.uniform(0.98, 1.02, 3).astype(np.float32)
    margin = int(0.06 * s)
    region = np.zeros((s, s), np.float32)
    region[margin:-margin, margin:-margin] = 1.0
    return Canvas(grey.astype(np.float32), tint, region, light_angle, "brushed")


def _radial_profile(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """1-D smooth noise used as brightness against radius (lathe passes leave concentric bands)."""
    raw = rng.standard_normal(n + 64).astype(np.float32)
    k = np.exp(-0.5 * (np.arange(-16, 17, dtype=np.float32) / sigma) ** 2)
    smooth = np.convolve(raw, k / k.sum(), mode="same")[32:-32]
    return smooth / max(float(smooth.std()), 1e-6)


def _machined(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray) -> Canvas:
    """Turned flange with a bore on a dark fixture: concentric tool marks, bow-tie specular, bright chamfers."""
    cx, cy = s / 2 + rng.uniform(-0.04, 0.04, 2) * s
    outer = rng.uniform(0.41, 0.47) * s
    bore = rng.uniform(0.09, 0.15) * s
    cham_out = rng.uniform(3.0, 6.0)
    cham_in = rng.uniform(2.0, 4.0)
    dx, dy = xx - cx, yy - cy
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    light, light_angle = _lighting(rng, s, yy, xx)

    grid = np.arange(int(outer) + 80, dtype=np.float32)
    bands = np.interp(r, grid, _radial_profile(rng, grid.size, rng.uniform(1.0, 3.0))).astype(np.float32)
    period = rng.uniform(3.0, 5.0)
    marks = np.sin(2 * np.pi * r / period + rng.uniform(0, 2 * np.pi))
    bowtie = np.cos(2.0 * (theta - rng.uniform(0, np.pi)))
    face = (
        rng.uniform(0.45, 0.6)
        + rng.uniform(0.02, 0.04) * bands
        + rng.uniform(0.008, 0.018) * marks
        + rng.uniform(0.05, 0.11) * bowtie
        + light
    )
    facing = np.cos(theta - light_angle)
    chamfer_outer = 0.7 + 0.15 * facing + 0.02 * bands
    chamfer_inner = 0.55 - 0.2 * facing  # the bore's chamfer faces the other way, so its lit side is opposite
    background = rng.uniform(0.1, 0.2) + 0.025 * blurred_noise(rng, (s, s), 6.0) + 0.6 * light
    hole = rng.uniform(0.04, 0.09) + 0.03 * (r / max(bore, 1.0))

    # Soft 1-px edges instead of hard thresholds keep the part outline anti-aliased like a real camera image.
    in_part = np.clip(outer - r + 0.5, 0.0, 1.0)
    in_face = np.clip(outer - cham_out - r + 0.5, 0.0, 1.0)
    out_bore_cham = np.clip(r - bore - cham_in + 0.5, 0.0, 1.0)
    out_bore = np.clip(r - bore + 0.5, 0.0, 1.0)
    ring = chamfer_inner * (1 - out_bore_cham) + face * out_bore_cham
    part = hole * (1 - out_bore) + ring * out_bore
    part = chamfer_outer * (1 - in_face) + part * in_face
    grey = background * (1 - in_part) + part * in_part

    region = ((r > bore + cham_in + 4) & (r < outer - cham_out - 4)).astype(np.float32)
    tints = ([1.0, 1.0, 1.02], [1.02, 1.0, 0.97], [1.06, 0.99, 0.86])  # steel, aluminium, brass-ish
    tint = np.array(tints[int(rng.choice(3, p=[0.45, 0.4, 0.15]))], np.float32)
    return Canvas(grey.astype(np.float32), tint, region, light_angle, "machined")


def _ceramic(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray) -> Canvas:
    """Matte ceramic tile: pale, mottled, fine grain, often with a bevelled edge and dark gap beyond it."""
    light, light_angle = _lighting(rng, s, yy, xx)
    surface = (
        rng.uniform(0.64, 0.76)
        + rng.uniform(0.015, 0.03) * blurred_noise(rng, (s, s), rng.uniform(8.0, 16.0))
        + rng.uniform(0.008, 0.015) * blurred_noise(rng, (s, s), 2.0)
        + 0.7 * light
    )
    region = np.ones((s, s), np.float32)
    grey = surface
    if rng.random() < 0.65:
        side = float(rng.integers(0, 4)) * np.pi / 2 + np.deg2rad(rng.uniform(-4.0, 4.0))
        nx, ny = np.cos(side), np.sin(side)  # normal pointing into the tile
        offset = rng.uniform(0.05, 0.18) * s
        # The edge line sits ``offset`` in from the image border the normal points away from.
        px = s / 2 - nx * (s / 2 - offset)
        py = s / 2 - ny * (s / 2 - offset)
        dist = (xx - px) * nx + (yy - py) * ny
        bevel = rng.uniform(2.0, 4.0)
        gap = rng.uniform(0.12, 0.25) + 0.02 * blurred_noise(rng, (s, s), 3.0)
        bevel_tone = surface + 0.12 * np.exp(-(((dist - bevel / 2) / (bevel / 2 + 0.5)) ** 2))
        in_tile = np.clip(dist + 0.5, 0.0, 1.0)
        in_face = np.clip(dist - bevel + 0.5, 0.0, 1.0)
        grey = gap * (1 - in_tile) + (bevel_tone * (1 - in_face) + surface * in_face) * in_tile
        region = (dist > bevel + 4).astype(np.float32)
    margin = int(0.05 * s)
    frame = np.zeros((s, s), np.float32)
    frame[margin:-margin, margin:-margin] = 1.0
    tints = ([1.03, 1.0, 0.93], [1.0, 1.0, 1.0], [1.02, 0.99, 0.97])  # ivory, white alumina, warm grey
    tint = np.array(tints[int(rng.integers(0, 3))], np.float32)
    return Canvas(grey.astype(np.float32), tint, region * frame, light_angle, "ceramic")


SURFACE_MAKERS: dict[str, Callable[..., Canvas]] = {"brushed": _brushed, "machined": _machined, "ceramic": _ceramic}
