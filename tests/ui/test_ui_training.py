"""Training page (``ui.training``) driven by ``streamlit.testing`` on the seeded plant of ``test_ui_pages``: progress
as finished epochs for running, finished, failed and stale runs, the per-epoch loss curve from the run's log, the
stale-worker warning and the refresh while runs are active."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from inspect_app.config.policy import FinetuneSpec
from inspect_app.records import RunStatus, TrainingRun, utcnow
from inspect_app.storage import Database
from inspect_app.storage.runs import RunQueue
from inspect_app.ui import training
from tests.ui import test_ui_pages as pages

# The seeded plant (signed-in users, one running run without a worker, schedules) and the page tests' cache reset.
plant = pages.plant

EPOCH_LOG = (
    "2026-12-07 07:00:00 INFO inspect_app.engine.train: epoch 1/4 {'epoch': 1, 'train_loss': 0.9, 'val_loss': 1.1}\n"
    "2026-12-07 07:01:00 INFO inspect_app.engine.train: epoch 2/4 {'epoch': 2, 'train_loss': 0.5, 'val_loss': 0.7}\n"
    "2026-12-07 07:02:00 INFO inspect_app.engine.train: epoch 3/4 {'epoch': 3, 'train_los"  # being written
)


def _queue_runs(plant: dict) -> dict[str, int]:
    """Through the real run queue: one run training its 4th of 4 epochs, one that succeeded, one that failed after
    all its epochs, one whose worker went silent 10 minutes ago, and one still queued."""
    now = utcnow()
    log = plant["tmp"] / "live.log"
    log.write_text(EPOCH_LOG, encoding="utf-8")
    ids = {}
    with Database.open(plant["url"]) as db:
        queue = RunQueue(db)
        for name in ("last_epoch", "succeeded", "failed", "stale", "queued"):
            ids[name] = queue.enqueue({"epochs": 4}, "/data", model_name=name,
                                      created_at=now - timedelta(hours=1) + timedelta(seconds=len(ids)))
        for name in ("last_epoch", "succeeded", "failed", "stale"):
            claimed = queue.claim(f"worker-{name}", now=now - timedelta(minutes=20))
            assert claimed is not None and claimed.model_name == name
        queue.heartbeat(ids["last_epoch"], "worker-last_epoch",
                        {"phase": "train", "epoch": 4, "epochs": 4, "step": 3, "steps": 10}, now=now)
        queue.update_running(ids["last_epoch"], "worker-last_epoch", log_path=str(log))
        queue.heartbeat(ids["succeeded"], "worker-succeeded", {"phase": "epoch", "epoch": 4, "epochs": 4}, now=now)
        queue.finish(ids["succeeded"], "worker-succeeded", RunStatus.SUCCEEDED, now=now)
        queue.heartbeat(ids["failed"], "worker-failed", {"phase": "epoch", "epoch": 4, "epochs": 4}, now=now)
        queue.finish(ids["failed"], "worker-failed", RunStatus.FAILED, now=now, error="CUDA out of memory")
        queue.heartbeat(ids["stale"], "worker-stale", {"phase": "train", "epoch": 2, "epochs": 4},
                        now=now - timedelta(minutes=10))
    return ids


def test_progress_counts_finished_epochs_and_flags_silent_workers(plant: dict) -> None:
    ids = _queue_runs(plant)
    at = pages._open("training")
    runs = at.dataframe[0].value.set_index("Run")
    assert runs.loc[ids["last_epoch"], "Progress"] == pytest.approx(0.75)  # epoch 4 still training: 3 of 4 done
    assert runs.loc[ids["last_epoch"], "Epochs"] == "3 / 4"
    assert runs.loc[ids["last_epoch"], "Worker health"].startswith("reporting")
    assert runs.loc[ids["succeeded"], "Progress"] == pytest.approx(1.0)
    assert runs.loc[ids["failed"], "Status"] == "failed" and pd_blank(runs.loc[ids["failed"], "Progress"])
    assert runs.loc[ids["failed"], "Error"] == "CUDA out of memory"
    assert runs.loc[ids["stale"], "Worker health"] == "stale: no report for 10 min"
    assert runs.loc[ids["queued"], "Progress"] == 0.0 and runs.loc[ids["queued"], "Worker health"] == ""
    assert "None" not in {str(v) for v in runs.drop(columns="Progress").to_numpy().ravel()}
    warning = at.warning[0].value
    assert f"run {ids['stale']} (stale" in warning and f"run {ids['last_epoch']} " not in warning
    assert any("refreshed every" in c.value for c in at.caption)


def pd_blank(value: object) -> bool:
    """A missing value as pandas holds it (None or NaN)."""
    return value is None or value != value  # NaN is the one value unequal to itself


def test_loss_curve_from_the_log_of_the_chosen_run(plant: dict) -> None:
    ids = _queue_runs(plant)
    at = pages._open("training")
    at.selectbox(key="log_run").select(ids["last_epoch"])
    at = pages._run(at)
    assert any(m.value == "**Loss per epoch**" for m in at.markdown)
    history = training.loss_history(EPOCH_LOG)
    assert list(zip(history["Epoch"], history["Series"], history["Loss"], strict=True)) == [
        (1, "Training loss", 0.9), (1, "Validation loss", 1.1), (2, "Training loss", 0.5), (2, "Validation loss", 0.7),
    ]


def test_refresh_only_while_runs_are_active() -> None:
    queued = TrainingRun(config={}, data_dir="/d", status=RunStatus.QUEUED)
    done = TrainingRun(config={}, data_dir="/d", status=RunStatus.SUCCEEDED)
    assert training.refresh_every([done, queued]) == training.REFRESH_S
    assert training.refresh_every([done]) is None


def test_running_run_without_any_heartbeat_counts_from_its_start() -> None:
    now = utcnow()
    run = TrainingRun(config={}, data_dir="/d", status=RunStatus.RUNNING, created_at=now - timedelta(hours=2),
                      started_at=now - timedelta(minutes=3))
    assert training.worker_health(run, now) == "stale: no report for 3 min"
    recent = dataclasses.replace(run, started_at=now - timedelta(seconds=30))
    assert training.worker_health(recent, now) == "reporting (30 s ago)"


def test_engineer_queues_a_good_only_update_run_audited(plant: dict) -> None:
    at = pages._open("training", user="engineer")
    at.text_input(key="train_data_dir").input(str(plant["tmp"] / "train"))
    at.radio(key="train_kind").set_value("anomaly")
    at.checkbox(key="train_update").check()
    next(b for b in at.button if b.label == "Queue run").click()
    at = pages._run(at)
    assert at.success[0].value == "run queued"
    with Database.open(plant["url"]) as db:
        run = RunQueue(db).list(status="queued")[0]
    spec = FinetuneSpec.from_dict(run.config)  # what lifecycle.worker reads
    assert (spec.kind, spec.update, spec.train.extra["requested_by"]) == ("anomaly", True, "engineer")
    assert "epochs" not in spec.anomaly and spec.anomaly["batch_size"] > 0
    (event,) = pages._audit(plant["url"], "training.enqueue")
    assert (event.actor, event.target, event.details["kind"], event.details["update"]) == (
        "engineer", f"training_run:{run.id}", "anomaly", True)
