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

    [kept] = repo.list_comparisons(candidate=f"t-run{third}")
    assert (kept.champion, kept.promoted, kept.training_run_id) == (f"t-run{second}", False, third)
    cand, champ = kept.details["candidate"], kept.details["champion"]
    assert cand["images"] == champ["images"] == 16  # the same frozen test set for both
    assert cand["escape_rate"] > champ["escape_rate"] or "worse" in kept.reason
    [won] = repo.list_comparisons(candidate=f"t-run{second}")
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


# good-only runs ----------------------------------------------------------------------------------------------------
def _good_only_spec(test_dir: Path, update: bool = False, **anomaly: object) -> dict:
    """A good-only run at 64 px on the CPU (a few seconds on the tiny sets)."""
    from inspect_app.config.policy import FinetuneSpec, PromotionPolicy

    return FinetuneSpec(
        kind="anomaly", anomaly={"input_size": 64, "device": "cpu", **anomaly}, test_dir=str(test_dir),
        model_prefix="g", update=update, promotion=PromotionPolicy(false_reject_rate=0.0, class_tolerance=0.05),
    ).to_dict()


def test_good_only_run_is_fitted_registered_and_promoted_only_when_better(
    sqlite_db: Database, settings, tiny_sets
) -> None:
    queue, repo = RunQueue(sqlite_db), Repository(sqlite_db)
    worker = Worker(sqlite_db, settings, name="w1", heartbeat_s=0.5, stale_after=timedelta(seconds=5))
    # Folders of "good" images: the real good parts, and the scratched ones (a bank of scratches, genuinely worse).
    good, scratches = tiny_sets["train"] / "good", tiny_sets["train"] / "scratch"
    worse = queue.enqueue(_good_only_spec(tiny_sets["test"]), str(scratches))
    better = queue.enqueue(_good_only_spec(tiny_sets["test"]), str(good))
    again = queue.enqueue(_good_only_spec(tiny_sets["test"], coreset_ratio=0.5), str(scratches))
    assert worker.run_forever(drain=True) == 3
    runs = {run_id: queue.get(run_id) for run_id in (worse, better, again)}
    assert all(r.status is RunStatus.SUCCEEDED for r in runs.values()), {r.id: r.error for r in runs.values()}
    assert runs[worse].metrics["promoted"] is True  # the first model: nothing to compare with
    assert runs[better].metrics["promoted"] is True, runs[better].metrics["decision"]
    assert runs[again].metrics["promoted"] is False, runs[again].metrics["decision"]
    assert repo.active_model().name == f"g-run{better}"
    candidate = repo.get_model_version(f"g-run{again}")
    assert candidate.status is ModelStatus.CANDIDATE and candidate.kind == "patchcore"
    assert candidate.training_run_id == again and candidate.data_fingerprint == runs[again].data_fingerprint

    # A checkpoint and card like `train --kind anomaly` writes, judged on the same frozen test set as the champion.
    model_dir = Path(candidate.path)
    card = json.loads((model_dir / "model_card.json").read_text())
    assert (model_dir / "model.safetensors").is_file()
    assert (card["kind"], card["name"]) == ("patchcore", candidate.name)
    [kept] = repo.list_comparisons(candidate=candidate.name)
    assert kept.champion == f"g-run{better}"
    assert kept.details["candidate"]["images"] == kept.details["champion"]["images"] == 16
    [won] = repo.list_comparisons(candidate=f"g-run{better}")
    assert won.details["candidate"]["escape_rate"] < won.details["champion"]["escape_rate"]
    assert runs[better].metrics["kind"] == "anomaly"
    assert "holdout_false_reject_rate" in runs[better].metrics["validation"]


def test_a_good_only_run_that_fails_after_registering_leaves_no_candidate(
    sqlite_db: Database, settings, tiny_sets, tmp_path: Path
) -> None:
    import shutil

    test_dir = tmp_path / "frozen"
    shutil.copytree(tiny_sets["test"], test_dir)
    # Unreadable pixels are found only when the candidate is judged, after it was fitted and registered.
    next((test_dir / "scratch").iterdir()).write_bytes(b"not an image")
    queue, repo = RunQueue(sqlite_db), Repository(sqlite_db)
    run_id = queue.enqueue(_good_only_spec(test_dir), str(tiny_sets["train"] / "good"))
    run = Worker(sqlite_db, settings, name="w1").run_once()
    assert run.id == run_id and run.status is RunStatus.FAILED
    assert run.model_name == f"g-run{run_id}" and "not an image" in run.error  # the frozen copy of the broken file
    assert repo.list_model_versions() == []  # registered during the run, removed with its failure


def test_an_update_schedule_adds_only_the_good_images_reviewed_since_the_refreshed_model(
    sqlite_db: Database, settings, tiny_sets
) -> None:
    from inspect_app.data.folders import list_images
    from inspect_app.data.image_io import file_hash
    from inspect_app.records import Decision, Inspection, Review, utcnow

    queue, repo = RunQueue(sqlite_db), Repository(sqlite_db)
    worker = Worker(sqlite_db, settings, name="w1", heartbeat_s=0.5, stale_after=timedelta(seconds=5))
    incoming = list_images(tiny_sets["incoming"])

    def review(path: Path, verdict: Decision, at: object) -> None:
        digest = file_hash(path)
        repo.add_inspections([Inspection(station="s1", line="l1", source="in", image_path=str(path),
                                         decision=Decision.REVIEW, created_at=at, content_hash=digest, score=0.45)])
        repo.add_review(Review(inspection_id=repo.inspection_id(digest, None, "s1"), verdict=verdict, reviewer="ann",
                               created_at=at, defect_class=None if verdict is Decision.OK else "scratch"))

    review(incoming[0], Decision.OK, utcnow() - timedelta(hours=1))  # before the first run: in its data already
    spec = _good_only_spec(tiny_sets["test"], update=True)
    first = queue.enqueue(spec, str(tiny_sets["train"] / "good"), schedule="nightly-good")
    assert worker.run_once().status is RunStatus.SUCCEEDED  # no good-only model yet: fitted anew
    base = repo.get_model_version(f"g-run{first}")
    assert base is not None and "refreshed" not in queue.get(first).metrics

    later = utcnow()  # after the first run started, before the second one
    for path in incoming[1:4]:
        review(path, Decision.OK, later)
    review(incoming[4], Decision.NG, later)  # a defect is no good image for the bank
    second = queue.enqueue(spec, str(tiny_sets["train"] / "good"), schedule="nightly-good")
    run = worker.run_once()
    assert run.id == second and run.status is RunStatus.SUCCEEDED, run.error
    assert run.metrics["refreshed"] == base.name and run.metrics["snapshot"]["counts"]["train/review"] == 3
    base_card = json.loads((Path(base.path) / "model_card.json").read_text())
    card = json.loads((Path(repo.get_model_version(f"g-run{second}").path) / "model_card.json").read_text())
    assert card["anomaly"]["train_images"] == base_card["anomaly"]["train_images"] + 3
    [comparison] = repo.list_comparisons(candidate=f"g-run{second}")  # judged by the same rule
    assert comparison.champion == base.name and comparison.promoted == run.metrics["promoted"]

    third = queue.enqueue(spec, str(tiny_sets["train"] / "good"), schedule="nightly-good")
    run = worker.run_once()
    assert run.id == third and run.status is RunStatus.SUCCEEDED and run.metrics["model"] is None
    assert "nothing to add" in run.metrics["decision"]
    assert repo.get_model_version(f"g-run{third}") is None
