"""Synthetic defects drawn on a clean surface: scratch, crack, pit and stain, each as a multiply and an add layer."""

from __future__ import annotations

import cv2
import numpy as np

from inspect_app.data.synthetic_surfaces import Canvas, blurred_noise

# Layer values below this are cut to exactly zero, so pixels outside the mask are exactly the clean part.
_CUTOFF = 0.03


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


def draw_scratch(rng: np.random.Generator, cv: Canvas, s: int) -> tuple[np.ndarray, np.ndarray]:
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


def draw_crack(rng: np.random.Generator, cv: Canvas, s: int) -> tuple[np.ndarray, np.ndarray]:
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


def draw_pit(
    rng: np.random.Generator, cv: Canvas, s: int, yy: np.ndarray, xx: np.ndarray
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


def draw_stain(
    rng: np.random.Generator, cv: Canvas, s: int, yy: np.ndarray, xx: np.ndarray
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
    mottle = 0.65 + 0.35 * np.clip(0.5 + 0.3 * blurred_noise(rng, (s, s), 3.0), 0.0, 1.0)
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
