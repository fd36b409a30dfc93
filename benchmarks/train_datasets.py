"""Fine-tuning benchmark on the real defect datasets in ../shared/datasets (issue 3).

Trains the default recipe (``recipes/default.yaml`` = ``TrainConfig()``) with no per-dataset tuning, on the CPU, and
prints the held-out figures: accuracy, per-class recall, good-vs-defect AUROC and the escape rate at 1 % false reject.

Protocols (../shared/datasets/README.md): Magnetic Tile stratified 70/30 seed 0 (``MT_Free`` is the good class);
NEU-CLS stratified 80/20 seed 0. The test split doubles as the validation set the trainer sees, so the figures
reported first are those of the *last* epoch (no choice made on the test set); the best-epoch figures follow.

Usage::

    flock /tmp/inspect_cpu.lock python benchmarks/train_datasets.py mt --out /tmp/bench_mt
    flock /tmp/inspect_cpu.lock python benchmarks/train_datasets.py neu --out /tmp/bench_neu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from inspect_app.config.recipes import load_recipe
from inspect_app.engine.train import fit

# The repository sits next to ../shared in a plain checkout; worktrees point at it with INSPECT_DATASETS.
DATASETS = Path(os.environ.get("INSPECT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
PROTOCOL_VAL_FRACTION = {"mt": 0.3, "neu": 0.2}


def write_manifest(dataset: str, root: Path, out: Path) -> Path:
    """A CSV manifest (absolute paths) for one dataset; Magnetic Tile masks go in the ``mask`` column."""
    rows = ["path,label,mask"]
    if dataset == "mt":
        for folder in sorted((root / "magnetic-tile").glob("MT_*")):
            label = "good" if folder.name == "MT_Free" else folder.name.removeprefix("MT_").lower()
            for image in sorted((folder / "Imgs").glob("*.jpg")):
                rows.append(f"{image},{label},{image.with_suffix('.png')}")
    else:
        for folder in sorted(p for p in (root / "neu-cls").iterdir() if p.is_dir()):
            for image in sorted(folder.glob("*.bmp")):
                rows.append(f"{image},{folder.name.lower()},")
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / f"{dataset}_manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest


def main() -> int:
    """Run one benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(PROTOCOL_VAL_FRACTION))
    parser.add_argument("--out", default="/tmp/inspect_bench")
    parser.add_argument("--recipe", default=str(Path(__file__).resolve().parents[1] / "recipes" / "default.yaml"))
    parser.add_argument("--epochs", type=int, help="override (only for quick trials; the benchmark uses the recipe)")
    parser.add_argument("--max-train-images", type=int, help="quick trials only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=1080.0, help="training wall-time budget (protocol: 20 min)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    manifest = write_manifest(args.dataset, DATASETS, out)
    config = load_recipe(
        Path(args.recipe), val_fraction=PROTOCOL_VAL_FRACTION[args.dataset], seed=0, device="cpu",
        epochs=args.epochs, max_train_images=args.max_train_images, time_budget_s=args.budget_s,
    )
    last_line = [0.0]

    def progress(event: dict) -> None:
        now = time.perf_counter()
        if event["phase"] == "epoch" or now - last_line[0] > 30:
            last_line[0] = now
            eta = event.get("eta_s")
            print(f"[{args.dataset}] epoch {event['epoch']}/{event['epochs']} "
                  + (f"step {event['step']}/{event['steps']} " if event["phase"] == "train" else "")
                  + f"loss {event.get('loss', event.get('train_loss', 0.0)):.4f} "
                  + (f"val acc {event['val_accuracy']:.4f} " if "val_accuracy" in event else "")
                  + f"{event.get('images_per_s', 0.0):.1f} img/s ETA {eta or 0:.0f}s", flush=True)

    start = time.perf_counter()
    result = fit(manifest, out / f"run_{args.dataset}", config, name=f"bench-{args.dataset}", progress=progress)
    wall = time.perf_counter() - start
    last = result.history[-1]
    best = result.card.metrics
    figures = {
        "dataset": args.dataset,
        "train_images": len((result.run_dir / "split_train.csv").read_text().splitlines()) - 1,
        "test_images": best["images"],
        "epochs": len(result.history),
        "wall_s": round(wall, 1),
        "train_images_per_s": round(sum(r["images_per_s"] for r in result.history) / len(result.history), 2),
        "last_epoch": {k: last.get(k) for k in ("val_accuracy", "val_macro_recall", "val_auroc_good_vs_defect",
                                                 "val_escape_rate")},
        "best_epoch": {
            "epoch": best["epoch"], "accuracy": best["accuracy"], "macro_recall": best["macro_recall"],
            "auroc_good_vs_defect": best.get("auroc_good_vs_defect"),
            "operating_point": best.get("operating_point"),
            "per_class_recall": {k: round(v["recall"], 4) for k, v in best["per_class"].items()},
        },
        "recipe": args.recipe,
    }
    print(json.dumps(figures, indent=2))
    (out / f"figures_{args.dataset}.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
