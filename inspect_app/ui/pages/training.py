"""Streamlit "Training" page: queue and cancel runs, manage schedules, read comparisons, promote and roll back.

Streamlit lists it next to the Overview page (``pages/`` beside ``app.py``). It reads and writes through
``inspect_app.storage`` only, so it never loads torch: the work itself is done by ``inspect-app worker`` and
``inspect-app scheduler``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import streamlit as st

from inspect_app.config import FinetuneSpec, TrainConfig, load_settings
from inspect_app.errors import InspectAppError
from inspect_app.records import TrainingRun
from inspect_app.storage import Database, Repository
from inspect_app.storage.promotions import promote, rollback
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import CRON_HELP, ScheduleStore

logger = logging.getLogger(__name__)

PAGE_TITLE = "Fine-tuning"
RUNS_SHOWN = 50


def run_rows(runs: list[TrainingRun]) -> pd.DataFrame:
    """The runs table: one row per run, progress and outcome in words."""
    rows = []
    for run in runs:
        progress = run.progress.get("phase", "")
        if "epoch" in run.progress:
            progress += f" epoch {run.progress['epoch']}"
        rows.append({
            "id": run.id, "status": run.status.value, "queued": run.created_at, "model": run.model_name,
            "schedule": run.schedule or "manual", "progress": progress, "attempts": run.attempts,
            "outcome": run.error or run.metrics.get("decision") or "",
        })
    return pd.DataFrame(rows, columns=["id", "status", "queued", "model", "schedule", "progress", "attempts",
                                       "outcome"])


@st.cache_resource(show_spinner=False)
def _database(url: str) -> Database:
    """One open database per URL for the whole server."""
    return Database.open(url, migrate=True)


def render_queue_form(queue: RunQueue) -> None:
    """The "queue a run" form."""
    with st.form("queue_run"):
        st.subheader("Queue a fine-tuning run")
        data_dir = st.text_input("Data folder (class folders)", key="data_dir")
        test_dir = st.text_input("Frozen test folder (optional)", key="test_dir")
        epochs = st.number_input("Epochs", min_value=1, max_value=200, value=4, key="epochs")
        submitted = st.form_submit_button("Queue run")
    if not submitted:
        return
    if not data_dir or not Path(data_dir).is_dir():
        st.error(f"data folder {data_dir!r} does not exist")
        return
    spec = FinetuneSpec(train=TrainConfig(epochs=int(epochs)), test_dir=test_dir or None)
    run_id = queue.enqueue(spec.to_dict(), str(Path(data_dir).resolve()))
    st.success(f"Queued training run {run_id}; a worker will pick it up.")


def render_runs(queue: RunQueue) -> None:
    """Runs table and the cancel control."""
    st.subheader("Runs")
    runs = queue.list(limit=RUNS_SHOWN)
    if not runs:
        st.info("No fine-tuning runs yet.")
        return
    st.dataframe(run_rows(runs), hide_index=True)
    cancellable = [run.id for run in runs if run.status.value in ("queued", "running")]
    if cancellable:
        chosen = st.selectbox("Run to cancel", cancellable, key="cancel_id")
        if st.button("Cancel run", key="cancel"):
            run = queue.cancel(int(chosen))
            st.success(f"Run {run.id}: {'cancelled' if run.status.value == 'cancelled' else 'stopping'}")


def render_schedules(store: ScheduleStore) -> None:
    """Schedules table, add form, enable/disable/remove."""
    st.subheader("Schedules")
    schedules = store.list()
    if schedules:
        st.dataframe(pd.DataFrame([
            {"name": s.name, "cron": s.cron, "enabled": s.enabled, "next run": s.next_run_at,
             "last run": s.last_run_at, "data": s.config.get("data_dir"),
             "only if new data": bool(s.config.get("only_if_new_data"))}
            for s in schedules
        ]), hide_index=True)
        name = st.selectbox("Schedule", [s.name for s in schedules], key="schedule_pick")
        left, middle, right = st.columns(3)
        if left.button("Enable", key="enable"):
            store.update(name, enabled=True)
        if middle.button("Disable", key="disable"):
            store.update(name, enabled=False)
        if right.button("Remove", key="remove"):
            store.remove(name)
    with st.form("add_schedule"):
        st.markdown("**Add a schedule**")
        name = st.text_input("Name", key="schedule_name")
        cron = st.text_input("Cron (UTC)", value="0 2 * * *", help=CRON_HELP, key="schedule_cron")
        data_dir = st.text_input("Data folder", key="schedule_data")
        only_new = st.checkbox("Only if new reviewed data", value=True, key="schedule_only_new")
        submitted = st.form_submit_button("Add schedule")
    if submitted:
        if not name or not data_dir:
            st.error("a schedule needs a name and a data folder")
            return
        config = {"data_dir": str(Path(data_dir).resolve()), "only_if_new_data": only_new,
                  **FinetuneSpec(model_prefix=name).to_dict()}
        schedule = store.add(name, cron, config)
        st.success(f"Schedule {schedule.name} added; next run {schedule.next_run_at:%Y-%m-%d %H:%M} UTC")


def render_comparisons(queue: RunQueue) -> None:
    """Champion/challenger outcomes, newest first."""
    st.subheader("Champion / challenger")
    comparisons = queue.list_comparisons(limit=20)
    if not comparisons:
        st.info("No candidate evaluated yet.")
        return
    st.dataframe(pd.DataFrame([
        {"when": c.created_at, "candidate": c.candidate, "champion": c.champion, "promoted": c.promoted,
         "candidate escape": (c.details.get("candidate") or {}).get("escape_rate"),
         "champion escape": (c.details.get("champion") or {}).get("escape_rate"), "reason": c.reason}
        for c in comparisons
    ]), hide_index=True)


def render_models(repository: Repository) -> None:
    """Model versions with manual promote and rollback (both audited)."""
    st.subheader("Models")
    versions = repository.list_model_versions()
    if not versions:
        st.info("No model versions yet.")
        return
    st.dataframe(pd.DataFrame([
        {"name": v.name, "status": v.status.value, "backbone": v.backbone, "run": v.training_run_id,
         "created": v.created_at, "path": v.path}
        for v in versions
    ]), hide_index=True)
    name = st.selectbox("Model version", [v.name for v in reversed(versions)], key="model_pick")
    left, right = st.columns(2)
    if left.button("Promote", key="promote"):
        promote(repository, name, actor="dashboard")
        st.success(f"{name} is now the active model; running pipelines switch at their next batch")
    if right.button("Roll back", key="rollback"):
        version = rollback(repository, actor="dashboard")
        st.success(f"rolled back: {version.name} is the active model again")


def main() -> None:
    """Render the page."""
    st.set_page_config(page_title=PAGE_TITLE, layout="wide")
    st.title(PAGE_TITLE)
    db = _database(load_settings().resolved_database_url)
    queue, store = RunQueue(db), ScheduleStore(db)
    try:
        render_queue_form(queue)
        render_schedules(store)
        render_runs(queue)
        render_comparisons(queue)
        render_models(Repository(db))
    except (InspectAppError, LookupError) as exc:
        st.error(str(exc))


main()
