"""Memory check for good-only fitting at plant scale: 10,000 good images with the default anomaly recipe.

The images are made from the Magnetic Tile training files (``differnet_train_good.txt``): each of the 761 appears in
up to 14 distinct variants (mirrors, half turn, crops, brightness), written once to ``--work``. Prints the peak
resident memory of building the memory bank (the phase whose memory grows with the data; the threshold step scores
a fixed number of images), the bank size and the time. Run it alone on the machine::

    python benchmarks/anomaly_memory_10k.py --work /tmp/mt10k
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2
import numpy as np
import torch
from anomaly_magnetic_tile import DEFAULT_ROOT  # the sibling benchmark script: same data-set lookup

from inspect_app.data.anomaly_sets import magnetic_tile
from inspect_app.data.image_io import read_image, write_image
from inspect_app.engine.anomaly_bank import extend_bank, read_batches
from inspect_app.engine.anomaly_config import AnomalyConfig
from inspect_app.models.anomaly import PatchCore
from inspect_app.models.factory import backbone_normalization


def variant(image: np.ndarray, k: int) -> np.ndarray:
    """The k-th distinct variant of an image (k = 0 is the image itself)."""
    flips = (image, image[:, ::-1], image[::-1], image[::-1, ::-1])
    out = flips[k % 4]
    step = k // 4
    if step == 1:  # a 90 % crop
        h, w = out.shape[:2]
        out = out[h // 20 : h - h // 20, w // 20 : w - w // 20]
    elif step == 2:
        out = cv2.convertScaleAbs(out, alpha=1.1, beta=-8)
    elif step == 3:
        out = cv2.convertScaleAbs(out, alpha=0.9, beta=10)
    return np.ascontiguousarray(out)


def make_images(root: Path, work: Path, count: int) -> list[Path]:
    """Write ``count`` distinct good images into ``work`` (kept between runs)."""
    train = list(magnetic_tile(root).train_good)
    paths = []
    for i in range(count):
        path = work / f"good_{i:05d}.png"
        if not path.is_file():
            write_image(path, variant(read_image(train[i % len(train)]), i // len(train)))
        paths.append(path)
    return paths


def main() -> int:
    """Make the images, fit, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--work", type=Path, default=Path("var/bench/mt10k"))
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    paths = make_images(args.root, args.work / "images", args.count)
    print(f"images: {len(paths)} ready in {time.perf_counter() - start:.0f} s", flush=True)
    config = AnomalyConfig(device="cpu")
    mean, std = backbone_normalization(config.backbone)
    model = PatchCore(config.backbone, mean, std, config.layers, config.neighbourhood)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    fitted = extend_bank(model, read_batches(paths, config.batch_size), config)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"config: backbone {config.backbone}, coreset {config.coreset_ratio}, input {config.input_size}")
    print(f"patches_seen: {fitted.patches}")
    print(f"bank_rows: {model.memory_bank.shape[0]}")
    print(f"bank_mb: {model.bank_bytes / 2**20:.1f}")
    print(f"bank_s: {seconds:.0f}")
    print(f"peak_rss_mb_before_bank: {before:.0f}")
    print(f"peak_rss_mb: {peak:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
