"""Fine-tuning runs: queue one for the worker, cancel one; both audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspect_app.app.access import authorize
from inspect_app.config.policy import MODEL_KINDS, FinetuneSpec
from inspect_app.config.recipes import TrainConfig
from inspect_app.errors import ConfigError
from inspect_app.records import AuditEvent, TrainingRun, User
from inspect_app.storage.db import Database
from inspect_app.storage.runs import RunQueue

__all__ = ["cancel_run", "enqueue_training"]


def enqueue_training(
    db: Database,
    user: User | None,
    data_dir: str,
    recipe: dict[str, Any],
    model_name: str | None = None,
    use_reviews: bool = True,
    test_dir: str | None = None,
    *,
    kind: str = "classifier",
    update: bool = False,
) -> int:
    """Queue a fine-tuning run for the lifecycle worker; returns the run id.

    The run's ``config`` is a ``FinetuneSpec`` dict (what ``lifecycle.worker`` reads), with who asked in
    ``train.extra.requested_by``. ``kind="classifier"``: ``recipe`` holds ``TrainConfig`` options (checked here).
    ``kind="anomaly"``: a good-only run, ``recipe`` holds ``AnomalyConfig`` options (checked by the worker, which has
    the engine; the CLI checks them before calling) and ``update`` adds the good images reviewed since the active
    good-only model was made to it instead of fitting anew. ``use_reviews`` adds the reviewed parts to the data.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        ValueError: ``data_dir`` (or a given ``test_dir``) is not an existing folder.
        ConfigError: the recipe has an unknown option or a bad value, the kind is not one of ``MODEL_KINDS``, or
            ``update`` is asked of a classifier (each named).
    """
    user = authorize(user, "train")
    if not data_dir or not Path(data_dir).is_dir():
        raise ValueError(f"training data folder {data_dir!r} does not exist")
    if test_dir and not Path(test_dir).is_dir():
        raise ValueError(f"test folder {test_dir!r} does not exist")
    if kind not in MODEL_KINDS:
        raise ConfigError(f"run kind {kind!r} is not one of {list(MODEL_KINDS)}")
    train = TrainConfig.from_dict(dict(recipe) if kind == "classifier" else {})
    train.extra["requested_by"] = user.username  # the Training page's "By" column, for both kinds
    spec = FinetuneSpec.from_dict({
        "train": train, "kind": kind, "anomaly": dict(recipe) if kind == "anomaly" else {}, "update": bool(update),
        "test_dir": str(Path(test_dir).resolve()) if test_dir else None, "use_reviews": bool(use_reviews),
    }, where="training run")
    details = {"data_dir": str(data_dir), "model_name": model_name, "use_reviews": bool(use_reviews),
               "test_dir": test_dir, "kind": kind, "update": bool(update)}
    return RunQueue(db).enqueue(
        spec.to_dict(), str(Path(data_dir).resolve()), model_name=model_name or None,
        audit=lambda run_id: AuditEvent(actor=user.username, action="training.enqueue",
                                        target=f"training_run:{run_id}", details=details),
    )


def cancel_run(db: Database, user: User | None, run_id: int) -> TrainingRun:
    """Cancel a run (``RunQueue.cancel``: a queued one at once, a running one at its next step), audited.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no run has ``run_id``.
        RunStateError: the run has already finished (its status named).
    """
    user = authorize(user, "cancel")
    return RunQueue(db).cancel(int(run_id), audit=lambda run: AuditEvent(
        actor=user.username, action="training.cancel", target=f"training_run:{run_id}",
        details={"status": run.status.value, "cancel_requested": run.cancel_requested}))
