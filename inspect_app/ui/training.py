"""Training page: queue and cancel fine-tuning runs, watch them (progress, queue fields, log tail), manage the
schedules ``lifecycle.scheduler`` fires, and read the champion/challenger comparisons.

Every control goes through ``storage.access`` (role checked, audited); the lifecycle worker does the work. Reviewed
parts join a run's data through its spec's ``use_reviews`` (the worker freezes them at the run's start).
"""

from __future__ import annotations

import logging
from collections import deque

import pandas as pd
import streamlit as st

from inspect_app.config import TrainConfig, load_settings
from inspect_app.errors import StorageError
from inspect_app.records import TrainingRun
from inspect_app.storage import Repository, access
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import CRON_HELP
from inspect_app.ui import files
from inspect_app.ui.common import (
    CACHE_TTL_S,
    current_user,
    database,
    database_url,
    may,
    require_viewing,
    role_hint,
    run_control,
)

logger = logging.getLogger(__name__)

PAGE_TITLE = "Training"
RUNS_SHOWN = 30
COMPARISONS_SHOWN = 20
LOG_TAIL_LINES = 40
ACTIVE_STATUSES = ("queued", "running")


@st.cache_data(ttl=5, show_spinner=False)
def load_runs(url: str) -> list[TrainingRun]:
    """The newest training runs with their queue fields (short cache: runs move while people watch)."""
    return RunQueue(database(url)).list(limit=RUNS_SHOWN)


@st.cache_data(ttl=5, show_spinner=False)
def load_comparisons(url: str) -> pd.DataFrame:
    """Champion/challenger evaluations, newest first."""
    return pd.DataFrame(
        [
            {"When (UTC)": c.created_at, "Run": c.training_run_id, "Candidate": c.candidate, "Champion": c.champion,
             "Promoted": c.promoted, "Candidate escape": (c.details.get("candidate") or {}).get("escape_rate"),
             "Champion escape": (c.details.get("champion") or {}).get("escape_rate"), "Reason": c.reason}
            for c in RunQueue(database(url)).list_comparisons(limit=COMPARISONS_SHOWN)
        ],
        columns=["When (UTC)", "Run", "Candidate", "Champion", "Promoted", "Candidate escape", "Champion escape",
                 "Reason"],
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_schedules(url: str) -> pd.DataFrame:
    """Schedules as a table."""
    return pd.DataFrame(
        [
            {"Name": s.name, "Cron": s.cron, "Enabled": s.enabled, "Data": s.config.get("data_dir"),
             "Only if new data": bool(s.config.get("only_if_new_data")), "Last run (UTC)": s.last_run_at,
             "Next run (UTC)": s.next_run_at}
            for s in Repository(database(url)).list_schedules()
        ],
        columns=["Name", "Cron", "Enabled", "Data", "Only if new data", "Last run (UTC)", "Next run (UTC)"],
    )


def run_progress(run: TrainingRun) -> float | None:
    """Share done of a run from the worker's heartbeat ``progress`` or ``metrics`` (``progress`` in [0, 1], or
    ``epoch``/``epochs``)."""
    metrics = {**run.metrics, **run.progress}
    value = metrics.get("progress")
    if isinstance(value, int | float):
        return min(max(float(value), 0.0), 1.0)
    recipe = run.config.get("train") or run.config
    epoch, epochs = metrics.get("epoch"), metrics.get("epochs") or recipe.get("epochs")
    if isinstance(epoch, int) and isinstance(epochs, int) and epochs > 0:
        return min(epoch / epochs, 1.0)
    return 1.0 if run.status.value == "succeeded" else None


def log_tail(path: str | None, lines: int = LOG_TAIL_LINES) -> tuple[str | None, str | None]:
    """The last ``lines`` lines of a run's log file, or ``None`` and why it is not shown (``ui.files`` decides)."""
    served = files.served_text(path, files.served_roots(load_settings()))
    if served.data is None:
        return None, served.reason
    text = served.data.decode("utf-8", errors="replace")
    return "".join(deque(text.splitlines(keepends=True), maxlen=lines)), None


def runs_table(runs: list[TrainingRun]) -> pd.DataFrame:
    """One row per run with its progress."""
    return pd.DataFrame(
        [
            {
                "Run": r.id, "Status": r.status.value, "Progress": run_progress(r),
                "Phase": r.progress.get("phase"), "Model": r.model_name, "Data": r.data_dir,
                "By": (r.config.get("train") or r.config).get("extra", {}).get("requested_by") or r.schedule,
                "Attempts": r.attempts, "Worker": r.worker, "Heartbeat (UTC)": r.heartbeat_at,
                "Queued (UTC)": r.created_at, "Started (UTC)": r.started_at, "Finished (UTC)": r.finished_at,
                "Error": r.error,
            }
            for r in runs
        ],
        columns=["Run", "Status", "Progress", "Phase", "Model", "Data", "By", "Attempts", "Worker", "Heartbeat (UTC)",
                 "Queued (UTC)", "Started (UTC)", "Finished (UTC)", "Error"],
    )


def render_start(url: str) -> None:
    """The form that queues a run (only for a user who may train)."""
    if not may("train"):
        return
    settings = load_settings()
    defaults = TrainConfig()
    st.subheader("Start a fine-tuning run")
    with st.form("start_run"):
        data_dir = st.text_input("Training data folder (one sub-folder per class)",
                                 value=str(settings.home / "train"), key="train_data_dir")
        cols = st.columns(2)
        name = cols[0].text_input("Model name (optional)", key="train_model_name")
        test_dir = cols[1].text_input("Frozen test folder (optional; else a hold-out of the data)",
                                      key="train_test_dir")
        cols = st.columns(4)
        backbone = cols[0].text_input("Backbone", value=defaults.backbone, key="train_backbone")
        epochs = cols[1].number_input("Epochs", 1, 500, defaults.epochs, key="train_epochs")
        batch = cols[2].number_input("Batch size", 1, 1024, defaults.batch_size, key="train_batch")
        lr = cols[3].number_input("Learning rate", 1e-6, 1.0, defaults.lr, format="%.5f", key="train_lr")
        with_reviews = st.checkbox("Add the reviewed parts (Review page verdicts) as extra training data",
                                   value=True, key="train_with_reviews")
        submitted = st.form_submit_button("Queue run", help=role_hint("train"))
    if not submitted:
        return
    recipe = {"backbone": backbone.strip(), "epochs": int(epochs), "batch_size": int(batch), "lr": float(lr)}
    run_id = run_control(access.enqueue_training, database(url), current_user(), data_dir.strip(), recipe,
                         model_name=name.strip() or None, use_reviews=with_reviews, test_dir=test_dir.strip() or None,
                         success="run queued")
    if run_id is not None:
        st.caption(f"Run {run_id} waits for the worker.")


def render_runs(url: str) -> None:
    """Runs with progress and the log tail of one of them."""
    st.subheader("Runs")
    runs = load_runs(url)
    if not runs:
        st.caption("No training runs yet.")
        return
    active = [r for r in runs if r.status.value in ACTIVE_STATUSES]
    st.caption(f"{len(active)} queued or running.")
    st.dataframe(runs_table(runs), hide_index=True,
                 column_config={"Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0)})
    chosen = st.selectbox("Log of run", [r.id for r in runs], key="log_run")
    run = next(r for r in runs if r.id == chosen)
    tail, reason = log_tail(run.log_path)
    if tail is None:
        st.caption("No log on this server yet." if run.log_path is None else f"Log {run.log_path} not shown: {reason}.")
    else:
        st.code(tail, language="text")
    active_ids = [r.id for r in active]
    if active_ids and may("cancel"):
        cols = st.columns([2, 1])
        run_id = cols[0].selectbox("Run to cancel", active_ids, key="cancel_pick")
        if cols[1].button("Cancel run", key="cancel_run", help=role_hint("cancel")):
            run = run_control(access.cancel_run, database(url), current_user(), run_id, success=f"run {run_id}: "
                              "cancel requested")
            if run is not None:
                st.caption(f"Run {run.id} is {run.status.value}" +
                           (" until its next training step." if run.cancel_requested else "."))


def render_schedules(url: str) -> None:
    """Schedule table, a form to add one and a pause / resume control."""
    st.subheader("Schedules")
    frame = load_schedules(url)
    if frame.empty:
        st.caption("No schedules yet.")
    else:
        st.dataframe(frame, hide_index=True)
    if not may("schedule"):
        return
    if not frame.empty:
        cols = st.columns([2, 1])
        name = cols[0].selectbox("Schedule", list(frame["Name"]), key="schedule_pick")
        enabled = bool(frame.loc[frame["Name"] == name, "Enabled"].iloc[0])
        if cols[1].button("Pause" if enabled else "Resume", key="schedule_toggle", help=role_hint("schedule")):
            run_control(access.set_schedule_enabled, database(url), current_user(), name, not enabled,
                        success=f"schedule {name} {'paused' if enabled else 'resumed'}")
    with st.form("add_schedule"):
        cols = st.columns(3)
        name = cols[0].text_input("Name", key="schedule_name")
        cron = cols[1].text_input("Cron (UTC)", value="0 2 * * *", help=CRON_HELP, key="schedule_cron")
        data_dir = cols[2].text_input("Data folder (one sub-folder per class)",
                                      value=str(load_settings().home / "train"), key="schedule_data")
        only_new = st.checkbox("Only when reviews or newer files arrived since the last run", value=True,
                               key="schedule_only_new")
        submitted = st.form_submit_button("Add fine-tuning schedule", help=role_hint("schedule"))
    if submitted:
        run_control(access.add_schedule, database(url), current_user(), name.strip(), cron.strip(), data_dir.strip(),
                    only_if_new_data=only_new, success=f"schedule {name} added")


def render_comparisons(url: str) -> None:
    """Champion/challenger outcomes of the worker (read-only)."""
    st.subheader("Model comparisons")
    frame = load_comparisons(url)
    if frame.empty:
        st.caption("No candidate evaluated yet.")
    else:
        st.dataframe(frame, hide_index=True)


def render() -> None:
    """Draw the Training page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        if not may("train"):
            st.caption(f"Read-only: queueing runs and changing schedules {role_hint('train')}.")
        render_start(url)
        render_runs(url)
        render_schedules(url)
        render_comparisons(url)
    except StorageError as exc:
        logger.error("training page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
