"""The ``inspect-app`` command: sample data, training, inspection, pipelines, database and dashboard.

Heavy imports (torch, timm, streamlit) happen inside the sub-commands that need them, so ``inspect-app --help`` and the
database commands start fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from inspect_app.app.versions import register_model
from inspect_app.cli_db import add_owner_url_option, add_role_commands, migration_url
from inspect_app.cli_lifecycle import add_lifecycle_commands, queue_training, register_finetune_pipeline, shell
from inspect_app.cli_users import add_user_commands, ensure_first_admin
from inspect_app.config.base import read_yaml
from inspect_app.config.pipeline import PipelineSpec
from inspect_app.config.recipes import TrainConfig, load_recipe
from inspect_app.config.settings import Settings, load_settings
from inspect_app.errors import ConfigError, InspectAppError
from inspect_app.log import setup_logging
from inspect_app.records import InspectionSummary, ModelStatus

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_DIR = Path("sample_data")
# Loopback unless told otherwise: on the plant network the dashboard sits behind a TLS proxy (README).
DEFAULT_DASHBOARD_ADDRESS = "127.0.0.1"
EXIT_UNDELIVERED = 3  # the run ended with rows, evidence or reject signals still waiting in a spool


# ----------------------------------------------------------------------------------------------------------- helpers
def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(home=args.home, database_url=args.db)


def _shown(url: str) -> str:
    """A database URL as the CLI may print it: password masked (URLs reach terminals, logs and CI output)."""
    from inspect_app.storage.db import mask_url

    return mask_url(url)


def _open_repository(url: str) -> object:
    from inspect_app.storage.db import Database
    from inspect_app.storage.repository import Repository

    return Repository(Database.open(url))


def format_summary(summary: InspectionSummary, title: str = "Inspection summary") -> str:
    """A plain-text table of the counts a quality engineer reads first."""
    rows = [
        ("images", f"{summary.total}"),
        ("OK", f"{summary.ok}"),
        ("REVIEW", f"{summary.review}"),
        ("NG", f"{summary.ng}"),
        ("errors", f"{summary.errors}"),
        ("defect rate", f"{summary.defect_rate * 100:.1f} %"),
        ("yield", f"{summary.yield_rate * 100:.1f} %"),
    ]
    # Per-class lines name the decision they count: NG parts and REVIEW parts are never added together.
    rows += [(f"  NG {name}", f"{count}") for name, count in summary.per_class.items()]
    rows += [(f"  REVIEW {name}", f"{count}") for name, count in summary.review_per_class.items()]
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * (width + 12)]
    lines += [f"{name:<{width}}  {value:>8}" for name, value in rows]
    return "\n".join(lines)


def _progress_bar(label: str) -> Callable[[int, int], None]:
    started: list[float] = []  # set at the first call, so that model loading does not count against the rate

    def show(done: int, total: int) -> None:
        if not started:
            started.append(time.perf_counter())
        elapsed = time.perf_counter() - started[0]
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        filled = int(30 * done / total) if total else 30
        bar = "#" * filled + "." * (30 - filled)
        sys.stderr.write(f"\r{label} [{bar}] {done}/{total} {rate:.1f} img/s ETA {eta:.0f}s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _train_progress(event: dict) -> None:
    if event["phase"] == "train":
        sys.stderr.write(
            f"\repoch {event['epoch']} step {event['step']}/{event['steps']} loss {event['loss']:.4f} "
            f"{event['images_per_s']:.1f} img/s"
            + (f" ETA {event['eta_s']:.0f}s   " if event.get("eta_s") else "   ")
        )
        sys.stderr.flush()
    elif event["phase"] == "epoch":
        eta = event.get("eta_s")
        sys.stderr.write(
            f"\repoch {event['epoch']}/{event['epochs']} train loss {event['train_loss']:.4f} "
            f"{event['images_per_s']:.1f} img/s val acc {event.get('val_accuracy', float('nan')):.3f} "
            f"val macro recall {event.get('val_macro_recall', float('nan')):.3f}"
            + (f" ETA {eta:.0f}s" if eta else "") + "\n"
        )


# ----------------------------------------------------------------------------------------------------------- commands
def cmd_sample_data(args: argparse.Namespace) -> int:
    """Generate synthetic parts with synthetic defects."""
    from inspect_app.data.synthetic import generate_sample_data

    summary = generate_sample_data(Path(args.dir), seed=args.seed, overwrite=args.overwrite)
    print(f"sample data written to {args.dir}: {summary}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune a classifier on a class-folder dataset and register it."""
    from inspect_app.engine.train import fit

    settings = _settings(args)
    if args.kind == "anomaly":
        return _train_anomaly(args, settings)
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
    result = fit(Path(args.data_dir), out, config, name=args.name or out.name, progress=_train_progress,
                 resume=args.resume)
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports and registers the model once
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
        register_model(_open_repository(settings.resolved_database_url), result.card, result.model_dir,
                       actor=shell().username)
        print(f"registered model version {result.card.name} in {_shown(settings.resolved_database_url)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a labelled data set: JSON report, plots and NG heatmaps."""
    from inspect_app.engine.evaluate import evaluate_model

    out = Path(args.out) if args.out else Path(args.model) / "evaluation"
    report = evaluate_model(
        args.model, args.data, out, device=args.device or "auto", batch_size=args.batch_size,
        false_reject=args.false_reject, target_escape=args.target_escape,
        target_false_reject=args.target_false_reject, progress=_progress_bar("evaluating"),
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

    name = args.name or time.strftime("anomaly-%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else settings.models_dir / name
    if args.update:
        result = update_anomaly(Path(args.update), list_images(Path(args.data_dir)), out, name=args.name or out.name)
    else:
        base = (AnomalyConfig.from_dict(read_yaml(Path(args.recipe)), where=f"recipe file {args.recipe!r}")
                if args.recipe else AnomalyConfig())
        config = base.with_overrides(backbone=args.backbone, input_size=args.input_size, seed=args.seed,
                                     device=args.device, batch_size=args.batch_size)
        data = scan_good_only(Path(args.data_dir), args.good_class)
        result = fit_anomaly(data, out, config, name=args.name or out.name)
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
        register_model(_open_repository(settings.resolved_database_url), result.card, result.model_dir,
                       actor=shell().username)
        print(f"registered model version {result.card.name} in {_shown(settings.resolved_database_url)}")
    return 0


def run_folder_job(spec: PipelineSpec, settings: Settings) -> int:
    """Run a declared pipeline through ``app.jobs`` and print its report: the body of ``inspect``, ``run``, ``demo``.

    Returns:
        The exit code: 0, or ``EXIT_UNDELIVERED`` when something (rows, evidence, reject signals) still waits in a
        spool at the end of the run.
    """
    from inspect_app.app.jobs import run_inspection_job
    from inspect_app.engine.pipeline import format_stats

    def show_stats(snapshot: dict) -> None:
        print(f"[{spec.name}] {format_stats(snapshot)}", file=sys.stderr, flush=True)

    report = run_inspection_job(
        spec, settings, actor=shell().username, progress=_progress_bar("inspecting"), on_stats=show_stats,
        announce=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_summary(report.summary, title=f"Inspection summary: {report.source} (model {report.model})"))
    if report.skipped:
        print(f"skipped {report.skipped} image(s) already inspected with this model at {spec.station}")
        if report.station_summary is not None:
            print(format_summary(report.station_summary, title=f"All of {spec.station}"))
    if report.dropped:
        print(f"dropped {report.dropped} live frame(s) under back-pressure")
    for name, (count, seconds) in report.outages.items():
        print(f"source {name}: {count} outage(s), {seconds:.1f} s without frames")
    for failure in report.source_failures:
        print(f"source failed: {failure}")
    if report.spool_replayed:
        print(f"{report.spool_replayed} result(s) spooled during a database outage were written to the database")
    print(f"results in {report.database}" + (f" and {spec.csv}" if spec.csv else ""))
    if not report.complete:
        # One line a station operator can act on; the exit code tells a scheduler the job is not complete.
        print("not delivered (the next run replays them): " + "; ".join(report.undelivered))
        return EXIT_UNDELIVERED
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Inspect an image folder into the database."""
    settings = _settings(args)
    spec = PipelineSpec(
        name="inspect", source=args.folder, model=args.model, station=args.station or settings.station,
        line=args.line or settings.line, database_url=args.db, batch_size=args.batch_size, threshold=args.threshold,
        review_band=args.review_band, csv=args.csv, ng_dir=args.ng_dir, device=args.device or settings.device,
    )
    return run_folder_job(spec, settings)


def cmd_run(args: argparse.Namespace) -> int:
    """Execute a declared pipeline file (``kind: finetune`` files register their schedule)."""
    if read_yaml(Path(args.pipeline)).get("kind") == "finetune":
        return register_finetune_pipeline(args)
    spec = PipelineSpec.from_yaml(Path(args.pipeline))
    return run_folder_job(spec, _settings(args))


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint for another runtime (ONNX)."""
    from inspect_app.models.export import export_model

    out = export_model(Path(args.model), args.format, Path(args.out) if args.out else None)
    print(f"exported {args.model} as {args.format} to {out}")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Apply database migrations up to the latest revision (as the owner role with --owner-url)."""
    from inspect_app.storage.db import upgrade

    url = migration_url(args, _settings(args).resolved_database_url)
    upgrade(url)
    print(f"database {_shown(url)} is at the latest schema")
    return 0


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    """Revert database migrations down to a revision."""
    from inspect_app.storage.db import downgrade, mask_url

    url = migration_url(args, _settings(args).resolved_database_url)
    downgrade(url, args.revision)
    print(f"database {mask_url(url)} downgraded to {args.revision}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    """Show the database's schema revision and the newest one shipped."""
    from inspect_app.storage.db import current_revision, head_revision, mask_url

    url = _settings(args).resolved_database_url
    print(f"database {mask_url(url)}: revision {current_revision(url) or 'none'} (newest {head_revision()})")
    return 0


def cmd_db_purge(args: argparse.Namespace) -> int:
    """Delete old inspections and their files; hourly aggregates stay."""
    from inspect_app.app.maintenance import purge
    from inspect_app.cli_lifecycle import shell
    from inspect_app.errors import ConfigError
    from inspect_app.storage.db import Database
    from inspect_app.storage.retention import parse_age

    try:
        age = parse_age(args.older_than)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    database = Database.open(_settings(args).resolved_database_url)
    try:
        result = purge(database, shell(), age, keep_files=args.keep_files, dry_run=args.dry_run)
    finally:
        database.dispose()
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {result.rows} inspection(s) created before {result.cutoff.isoformat()}")
    if not args.dry_run and not args.keep_files:
        print(f"files: {result.files_deleted} deleted, {result.files_missing} already gone, "
              f"{result.files_kept} kept (still referenced)")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    """List registered model versions."""
    repository = _open_repository(_settings(args).resolved_database_url)
    for version in repository.list_model_versions():
        acc = version.metrics.get("accuracy")
        acc_text = f"{acc:.3f}" if isinstance(acc, float) else "-"
        print(f"{version.name:<32} {version.status.value:<10} {version.backbone:<22} acc {acc_text}  {version.path}")
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    """Make a registered model version the active one."""
    from inspect_app.app.versions import promote_model
    from inspect_app.cli_lifecycle import shell
    from inspect_app.storage.db import Database

    promote_model(Database.open(_settings(args).resolved_database_url), shell(), args.name, reason="cli")
    print(f"model {args.name} is now {ModelStatus.ACTIVE.value}")
    return 0


def dashboard_command(port: int, address: str = DEFAULT_DASHBOARD_ADDRESS) -> list[str]:
    """The ``streamlit run`` command line that serves the dashboard on ``address``:``port``."""
    app = Path(__file__).parent / "ui" / "app.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
        "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start the Streamlit dashboard (blocks until stopped); loopback only unless ``--address`` says otherwise."""
    settings = _settings(args)
    env = {**os.environ, "INSPECT_DATABASE_URL": settings.resolved_database_url}
    address = getattr(args, "address", None) or DEFAULT_DASHBOARD_ADDRESS
    command = dashboard_command(args.port, address)
    shown = _shown(settings.resolved_database_url)
    host = f"[{address}]" if ":" in address else address
    print(f"dashboard on http://{host}:{args.port} (database {shown}); Ctrl-C stops it")
    if not settings.dashboard_open_viewing:
        print("sign-in required; create users with: inspect-app users add NAME --role admin|engineer|operator|viewer")
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole product in one go: sample data → fine-tune → inspect → summary → dashboard."""
    from inspect_app.engine.train import fit

    settings = _settings(args)
    sample = Path(args.sample_dir)
    if not (sample / "train").is_dir():
        from inspect_app.data.synthetic import generate_sample_data

        print(f"generating sample data in {sample}")
        generate_sample_data(sample, seed=0)
    model_dir = settings.models_dir / "demo"
    if (model_dir / "model_card.json").is_file() and not args.retrain:
        print(f"using the demo model already trained in {model_dir} (--retrain to train again)")
    else:
        config = TrainConfig(epochs=args.epochs, batch_size=16, input_size=224, device=settings.device)
        print(f"fine-tuning {config.backbone} on {sample / 'train'} for {config.epochs} epochs (a few minutes on CPU)")
        result = fit(sample / "train", model_dir, config, name="demo", progress=_train_progress)
        print(f"validation accuracy {result.card.metrics['accuracy']:.3f} in {result.seconds:.0f} s")
        register_model(_open_repository(settings.resolved_database_url), result.card, model_dir, actor=shell().username)
    spec = PipelineSpec(
        name="demo", source=str(sample / "incoming"), model=str(model_dir), station=settings.station,
        line=settings.line, csv=str(settings.home / "out" / "demo.csv"), ng_dir=str(settings.home / "out" / "ng"),
        device=settings.device,
    )
    code = run_folder_job(spec, settings)
    print(ensure_first_admin(settings.resolved_database_url))
    if args.no_dashboard or code:
        return code
    args.port = args.port or 8501
    return cmd_dashboard(args)


# ----------------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = _Parser(prog="inspect-app", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="folder for the database, models and outputs (default ./var, env INSPECT_HOME)")
    parser.add_argument("--db", help="database URL (default: SQLite under --home; env INSPECT_DATABASE_URL wins)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--test-dir", help="with --queue: frozen test set (class folders) for champion/challenger")
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

    p = sub.add_parser("inspect", help="inspect an image folder into the database")
    p.add_argument("folder")
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--station")
    p.add_argument("--line")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threshold", type=float, help="defect-score threshold (default: the model's)")
    p.add_argument("--review-band", type=float, default=None,
                   help="REVIEW band just below the threshold (default: the model's; 0 for binary OK/NG)")
    p.add_argument("--csv", help="also append results to this CSV file")
    p.add_argument("--ng-dir", help="folder for NG heatmap overlays (default <home>/ng)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="execute a declared pipeline (pipelines/*.yaml)")
    p.add_argument("pipeline")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("export", help="export a model for another runtime (ONNX)")
    p.add_argument("model", help="checkpoint folder")
    p.add_argument("--format", default="onnx", choices=("onnx",))
    p.add_argument("--out", help="output file (default <model>/model.onnx)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("dashboard", help="start the Streamlit dashboard")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default=DEFAULT_DASHBOARD_ADDRESS,
                   help="address to listen on (default 127.0.0.1: this machine only; see the README on TLS)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("demo", help="sample data → fine-tune → inspect → summary → dashboard")
    p.add_argument("--sample-dir", default=str(DEFAULT_SAMPLE_DIR))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default=DEFAULT_DASHBOARD_ADDRESS, help="dashboard address (default 127.0.0.1)")
    p.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply migrations")
    add_owner_url_option(p)
    p.set_defaults(func=cmd_db_upgrade)
    p = db.add_parser("downgrade", help="revert migrations to a revision (e.g. 0001, -1, base)")
    p.add_argument("revision")
    add_owner_url_option(p)
    p.set_defaults(func=cmd_db_downgrade)
    p = db.add_parser("current", help="show the schema revision")
    p.set_defaults(func=cmd_db_current)
    p = db.add_parser("purge", help="delete old inspections and their image/heatmap files (aggregates stay)")
    p.add_argument("--older-than", required=True, help="age such as 90d, 12h, 2w")
    p.add_argument("--keep-files", action="store_true", help="delete the rows only, keep image and heatmap files")
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    p.set_defaults(func=cmd_db_purge)
    add_role_commands(db)

    models = sub.add_parser("models", help="model versions").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("list", help="list model versions")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("promote", help="make a model version active")
    p.add_argument("name")
    p.set_defaults(func=cmd_models_promote)

    add_user_commands(sub)
    add_lifecycle_commands(sub, models)
    return parser


# Which install extra brings a module that only some machines have (pyproject.toml).
EXTRA_OF_MODULE = {
    **dict.fromkeys(("torch", "torchvision", "timm", "cv2", "faiss", "onnx", "onnxruntime", "safetensors",
                     "matplotlib"), "station"),
    **dict.fromkeys(("streamlit", "pandas", "altair"), "dashboard"),
}


def error_line(exc: BaseException) -> str | None:
    """The one line the CLI prints for an expected error, or ``None`` for a bug (which keeps its traceback).

    Expected: this package's own errors, unknown names (``LookupError``), a refused value (pydantic's
    ``ValidationError``, should one come from outside the config models) and files that cannot be read or written
    (``OSError``, such as ``--csv`` into a missing or read-only folder).
    """
    from pydantic import BaseModel, ValidationError

    from inspect_app.config.base import validation_message

    if isinstance(exc, ValidationError):
        return f"error: {validation_message(exc, BaseModel, exc.title)}"
    if isinstance(exc, OSError) and exc.filename is not None:
        target = f"{exc.filename!s}" + (f" -> {exc.filename2!s}" if exc.filename2 else "")
        return f"error: {target}: {exc.strerror or exc}"
    if isinstance(exc, InspectAppError | LookupError | OSError):
        # LookupError: a run, schedule or model name that does not exist (the message names it and the known ones).
        return "error: " + " ".join(str(exc).split())
    return None


class _Parser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (argparse's own prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``inspect-app``; returns the exit code (2 for bad input, with one line on stderr)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as exc:
        # A machine installs only its extra: a dashboard server has no torch, a station no Streamlit.
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"error: this command needs {exc.name!r}, which this machine has not installed; it comes with the "
              f"{extra!r} extra: pip install 'inspect_app[{extra}]'", file=sys.stderr)
        return 2
    except Exception as exc:
        line = error_line(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
