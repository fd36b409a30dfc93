"""Where a good-only model's scoring time goes, per image, beside its backbone's own throughput (issue 21).

Takes a saved good-only model (``inspect-app train DIR --kind anomaly``) and a folder of test images, and times each
stage over the same images, one after the other, on this machine's CPU threads:

* decode (read + decode the files), tiles (resize, standardise, cut), backbone (``PatchCore.embed`` in PyTorch and,
  when exported, in onnxruntime), neighbour search (the model's configured search on those descriptors), maps
  (upsample, stitch, smooth, image score), heatmap (fixed-unit normalisation + the evidence overlay);
* the whole ``Inspector.predict`` on decoded images (heatmaps for non-OK parts, as on a line), for the ``torch``
  and the ``onnx`` backend, in batches;
* the limit: the backbone alone on the same tiles. ``scoring / backbone`` is the ratio the issue's goal names.

Run it alone on the machine::

    flock /tmp/inspect_cpu.lock python benchmarks/good_only_speed.py --model MODEL --images DIR --limit 160
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from inspect_app.data.folders import list_images
from inspect_app.data.image_io import read_image
from inspect_app.engine.anomaly import load_anomaly_model
from inspect_app.engine.anomaly_scoring import (
    TileDescriptors,
    TileGrids,
    normalize,
    scores_from_grids,
    tile_images,
    to_device,
)
from inspect_app.engine.explain import overlay
from inspect_app.engine.infer import Inspector
from inspect_app.engine.onnx_backend import load_inspector
from inspect_app.engine.screening import refine_level, screen_descriptors
from inspect_app.models.export import ONNX_FILE, export_model


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _evenly(paths: list[Path], limit: int) -> list[Path]:
    if limit <= 0 or limit >= len(paths):
        return paths
    step = len(paths) / limit
    return [paths[int(i * step)] for i in range(limit)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a saved good-only model folder")
    parser.add_argument("--images", type=Path, required=True, help="test images (searched recursively)")
    parser.add_argument("--limit", type=int, default=160, help="images, evenly spaced over the sorted folder")
    parser.add_argument("--batch", type=int, default=16, help="images per Inspector.predict call")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime figures")
    args = parser.parse_args()

    if not args.images.is_dir() or not (args.model / "model_card.json").is_file():
        print(f"need a model folder and an image folder, got --model {args.model} --images {args.images}",
              file=sys.stderr)
        return 2
    paths = _evenly(sorted(list_images(args.images, recursive=True)), args.limit)
    if not paths:
        print(f"no images under {args.images}", file=sys.stderr)
        return 2
    model, card, config = load_anomaly_model(args.model, "cpu")
    n = len(paths)
    print(f"model {card.name} ({card.backbone}, tile {config.input_size}, resize {config.resize}, search "
          f"{model.search_in_use}, bank {model.memory_bank.shape[0]} x {model.feature_dim}); {n} images; "
          f"{torch.get_num_threads()} threads")

    images, t_decode = _timed(lambda: [read_image(p) for p in paths])
    (tiles, layout), t_tiles = _timed(lambda: tile_images(images, config))
    batches = [to_device(tiles[i : i + config.batch_size], torch.device("cpu"))
               for i in range(0, len(tiles), config.batch_size)]
    with torch.inference_mode():
        model.embed(batches[0])  # warm-up: first-call allocations are not the line's cost
        emb, t_backbone = _timed(lambda: [model.embed(b) for b in batches])
        grids, t_search = _timed(lambda: torch.cat([model.scale_patches(model.search_patches(e)) for e in emb]))
        raws, t_maps = _timed(lambda: scores_from_grids(TileGrids(grids, layout, int(tiles.shape[1])), config))
        # Screened search (engine.screening): the fast list for every part, the checked one for non-OK candidates.
        inspector = Inspector(args.model, device="cpu")
        refine_at = refine_level(inspector.threshold - inspector.review_band, float(card.anomaly["raw_center"]),
                              float(card.anomaly["raw_threshold"]))
        tile = int(tiles.shape[1])
        all_emb = torch.cat(emb)
        screened = TileDescriptors(all_emb, layout, tile)
        (_, refined), t_screen = _timed(lambda: screen_descriptors(model, screened, config, refine_at))
    center, threshold = float(card.anomaly["raw_map_center"]), float(card.anomaly["raw_map_threshold"])
    _, t_heat = _timed(lambda: [overlay(im, normalize(r.heatmap, center, threshold).astype(np.float32))
                                for im, r in zip(images, raws, strict=True)])
    t_onnx = None
    if not args.no_onnx:
        if not (args.model / ONNX_FILE).is_file():
            export_model(args.model)
        embedder = load_inspector(args.model, backend="onnx").model._embedder
        embedder(batches[0])
        _, t_onnx = _timed(lambda: [embedder(b) for b in batches])

    rows = [("decode", t_decode), ("resize + tiles", t_tiles), ("backbone (PyTorch)", t_backbone)]
    if t_onnx is not None:
        rows.append(("backbone (onnxruntime)", t_onnx))
    rows += [("neighbour search", t_search), (f"screened search + maps ({refined} of {n} parts refined)", t_screen),
             ("maps + score", t_maps), ("heatmap + overlay", t_heat)]
    print(f"{len(tiles)} tiles ({len(tiles) / n:.2f} per image)")
    print("| stage | ms per image | images/s |")
    print("| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {1000 * seconds / n:.1f} | {n / seconds:.1f} |")

    def predict_all(inspector: Inspector) -> float:
        inspector.predict(images[: args.batch])  # warm-up
        _, seconds = _timed(lambda: [inspector.predict(images[i : i + args.batch]) for i in range(0, n, args.batch)])
        return seconds

    limit_torch = n / t_backbone
    t_full = predict_all(Inspector(args.model, device="cpu"))
    print(f"backbone alone (PyTorch): {limit_torch:.1f} images/s")
    print(f"Inspector.predict, torch backend: {n / t_full:.1f} images/s "
          f"(scoring / backbone {(n / t_full) / limit_torch:.2f})")
    if t_onnx is not None:
        t_full_onnx = predict_all(load_inspector(args.model, backend="onnx"))
        print(f"backbone alone (onnxruntime): {n / t_onnx:.1f} images/s")
        print(f"Inspector.predict, onnx backend: {n / t_full_onnx:.1f} images/s "
              f"(scoring / onnx backbone {(n / t_full_onnx) / (n / t_onnx):.2f}, / PyTorch backbone "
              f"{(n / t_full_onnx) / limit_torch:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
