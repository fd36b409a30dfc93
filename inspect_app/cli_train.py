"""``inspect-app sample-data``, ``train``, ``evaluate`` and ``data check``: data sets and models."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspect_app.app.versions import register_model
from inspect_app.cli_common import open_repository, progress_bar, settings_of, shown
from inspect_app.cli_lifecycle import queue_training, shell
from inspect_app.config.base import read_yaml
from inspect_app.config.recipes import load_recipe
from inspect_app.config.settings import Settings
from inspect_app.errors import ConfigError

if TYPE_CHECKING:
    from inspect_app.data.folders import Item
    from inspect_app.lifecycle.snapshot import Snapshot

DEFAULT_SAMPLE_DIR = Path("sample_data")


# The epoch summary's figures, in this order, as they are named in the line.
_EPOCH_FIGURES = (("val_accuracy", "val acc"), ("val_macro_recall", "val macro recall"), ("val_mae", "val mae"))


def train_progress() -> Callable[[dict[str, Any]], None]:
    """The display of a training run for ``fit``'s ``progress``: a step bar per epoch (``progress_bar``: nothing in
    logs and pipes) and one summary line per epoch on stderr, always (a log of a run keeps its epochs)."""
    bars: dict[int, Callable[[int, int], None]] = {}

    def show(event: dict[str, Any]) -> None:
        if event["phase"] == "train":
            epoch = event["epoch"]
            if epoch not in bars:
                bars[epoch] = progress_bar(f"epoch {epoch}/{event['epochs']}", unit="step")
            bars[epoch](event["step"], event["steps"])
        elif event["phase"] == "epoch":
            bars.pop(event["epoch"], None)
            figures = "".join(f" {name} {event[key]:.3f}" for key, name in _EPOCH_FIGURES
                              if event.get(key) is not None)
            eta = f" ETA {event['eta_s']:.0f}s" if event.get("eta_s") else ""
            sys.stderr.write(f"epoch {event['epoch']}/{event['epochs']} train loss {event['train_loss']:.4f} "
                             f"{event['images_per_s']:.1f} img/s{figures}{eta}\n")
            sys.stderr.flush()

    return show


def _register(settings: Settings, card: Any, model_dir: Path, snapshot: Snapshot) -> None:
    """Record a model the command trained, with its data snapshot, in the database (audited as the shell user)."""
    register_model(open_repository(settings.resolved_database_url), card, model_dir, actor=shell().username,
                   snapshot=snapshot.record())
    print(f"registered model version {card.name} in {shown(settings.resolved_database_url)}")


def _snapshot(
    settings: Settings, args: argparse.Namespace, out: Path, items: list[Item], classes: list[str],
    base_files: list[dict[str, Any]] | None = None,
) -> Snapshot:
    """Freeze what the command trains on into ``<out>/snapshot`` (images in ``<home>/snapshots``), before training:
    a ``--test-dir`` sharing an image with it is refused here, before any time is spent."""
    from inspect_app.data.folders import scan_class_folders
    from inspect_app.lifecycle.snapshot import snapshot_trained

    test = scan_class_folders(Path(args.test_dir)) if args.test_dir else None
    snapshot = snapshot_trained(items, classes, out / "snapshot", settings.snapshots_dir, Path(args.data_dir), test,
                                base_files)
    print(f"data snapshot {snapshot.fingerprint[:12]} in {snapshot.manifest_path.parent}: {snapshot.counts}")
    return snapshot

def cmd_sample_data(args: argparse.Namespace) -> int:
    """Generate synthetic parts with synthetic defects."""
    from inspect_app.data.synthetic import generate_sample_data

    summary = generate_sample_data(Path(args.dir), seed=args.seed, overwrite=args.overwrite)
    print(f"sample data written to {args.dir}: {summary}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune a classifier on a class-folder dataset and register it."""
    from inspect_app.engine.train import fit

    settings = settings_of(args)
    if args.kind == "anomaly":
        return queue_training(args, settings, None) if args.queue else _train_anomaly(args, settings)
    config = load_recipe(
        Path(args.recipe) if args.recipe else None,
        backbone=args.backbone, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        input_size=args.input_size, seed=args.seed, device=args.device, optimizer=args.optimizer,
        val_fraction=args.val_fraction, folds=args.folds, fold=args.fold, time_budget_s=args.time_budget_s,
        good_class=args.good_class,
    )
    if args.queue:
        return queue_training(args, settings, config)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not (args.out or args.name):
        raise ConfigError("under torchrun every process must agree on the run folder: pass --out or --name")
    out = Path(args.out) if args.out else settings.models_dir / (args.name or time.strftime("model-%Y%m%d-%H%M%S"))
    if os.environ.get("RANK", "0") == "0":
        from inspect_app.data.layouts import load_dataset

        data = load_dataset(Path(args.data_dir))  # what fit trains on, its validation share included
        snapshot = _snapshot(settings, args, out, list(data.items), list(data.classes))
    result = fit(Path(args.data_dir), out, config, name=args.name or out.name, progress=train_progress(),
                 resume=args.resume)
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports and registers the model once
    from inspect_app.lifecycle.snapshot import stamp_fingerprint

    card = stamp_fingerprint(result.model_dir, result.card, snapshot)
    metrics = result.card.metrics
    print(f"model {result.card.name} saved to {result.model_dir} in {result.seconds:.0f} s")
    if "accuracy" in metrics:
        good = result.card.good_class
        versus = (f"AUROC {good}-vs-defect {metrics['auroc_good_vs_defect']:.4f}"
                  if good and metrics.get("auroc_good_vs_defect") is not None else "no good class: defect typing")
        print(f"validation: accuracy {metrics['accuracy']:.3f}, macro recall {metrics['macro_recall']:.3f}, {versus}")
    else:
        print(f"validation: severity MAE {metrics['mae']:.4f}, RMSE {metrics['rmse']:.4f}")
    if not args.no_register:
        _register(settings, card, result.model_dir, snapshot)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a labelled data set: JSON report, plots and NG heatmaps."""
    from inspect_app.engine.evaluate import evaluate_model

    out = Path(args.out) if args.out else Path(args.model) / "evaluation"
    report = evaluate_model(
        args.model, args.data, out, device=args.device or "auto", batch_size=args.batch_size,
        false_reject=args.false_reject, target_escape=args.target_escape,
        target_false_reject=args.target_false_reject, progress=progress_bar("evaluating"),
    )
    print(f"{report['images']} images, accuracy {report['accuracy']:.4f}, macro recall {report['macro_recall']:.4f}")
    for name, row in report["per_class"].items():
        print(f"  {name:<16} precision {row['precision']:.3f} recall {row['recall']:.3f} f1 {row['f1']:.3f} "
              f"n={row['support']}")
    if report.get("auroc_good_vs_defect") is not None:
        point = report["operating_point"]
        low, high = report["auroc_interval"]
        print(f"good-vs-defect AUROC {report['auroc_good_vs_defect']:.4f} "
              f"(95 % bootstrap interval {low:.4f}-{high:.4f}); escape rate {point['escape_rate']:.4f} "
              f"at {point['false_reject_rate']:.1%} false reject (threshold {point['threshold']:.4f})")
        per_defect = ", ".join(f"{name} {value:.4f}" for name, value in report["auroc_per_defect_class"].items()
                               if value is not None)
        if per_defect:
            print(f"  AUROC per defect class (against the good parts): {per_defect}")
        for side, label in (("good", "good parts scored above the most defects"),
                            ("defect", "defects scored below the most good parts")):
            if report["costliest"][side]:
                print(f"  {label}:")
            for entry in report["costliest"][side][:3]:
                print(f"    {entry['name']}  score {entry['score']:.4f}, {entry['misordered']:g} pairs "
                      f"(AUROC cost {entry['auroc_cost']:.4f})")
    point = report["at_model_threshold"]
    parts = [f"at the model's own threshold {report['model_threshold']:.4f}"
             f" (REVIEW band {report['model_review_band']:.4f} below it):"]
    for key, text in (("false_reject_rate", "false rejects"), ("escape_rate", "escapes (not NG)"),
                      ("escape_into_ok_rate", "escapes into OK"), ("review_share", "parts to REVIEW")):
        if point[key] is not None:
            parts.append(f"{text} {point[key]:.1%}")
    print(" ".join(parts[:1]) + " " + ", ".join(parts[1:]))
    if report.get("pixel_auroc") is not None:
        print(f"pixel AUROC {report['pixel_auroc']:.4f}")
    for name, target in report["targets"].items():
        print(f"threshold for {name} {target['target']}: {target['threshold']:.4f} ({target})")
    if report["unreadable"]:
        print(f"{len(report['unreadable'])} unreadable image(s) skipped (listed in the report)")
    print(f"report, plots and {report['heatmaps']} NG heatmap(s) in {out}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    """Report class counts, unreadable files, duplicates and train/test leakage of a data set."""
    import json

    from inspect_app.data.check import check_dataset

    report = check_dataset(Path(args.dir), test=Path(args.test) if args.test else None)
    print(report.format())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return 0


def _train_anomaly(args: argparse.Namespace, settings: Settings) -> int:
    """Fit (or with --update extend) a good-only anomaly model and register it."""
    from inspect_app.data.folders import list_images
    from inspect_app.engine.anomaly import fit_anomaly, scan_good_only, update_anomaly
    from inspect_app.engine.anomaly_config import AnomalyConfig
    from inspect_app.lifecycle.snapshot import stamp_fingerprint, trained_files
    from inspect_app.models.checkpoint import read_card
    from inspect_app.records import GOOD_CLASS

    name = args.name or time.strftime("anomaly-%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else settings.models_dir / name
    if args.update:
        new_good = list_images(Path(args.data_dir))
        base_card = read_card(Path(args.update))
        # The extended model knows its base's images too: its snapshot holds them, when the base has one.
        base_files = None if args.no_register else trained_files(
            open_repository(settings.resolved_database_url), base_card.data_fingerprint, base_card.name)
        snapshot = _snapshot(settings, args, out, [(p, GOOD_CLASS) for p in new_good], [GOOD_CLASS], base_files)
        result = update_anomaly(Path(args.update), new_good, out, name=args.name or out.name)
    else:
        base = (AnomalyConfig.from_dict(read_yaml(Path(args.recipe)), where=f"recipe file {args.recipe!r}")
                if args.recipe else AnomalyConfig())
        config = base.with_overrides(backbone=args.backbone, input_size=args.input_size, seed=args.seed,
                                     device=args.device, batch_size=args.batch_size)
        data = scan_good_only(Path(args.data_dir), args.good_class)
        items = [(path, GOOD_CLASS) for path in data.good] + list(data.defects)
        snapshot = _snapshot(settings, args, out, items,
                             [GOOD_CLASS, *sorted({label for _, label in data.defects} - {GOOD_CLASS})])
        result = fit_anomaly(data, out, config, name=args.name or out.name)
    card = stamp_fingerprint(result.model_dir, result.card, snapshot, refresh=bool(args.update))
    info = result.card.anomaly
    print(f"anomaly model {result.card.name} saved to {result.model_dir} in {result.seconds:.0f} s: "
          f"{info['bank_rows']} bank rows ({info['bank_mb']:.1f} MB); threshold from {info['threshold_source']}, "
          f"calling {info['holdout_false_reject_rate']:.1%} of the held-out good images NG")
    geometry = info.get("geometry") or {}
    if geometry:
        print(f"input geometry: {geometry['resize']} ({geometry['reason']})"
              + (f"; {geometry['hint']}" if geometry.get("hint") else ""))
    if info.get("expected_false_reject_rate") is not None:
        interval = info.get("false_reject_interval")
        spread = f" (90 % interval {interval[0]:.1%}-{interval[1]:.1%})" if interval else ""
        print(f"expected on new good parts: {info['expected_false_reject_rate']:.1%} false rejects{spread}; "
              f"REVIEW band {result.card.review_band:.3f} below the threshold 0.5 "
              f"(about {result.card.train_config.get('review_rate', 0):.0%} of good parts at or above it)")
    if not args.no_register:
        _register(settings, card, result.model_dir, snapshot)
    return 0


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """The ``sample-data``, ``train``, ``evaluate`` and ``data`` sub-commands."""
    p = sub.add_parser("sample-data", help="generate synthetic parts with defects and masks")
    p.add_argument("dir", nargs="?", default=str(DEFAULT_SAMPLE_DIR))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder's content")
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("train", help="fine-tune a classifier, or fit a good-only anomaly model (--kind anomaly)")
    p.add_argument("data_dir", help="folder with one sub-folder per class (good, scratch, ...); for --kind anomaly "
                   "also a plain folder of good images")
    p.add_argument("--kind", choices=("classifier", "anomaly"), default="classifier")
    p.add_argument("--good-class", metavar="NAME",
                   help="class folder of the defect-free parts (default: found from names such as good, ok, pass, "
                        "normal, no_defect; 'none' when every class is a defect type)")
    p.add_argument("--update", metavar="MODEL", help="--kind anomaly: add DATA_DIR's good images to this model")
    p.add_argument("--out", help="run/checkpoint folder (default: <home>/models/<name>)")
    p.add_argument("--name", help="model version name (default: the folder name)")
    p.add_argument("--recipe", help="YAML file of training options; flags override it")
    p.add_argument("--backbone")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--input-size", type=int)
    p.add_argument("--optimizer", choices=("adamw", "adam", "sgd"))
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--folds", type=int, help="k-fold cross-validation: number of folds")
    p.add_argument("--fold", type=int, help="k-fold cross-validation: which fold validates")
    p.add_argument("--time-budget-s", type=float, help="shorten the run to end within this many seconds")
    p.add_argument("--resume", action="store_true", help="continue the run in --out after its last finished epoch")
    p.add_argument("--no-register", action="store_true", help="do not record the model in the database")
    p.add_argument("--queue", action="store_true", help="queue the run for `inspect-app worker` instead")
    p.add_argument("--test-dir", help="frozen test set (class folders), refused when it shares an image with the "
                   "training data; with --queue, champion and challenger are judged on it")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a model on a labelled data set (JSON, plots, NG heatmaps)")
    p.add_argument("model", help="checkpoint folder")
    p.add_argument("data", help="class folders, MVTec folder or CSV manifest")
    p.add_argument("--out", help="output folder (default <model>/evaluation)")
    p.add_argument("--false-reject", type=float, default=0.01, help="report the escape rate at this false-reject rate")
    p.add_argument("--target-escape", type=float, help="also find the threshold meeting this escape rate")
    p.add_argument("--target-false-reject", type=float, help="also find the threshold meeting this false-reject rate")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=cmd_evaluate)

    data = sub.add_parser("data", help="data set tools").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("check", help="class counts, unreadable files, duplicates, train/test leakage")
    p.add_argument("dir", help="class folders, MVTec folder or CSV manifest")
    p.add_argument("--test", help="a separate test set to check for leakage against")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.set_defaults(func=cmd_data_check)
