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

This module renders a part (``synthesize``) and writes a data set (``generate_sample_data``); the surfaces are drawn
by ``data.synthetic_surfaces``, the defects by ``data.synthetic_defects``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_app.data.image_io import write_image
from inspect_app.data.synthetic_defects import draw_crack, draw_pit, draw_scratch, draw_stain
from inspect_app.data.synthetic_surfaces import SURFACE_MAKERS, SURFACES
from inspect_app.errors import DatasetError
from inspect_app.records import GOOD_CLASS

logger = logging.getLogger(__name__)

DEFECT_CLASSES: tuple[str, ...] = ("scratch", "crack", "pit", "stain")
CLASSES: tuple[str, ...] = (GOOD_CLASS, *DEFECT_CLASSES)
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
    cv = SURFACE_MAKERS[surface](rng, s, yy, xx)
    clean = cv.grey[:, :, None] * cv.tint[None, None, :]

    mul: np.ndarray = np.ones((s, s, 1), np.float32)
    add: np.ndarray = np.zeros((s, s, 1), np.float32)
    # Enough drawn pixels that the defect is really there (not clipped away at the part's edge).
    min_area = max(12, s * s // 4000) if label == "pit" else max(30, s * s // 1600)
    for _ in range(20):  # a defect may land mostly off the part's face; draw again until it shows
        if label == "scratch":
            m, a = draw_scratch(rng, cv, s)
        elif label == "crack":
            m, a = draw_crack(rng, cv, s)
        elif label == "pit":
            m, a = draw_pit(rng, cv, s, yy, xx)
        elif label == "stain":
            m, a = draw_stain(rng, cv, s, yy, xx)
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
