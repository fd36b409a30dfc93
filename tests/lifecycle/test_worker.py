"""The worker end to end with real training: enqueue → worker → succeeded → promoted / kept; cancel; crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from inspect_app.lifecycle.worker import Worker
from inspect_app.records import ModelStatus, RunStatus
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate, timeout_s: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_better_candidate_is_promoted_and_worse_one_kept_with_its_comparison(
    sqlite_db: Database, settings, tiny_sets, spec_factory
) -> None:
    fast_spec = spec_factory
    queue, repo = RunQueue(sqlite_db), Repository(sqlite_db)
    worker = Worker(sqlite_db, settings, name="w1", heartbeat_s=0.5, stale_after=timedelta(seconds=5))
    test_dir = tiny_sets["test"]
    # 1. A model trained on swapped labels becomes the first champion: there is nothing to compare with.
    first = queue.enqueue(fast_spec(test_dir).to_dict(), str(tiny_sets["swapped"]))
    # 2. A correctly trained candidate must beat it at the operating point and replace it.
    second = queue.enqueue(fast_spec(test_dir).to_dict(), str(tiny_sets["train"]))
    # 3. Another swapped-label model is really worse than the new champion: it stays a candidate.
    third = queue.enqueue(fast_spec(test_dir, seed=7).to_dict(), str(tiny_sets["swapped"]))

    assert worker.run_forever(drain=True) == 3
    runs = {run_id: queue.get(run_id) for run_id in (first, second, third)}
    assert all(run.status is RunStatus.SUCCEEDED for run in runs.values()), {r.id: r.error for r in runs.values()}
    assert runs[first].metrics["promoted"] is True
    assert runs[second].metrics["promoted"] is True, runs[second].metrics["decision"]
    assert runs[third].metrics["promoted"] is False
    assert repo.active_model().name == f"t-run{second}"
    assert repo.get_model_version(f"t-run{third}").status is ModelStatus.CANDIDATE
    assert repo.get_model_version(f"t-run{first}").status is ModelStatus.RETIRED

    [kept] = queue.list_comparisons(candidate=f"t-run{third}")
    assert (kept.champion, kept.promoted, kept.training_run_id) == (f"t-run{second}", False, third)
    cand, champ = kept.details["candidate"], kept.details["champion"]
    assert cand["images"] == champ["images"] == 16  # the same frozen test set for both
    assert cand["escape_rate"] > champ["escape_rate"] or "worse" in kept.reason
    [won] = queue.list_comparisons(candidate=f"t-run{second}")
    assert won.promoted and won.details["candidate"]["escape_rate"] < won.details["champion"]["escape_rate"]

    # Each run left its log, its data snapshot and its progress.
    run = runs[second]
    assert Path(run.log_path).is_file() and "epoch 6/6" in Path(run.log_path).read_text()
    assert run.data_fingerprint and run.progress["phase"] == "done"
    manifest = json.loads((Path(run.log_path).parent / "manifest.json").read_text())
    assert manifest["fingerprint"] == run.data_fingerprint
    assert {e["split"] for e in manifest["files"]} == {"train", "test"}
    assert all(len(e["sha256"]) == 64 for e in manifest["files"])
    assert repo.get_dataset_snapshot(run.data_fingerprint).image_count == len(manifest["files"])


def test_cancel_stops_a_running_run_at_its_next_step(sqlite_db: Database, settings, tiny_sets, spec_factory) -> None:
    fast_spec = spec_factory
    queue = RunQueue(sqlite_db)
    worker = Worker(sqlite_db, settings, name="w1", heartbeat_s=0.1, stale_after=timedelta(seconds=5))
    run_id = queue.enqueue(fast_spec(tiny_sets["test"], epochs=500).to_dict(), str(tiny_sets["train"]))
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    _wait_for(lambda: queue.get(run_id).progress.get("phase") == "train", what="training to start")
    queue.cancel(run_id)
    thread.join(timeout=60)
    run = queue.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert "cancelled on request" in run.error
    assert run.progress["epoch"] < 500
    assert Repository(sqlite_db).list_model_versions() == []


def test_failed_run_records_the_reason(sqlite_db: Database, settings, tmp_path: Path, spec_factory) -> None:
    fast_spec = spec_factory
    queue = RunQueue(sqlite_db)
    run_id = queue.enqueue(fast_spec(None).to_dict(), str(tmp_path / "no-such-folder"))
    run = Worker(sqlite_db, settings, name="w1").run_once()
    assert run.id == run_id and run.status is RunStatus.FAILED
    assert "DatasetError" in run.error and "no-such-folder" in run.error


def test_worker_killed_mid_run_is_recovered_on_restart(tmp_path: Path, settings, tiny_sets, spec_factory) -> None:
    fast_spec = spec_factory
    url = f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}"
    with Database.open(url) as db:
        run_id = RunQueue(db).enqueue(fast_spec(tiny_sets["test"], epochs=10).to_dict(), str(tiny_sets["train"]))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "inspect_app", "--home", str(settings.home), "--db", url, "worker",
               "--name", "w1", "--drain", "--heartbeat", "0.5"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with Database.open(url, migrate=False) as db:
            queue = RunQueue(db)
            _wait_for(lambda: queue.get(run_id).progress.get("phase") == "train", what="the worker to train")
            process.send_signal(signal.SIGKILL)  # no clean-up code runs: a real crash
            process.wait(timeout=30)
            dead = queue.get(run_id)
            assert (dead.status, dead.worker, dead.attempts) == (RunStatus.RUNNING, "w1", 1)

            # The worker comes back under its name: the run is requeued at once and then completed.
            worker = Worker(db, settings, name="w1", heartbeat_s=0.5, stale_after=timedelta(minutes=5))
            assert [r.id for r in worker.recover()] == [run_id]
            finished = worker.run_once()
            assert finished.id == run_id and finished.status is RunStatus.SUCCEEDED, finished.error
            assert finished.attempts == 2
            assert finished.model_name == f"t-run{run_id}-a2"
            assert Repository(db).active_model().name == finished.model_name
            assert (Path(finished.log_path).parents[1] / "attempt-1" / "train.log").is_file()
    finally:
        if process.poll() is None:
            process.kill()


class _JudgeFails(Worker):
    """A worker whose champion/challenger step fails after the candidate was registered (test set gone)."""

    def _judge(self, *args, **kwargs):
        raise OSError("frozen test set unreadable")


def test_run_failing_after_registration_leaves_no_candidate(
    sqlite_db: Database, settings, tiny_sets, spec_factory
) -> None:
    queue, repo = RunQueue(sqlite_db), Repository(sqlite_db)
    run_id = queue.enqueue(spec_factory(tiny_sets["test"]).to_dict(), str(tiny_sets["train"]))
    run = _JudgeFails(sqlite_db, settings, name="w1").run_once()
    assert run.id == run_id and run.status is RunStatus.FAILED
    assert "frozen test set unreadable" in run.error
    assert repo.list_model_versions() == []  # registered during the run, removed with its failure
