"""Decisions through the product path: ``inspect-app train`` then ``inspect-app evaluate`` on the saved model.

For every data set it runs the CLI as a user would (default recipe, no per-data-set setting), reloads nothing by
hand, and prints what a plant feels beside the AUROC: false rejects and escapes at the model's *own* threshold, the
share of parts sent to REVIEW and the defects that still end as OK with the default band, pixel AUROC where masks
exist, training time and scoring images/s.

Data sets (``--sets``, comma-separated):

* ``mt``: Magnetic Tile, DifferNet split (761 good to train; 191 good + 392 defective to test), good-only model;
* ``bottle-jpeg``: MVTec bottle as copied in ``../shared/datasets/mvtec-bottle`` (JPEG), good-only model;
* ``bottle-png``: the original PNGs (``--bottle-png``: the folder ``data/bottle/bottle`` of the public repository
  ``doanthai161/Bottle-Anomaly-Detection``), good-only model;
* ``sample``: the project's own sample data (``inspect-app sample-data``), good-only model on its 40 incoming parts;
* ``neu``: NEU-CLS, classifier, stratified 80/20 seed 0 (defect typing: ``--good-class none``; accuracy only),
  trained within ``--time-budget-s`` (600 s by default) on a CPU.

``--twice`` trains the good-only sets a second time and counts parts whose decision differs. Run it alone::

    flock /tmp/inspect_cpu.lock python benchmarks/decisions_cli.py --out /tmp/decisions --bottle-png DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [base / "shared" / "datasets" for base in (REPO.parent, REPO.parent.parent)]
DEFAULT_ROOT = next((c for c in CANDIDATES if c.is_dir()), CANDIDATES[0])
ANOMALY_SETS = ("mt", "bottle-jpeg", "bottle-png", "sample")


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(source)


def magnetic_tile(root: Path, out: Path) -> tuple[Path, Path]:
    """MVTec-style folders of symlinks for the DifferNet split, masks under ``ground_truth``."""
    base = root / "magnetic-tile"
    train_names = set((base / "differnet_train_good.txt").read_text().split())
    for folder in sorted(base.glob("MT_*")):
        label = folder.name[3:].lower()
        for image in sorted((folder / "Imgs").glob("*.jpg")):
            if label == "free":
                split = "train" if image.name in train_names else "test"
                _link(image, out / split / "good" / image.name)
            else:
                _link(image, out / "test" / label / image.name)
                _link(image.with_suffix(".png"), out / "ground_truth" / label / f"{image.stem}_mask.png")
    return out / "train" / "good", out


def sample_data(out: Path) -> tuple[Path, Path]:
    """The project's sample data; its incoming parts sorted into class folders of symlinks by their labels."""
    _cli(["sample-data", str(out / "data")], out / "sample-data.log")
    data = out / "data"
    with (data / "incoming_labels.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            _link(data / "incoming" / row["file"], out / "test" / row["label"] / row["file"])
    return data / "train" / "good", out / "test"


def neu(root: Path, out: Path) -> tuple[Path, Path]:
    """NEU-CLS split 80/20 per class (seed 0) into train/ and test/ folders of symlinks."""
    import numpy as np

    rng = np.random.default_rng(0)
    for folder in sorted(p for p in (root / "neu-cls").iterdir() if p.is_dir()):
        images = sorted(folder.glob("*.bmp"))
        order = rng.permutation(len(images))
        cut = round(0.8 * len(images))
        for rank, k in enumerate(order):
            _link(images[k], out / ("train" if rank < cut else "test") / folder.name / images[k].name)
    return out / "train", out / "test"


def _cli(args: list[str], log: Path) -> float:
    """Run ``inspect-app ARGS`` (this checkout's code), its output into ``log``; seconds taken."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        done = subprocess.run([sys.executable, "-m", "inspect_app", *args], cwd=REPO, stdout=fh,
                              stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"inspect-app {' '.join(args)} failed ({done.returncode}); see {log}")
    return time.perf_counter() - start


def _decisions(eval_dir: Path) -> dict[str, str]:
    with (eval_dir / "predictions.csv").open(encoding="utf-8") as fh:
        return {row["path"]: row["decision"] for row in csv.DictReader(fh)}


def run_set(name: str, train: Path, test: Path, out: Path, twice: bool, budget_s: float | None = None) -> dict:
    """Train and evaluate one data set through the CLI; the figures for the table."""
    home = ["--home", str(out / "home")]
    extra = ["--good-class", "none"] if name == "neu" else ["--kind", "anomaly"]
    if name == "neu" and budget_s:
        extra += ["--time-budget-s", str(budget_s)]
    model = out / "model"
    train_s = _cli([*home, "train", str(train), *extra, "--out", str(model), "--no-register"], out / "train.log")
    _cli([*home, "evaluate", str(model), str(test), "--out", str(out / "eval")], out / "evaluate.log")
    report = json.loads((out / "eval" / "evaluation.json").read_text())
    card = json.loads((model / "model_card.json").read_text())
    point = report["at_model_threshold"]
    row = {
        "set": name, "images": report["images"], "image_auroc": report.get("auroc_good_vs_defect"),
        "pixel_auroc": report.get("pixel_auroc"), "accuracy": report["accuracy"],
        "false_reject": point["false_reject_rate"], "escape": point["escape_rate"],
        "escape_into_ok": point["escape_into_ok_rate"], "review_share": point["review_share"],
        "review_band": report["model_review_band"], "train_s": train_s, "images_per_s": report["images_per_s"],
        "expected_false_reject": card.get("anomaly", {}).get("expected_false_reject_rate"),
        "false_reject_interval": card.get("anomaly", {}).get("false_reject_interval"),
        "threshold_source": card.get("anomaly", {}).get("threshold_source"),
    }
    if twice and name in ANOMALY_SETS:
        _cli([*home, "train", str(train), *extra, "--out", str(out / "model2"), "--no-register"], out / "train2.log")
        _cli([*home, "evaluate", str(out / "model2"), str(test), "--out", str(out / "eval2")], out / "evaluate2.log")
        first, second = _decisions(out / "eval"), _decisions(out / "eval2")
        row["decisions_changed_on_retraining"] = sum(first[p] != second.get(p) for p in first)
    return row


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main() -> int:
    """Run the chosen data sets and print their table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the shared datasets folder")
    parser.add_argument("--bottle-png", type=Path, help="MVTec bottle PNG originals (train/, test/, ground_truth/)")
    parser.add_argument("--sets", default="sample,bottle-jpeg,bottle-png,mt")
    parser.add_argument("--out", type=Path, default=Path("var/bench/decisions"))
    parser.add_argument("--twice", action="store_true", help="train good-only sets twice, count changed decisions")
    parser.add_argument("--time-budget-s", type=float, default=600.0,
                        help="the classifier's training budget (neu), as `inspect-app train --time-budget-s`")
    args = parser.parse_args()
    rows = []
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        out = args.out / name
        if name == "mt":
            train, test = magnetic_tile(args.root, out / "layout")
        elif name == "bottle-jpeg":
            train, test = args.root / "mvtec-bottle" / "train" / "good", args.root / "mvtec-bottle"
        elif name == "bottle-png":
            if args.bottle_png is None:
                print("bottle-png skipped: pass --bottle-png DIR")
                continue
            train, test = args.bottle_png / "train" / "good", args.bottle_png
        elif name == "sample":
            train, test = sample_data(out / "layout")
        elif name == "neu":
            train, test = neu(args.root, out / "layout")
        else:
            raise SystemExit(f"unknown data set {name!r}: choose from {', '.join((*ANOMALY_SETS, 'neu'))}")
        row = run_set(name, train, test, out, args.twice, args.time_budget_s)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| set | images | image AUROC | pixel AUROC | own threshold: false reject / escape | REVIEW share | "
          "escape into OK | expected false reject (90 %) | training | scoring |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        interval = r["false_reject_interval"]
        expected = (f"{_pct(r['expected_false_reject'])} ({_pct(interval[0])}-{_pct(interval[1])})"
                    if interval else _pct(r["expected_false_reject"]))
        first = _num(r["image_auroc"]) if r["image_auroc"] is not None else f"acc {_pct(r['accuracy'])}"
        print(f"| {r['set']} | {r['images']} | {first} | {_num(r['pixel_auroc'])} | {_pct(r['false_reject'])} / "
              f"{_pct(r['escape'])} | {_pct(r['review_share'])} | {_pct(r['escape_into_ok'])} | {expected} | "
              f"{r['train_s']:.0f} s | {r['images_per_s']:.1f} img/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
