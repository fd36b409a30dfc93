"""``inspect-app inspect``, ``run`` and ``export``: inspection jobs through ``app.jobs``, and model export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inspect_app.cli_common import progress_bar, settings_of
from inspect_app.cli_lifecycle import register_finetune_pipeline, shell
from inspect_app.config.base import read_yaml
from inspect_app.config.pipeline import PipelineSpec
from inspect_app.config.settings import Settings
from inspect_app.records import InspectionSummary

EXIT_UNDELIVERED = 3  # the run ended with rows, evidence or reject signals still waiting in a spool


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
        spec, settings, actor=shell().username, progress=progress_bar("inspecting"), on_stats=show_stats,
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
    settings = settings_of(args)
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
    return run_folder_job(spec, settings_of(args))


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint for another runtime (ONNX)."""
    from inspect_app.models.export import export_model

    out = export_model(Path(args.model), args.format, Path(args.out) if args.out else None)
    print(f"exported {args.model} as {args.format} to {out}")
    return 0


def add_inspect_commands(sub: argparse._SubParsersAction) -> None:
    """The ``inspect``, ``run`` and ``export`` sub-commands."""
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
