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
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from inspect_app.app.versions import register_model
from inspect_app.cli_alarms import add_alarm_commands
from inspect_app.cli_common import open_repository, settings_of, shown
from inspect_app.cli_db import add_owner_url_option, add_role_commands, migration_url
from inspect_app.cli_inspect import add_inspect_commands, run_folder_job
from inspect_app.cli_lifecycle import add_lifecycle_commands, shell
from inspect_app.cli_train import DEFAULT_SAMPLE_DIR, add_train_commands, train_progress
from inspect_app.cli_users import add_user_commands, ensure_first_admin
from inspect_app.config.pipeline import PipelineSpec
from inspect_app.config.recipes import TrainConfig
from inspect_app.errors import ConfigError, InspectAppError
from inspect_app.log import setup_logging
from inspect_app.records import ModelStatus

logger = logging.getLogger(__name__)

# Loopback unless told otherwise: on the plant network the dashboard sits behind a TLS proxy (README).
DEFAULT_DASHBOARD_ADDRESS = "127.0.0.1"


# ----------------------------------------------------------------------------------------------------------- helpers
# ----------------------------------------------------------------------------------------------------------- commands
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Apply database migrations up to the latest revision (as the owner role with --owner-url)."""
    from inspect_app.storage.db import upgrade

    url = migration_url(args, settings_of(args).resolved_database_url)
    upgrade(url)
    print(f"database {shown(url)} is at the latest schema")
    return 0


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    """Revert database migrations down to a revision."""
    from inspect_app.storage.db import downgrade, mask_url

    url = migration_url(args, settings_of(args).resolved_database_url)
    downgrade(url, args.revision)
    print(f"database {mask_url(url)} downgraded to {args.revision}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    """Show the database's schema revision and the newest one shipped."""
    from inspect_app.storage.db import current_revision, head_revision, mask_url

    url = settings_of(args).resolved_database_url
    print(f"database {mask_url(url)}: revision {current_revision(url) or 'none'} (newest {head_revision()})")
    return 0


def cmd_db_purge(args: argparse.Namespace) -> int:
    """Delete old inspections and their files; hourly aggregates stay."""
    from inspect_app.app.maintenance import purge_inspections
    from inspect_app.cli_lifecycle import shell
    from inspect_app.storage.db import Database
    from inspect_app.storage.retention import parse_age

    try:
        age = parse_age(args.older_than)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    settings = settings_of(args)
    database = Database.open(settings.resolved_database_url)
    try:
        result = purge_inspections(database, shell(), age, keep_files=args.keep_files, dry_run=args.dry_run,
                                   evidence_root=settings.resolved_evidence_dir)
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
    repository = open_repository(settings_of(args).resolved_database_url)
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

    promote_model(Database.open(settings_of(args).resolved_database_url), shell(), args.name, reason="cli")
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
    settings = settings_of(args)
    # The home travels too: evidence, run logs and the session key are found under it on every page.
    env = {**os.environ, "INSPECT_DATABASE_URL": settings.resolved_database_url, "INSPECT_HOME": str(settings.home)}
    address = getattr(args, "address", None) or DEFAULT_DASHBOARD_ADDRESS
    command = dashboard_command(args.port, address)
    database = shown(settings.resolved_database_url)
    host = f"[{address}]" if ":" in address else address
    print(f"dashboard on http://{host}:{args.port} (database {database}); Ctrl-C stops it")
    if not settings.dashboard_open_viewing:
        print("sign-in required; create users with: inspect-app users add NAME --role admin|engineer|operator|viewer")
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole product in one go: sample data → fine-tune → inspect → summary → dashboard."""
    from inspect_app.engine.train import fit

    settings = settings_of(args)
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
        result = fit(sample / "train", model_dir, config, name="demo", progress=train_progress())
        print(f"validation accuracy {result.card.metrics['accuracy']:.3f} in {result.seconds:.0f} s")
        register_model(open_repository(settings.resolved_database_url), result.card, model_dir, actor=shell().username)
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

    add_train_commands(sub)

    add_inspect_commands(sub)

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
    add_alarm_commands(sub)
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
