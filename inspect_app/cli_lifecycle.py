"""The lifecycle commands of ``inspect-app``: worker, scheduler, runs, schedules, ``train --queue``, rollback, reviews.

Kept apart from ``cli.py`` so that the fine-tuning lifecycle can grow without touching the other commands; ``cli``
adds these sub-commands to its parser with ``add_lifecycle_commands``. Heavy imports stay inside the commands.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from inspect_app.cli_common import open_database, settings_of
from inspect_app.config.recipes import TrainConfig, load_recipe
from inspect_app.config.settings import Settings
from inspect_app.errors import ConfigError, DatasetError
from inspect_app.records import ModelStatus, User


def os_user() -> str:
    """The operating-system user running this command (``$USER``, else the login database's name)."""
    import getpass

    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return f"uid{os.getuid()}"


def actor() -> str:
    """Who acts from this shell, for the audit log."""
    return f"cli:{os_user()}"


def shell() -> User:
    """The audited acting user of this shell (``app.access.shell_user``)."""
    from inspect_app.app.access import shell_user

    return shell_user(os_user())



def _require_folder(folder: str) -> None:
    """Refuse to queue or schedule work on a folder that does not exist (the worker would only fail later)."""
    if not Path(folder).is_dir():
        raise DatasetError(f"data folder {folder!r} does not exist or is not a directory")


def good_only_recipe(recipe: str | None, **overrides: Any) -> dict[str, Any]:
    """A good-only run's ``AnomalyConfig`` options: the recipe file's, flags over them, checked here (one line)."""
    from inspect_app.config.base import read_yaml
    from inspect_app.engine.anomaly_config import AnomalyConfig

    base = AnomalyConfig.from_dict(read_yaml(Path(recipe)), where=f"recipe file {recipe!r}") if recipe else None
    return (base or AnomalyConfig()).with_overrides(**overrides).to_dict()


def queue_training(args: argparse.Namespace, settings: Settings, config: TrainConfig | None) -> int:
    """``train --queue``: record a run for ``inspect-app worker`` instead of training here (``app.runs``, audited).

    ``config`` is the classifier recipe; ``None`` with ``--kind anomaly``, whose recipe is read here.
    """
    from inspect_app.app.runs import enqueue_training
    from inspect_app.storage.db import Database

    for folder in filter(None, (args.data_dir, args.test_dir)):
        _require_folder(folder)
    if config is None:
        if getattr(args, "update", None):
            raise ConfigError(f"--update {args.update!r} with --queue: a queued run refreshes the active good-only "
                              "model; schedule it with `schedules add NAME --kind anomaly --update`")
        # Checked here, where the engine is: a bad option is one line now rather than a failed run later.
        recipe = good_only_recipe(args.recipe, backbone=args.backbone, input_size=args.input_size, seed=args.seed,
                                  device=args.device, batch_size=args.batch_size)
    else:
        recipe = config.to_dict()
    db = Database.open(settings.resolved_database_url)
    run_id = enqueue_training(db, shell(), args.data_dir, recipe, model_name=args.name, test_dir=args.test_dir,
                              kind="classifier" if config is not None else "anomaly")
    kind = "good-only " if config is None else ""
    print(f"queued {kind}training run {run_id} on {args.data_dir}; `inspect-app worker` executes it")
    return 0


def register_finetune_pipeline(args: argparse.Namespace) -> int:
    """``run`` on a ``kind: finetune`` file: create or update its schedule (``app.schedules``, audited)."""
    from inspect_app.app.schedules import register_schedule
    from inspect_app.lifecycle.scheduler import read_finetune_pipeline

    name, cron, config = read_finetune_pipeline(Path(args.pipeline))
    schedule, _ = register_schedule(open_database(args), shell(), name, cron, config)
    print(f"schedule {name} ({cron}) registered; next run {schedule.next_run_at:%Y-%m-%d %H:%M} UTC; "
          "`inspect-app scheduler` fires it and `inspect-app worker` trains")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Execute queued fine-tuning runs one at a time."""
    from datetime import timedelta

    from inspect_app.lifecycle.worker import Worker

    worker = Worker(open_database(args), settings_of(args), name=args.name, heartbeat_s=args.heartbeat,
                    stale_after=timedelta(seconds=args.stale_after), max_attempts=args.max_attempts)
    for run in worker.recover():
        print(f"recovered training run {run.id}: now {run.status.value}")
    if args.once:
        claimed = worker.run_once()
        print("queue empty" if claimed is None else f"training run {claimed.id}: {claimed.status.value}")
        return 0
    print(f"worker {worker.name} waiting for queued runs" + (" (until the queue is empty)" if args.drain else ""))
    try:
        done = worker.run_forever(poll_s=args.poll, drain=args.drain)
    except KeyboardInterrupt:
        return 0
    print(f"worker {worker.name} executed {done} run(s)")
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    """Fire due schedules into the run queue."""
    from inspect_app.config.alarms import load_alarm_settings
    from inspect_app.lifecycle.scheduler import Scheduler

    alarms = load_alarm_settings() if args.alarms_every else None
    scheduler = Scheduler(open_database(args), alarms=alarms, alarm_every_s=args.alarms_every or 60.0,
                          zone=settings_of(args).plant_zone)
    if args.once:
        queued = scheduler.tick()
        print(f"queued training run(s) {queued}" if queued else "no schedule due")
        return 0
    checks = f", alarm checks every {args.alarms_every:g} s" if args.alarms_every else ""
    print(f"scheduler ticking every {args.interval:g} s{checks}; Ctrl-C stops it")
    try:
        scheduler.run_forever(interval_s=args.interval)
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    """List training runs, newest first."""
    from inspect_app.storage.runs import RunQueue

    for run in RunQueue(open_database(args)).list(limit=args.limit, status=args.status):
        phase = run.progress.get("phase", "")
        epoch = f" epoch {run.progress['epoch']}" if "epoch" in run.progress else ""
        print(f"{run.id:>5} {run.status.value:<10} {run.created_at:%Y-%m-%d %H:%M} {run.model_name or '-':<28} "
              f"{run.schedule or 'manual':<18} {phase}{epoch} {run.error or run.metrics.get('decision') or ''}")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    """Show one training run as JSON."""
    import dataclasses
    import json

    from inspect_app.storage.runs import RunQueue

    run = RunQueue(open_database(args)).get(args.run_id)
    print(json.dumps(dataclasses.asdict(run), indent=2, default=str))
    return 0


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    """Cancel a queued or running training run."""
    from inspect_app.app.runs import cancel_run

    run = cancel_run(open_database(args), shell(), args.run_id)
    state = "cancelled" if run.status.value == "cancelled" else "asked to stop at its next step"
    print(f"training run {run.id} {state}")
    return 0


def cmd_schedules_add(args: argparse.Namespace) -> int:
    """Add a cron schedule that queues fine-tuning runs."""
    from inspect_app.app.schedules import add_schedule
    from inspect_app.config.policy import FinetuneSpec

    for folder in filter(None, (args.data_dir, args.test_dir)):
        _require_folder(folder)
    test_dir = str(Path(args.test_dir).resolve()) if args.test_dir else None
    if args.update and args.kind != "anomaly":
        raise ConfigError("--update refreshes a good-only model: add --kind anomaly")
    if args.kind == "anomaly":
        if args.epochs is not None or args.lr is not None:
            raise ConfigError("--epochs and --lr are classifier options; a good-only model (--kind anomaly) has none")
        anomaly = good_only_recipe(args.recipe, backbone=args.backbone, input_size=args.input_size,
                                   batch_size=args.batch_size, device=args.device)
        spec = FinetuneSpec(kind="anomaly", anomaly=anomaly, update=args.update, test_dir=test_dir,
                            model_prefix=args.name)
    else:
        base = load_recipe(Path(args.recipe) if args.recipe else None)
        train = base.with_overrides(backbone=args.backbone, epochs=args.epochs, input_size=args.input_size,
                                    batch_size=args.batch_size, lr=args.lr, device=args.device)
        spec = FinetuneSpec(train=train, test_dir=test_dir, model_prefix=args.name)
    schedule = add_schedule(open_database(args), shell(), args.name, args.cron, args.data_dir, spec,
                            args.only_if_new_data)
    print(f"schedule {schedule.name} ({schedule.cron}) added; next run {schedule.next_run_at:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_schedules_list(args: argparse.Namespace) -> int:
    """List schedules."""
    from inspect_app.storage.schedules import ScheduleStore

    for s in ScheduleStore(open_database(args)).list():
        last = f"{s.last_run_at:%Y-%m-%d %H:%M}" if s.last_run_at else "never"
        nxt = f"{s.next_run_at:%Y-%m-%d %H:%M}" if s.next_run_at else "-"
        only = " only-if-new-data" if s.config.get("only_if_new_data") else ""
        print(f"{s.name:<24} {'on ' if s.enabled else 'off'} {s.cron:<16} next {nxt}  last {last}  "
              f"{s.config.get('data_dir', '')}{only}")
    return 0


def cmd_schedules_toggle(args: argparse.Namespace) -> int:
    """Enable or disable a schedule."""
    from inspect_app.app.schedules import set_schedule_enabled

    schedule = set_schedule_enabled(open_database(args), shell(), args.name, args.enable)
    print(f"schedule {schedule.name} {'enabled' if schedule.enabled else 'disabled'}")
    return 0


def cmd_schedules_remove(args: argparse.Namespace) -> int:
    """Delete a schedule (its runs stay)."""
    from inspect_app.app.schedules import remove_schedule

    remove_schedule(open_database(args), shell(), args.name)
    print(f"schedule {args.name} removed")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    """Re-activate the model the current active one replaced."""
    from inspect_app.app.versions import rollback_model

    version = rollback_model(open_database(args), shell())
    print(f"rolled back: model {version.name} is now {ModelStatus.ACTIVE.value}")
    return 0


def cmd_reviews_export(args: argparse.Namespace) -> int:
    """Write the reviewed parts as a ``path,label`` CSV manifest (``train`` and ``evaluate`` read it)."""
    from datetime import UTC, datetime

    from inspect_app.app.reviews import export_reviews

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError as exc:
            raise ConfigError(f"--since {args.since!r} is not an ISO date or date-time (e.g. 2026-11-01)") from exc
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)  # plant records are UTC
    try:
        export = export_reviews(open_database(args), Path(args.out), since=since,
                                evidence_root=settings_of(args).resolved_evidence_dir)
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc
    print(f"wrote {export.written} reviewed parts to {args.out}")
    if export.frames or export.missing:
        print(f"left out {export.frames} stream frame(s) without an evidence file and {export.missing} part(s) whose "
              f"image file is not here")
    return 0


def add_lifecycle_commands(sub: argparse._SubParsersAction, models: argparse._SubParsersAction) -> None:
    """Add ``worker``, ``scheduler``, ``runs``, ``schedules``, ``reviews`` and ``models rollback`` to the parser."""
    p = models.add_parser("rollback", help="re-activate the model the active one replaced")
    p.set_defaults(func=cmd_models_rollback)

    p = sub.add_parser("worker", help="execute queued fine-tuning runs one at a time")
    p.add_argument("--name", help="worker name (default host:pid); a restart under the same name recovers its runs")
    p.add_argument("--once", action="store_true", help="execute at most one run, then exit")
    p.add_argument("--drain", action="store_true", help="exit when the queue is empty")
    p.add_argument("--poll", type=float, default=10.0, help="seconds between queue polls when idle")
    p.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats while training")
    p.add_argument("--stale-after", type=float, default=120.0, help="seconds without heartbeat: run abandoned")
    p.add_argument("--max-attempts", type=int, default=3, help="abandoned this often, a run is marked failed")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("scheduler", help="queue fine-tuning runs when their cron schedules are due")
    p.add_argument("--once", action="store_true", help="one tick, then exit")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between ticks")
    p.add_argument("--alarms-every", type=float, default=60.0, metavar="SECONDS",
                   help="also run the alarm checks (INSPECT_ALARM_* settings) this often; 0: no alarm checks")
    p.set_defaults(func=cmd_scheduler)

    runs = sub.add_parser("runs", help="fine-tuning runs").add_subparsers(dest="runs_command", required=True)
    p = runs.add_parser("list", help="list runs, newest first")
    p.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_runs_list)
    p = runs.add_parser("show", help="one run as JSON")
    p.add_argument("run_id", type=int)
    p.set_defaults(func=cmd_runs_show)
    p = runs.add_parser("cancel", help="cancel a queued or running run")
    p.add_argument("run_id", type=int)
    p.set_defaults(func=cmd_runs_cancel)

    schedules = sub.add_parser("schedules", help="cron schedules of fine-tuning runs").add_subparsers(
        dest="schedules_command", required=True)
    p = schedules.add_parser("add", help="add a schedule")
    p.add_argument("name")
    p.add_argument("--cron", required=True, help="e.g. '0 2 * * *' (02:00 UTC every night)")
    p.add_argument("--data-dir", required=True, help="class-folder data set to train on")
    p.add_argument("--test-dir", help="frozen test set (default: a path-hash hold-out of --data-dir)")
    p.add_argument("--only-if-new-data", action="store_true", help="skip when nothing new was reviewed or added")
    p.add_argument("--kind", choices=("classifier", "anomaly"), default="classifier",
                   help="anomaly: fit a good-only model (its recipe: AnomalyConfig options)")
    p.add_argument("--update", action="store_true",
                   help="--kind anomaly: add the good images reviewed since the active good-only model was made")
    p.add_argument("--recipe", help="YAML file of training options; flags override it")
    p.add_argument("--backbone")
    p.add_argument("--epochs", type=int)
    p.add_argument("--input-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.set_defaults(func=cmd_schedules_add)
    p = schedules.add_parser("list", help="list schedules")
    p.set_defaults(func=cmd_schedules_list)
    for verb, enable in (("enable", True), ("disable", False)):
        p = schedules.add_parser(verb, help=f"{verb} a schedule")
        p.add_argument("name")
        p.set_defaults(func=cmd_schedules_toggle, enable=enable)
    p = schedules.add_parser("remove", help="delete a schedule")
    p.add_argument("name")
    p.set_defaults(func=cmd_schedules_remove)

    reviews = sub.add_parser("reviews", help="verdicts of the review queue").add_subparsers(
        dest="reviews_command", required=True)
    p = reviews.add_parser("export", help="write reviewed parts as a path,label CSV manifest for train/evaluate")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--since", help="only reviews from this UTC date or date-time on (ISO, e.g. 2026-11-01)")
    p.set_defaults(func=cmd_reviews_export)
