"""Training page: queue and cancel fine-tuning runs, watch them (progress, queue fields, log tail), manage the
schedules ``lifecycle.scheduler`` fires, and read the champion/challenger comparisons.

Every control goes through a use case in ``inspect_app.app`` (role checked, audited); the lifecycle worker does the
work. Reviewed parts join a run's data through its spec's ``use_reviews`` (the worker freezes them at the run's start).
"""

from __future__ import annotations

import ast
import logging
import re
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import altair as alt
import pandas as pd
import streamlit as st

from inspect_app.app import runs as run_actions
from inspect_app.app import schedules as schedule_actions
from inspect_app.config import TrainConfig, load_settings
from inspect_app.errors import StorageError
from inspect_app.records import RunStatus, TrainingRun, utcnow
from inspect_app.storage.repository import Repository
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import CRON_HELP, ScheduleStore
from inspect_app.ui import files
from inspect_app.ui.common import (
    CACHE_TTL_S,
    current_user,
    database,
    database_url,
    format_count,
    format_percent,
    format_time,
    may,
    require_viewing,
    role_hint,
    run_control,
)

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

logger = logging.getLogger(__name__)

PAGE_TITLE = "Training"
RUNS_SHOWN = 30
COMPARISONS_SHOWN = 20
LOG_TAIL_LINES = 40
ACTIVE_STATUSES = ("queued", "running")
# The worker beats every 10 s and requeues a run whose beats stop for 2 min (``lifecycle.Worker`` defaults); the page
# flags such a run as soon as its worker is that late, before the recovery puts it back in the queue.
STALE_AFTER = timedelta(minutes=2)
# Seconds between refreshes of the runs section while a run is queued or running.
REFRESH_S = 5
# ``engine.train`` logs one line per finished epoch: "epoch 3/10 {'epoch': 3, 'train_loss': 0.41, ...}".
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) (\{.*\})\s*$")
LOSS_NAMES = {"train_loss": "Training loss", "val_loss": "Validation loss"}
# The kinds of run the form queues (``config.policy.MODEL_KINDS``), as the form names them.
RUN_KINDS = {"classifier": "Classifier (fine-tune)", "anomaly": "Good-only (anomaly)"}


@st.cache_data(ttl=5, show_spinner=False)
def load_runs(url: str) -> list[TrainingRun]:
    """The newest training runs with their queue fields (short cache: runs move while people watch)."""
    return RunQueue(database(url)).list(limit=RUNS_SHOWN)


@st.cache_data(ttl=5, show_spinner=False)
def load_comparisons(url: str) -> pd.DataFrame:
    """Champion/challenger evaluations, newest first."""
    return pd.DataFrame(
        [
            {"When": format_time(c.created_at), "Run": c.training_run_id, "Candidate": c.candidate,
             "Champion": c.champion or "", "Promoted": c.promoted,
             "Candidate escape": format_percent((c.details.get("candidate") or {}).get("escape_rate")),
             "Champion escape": format_percent((c.details.get("champion") or {}).get("escape_rate")),
             "Reason": c.reason or ""}
            for c in Repository(database(url)).list_comparisons(limit=COMPARISONS_SHOWN)
        ],
        columns=["When", "Run", "Candidate", "Champion", "Promoted", "Candidate escape", "Champion escape",
                 "Reason"],
    )


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_schedules(url: str) -> pd.DataFrame:
    """Schedules as a table."""
    return pd.DataFrame(
        [
            {"Name": s.name, "Cron": s.cron, "Enabled": s.enabled, "Data": s.config.get("data_dir") or "",
             "Only if new data": bool(s.config.get("only_if_new_data")),
             "Last run": format_time(s.last_run_at), "Next run": format_time(s.next_run_at)}
            for s in ScheduleStore(database(url)).list()
        ],
        columns=["Name", "Cron", "Enabled", "Data", "Only if new data", "Last run", "Next run"],
    )


def epochs_done(run: TrainingRun) -> tuple[int, int] | None:
    """(finished epochs, planned epochs) from the worker's latest progress event, or ``None`` before the first one.

    During an epoch the event names the epoch being trained, so one less is finished; the event sent after an
    epoch (phase ``epoch``) names the one just finished.
    """
    event = {**run.metrics, **run.progress}
    recipe = run.config.get("train") or run.config
    epoch = event.get("epoch")
    total = event.get("epochs_planned") or event.get("epochs") or recipe.get("epochs")
    if not isinstance(epoch, int) or not isinstance(total, int) or total <= 0:
        return None
    done = epoch - 1 if event.get("phase") == "train" else epoch
    return min(max(done, 0), total), total


def run_progress(run: TrainingRun) -> float | None:
    """Share done of a run: 1 once it succeeded, nothing for a failed or cancelled one (its status says so), else
    finished epochs / planned epochs (or the worker's own ``progress`` share)."""
    if run.status is RunStatus.SUCCEEDED:
        return 1.0
    if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        return None
    if run.status is RunStatus.QUEUED:
        return 0.0
    value = run.progress.get("progress")
    if isinstance(value, int | float):
        return min(max(float(value), 0.0), 1.0)
    epochs = epochs_done(run)
    return epochs[0] / epochs[1] if epochs else None


def silent_for(run: TrainingRun, now: datetime) -> timedelta | None:
    """How long a running run's worker has been silent when that is longer than ``STALE_AFTER``, else ``None``.

    A running run without any heartbeat counts from its start (or its queueing, when even that is missing).
    """
    if run.status is not RunStatus.RUNNING:
        return None
    last = run.heartbeat_at or run.started_at or run.created_at
    silence = now - last
    return silence if silence > STALE_AFTER else None


def _ago(span: timedelta) -> str:
    """``45 s`` / ``7 min`` / ``3 h`` for a silence."""
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"


def worker_health(run: TrainingRun, now: datetime) -> str:
    """What the page says about a run's worker: blank unless running, ``stale`` when it stopped reporting."""
    if run.status is not RunStatus.RUNNING:
        return ""
    silence = silent_for(run, now)
    if silence is not None:
        return f"stale: no report for {_ago(silence)}"
    last = run.heartbeat_at or run.started_at or run.created_at
    return f"reporting ({_ago(max(now - last, timedelta(0)))} ago)"


def refresh_every(runs: list[TrainingRun]) -> int | None:
    """Seconds between refreshes of the runs section: ``REFRESH_S`` while a run is queued or running, else none."""
    return REFRESH_S if any(r.status.value in ACTIVE_STATUSES for r in runs) else None


def loss_history(log: str) -> pd.DataFrame:
    """Per-epoch losses from a run's log (the lines ``engine.train`` writes after each epoch), long format."""
    points = []
    for line in log.splitlines():
        match = EPOCH_LINE.search(line)
        if match is None:
            continue
        try:
            row: dict[str, Any] = ast.literal_eval(match.group(3))
        except (ValueError, SyntaxError):
            continue  # a truncated line (the log is being written): the next refresh reads it whole
        for key, label in LOSS_NAMES.items():
            if isinstance(row.get(key), int | float):
                points.append({"Epoch": int(match.group(1)), "Loss": float(row[key]), "Series": label})
    return pd.DataFrame(points, columns=["Epoch", "Loss", "Series"])


def read_log(path: str | None) -> tuple[str | None, str | None]:
    """A run's log text (its end when long), or ``None`` and why it is not shown (``ui.files`` decides)."""
    served = files.served_text(path, files.served_roots(load_settings()))
    if served.data is None:
        return None, served.reason
    return served.data.decode("utf-8", errors="replace"), None


def log_tail(path: str | None, lines: int = LOG_TAIL_LINES) -> tuple[str | None, str | None]:
    """The last ``lines`` lines of a run's log file, or ``None`` and why it is not shown."""
    text, reason = read_log(path)
    if text is None:
        return None, reason
    return "".join(deque(text.splitlines(keepends=True), maxlen=lines)), None


def runs_table(runs: list[TrainingRun], now: datetime) -> pd.DataFrame:
    """One row per run: status, progress (finished epochs), worker health and formatted times."""
    rows = []
    for r in runs:
        epochs = epochs_done(r) if r.status is not RunStatus.QUEUED else None
        rows.append({
            "Run": r.id, "Status": r.status.value, "Progress": run_progress(r),
            "Epochs": f"{epochs[0]} / {epochs[1]}" if epochs else "", "Worker health": worker_health(r, now),
            "Phase": r.progress.get("phase") or "", "Model": r.model_name or "", "Data": r.data_dir,
            "By": (r.config.get("train") or r.config).get("extra", {}).get("requested_by") or r.schedule or "",
            "Attempts": format_count(r.attempts), "Worker": r.worker or "", "Last report": format_time(r.heartbeat_at),
            "Queued": format_time(r.created_at), "Started": format_time(r.started_at),
            "Finished": format_time(r.finished_at), "Error": r.error or "",
        })
    return pd.DataFrame(rows, columns=["Run", "Status", "Progress", "Epochs", "Worker health", "Phase", "Model", "Data",
                                       "By", "Attempts", "Worker", "Last report", "Queued", "Started", "Finished",
                                       "Error"])


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
        cols: Sequence[DeltaGenerator] = st.columns(2)
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
        kind = st.radio("Model", list(RUN_KINDS), format_func=RUN_KINDS.get, horizontal=True, key="train_kind")
        update = st.checkbox("Good-only: refresh the active good-only model with the good parts reviewed since it "
                             "was made (instead of fitting anew)", key="train_update")
        submitted = st.form_submit_button("Queue run", help=role_hint("train"))
    if not submitted:
        return
    if kind == "anomaly":
        # A good-only model has no epochs or learning rate; the worker checks the rest (it has the engine).
        recipe: dict[str, Any] = {"backbone": backbone.strip(), "batch_size": int(batch)}
    else:
        recipe = {"backbone": backbone.strip(), "epochs": int(epochs), "batch_size": int(batch), "lr": float(lr)}
    run_id = run_control(run_actions.enqueue_training, database(url), current_user(), data_dir.strip(), recipe,
                         model_name=name.strip() or None, use_reviews=with_reviews, test_dir=test_dir.strip() or None,
                         kind=kind, update=update and kind == "anomaly", success="run queued")
    if run_id is not None:
        st.caption(f"Run {run_id} waits for the worker.")


def render_runs(url: str) -> None:
    """The runs section, redrawn every ``REFRESH_S`` seconds on its own while a run is queued or running."""
    st.subheader("Runs")
    runs = load_runs(url)
    if not runs:
        st.caption("No training runs yet.")
        return
    st.fragment(render_runs_body, run_every=refresh_every(runs))(url)


def render_runs_body(url: str) -> None:
    """Runs with progress and worker health, the loss curve and log tail of one of them, the cancel control."""
    runs = load_runs(url)
    now = utcnow()
    active = [r for r in runs if r.status.value in ACTIVE_STATUSES]
    refresh = f"; refreshed every {REFRESH_S} s while runs are active" if active else ""
    st.caption(f"{len(active)} queued or running{refresh}. Times in UTC.")
    stale = [r for r in runs if silent_for(r, now) is not None]
    if stale:
        st.warning(
            "Worker silent: " + ", ".join(f"run {r.id} ({worker_health(r, now)})" for r in stale)
            + f". A worker reports every few seconds; after {_ago(STALE_AFTER)} without a report the run is "
            "requeued by the next worker that starts (`inspect-app worker`)."
        )
    st.dataframe(runs_table(runs, now), hide_index=True,
                 column_config={"Progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0)})
    chosen = st.selectbox("Run", [r.id for r in runs], key="log_run")
    run = next(r for r in runs if r.id == chosen)
    text, reason = read_log(run.log_path)
    if text is None:
        st.caption("No log on this server yet." if run.log_path is None else f"Log {run.log_path} not shown: {reason}.")
    else:
        render_losses(loss_history(text))
        st.code("".join(deque(text.splitlines(keepends=True), maxlen=LOG_TAIL_LINES)), language="text")
    active_ids = [r.id for r in active]
    if active_ids and may("cancel"):
        cols = st.columns([2, 1])
        run_id = cols[0].selectbox("Run to cancel", active_ids, key="cancel_pick")
        if cols[1].button("Cancel run", key="cancel_run", help=role_hint("cancel")):
            cancelled = run_control(run_actions.cancel_run, database(url), current_user(), run_id,
                                    success=f"run {run_id}: cancel requested")
            if cancelled is not None:
                st.caption(f"Run {cancelled.id} is {cancelled.status.value}" +
                           (" until its next training step." if cancelled.cancel_requested else "."))


def render_losses(history: pd.DataFrame) -> None:
    """Training and validation loss per finished epoch (nothing before the first epoch ends)."""
    if history.empty:
        st.caption("No finished epoch in this log yet.")
        return
    chart = alt.Chart(history).mark_line(point=True).encode(
        x=alt.X("Epoch:Q", title="Epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("Loss:Q", title="Loss"),
        color=alt.Color("Series:N", title=None),
        tooltip=["Epoch", "Series", alt.Tooltip("Loss:Q", format=".4f")],
    )
    st.markdown("**Loss per epoch**")
    st.altair_chart(chart.properties(height=220), width="stretch")


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
        cols: Sequence[DeltaGenerator] = st.columns([2, 1])
        name = cols[0].selectbox("Schedule", list(frame["Name"]), key="schedule_pick")
        enabled = bool(frame.loc[frame["Name"] == name, "Enabled"].iloc[0])
        if cols[1].button("Pause" if enabled else "Resume", key="schedule_toggle", help=role_hint("schedule")):
            run_control(schedule_actions.set_schedule_enabled, database(url), current_user(), name, not enabled,
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
        run_control(schedule_actions.add_schedule, database(url), current_user(), name.strip(), cron.strip(),
                    data_dir.strip(),
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
