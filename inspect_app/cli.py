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

from inspect_app.config import PipelineSpec, Settings, TrainConfig, load_settings, read_yaml
from inspect_app.errors import InspectAppError
from inspect_app.log import setup_logging
from inspect_app.records import InspectionSummary, ModelStatus, ModelVersion

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_DIR = Path("sample_data")


# ----------------------------------------------------------------------------------------------------------- helpers
def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(home=args.home, database_url=args.db)


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
    rows += [(f"  NG {name}", f"{count}") for name, count in summary.per_class.items()]
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * (width + 12)]
    lines += [f"{name:<{width}}  {value:>8}" for name, value in rows]
    return "\n".join(lines)


def _progress_bar(label: str) -> Callable[[int, int], None]:
    start = time.perf_counter()

    def show(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
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
            f"{event['images_per_s']:.1f} img/s   "
        )
        sys.stderr.flush()
    elif event["phase"] == "epoch":
        sys.stderr.write(
            f"\repoch {event['epoch']}/{event['epochs']} train loss {event['train_loss']:.4f} "
            f"val acc {event['val_accuracy']:.3f} val macro recall {event['val_macro_recall']:.3f}\n"
        )


def register_model(repository: object, card: object, model_dir: Path, promote_if_first: bool = True) -> ModelVersion:
    """Record a trained model as a version in the database; the first one becomes active."""
    version = ModelVersion(
        name=card.name,
        kind=card.kind,
        backbone=card.backbone,
        path=str(Path(model_dir).resolve()),
        classes=tuple(card.classes),
        metrics=card.metrics,
        threshold=card.threshold,
        data_fingerprint=card.data_fingerprint,
    )
    if repository.get_model_version(card.name) is None:
        repository.add_model_version(version)
    if promote_if_first and repository.active_model() is None:
        repository.promote(card.name)
    return version


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
    base = TrainConfig.from_dict(read_yaml(Path(args.recipe))) if args.recipe else TrainConfig()
    config = base.with_overrides(
        backbone=args.backbone, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        input_size=args.input_size, seed=args.seed, device=args.device, optimizer=args.optimizer,
    )
    out = Path(args.out) if args.out else settings.models_dir / (args.name or time.strftime("model-%Y%m%d-%H%M%S"))
    result = fit(Path(args.data_dir), out, config, name=args.name or out.name, progress=_train_progress)
    metrics = result.card.metrics
    print(f"model {result.card.name} saved to {result.model_dir} in {result.seconds:.0f} s")
    print(f"validation: accuracy {metrics['accuracy']:.3f}, macro recall {metrics['macro_recall']:.3f}, "
          f"AUROC good-vs-defect {metrics.get('auroc_good_vs_defect')}")
    if not args.no_register:
        register_model(_open_repository(settings.resolved_database_url), result.card, result.model_dir)
        print(f"registered model version {result.card.name} in {settings.resolved_database_url}")
    return 0


def build_sinks(spec: PipelineSpec, settings: Settings, repository: object) -> list:
    """The sinks a pipeline declares, in the order they must run (files first so rows carry their paths)."""
    from inspect_app.engine.sinks import CsvSink, DatabaseSink, HeatmapFileSink, JsonLinesSink, RejectHookSink

    spool = Path(spec.spool_dir) if spec.spool_dir else settings.home / "spool"
    sinks: list = [HeatmapFileSink(Path(spec.ng_dir) if spec.ng_dir else settings.home / "ng", spec.save_ng_images)]
    if spec.csv:
        sinks.append(CsvSink(Path(spec.csv)))
    if spec.jsonl:
        sinks.append(JsonLinesSink(Path(spec.jsonl)))
    if spec.reject_webhook or spec.reject_command:
        sinks.append(RejectHookSink(
            spool / f"reject_{spec.name}.jsonl", webhook=spec.reject_webhook, command=spec.reject_command,
            decisions=spec.reject_on,
        ))
    sinks.append(DatabaseSink(repository))
    return sinks


def run_folder_job(spec: PipelineSpec, settings: Settings) -> InspectionSummary:
    """Execute a declared pipeline (any source kind): the shared body of ``inspect``, ``run`` and ``demo``."""
    from inspect_app.data.sources import open_source
    from inspect_app.engine.onnx_backend import load_inspector
    from inspect_app.engine.pipeline import Pipeline, format_stats

    url = os.environ.get("INSPECT_DATABASE_URL") or spec.database_url or settings.resolved_database_url
    repository = _open_repository(url)
    inspector = load_inspector(
        Path(spec.model), backend=spec.backend, device=spec.device, threshold=spec.threshold,
        review_band=spec.review_band, onnx_path=Path(spec.onnx_path) if spec.onnx_path else None,
    )
    register_model(repository, inspector.card, Path(spec.model))
    known = repository.known_hashes(inspector.card.name, spec.station)
    source = open_source(
        spec.source_kind, spec.source, station=spec.station, line=spec.line, skip_hashes=known, live=spec.live,
        options=spec.source_options,
    )

    def show_stats(snapshot: dict) -> None:
        print(f"[{spec.name}] {format_stats(snapshot)}", file=sys.stderr, flush=True)

    finite = source.total is not None
    pipeline = Pipeline(
        [source], inspector, build_sinks(spec, settings, repository), name=spec.name, max_batch=spec.batch_size,
        max_wait_ms=spec.max_wait_ms, queue_size=spec.queue_size, stats_interval_s=spec.stats_interval_s,
        on_stats=None if finite else show_stats,
        stats_path=Path(spec.stats_file) if spec.stats_file else settings.home / "stats" / f"{spec.name}.json",
        progress=_progress_bar("inspecting") if finite else None,
        spool_dir=Path(spec.spool_dir) if spec.spool_dir else settings.home / "spool",
    )
    if not finite:
        print(f"[{spec.name}] inspecting {source.name}; Ctrl-C stops, drains and flushes", file=sys.stderr)
    result = pipeline.run()
    summary = result.summary()
    print(format_summary(summary, title=f"Inspection summary: {spec.source} (model {inspector.card.name})"))
    if result.skipped:
        print(f"skipped {result.skipped} image(s) already inspected with this model at {spec.station}")
    if result.dropped:
        print(f"dropped {sum(result.dropped.values())} live frame(s) under back-pressure")
    for name, gaps in result.gaps.items():
        print(f"source {name}: {len(gaps)} outage(s), {sum(g.seconds for g in gaps):.1f} s without frames")
    for failure in result.source_failures:
        print(f"source failed: {failure}")
    print(f"results in {url}" + (f" and {spec.csv}" if spec.csv else ""))
    return summary


def cmd_inspect(args: argparse.Namespace) -> int:
    """Inspect an image folder into the database."""
    settings = _settings(args)
    spec = PipelineSpec(
        name="inspect", source=args.folder, model=args.model, station=args.station or settings.station,
        line=args.line or settings.line, database_url=args.db, batch_size=args.batch_size, threshold=args.threshold,
        review_band=args.review_band, csv=args.csv, ng_dir=args.ng_dir, device=args.device or settings.device,
    )
    run_folder_job(spec, settings)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Execute a declared pipeline file."""
    spec = PipelineSpec.from_yaml(Path(args.pipeline))
    run_folder_job(spec, _settings(args))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint for another runtime (ONNX)."""
    from inspect_app.models.export import export_model

    out = export_model(Path(args.model), args.format, Path(args.out) if args.out else None)
    print(f"exported {args.model} as {args.format} to {out}")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Apply database migrations up to the latest revision."""
    from inspect_app.storage.db import upgrade

    url = _settings(args).resolved_database_url
    upgrade(url)
    print(f"database {url} is at the latest schema")
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
    repository = _open_repository(_settings(args).resolved_database_url)
    repository.promote(args.name)
    print(f"model {args.name} is now {ModelStatus.ACTIVE.value}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start the Streamlit dashboard (blocks until stopped)."""
    settings = _settings(args)
    app = Path(__file__).parent / "ui" / "app.py"
    env = {**os.environ, "INSPECT_DATABASE_URL": settings.resolved_database_url}
    command = [
        sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]
    print(f"dashboard on http://localhost:{args.port} (database {settings.resolved_database_url}); Ctrl-C stops it")
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
        register_model(_open_repository(settings.resolved_database_url), result.card, model_dir)
    spec = PipelineSpec(
        name="demo", source=str(sample / "incoming"), model=str(model_dir), station=settings.station,
        line=settings.line, csv=str(settings.home / "out" / "demo.csv"), ng_dir=str(settings.home / "out" / "ng"),
        device=settings.device,
    )
    run_folder_job(spec, settings)
    if args.no_dashboard:
        return 0
    args.port = args.port or 8501
    return cmd_dashboard(args)


# ----------------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="inspect-app", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="folder for the database, models and outputs (default ./var, env INSPECT_HOME)")
    parser.add_argument("--db", help="database URL (default: SQLite under --home; env INSPECT_DATABASE_URL wins)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample-data", help="generate synthetic parts with defects and masks")
    p.add_argument("dir", nargs="?", default=str(DEFAULT_SAMPLE_DIR))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder's content")
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("train", help="fine-tune a classifier on a class-folder dataset")
    p.add_argument("data_dir", help="folder with one sub-folder per class (good, scratch, ...)")
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
    p.add_argument("--no-register", action="store_true", help="do not record the model in the database")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("inspect", help="inspect an image folder into the database")
    p.add_argument("folder")
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--station")
    p.add_argument("--line")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threshold", type=float, help="defect-score threshold (default: the model's)")
    p.add_argument("--review-band", type=float, default=0.0)
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
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("demo", help="sample data → fine-tune → inspect → summary → dashboard")
    p.add_argument("--sample-dir", default=str(DEFAULT_SAMPLE_DIR))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument("--port", type=int, default=8501)
    p.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply migrations")
    p.set_defaults(func=cmd_db_upgrade)

    models = sub.add_parser("models", help="model versions").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("list", help="list model versions")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("promote", help="make a model version active")
    p.add_argument("name")
    p.set_defaults(func=cmd_models_promote)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``inspect-app``; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except InspectAppError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
