"""Pipeline benchmarks (issue 6): full pipeline vs model-only throughput, onnxruntime vs PyTorch, live latency.

Run from the repository root, alone on the machine (the CPU lock keeps other heavy jobs out):

    flock /tmp/inspect_cpu.lock python benchmarks/pipeline_bench.py --images 2000

Everything is written under ``--work`` (default /tmp/inspect_bench_issue6), never into the repository: synthetic
256 px JPEG parts from ``inspect_app.data.synthetic`` and a 224 px EfficientNet-Lite0 checkpoint whose head is fitted
in seconds on pooled features of synthetic training images (a realistic mix of OK and NG decisions, so the NG files
and heatmaps cost what they cost on a line). Prints every figure; copy them into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from inspect_app.data.folders import list_images, scan_class_folders
from inspect_app.data.image_io import read_image
from inspect_app.data.presets import resize_square, to_chw_uint8
from inspect_app.data.sources import VideoSource, folder_source
from inspect_app.data.synthetic import CLASSES, generate_sample_data
from inspect_app.engine.infer import Inspector
from inspect_app.engine.onnx_backend import OnnxInspector
from inspect_app.engine.pipeline import Pipeline
from inspect_app.engine.sinks import CsvSink, DatabaseSink, HeatmapFileSink
from inspect_app.models.checkpoint import ModelCard, build_model, save_checkpoint
from inspect_app.models.export import export_model
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository


def make_data(work: Path, images: int) -> Path:
    """Synthetic training parts (20 per class) and ``images`` incoming parts, generated once and reused."""
    data = work / "data"
    if data.is_dir() and len(list_images(data / "incoming")) == images:
        return data
    shutil.rmtree(data, ignore_errors=True)
    t0 = time.perf_counter()
    generate_sample_data(data, seed=6, per_class=20, incoming=images, size=256)
    print(f"generated {images} incoming images in {time.perf_counter() - t0:.0f} s")
    return data


def make_model(work: Path, data: Path, input_size: int = 224) -> Path:
    """A checkpoint whose linear head is fitted on frozen pooled features (softmax regression, full batch)."""
    out = work / "model"
    if (out / "model_card.json").is_file():
        return out
    card = ModelCard(
        name="bench-issue6", kind="classifier", backbone="efficientnet_lite0", classes=CLASSES,
        input_size=input_size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    )
    torch.manual_seed(0)
    model = build_model(card, pretrained=True).eval()
    items = scan_class_folders(data / "train")
    batch = np.stack([to_chw_uint8(resize_square(read_image(p), input_size)) for p, _ in items])
    labels = torch.tensor([CLASSES.index(label) for _, label in items])
    with torch.no_grad():
        feats = model.net.forward_features(model.normalize(torch.from_numpy(batch).float() / 255)).mean(dim=(2, 3))
    head = torch.nn.Linear(feats.shape[1], len(CLASSES))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(feats), labels)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.net.classifier.weight.copy_(head.weight)
        model.net.classifier.bias.copy_(head.bias)
    print(f"fitted the head on {len(items)} training images (train loss {loss.item():.3f})")
    return save_checkpoint(out, model, card)


def images_per_s(fn, count: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    return count / seconds, seconds


def model_only(inspector: Inspector, images: list[np.ndarray], batch: int) -> None:
    for start in range(0, len(images), batch):
        inspector.predict(images[start : start + batch])


def run_pipeline(inspector: Inspector, data: Path, work: Path, batch: int) -> tuple[float, float, dict, dict]:
    out = work / "pipeline_out"
    shutil.rmtree(out, ignore_errors=True)
    repository = Repository(Database.open(f"sqlite:///{out / 'bench.db'}"))
    sinks = [HeatmapFileSink(out / "ng"), CsvSink(out / "results.csv"), DatabaseSink(repository)]
    source = folder_source(data / "incoming")
    pipeline = Pipeline([source], inspector, sinks, name="bench", max_batch=batch, max_wait_ms=50, queue_size=64)
    t0 = time.perf_counter()
    result = pipeline.run(handle_signals=False)
    seconds = time.perf_counter() - t0
    decided = sum(result.decisions.values())
    return decided / seconds, seconds, dict(result.decisions), result.stats


def live_latency(inspector: Inspector, data: Path, work: Path, frames: int, fps: float) -> dict:
    video = work / "live.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), fps, (256, 256))
    for path in list_images(data / "incoming")[:frames]:
        writer.write(cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR))
    writer.release()
    out = work / "live_out"
    shutil.rmtree(out, ignore_errors=True)
    repository = Repository(Database.open(f"sqlite:///{out / 'live.db'}"))
    sinks = [HeatmapFileSink(out / "ng"), DatabaseSink(repository)]
    # A recorded video replayed at camera pace, as a live source: one frame per batch, no waiting for company.
    source = VideoSource(str(video), live=True, pace_fps=fps, max_attempts=0)
    pipeline = Pipeline([source], inspector, sinks, name="live", max_batch=1, max_wait_ms=0, queue_size=4)
    result = pipeline.run(handle_signals=False)
    return {"frames": source.counters.frames, "decided": sum(result.decisions.values()),
            "dropped": sum(result.dropped.values()), "latency_ms": result.stats["latency_ms"]}


def main() -> None:
    """Run every measurement once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--onnx-images", type=int, default=512)
    parser.add_argument("--live-frames", type=int, default=100)
    parser.add_argument("--live-fps", type=float, default=5.0)
    parser.add_argument("--work", default="/tmp/inspect_bench_issue6")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as they are measured, also when redirected
    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = make_data(work, args.images)
    model_dir = make_model(work, data)
    inspector = Inspector(model_dir, device="cpu")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {inspector.device}, "
          f"batch {args.batch}, input {inspector.card.input_size} px, {args.images} images of 256 px")

    paths = list_images(data / "incoming")
    t0 = time.perf_counter()
    images = [read_image(p) for p in paths]
    print(f"decode only: {len(images) / (time.perf_counter() - t0):.0f} img/s")
    model_only(inspector, images[:32], args.batch)  # warm-up
    # Model-only time is taken in two halves around the pipeline run, so load drifting on a shared machine
    # affects both sides of the ratio alike.
    half = len(images) // 2
    _, first_s = images_per_s(lambda: model_only(inspector, images[:half], args.batch), half)
    pipe_rate, pipe_s, decisions, stats = run_pipeline(inspector, data, work, args.batch)
    _, second_s = images_per_s(lambda: model_only(inspector, images[half:], args.batch), len(images) - half)
    model_s = first_s + second_s
    model_rate = len(images) / model_s
    print(f"model only (decoded in memory): {model_rate:.1f} img/s ({model_s:.1f} s; halves {first_s:.1f} s before "
          f"and {second_s:.1f} s after the pipeline run)")
    counts = {str(k): v for k, v in decisions.items()}
    print(f"full pipeline (folder -> decode -> infer -> NG files + CSV + SQLite): {pipe_rate:.1f} img/s "
          f"({pipe_s:.1f} s), decisions {counts}")
    print(f"pipeline/model ratio: {pipe_rate / model_rate:.3f}")
    print(f"pipeline stage latency ms: {stats['latency_ms']}")

    onnx_path = export_model(model_dir, "onnx", work / "model.onnx")
    onnx = OnnxInspector(model_dir, onnx_path=onnx_path, threads=2)
    subset = images[: args.onnx_images]
    model_only(onnx, subset[:32], args.batch)
    torch_rate, _ = images_per_s(lambda: model_only(inspector, subset, args.batch), len(subset))
    onnx_rate, _ = images_per_s(lambda: model_only(onnx, subset, args.batch), len(subset))
    diff = max(abs(a.score - b.score) for a, b in
               zip(inspector.predict(subset[:64]), onnx.predict(subset[:64]), strict=True))
    print(f"onnxruntime {onnx_rate:.1f} img/s vs PyTorch {torch_rate:.1f} img/s on {len(subset)} images: "
          f"ratio {onnx_rate / torch_rate:.2f}; max |score difference| {diff:.2e}")

    live = live_latency(inspector, data, work, args.live_frames, args.live_fps)
    e2e = live["latency_ms"]["end_to_end"]
    print(f"live single-frame mode at {args.live_fps:.0f} fps: {live['decided']}/{live['frames']} frames decided, "
          f"{live['dropped']} dropped; end-to-end p50 {e2e['p50']:.1f} ms, p99 {e2e['p99']:.1f} ms; "
          f"stages {live['latency_ms']}")
    with open(work / "figures.csv", "a", newline="") as fh:
        csv.writer(fh).writerow([time.strftime("%Y-%m-%dT%H:%M:%S"), args.images, args.batch, f"{model_rate:.1f}",
                                 f"{pipe_rate:.1f}", f"{pipe_rate / model_rate:.3f}", f"{onnx_rate:.1f}",
                                 f"{torch_rate:.1f}", e2e["p50"], e2e["p99"]])


if __name__ == "__main__":
    main()
