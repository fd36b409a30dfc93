"""Deterministic synthetic inspection images: machined and ceramic parts, clean or with drawn defects.

Three kinds of surface, picked at random for every image whatever its class (so a model has to find the defect,
not the surface): brushed metal plate, a turned flange on a dark fixture, and a ceramic tile with an optional edge.
Four defect classes are drawn on top, each with a pixel mask of exactly where it was drawn:

* ``scratch``: thin, slightly curved bright or dark line, fading at its ends, sometimes with fainter companions;
* ``crack``: dark random-walk line that narrows towards its tip, with a few branches;
* ``pit``: 1-3 small dark blowholes, deepest in the middle, with a rim that catches the light;
* ``stain``: soft irregular blob (rust, oil film or dried residue) that shifts colour and brightness.

Each image has its own random stream derived from (seed, split, class, index), so the same seed gives the same
files, and asking for more images of one class leaves all others unchanged. Byte-identical output is guaranteed for
the same seed on the same numpy/OpenCV build.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_app.data.image_io import write_image
from inspect_app.errors import DatasetError
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)

DEFECT_CLASSES: tuple[str, ...] = ("scratch", "crack", "pit", "stain")
CLASSES: tuple[str, ...] = (GOOD_CLASS, *DEFECT_CLASSES)
SURFACES: tuple[str, ...] = ("brushed", "machined", "ceramic")
DEFAULT_PER_CLASS: Mapping[str, int] = {GOOD_CLASS: 60, "scratch": 30, "crack": 30, "pit": 30, "stain": 30}
DEFAULT_INCOMING = 40
INCOMING_GOOD_FRACTION = 0.7
JPEG_QUALITY = 92
MIN_SIZE = 64

# Streams of the per-image seed sequence: (seed, stream, class index, image index).
_TRAIN_STREAM = 0
_INCOMING_STREAM = 1
_SHUFFLE_STREAM = 2
_OUTPUTS = ("train", "masks", "incoming", "incoming_labels.csv", "README.md")
# Layer values below this are cut to exactly zero, so pixels outside the mask are exactly the clean part.
_CUTOFF = 0.03


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered part.

    Attributes:
        image: HxWx3 uint8 RGB, with the defect.
        clean: the same part (same noise) without the defect; equal to ``image`` outside ``mask``.
        mask: HxW uint8, 255 where the defect was drawn, 0 elsewhere (all 0 for ``good``).
        label: class name.
        surface: one of ``SURFACES``.
    """

    image: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    label: str
    surface: str


@dataclass(frozen=True)
class SampleDataSummary:
    """What ``generate_sample_data`` wrote.

    Attributes:
        out_dir: the folder written.
        seed: the seed used.
        size: image side in pixels.
        counts: training images per class.
        incoming: number of unlabeled images in ``incoming/``.
        incoming_counts: true class of those images, per class.
    """

    out_dir: Path
    seed: int
    size: int
    counts: dict[str, int]
    incoming: int
    incoming_counts: dict[str, int]

    @property
    def total_train(self) -> int:
        """Number of labelled training images."""
        return sum(self.counts.values())


@dataclass
class _Canvas:
    """A clean surface being rendered: grey level, colour tint, where defects may go, lighting direction."""

    grey: np.ndarray  # HxW float32, roughly 0..1
    tint: np.ndarray  # (3,) RGB multipliers
    region: np.ndarray  # HxW float32 0/1: the part's face, where defects are drawn
    light: float  # angle the light comes from, radians
    surface: str


def _blurred_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
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


def _brushed(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray) -> _Canvas:
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
    layers = np.dstack([streaks, np.broadcast_to(band[None, :], (m, m))]).astype(np.float32)
    angle = float(rng.uniform(-25.0, 25.0) + rng.choice([0.0, 90.0]))
    rot = cv2.getRotationMatrix2D((m / 2, m / 2), angle, 1.0)
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
    return _Canvas(grey.astype(np.float32), tint, region, light_angle, "brushed")


def _radial_profile(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """1-D smooth noise used as brightness against radius (lathe passes leave concentric bands)."""
    raw = rng.standard_normal(n + 64).astype(np.float32)
    k = np.exp(-0.5 * (np.arange(-16, 17, dtype=np.float32) / sigma) ** 2)
    smooth = np.convolve(raw, k / k.sum(), mode="same")[32:-32]
    return smooth / max(float(smooth.std()), 1e-6)


def _machined(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray) -> _Canvas:
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
    background = rng.uniform(0.1, 0.2) + 0.025 * _blurred_noise(rng, (s, s), 6.0) + 0.6 * light
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
    return _Canvas(grey.astype(np.float32), tint, region, light_angle, "machined")


def _ceramic(rng: np.random.Generator, s: int, yy: np.ndarray, xx: np.ndarray) -> _Canvas:
    """Matte ceramic tile: pale, mottled, fine grain, often with a bevelled edge and dark gap beyond it."""
    light, light_angle = _lighting(rng, s, yy, xx)
    surface = (
        rng.uniform(0.64, 0.76)
        + rng.uniform(0.015, 0.03) * _blurred_noise(rng, (s, s), rng.uniform(8.0, 16.0))
        + rng.uniform(0.008, 0.015) * _blurred_noise(rng, (s, s), 2.0)
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
        gap = rng.uniform(0.12, 0.25) + 0.02 * _blurred_noise(rng, (s, s), 3.0)
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
    return _Canvas(grey.astype(np.float32), tint, region * frame, light_angle, "ceramic")


_SURFACE_MAKERS: dict[str, Callable[..., _Canvas]] = {"brushed": _brushed, "machined": _machined, "ceramic": _ceramic}


def _pick_point(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A random (x, y) inside the region."""
    ys, xs = np.nonzero(region > 0)
    k = int(rng.integers(0, xs.size))
    return np.array([xs[k], ys[k]], np.float64) + rng.uniform(-0.5, 0.5, 2)


def _draw_path(canvas: np.ndarray, pts: np.ndarray, values: np.ndarray, thickness: np.ndarray) -> None:
    """Anti-aliased polyline with per-segment intensity (0..1) and thickness, at 1/16-pixel precision."""
    fixed = np.round(pts * 16).astype(np.int32)
    for i in range(len(fixed) - 1):
        colour = float(np.clip(values[i], 0.0, 1.0) * 255.0)
        p, q = tuple(int(v) for v in fixed[i]), tuple(int(v) for v in fixed[i + 1])
        cv2.line(canvas, p, q, colour, int(thickness[i]), cv2.LINE_AA, 4)


def _cut(layer: np.ndarray) -> np.ndarray:
    """Set faint values to exactly zero, so the mask (layer > 0) is exactly where the defect changed pixels."""
    return np.where(layer < _CUTOFF, 0.0, layer).astype(np.float32)


def _scratch(rng: np.random.Generator, cv: _Canvas, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Thin curved line, bright (glint) or dark (groove), fading at the ends; returns (multiplier, addend)."""
    centre = _pick_point(rng, cv.region)
    length = rng.uniform(0.3, 0.75) * s
    ang = rng.uniform(0.0, np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])
    n = np.array([-d[1], d[0]])
    canvas = np.zeros((s, s), np.uint8)
    lines = 1 + int(rng.random() < 0.35) * int(rng.integers(1, 3))
    for k in range(lines):
        shift = 0.0 if k == 0 else rng.uniform(3.0, 8.0) * rng.choice([-1.0, 1.0]) * k
        span = length * (1.0 if k == 0 else rng.uniform(0.3, 0.7))
        mid = centre + n * shift + d * (0.0 if k == 0 else rng.uniform(-0.2, 0.2) * length)
        bend = rng.uniform(-0.12, 0.12) * span
        p0, p2 = mid - d * span / 2, mid + d * span / 2
        p1 = mid + n * bend
        t = np.linspace(0.0, 1.0, 40)[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2 + rng.normal(0.0, 0.25, (40, 2))
        fade = np.sqrt(np.sin(np.pi * t[:, 0]).clip(0.0)) * (1.0 if k == 0 else rng.uniform(0.4, 0.7))
        width = np.full(40, 2 if k == 0 and rng.random() < 0.3 else 1)
        _draw_path(canvas, pts, 0.3 + 0.7 * fade, width)
    layer = _cut(canvas.astype(np.float32) / 255.0 * cv.region)
    cx, cy = np.clip(centre.astype(int), 0, s - 1)
    bright_ok = cv.grey[cy, cx] < 0.6
    sign = 1.0 if bright_ok and rng.random() < 0.65 else -1.0
    contrast = rng.uniform(0.25, 0.42)
    return np.ones((s, s), np.float32), (sign * contrast * layer).astype(np.float32)


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, steps: int, wiggle: float) -> np.ndarray:
    """Random-walk path that keeps a general heading (a crack follows stress, it does not curl up)."""
    pts = np.empty((steps + 1, 2))
    pts[0] = start
    theta = heading
    for i in range(steps):
        theta += 0.2 * (heading - theta) + rng.normal(0.0, wiggle)
        pts[i + 1] = pts[i] + 2.4 * np.array([np.cos(theta), np.sin(theta)])
    return pts


def _crack(rng: np.random.Generator, cv: _Canvas, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Dark branching random-walk line, wider at its origin; returns (multiplier, addend)."""
    canvas = np.zeros((s, s), np.uint8)
    steps = int(rng.integers(30, 80))
    main = _walk(rng, _pick_point(rng, cv.region), rng.uniform(0, 2 * np.pi), steps, rng.uniform(0.2, 0.4))
    _draw_path(canvas, main, np.ones(steps), np.ones(steps))
    headings = np.arctan2(np.diff(main[:, 1]), np.diff(main[:, 0]))
    # The crack opens wider near its origin: a second pass shifted sideways by under a pixel widens it smoothly
    # (a 2-px brush on a jagged path would leave blobs at every turn).
    wide = int(steps * rng.uniform(0.2, 0.6))
    if wide >= 2:
        side = np.stack([-np.sin(headings[:wide]), np.cos(headings[:wide])], axis=1)
        offset = main[:wide] + 0.8 * side
        _draw_path(canvas, offset, np.ones(wide), np.ones(wide))
    for _ in range(int(rng.integers(0, 4))):
        at = int(rng.integers(steps // 5, steps - 5))
        turn = rng.uniform(0.4, 1.1) * rng.choice([-1.0, 1.0])
        branch_steps = int(rng.integers(6, 25))
        branch = _walk(rng, main[at], headings[at] + turn, branch_steps, 0.35)
        _draw_path(canvas, branch, np.linspace(1.0, 0.6, branch_steps), np.ones(branch_steps))
    layer = _cut(canvas.astype(np.float32) / 255.0 * cv.region)
    darkness = rng.uniform(0.55, 0.85)
    return (1.0 - darkness * layer).astype(np.float32), np.zeros((s, s), np.float32)


def _pit(
    rng: np.random.Generator, cv: _Canvas, s: int, yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """1-3 blowholes: dark, deepest in the middle, rim lit on the side facing the light; (multiplier, addend)."""
    mul = np.ones((s, s), np.float32)
    add = np.zeros((s, s), np.float32)
    first = _pick_point(rng, cv.region)
    for k in range(int(rng.integers(1, 4))):
        if k == 0 or rng.random() > 0.6:
            centre = first if k == 0 else _pick_point(rng, cv.region)
        else:  # porosity often comes in clusters
            centre = first + rng.uniform(6.0, 22.0) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
        radius = rng.uniform(3.0, 7.0)
        aspect = rng.uniform(1.0, 1.3)
        rot = rng.uniform(0.0, np.pi)
        dx, dy = xx - centre[0], yy - centre[1]
        u = dx * np.cos(rot) + dy * np.sin(rot)
        v = (-dx * np.sin(rot) + dy * np.cos(rot)) * aspect
        dist = np.hypot(u, v)
        inside = np.clip(radius - dist + 0.5, 0.0, 1.0)
        depth = inside * (0.65 + 0.35 * np.clip(1.0 - (dist / radius) ** 2, 0.0, 1.0))
        facing = np.cos(np.arctan2(dy, dx) - cv.light)
        rim = np.exp(-(((dist - radius - 0.6) / 0.9) ** 2)) * np.clip(0.35 + 0.65 * facing, 0.0, 1.0)
        rim = np.where(dist > radius + 3.0, 0.0, rim)
        mul *= 1.0 - rng.uniform(0.6, 0.85) * _cut(depth * cv.region)
        add += rng.uniform(0.2, 0.4) * _cut(rim * cv.region)
    return mul, add


def _stain(
    rng: np.random.Generator, cv: _Canvas, s: int, yy: np.ndarray, xx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Soft irregular blob: rust, oil film or dried residue; returns per-channel (multiplier, addend)."""
    centre = _pick_point(rng, cv.region)
    radius = rng.uniform(12.0, 36.0)
    dx, dy = xx - centre[0], yy - centre[1]
    dist = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    outline = np.ones_like(theta)
    for k in range(2, 6):
        outline += rng.normal(0.0, 0.2 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    soft = rng.uniform(2.0, 6.0)
    body = np.clip((radius * outline - dist) / soft + 0.5, 0.0, 1.0)
    mottle = 0.65 + 0.35 * np.clip(0.5 + 0.3 * _blurred_noise(rng, (s, s), 3.0), 0.0, 1.0)
    strength = rng.uniform(0.55, 0.9)
    alpha = _cut(body * mottle * strength * cv.region)[:, :, None]
    kind = rng.choice(["rust", "oil", "residue"])
    if kind == "rust":
        target = np.array([1.12, 0.74, 0.45], np.float32) * rng.uniform(0.9, 1.05)
        return (1.0 + alpha * (target - 1.0)).astype(np.float32), np.zeros((s, s, 3), np.float32)
    if kind == "oil":
        target = np.array([0.55, 0.55, 0.62], np.float32) * rng.uniform(0.8, 1.0)
        return (1.0 + alpha * (target - 1.0)).astype(np.float32), np.zeros((s, s, 3), np.float32)
    # Dried residue leaves a darker 'coffee ring' where the drop's edge was, over a faint film inside.
    ring_w = rng.uniform(1.5, 4.0)
    edge = np.exp(-(((radius * outline - dist) / ring_w - 1.0) ** 2)) * mottle
    ring = _cut(edge * strength * cv.region)[:, :, None]
    film = np.array([0.86, 0.84, 0.74], np.float32)
    mul = (1.0 + alpha * (film - 1.0)) * (1.0 - 0.35 * ring)
    return mul.astype(np.float32), np.zeros((s, s, 3), np.float32)


def synthesize(label: str, rng: np.random.Generator, size: int = 256) -> SyntheticSample:
    """Render one part of class ``label`` (``good`` or one of ``DEFECT_CLASSES``).

    Args:
        label: class to draw.
        rng: the random stream; the output depends only on its state and ``size``.
        size: image side in pixels (at least ``MIN_SIZE``).

    Raises:
        ValueError: unknown label or too small size.
    """
    if label not in CLASSES:
        raise ValueError(f"unknown synthetic class {label!r}; expected one of {', '.join(CLASSES)}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {size}")
    s = int(size)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    surface = SURFACES[int(rng.integers(0, len(SURFACES)))]
    cv = _SURFACE_MAKERS[surface](rng, s, yy, xx)
    clean = cv.grey[:, :, None] * cv.tint[None, None, :]

    mul: np.ndarray = np.ones((s, s, 1), np.float32)
    add: np.ndarray = np.zeros((s, s, 1), np.float32)
    # Enough drawn pixels that the defect is really there (not clipped away at the part's edge).
    min_area = max(12, s * s // 4000) if label == "pit" else max(30, s * s // 1600)
    for _ in range(20):  # a defect may land mostly off the part's face; draw again until it shows
        if label == "scratch":
            m, a = _scratch(rng, cv, s)
        elif label == "crack":
            m, a = _crack(rng, cv, s)
        elif label == "pit":
            m, a = _pit(rng, cv, s, yy, xx)
        elif label == "stain":
            m, a = _stain(rng, cv, s, yy, xx)
        else:
            break
        mul = m if m.ndim == 3 else m[:, :, None]
        add = a if a.ndim == 3 else a[:, :, None]
        if int(((mul != 1.0) | (add != 0.0)).any(axis=2).sum()) >= min_area:
            break
    defect = clean * mul + add
    drawn = ((mul != 1.0) | (add != 0.0)).any(axis=2)

    # Sensor noise: mostly luminance, a little chroma, slightly correlated like a demosaiced camera image.
    luma = cv2.GaussianBlur(rng.standard_normal((s, s)).astype(np.float32), (0, 0), 0.6)
    chroma = rng.standard_normal((s, s, 3)).astype(np.float32)
    noise = rng.uniform(0.008, 0.014) * luma[:, :, None] + 0.003 * chroma

    def to_u8(x: np.ndarray) -> np.ndarray:
        return (np.clip(x + noise, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    mask = np.where(drawn, 255, 0).astype(np.uint8)
    return SyntheticSample(image=to_u8(defect), clean=to_u8(clean), mask=mask, label=label, surface=surface)


def _image_rng(seed: int, stream: int, class_index: int, index: int) -> np.random.Generator:
    """Independent random stream for one image."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, class_index, index]))


def _resolve_counts(per_class: Mapping[str, int] | int | None) -> dict[str, int]:
    """Per-class counts from the argument of ``generate_sample_data``, validated."""
    if per_class is None:
        return dict(DEFAULT_PER_CLASS)
    if isinstance(per_class, int):
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {per_class}")
        return dict.fromkeys(CLASSES, per_class)
    unknown = sorted(set(per_class) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown classes in per_class: {', '.join(unknown)}; expected some of {', '.join(CLASSES)}")
    bad = {k: v for k, v in per_class.items() if not isinstance(v, int) or v < 0}
    if bad:
        raise ValueError(f"per_class counts must be integers >= 0, got {bad}")
    return {c: int(per_class[c]) for c in CLASSES if per_class.get(c, 0) > 0}


def _incoming_labels(seed: int, count: int) -> list[str]:
    """True classes of the incoming set: ~70% good, the rest spread over the defects, in a seeded order."""
    n_good = round(count * INCOMING_GOOD_FRACTION)
    labels = [GOOD_CLASS] * n_good + [DEFECT_CLASSES[i % len(DEFECT_CLASSES)] for i in range(count - n_good)]
    order = np.random.default_rng(np.random.SeedSequence([seed, _SHUFFLE_STREAM])).permutation(count)
    return [labels[i] for i in order]


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Create ``out``, or refuse when it holds anything unless ``overwrite`` (then clear only our own outputs)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"sample data folder is a file, not a directory: {out}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"sample data folder is not empty: {out} (pass overwrite=True to replace it)")
        # Only what we generate is removed, so a mistyped folder never loses unrelated files.
        for name in _OUTPUTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _readme(seed: int, size: int, counts: Mapping[str, int], incoming_counts: Mapping[str, int]) -> str:
    """Text of the generated README (no timestamps, so it is as reproducible as the images)."""
    train_lines = "\n".join(f"| {c} | {n} |" for c, n in counts.items())
    incoming_lines = ", ".join(f"{c} {n}" for c, n in incoming_counts.items() if n)
    total_in = sum(incoming_counts.values())
    if dict(counts) == dict(DEFAULT_PER_CLASS) and total_in == DEFAULT_INCOMING and size == 256:
        command = f"inspect-app sample-data DIR --seed {seed}"
    else:
        command = (
            "python -c 'from inspect_app.data.synthetic import generate_sample_data as g; "
            f'g("DIR", seed={seed}, per_class={json.dumps(dict(counts))}, incoming={total_in}, size={size})\''
        )
    return f"""# Synthetic inspection sample data

Computer-generated images of industrial parts, made by `inspect_app.data.synthetic` so that the whole product
(training, inspection, dashboard) can be tried without a real camera or data set. Nothing here is a photograph.

Generated with seed {seed} at {size}x{size} pixels by:

    {command}

The same seed and sizes give byte-identical files with the same numpy/OpenCV build.

## Layout

- `train/<class>/NNNN.jpg`: labelled training images (JPEG quality {JPEG_QUALITY}), one folder per class.
- `masks/<class>/NNNN.png`: for each defect image, a mask of the same size and name: 255 where the defect was
  drawn, 0 elsewhere.
- `incoming/NNNN.jpg`: {total_in} unlabeled parts as a line would deliver them ({incoming_lines}).
- `incoming_labels.csv`: the true class of each incoming image (`file,label`, file relative to `incoming/`), for
  checking a model; inspection itself never reads it.

| class | training images |
|---|---|
{train_lines}

## What is drawn

Every image is one of three surfaces, chosen at random whatever its class: brushed metal plate, a turned flange on a
dark fixture, or a ceramic tile (often with a bevelled edge). Lighting, texture, tint and sensor noise vary.

- `good`: the clean surface.
- `scratch`: a thin, slightly curved bright or dark line fading at its ends, sometimes with fainter companions.
- `crack`: a dark random-walk line, wider at its origin, with branches.
- `pit`: one to three small dark blowholes with a rim that catches the light.
- `stain`: a soft irregular blob of rust, oil film or dried residue.
"""


def generate_sample_data(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    per_class: Mapping[str, int] | int | None = None,
    incoming: int = DEFAULT_INCOMING,
    size: int = 256,
    overwrite: bool = False,
) -> SampleDataSummary:
    """Write a complete synthetic data set: labelled training folders, defect masks, an incoming set and a README.

    Args:
        out_dir: folder to write; must be empty or absent unless ``overwrite``.
        seed: non-negative seed; the same seed gives the same files.
        per_class: images per class: a mapping (classes left out or 0 are skipped), one count for every class, or
            None for ``DEFAULT_PER_CLASS`` (good 60, each defect 30).
        incoming: number of unlabeled images (about 70% good).
        size: image side in pixels.
        overwrite: replace the outputs of an earlier run in a non-empty ``out_dir``; other files are kept.

    Returns:
        What was written.

    Raises:
        DatasetError: ``out_dir`` is non-empty (and not ``overwrite``) or is a file.
        ValueError: negative seed or incoming count, unknown class, bad count or size.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if incoming < 0:
        raise ValueError(f"incoming must be >= 0, got {incoming}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels, got {size}")
    counts = _resolve_counts(per_class)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    for label, count in counts.items():
        class_index = CLASSES.index(label)
        for i in range(count):
            sample = synthesize(label, _image_rng(seed, _TRAIN_STREAM, class_index, i), size)
            write_image(out / "train" / label / f"{i:04d}.jpg", sample.image, jpeg_quality=JPEG_QUALITY)
            if label != GOOD_CLASS:
                write_image(out / "masks" / label / f"{i:04d}.png", sample.mask)

    labels = _incoming_labels(seed, incoming)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["file", "label"])
    for i, label in enumerate(labels):
        sample = synthesize(label, _image_rng(seed, _INCOMING_STREAM, 0, i), size)
        name = f"{i:04d}.jpg"
        write_image(out / "incoming" / name, sample.image, jpeg_quality=JPEG_QUALITY)
        writer.writerow([name, label])
    if incoming:
        (out / "incoming_labels.csv").write_text(rows.getvalue(), encoding="utf-8", newline="")

    incoming_counts = {c: labels.count(c) for c in CLASSES}
    (out / "README.md").write_text(_readme(seed, size, counts, incoming_counts), encoding="utf-8", newline="")
    summary = SampleDataSummary(
        out_dir=out, seed=seed, size=size, counts=counts, incoming=incoming, incoming_counts=incoming_counts
    )
    logger.info(
        "wrote synthetic sample data to %s: %d training images %s, %d incoming",
        out,
        summary.total_train,
        counts,
        incoming,
    )
    return summary
