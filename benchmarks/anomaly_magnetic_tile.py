"""Good-only anomaly benchmark on Magnetic Tile (DifferNet protocol): AUROC, escape rate, CPU time and bank size.

Trains on the 761 files of ``differnet_train_good.txt`` and tests on the rest (191 Free + 392 defective), with the
default ``AnomalyConfig`` unless ``--set key=value`` says otherwise. Run it alone on the machine::

    flock /tmp/inspect_cpu.lock python benchmarks/anomaly_magnetic_tile.py --out var/bench/mt

``--max-train``/``--max-test`` take evenly spaced subsets for quick trials. It also scores 64 test images with exact
and with the configured nearest-neighbour search, one after the other, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from inspect_app.data.anomaly_sets import magnetic_tile
from inspect_app.data.image_io import read_image
from inspect_app.engine.anomaly import GoodOnlyData, evaluate_anomaly, fit_anomaly
from inspect_app.engine.anomaly_config import AnomalyConfig
from inspect_app.engine.anomaly_scoring import score_raw
from inspect_app.engine.coreset import greedy_k_center
from inspect_app.engine.metrics import escape_rate, false_reject_rate
from inspect_app.models.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
# The shared datasets sit beside the main checkout; a worktree under wt/ is one level deeper.
CANDIDATES = [base / "shared" / "datasets" / "magnetic-tile" for base in (REPO.parent, REPO.parent.parent)]
DEFAULT_ROOT = next((c for c in CANDIDATES if c.is_dir()), CANDIDATES[0])


def _subset(items: list, limit: int | None) -> list:
    if limit is None or limit >= len(items):
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def global_greedy_rate(rows: int, dim: int, iterations: int = 40) -> float:
    """Iterations/s of an unchunked greedy coreset over ``rows`` x ``dim`` (the cost does not depend on the values)."""
    points = torch.randn(rows, dim, generator=torch.Generator().manual_seed(0))
    greedy_k_center(points, 2)  # warm-up
    start = time.perf_counter()
    greedy_k_center(points, iterations)
    return iterations / (time.perf_counter() - start)


def search_speedup(model: torch.nn.Module, config: AnomalyConfig, paths: list[Path]) -> dict[str, float]:
    """Scoring images/s of exact nearest-neighbour search and of the configured one, on the same images, one run."""
    images = [read_image(p) for p in paths]
    rates = {}
    for mode in ("exact", config.nn_search):
        chosen = config.with_overrides(nn_search=mode)
        score_raw(model, images[:1], chosen)  # builds the graph (if any) outside the timing
        start = time.perf_counter()
        for i in range(0, len(images), config.batch_size):
            score_raw(model, images[i : i + config.batch_size], chosen)
        rates[mode] = len(images) / (time.perf_counter() - start)
    return rates


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=Path("var/bench/anomaly_mt"))
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--max-test", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="config override key=value (JSON value)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    split = magnetic_tile(args.root)
    train = _subset(list(split.train_good), args.max_train)
    test = _subset(list(split.test), args.max_test)
    overrides = dict(item.split("=", 1) for item in args.set)
    config = AnomalyConfig(device="cpu").with_overrides(**{k: _parse_value(v) for k, v in overrides.items()})
    print(f"config: {json.dumps(config.to_dict(), sort_keys=True)}")
    print(f"train {len(train)} good images, test {len(test)} ({sum(t.is_defect for t in test)} defective)")

    start = time.perf_counter()
    result = fit_anomaly(GoodOnlyData(good=tuple(train)), args.out / "model", config, name="mt-anomaly")
    train_s = time.perf_counter() - start
    model, card = load_checkpoint(args.out / "model", "cpu")
    config = AnomalyConfig.from_card(card.train_config, device="cpu")  # as fitted: `resize: auto` resolved
    report = evaluate_anomaly(model, config, test, overlay_dir=args.out / "overlays")
    # What one global greedy pass over every training patch (no chunks) would cost with the same projection.
    rate = global_greedy_rate(card.anomaly["patches_seen"], config.coreset_dim)
    rates = search_speedup(model, config, [item.path for item in _subset(test, 64)])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The plant's operating point: the threshold the model calibrated itself (no test image involved), where the
    # 1 % figure above sets an oracle threshold on the test's own good images.
    scores = np.asarray(report["scores"])
    is_defect = np.array([item.is_defect for item in test])
    own = card.anomaly["raw_threshold"]
    figures = {
        "train_images": len(train), "test_images": len(test),
        "training_s": round(train_s, 1), "bank_s": round(result.timings["bank_s"], 1),
        "bank_rows": card.anomaly["bank_rows"], "patches_seen": card.anomaly["patches_seen"],
        "bank_mb": round(card.anomaly["bank_mb"], 2),
        "image_auroc": round(report["image_auroc"], 4),
        "image_auroc_interval_95": [round(v, 4) for v in report["image_auroc_interval"]],
        "costliest_good": [(Path(e["name"]).name, e["misordered"], round(e["auroc_cost"], 4))
                           for e in report["costliest"]["good"][:3]],
        "costliest_defect": [(Path(e["name"]).name, e["misordered"], round(e["auroc_cost"], 4))
                             for e in report["costliest"]["defect"][:3]],
        "pixel_auroc": round(report["pixel_auroc"], 4) if report.get("pixel_auroc") is not None else None,
        "escape_rate_at_1pct_false_reject": report["operating_point"]["escape_rate"],
        "false_reject_rate_at_operating_point": report["operating_point"]["false_reject_rate"],
        "scoring_images_per_s": round(report["scoring_images_per_s"], 2),
        "search_images_per_s": {mode: round(r, 2) for mode, r in rates.items()},
        "search_speedup_vs_exact": round(rates[config.nn_search] / rates["exact"], 2),
        "holdout_false_reject_rate": card.anomaly["holdout_false_reject_rate"],
        "at_model_threshold": {"false_reject_rate": round(false_reject_rate(scores[~is_defect], own), 4),
                               "escape_rate": round(escape_rate(scores[is_defect], own), 4)},
        "peak_rss_mb": round(peak_mb),
        "global_greedy_iter_per_s": round(rate, 1),
        "global_greedy_estimated_s": round(card.anomaly["bank_rows"] / rate),
        "per_class_auroc": {k: round(v, 4) for k, v in report["image_auroc_per_class"].items()},
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
