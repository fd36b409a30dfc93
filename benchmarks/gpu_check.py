"""CUDA path check (issue 6): uint8 upload from pinned memory, normalisation on the device, channels_last, AMP, and
images/s for batch sizes 1..256. Without CUDA it runs its CPU fallback (batch sizes 1..8) as a dry run.

    benchmarks/gpu_check.sh            # or: python benchmarks/gpu_check.py --max-batch 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from inspect_app.data.synthetic import CLASSES, synthesize
from inspect_app.engine.infer import Inspector
from inspect_app.models.checkpoint import ModelCard, build_model, save_checkpoint


def make_checkpoint(folder: Path, input_size: int) -> Path:
    """Pretrained EfficientNet-Lite0 with a seeded head: enough to exercise the path, not to judge accuracy."""
    card = ModelCard(
        name="gpu-check", kind="classifier", backbone="efficientnet_lite0", classes=CLASSES, input_size=input_size,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    )
    torch.manual_seed(0)
    return save_checkpoint(folder / "gpu-check", build_model(card, pretrained=True), card)


def check_path(inspector: Inspector, model_dir: Path, images: list[np.ndarray]) -> list[str]:
    """Failures of the CUDA-path properties (empty when all hold)."""
    failures = []
    staged = inspector.preprocess(images[:4])
    if staged.dtype != torch.uint8:
        failures.append(f"preprocess gives {staged.dtype}, expected uint8 (normalisation must happen on the device)")
    if not staged.is_pinned():
        failures.append("preprocess output is not in pinned memory")
    stem_weight = next(p for p in inspector.model.parameters() if p.dim() == 4)
    if not stem_weight.is_contiguous(memory_format=torch.channels_last):
        failures.append("convolution weights are not channels_last")
    seen: dict[str, torch.dtype] = {}
    conv = next(m for m in inspector.model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = conv.register_forward_hook(lambda _m, inputs, output: seen.update(i=inputs[0].dtype, o=output.dtype))
    inspector.predict(images[:4])
    handle.remove()
    if seen.get("o") != torch.float16:
        failures.append(f"first convolution ran in {seen.get('o')}, expected float16 under autocast")
    cpu = Inspector(model_dir, device="cpu").predict(images[:8])
    gpu = inspector.predict(images[:8])
    worst = max(abs(a.score - b.score) for a, b in zip(cpu, gpu, strict=True))
    if worst > 2e-2:
        failures.append(f"CUDA scores differ from CPU by {worst:.3g} (> 0.02)")
    print(f"CUDA vs CPU max |score difference| on 8 images: {worst:.2e}")
    return failures


def throughput(inspector: Inspector, images: list[np.ndarray], batch: int, seconds: float) -> float:
    """Images/s of ``Inspector.predict`` at one batch size (decoded images, heatmaps on)."""
    batches = [images[(i * batch) % len(images) :][:batch] for i in range(4)]
    batches = [b if len(b) == batch else (b * batch)[:batch] for b in batches]
    for _ in range(2):  # warm-up: cuDNN autotuning / oneDNN kernel selection for this shape, allocator
        inspector.predict(batches[0])
    sync = torch.cuda.synchronize if inspector.device.type == "cuda" else (lambda: None)
    sync()
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done == 0:
        inspector.predict(batches[done // batch % len(batches)])
        done += batch
    sync()
    return done / (time.perf_counter() - t0)


def main() -> None:
    """Run the checks and print the throughput table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per batch size")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    max_batch = args.max_batch if cuda else min(args.max_batch, 8)
    if not cuda:
        torch.set_num_threads(2)
        print("CUDA not available: CPU fallback dry run (batch sizes up to 8); CUDA figures need a CUDA machine")
    else:
        print(f"CUDA device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    rng = np.random.default_rng(0)
    images = [synthesize(CLASSES[i % len(CLASSES)], rng, 256).image for i in range(64)]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_checkpoint(Path(tmp), args.input_size)
        inspector = Inspector(model_dir, device="cuda" if cuda else "cpu")
        if cuda:
            failures = check_path(inspector, model_dir, images)
            print("CUDA path checks: " + ("all passed" if not failures else "FAILED: " + "; ".join(failures)))
        print(f"{'batch':>6} {'images/s':>10}")
        batch = 1
        while batch <= max_batch:
            rate = throughput(inspector, images, batch, args.seconds if cuda else min(args.seconds, 1.0))
            print(f"{batch:>6} {rate:>10.1f}", flush=True)
            batch *= 2
    if cuda and failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
