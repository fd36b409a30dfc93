"""The fine-tuning worker: claims queued runs one at a time and takes each from data snapshot to promotion.

One run's way: claim → recover nothing half-done (a fresh attempt folder) → snapshot the data → fit with heartbeats
and cancel checks (``engine.train.fit`` for a classifier; ``engine.anomaly.fit_anomaly`` for a good-only run, or
``update_anomaly`` when it refreshes a good-only model with newly reviewed good images) → register the candidate →
evaluate it and the active model on the frozen test set → promote or keep it as a candidate, with the comparison
stored → finish the run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from inspect_app.app.versions import promotion_event
from inspect_app.config.policy import FinetuneSpec
from inspect_app.config.settings import Settings
from inspect_app.engine.anomaly_config import ANOMALY_KIND
from inspect_app.errors import ActiveModelChangedError, RunStateError
from inspect_app.lifecycle.promotion import compare
from inspect_app.lifecycle.snapshot import (
    Snapshot,
    build_snapshot,
    model_training_hashes,
    stamp_fingerprint,
    trained_files,
)
from inspect_app.records import (
    GOOD_CLASS,
    DatasetSnapshot,
    ModelComparison,
    ModelVersion,
    RunStatus,
    TrainingRun,
    utcnow,
)
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository
from inspect_app.storage.runs import RunQueue

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Rounds of judging when other workers keep promoting their candidates at the same moment.
JUDGE_ATTEMPTS = 3


class RunCancelledError(Exception):
    """Raised inside a training loop to stop it: the run was cancelled or taken away from this worker."""


def default_worker_name() -> str:
    """``host:pid``: unique per process, so that two workers on one host never recover each other's runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Executes queued fine-tuning runs.

    Args:
        db: the open, migrated database.
        settings: where run folders go (``settings.runs_dir``).
        name: worker name recorded on claimed runs; a worker restarted under the same name recovers its runs at once.
        heartbeat_s: seconds between heartbeats while a run trains.
        stale_after: a running run whose heartbeat is older than this is considered abandoned.
        max_attempts: runs abandoned this many times are marked failed instead of requeued.
        clock: current UTC time (injected by tests).
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        name: str | None = None,
        heartbeat_s: float = 10.0,
        stale_after: timedelta = timedelta(minutes=2),
        max_attempts: int = 3,
        clock: Clock = utcnow,
    ) -> None:
        """Bind to a database; nothing is claimed yet."""
        if heartbeat_s <= 0 or stale_after.total_seconds() <= heartbeat_s:
            raise ValueError(f"stale_after {stale_after} must be longer than heartbeat_s {heartbeat_s!r} > 0")
        self.db = db
        self.settings = settings
        self.name = name or default_worker_name()
        self.heartbeat_s = heartbeat_s
        self.stale_after = stale_after
        self.max_attempts = max_attempts
        self.clock = clock
        self.queue = RunQueue(db)
        self.repository = Repository(db)

    def recover(self) -> list[TrainingRun]:
        """Requeue or fail runs abandoned by dead workers (and by an earlier life of this one)."""
        return self.queue.recover(self.clock(), self.stale_after, self.max_attempts, worker=self.name)

    def run_once(self) -> TrainingRun | None:
        """Claim and execute the oldest queued run; ``None`` when the queue is empty."""
        run = self.queue.claim(self.name, self.clock())
        if run is None:
            return None
        return self.execute(run)

    def run_forever(self, stop: threading.Event | None = None, poll_s: float = 10.0, drain: bool = False) -> int:
        """Recover, then execute runs until ``stop`` is set (or, with ``drain``, until the queue is empty).

        Returns:
            The number of runs executed.
        """
        stop = stop or threading.Event()
        self.recover()
        done = 0
        while not stop.is_set():
            if self.run_once() is not None:
                done += 1
                continue
            if drain:
                break
            # Recovery on every idle poll: a run abandoned by another host's worker is picked up here.
            self.recover()
            stop.wait(poll_s)
        return done

    # one run -----------------------------------------------------------------------------------------------------

    def execute(self, run: TrainingRun) -> TrainingRun:
        """Take a claimed run to its end; exceptions become a ``failed`` run with the reason, never a crash."""
        assert run.id is not None
        run_dir = self.settings.runs_dir.resolve() / f"run-{run.id:05d}" / f"attempt-{run.attempts}"
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = run_dir / "train.log"
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        # Only this thread's records: workers sharing a process (tests, embedding) keep separate logs.
        thread_id = threading.get_ident()
        handler.addFilter(lambda record: record.thread == thread_id)
        package_logger = logging.getLogger("inspect_app")
        previous_level = package_logger.level
        package_logger.addHandler(handler)
        if package_logger.getEffectiveLevel() > logging.INFO:
            package_logger.setLevel(logging.INFO)
        beat = _Heartbeat(self.queue, run.id, self.name, self.heartbeat_s, self.clock)
        try:
            self.queue.update_running(run.id, self.name, log_path=str(log_path))
            beat.start()
            metrics = self._train_and_judge(run, run_dir, beat)
            beat.stop()
            finished = self.queue.finish(run.id, self.name, RunStatus.SUCCEEDED, self.clock(), metrics=metrics,
                                         progress={**beat.progress, "phase": "done"})
            logger.info("training run %d succeeded: %s", run.id, metrics.get("decision"))
            return finished
        except RunCancelledError as exc:
            beat.stop()
            logger.warning("training run %d stopped: %s", run.id, exc)
            if beat.lost:
                return self.queue.get(run.id)
            self.repository.discard_candidates(run.id)
            return self.queue.finish(run.id, self.name, RunStatus.CANCELLED, self.clock(), error=str(exc))
        except Exception as exc:
            beat.stop()
            logger.exception("training run %d failed", run.id)
            discarded = self.repository.discard_candidates(run.id)
            if discarded:
                logger.warning("training run %d failed: its candidate(s) %s removed", run.id, ", ".join(discarded))
            try:
                return self.queue.finish(run.id, self.name, RunStatus.FAILED, self.clock(),
                                         error=f"{type(exc).__name__}: {exc}")
            except RunStateError:
                return self.queue.get(run.id)
        finally:
            beat.stop()
            package_logger.removeHandler(handler)
            package_logger.setLevel(previous_level)
            handler.close()

    def _train_and_judge(self, run: TrainingRun, run_dir: Path, beat: _Heartbeat) -> dict[str, Any]:
        """Snapshot, fit (either kind), register, compare, promote; returns the run's metrics."""
        assert run.id is not None
        spec = FinetuneSpec.from_dict(run.config)
        beat.report({"phase": "snapshot"})
        base = self._model_to_refresh(run) if spec.update else None
        reviews = self.queue.reviewed_images(until=run.started_at) if spec.use_reviews or base else []
        if base is not None:
            reviews = self._good_reviews_since(reviews, base, run)
        # The frozen test set must be new to the champion (and to the model a refresh adds to) as well.
        others = self._trained_by(self.repository.active_model(), base)
        base_files = trained_files(self.repository, base.data_fingerprint, base.name) if base is not None else None
        snapshot = build_snapshot(Path(run.data_dir), run_dir, spec, reviews, train_on_folder=base is None,
                                  store_dir=self.settings.snapshots_dir, trained_by_others=others,
                                  base_files=base_files, evidence_root=self.settings.resolved_evidence_dir)
        self.queue.update_running(run.id, self.name, data_fingerprint=snapshot.fingerprint)
        self._record_snapshot(snapshot.record())
        snapshot_figures = {"fingerprint": snapshot.fingerprint, "counts": snapshot.counts,
                            "reviews_skipped": snapshot.reviews_skipped}
        if base is not None and snapshot.counts.get("train/review", 0) == 0:
            reason = f"no good images reviewed since {base.name} was made: nothing to add, no candidate"
            logger.info("training run %d: %s", run.id, reason)
            return {"model": None, "promoted": False, "decision": reason, "refreshed": base.name,
                    "snapshot": snapshot_figures}
        name = run.model_name or f"{spec.model_prefix}-run{run.id}"
        if run.attempts > 1:
            name = f"{name}-a{run.attempts}"
        self.queue.update_running(run.id, self.name, model_name=name)
        beat.check()
        if spec.kind == "anomaly":
            result, device = self._fit_good_only(spec, snapshot, run_dir / "model", name, beat, base)
            keys: tuple[str, ...] = ("holdout_false_reject_rate", "auroc_good_vs_defect")
        else:
            from inspect_app.engine.train import fit

            result = fit(snapshot.train_dir, run_dir / "model", spec.train, name=name, progress=beat.report)
            device, keys = spec.train.device, ("accuracy", "macro_recall", "auroc_good_vs_defect", "epoch")
        beat.report({"phase": "evaluate"})
        card = stamp_fingerprint(result.model_dir, result.card, snapshot, refresh=base is not None)
        self.repository.add_model_version(ModelVersion(
            name=name, kind=card.kind, backbone=card.backbone, path=str(result.model_dir), classes=tuple(card.classes),
            metrics=card.metrics, threshold=card.threshold, data_fingerprint=snapshot.fingerprint,
            training_run_id=run.id,
        ))
        comparison = self._judge(run, name, result.model_dir, snapshot.test_items, spec, device)
        metrics = {
            "model": name, "kind": spec.kind, "promoted": comparison.promoted, "decision": comparison.reason,
            "validation": {k: card.metrics.get(k) for k in keys},
            "test": comparison.details["candidate"], "champion_test": comparison.details["champion"],
            "snapshot": snapshot_figures, "train_seconds": result.seconds,
        }
        if base is not None:
            metrics["refreshed"] = base.name
        return metrics

    def _fit_good_only(
        self, spec: FinetuneSpec, snapshot: Snapshot, out: Path, name: str, beat: _Heartbeat,
        base: ModelVersion | None,
    ) -> tuple[Any, str]:
        """Fit a good-only model on the snapshot (or add its reviewed good images to ``base``); (result, device)."""
        from inspect_app.engine.anomaly import fit_anomaly, scan_good_only, update_anomaly
        from inspect_app.engine.anomaly_config import AnomalyConfig

        if base is not None:
            new_good = [path for path, label in snapshot.reviewed if label == GOOD_CLASS]
            logger.info("refreshing good-only model %s with %d good image(s) reviewed since it was made", base.name,
                        len(new_good))
            result = update_anomaly(Path(base.path), new_good, out, name=name)
            beat.report({"phase": "bank", "added_images": len(new_good)})
            return result, AnomalyConfig.from_card(result.card.train_config).device
        config = AnomalyConfig.from_dict(spec.anomaly, where="the run's anomaly recipe")
        result = fit_anomaly(scan_good_only(snapshot.train_dir, GOOD_CLASS), out, config, name=name,
                             progress=beat.report)
        return result, config.device

    def _model_to_refresh(self, run: TrainingRun) -> ModelVersion | None:
        """The good-only model an ``update`` run adds to: the active one, else the newest; ``None``: fit anew."""
        active = self.repository.active_model()
        if active is not None and active.kind == ANOMALY_KIND:
            return active
        good_only = [v for v in self.repository.list_model_versions() if v.kind == ANOMALY_KIND]
        if good_only:
            return good_only[-1]
        logger.info("training run %d: no good-only model to refresh yet, fitting one anew", run.id)
        return None

    def _good_reviews_since(
        self, reviews: list[dict[str, Any]], base: ModelVersion, run: TrainingRun
    ) -> list[dict[str, Any]]:
        """The reviewed-OK images that ``base`` has not seen: reviewed after the run that made it started.

        A base without a run of its own (trained by the CLI) counts from the schedule's previous successful run, else
        from its registration.
        """
        since = None
        if base.training_run_id is not None:
            since = self.queue.get(base.training_run_id).started_at
        elif run.schedule:
            done = [r for r in self.queue.list(limit=50, status=RunStatus.SUCCEEDED, schedule=run.schedule)
                    if r.id != run.id and r.started_at is not None]
            since = done[0].started_at if done else None
        since = since or base.created_at
        fresh = [r for r in reviews if r["verdict"] == "OK" and _as_utc(r["reviewed_at"]) > _as_utc(since)]
        logger.info("%d good image(s) reviewed since %s (%d review(s) in all)", len(fresh), since, len(reviews))
        return fresh

    def _trained_by(self, *versions: ModelVersion | None) -> dict[str, set[str]]:
        """``"model 'name'"`` → the content hashes it trained on, for each of ``versions`` with a snapshot."""
        trained: dict[str, set[str]] = {}
        for version in versions:
            if version is not None and f"model {version.name!r}" not in trained:
                hashes = model_training_hashes(self.repository, version)
                if hashes is not None:
                    trained[f"model {version.name!r}"] = hashes
        return trained

    def _record_snapshot(self, snapshot: DatasetSnapshot) -> None:
        """Register the snapshot (an atomic insert-or-ignore: another worker may register the same data at once)."""
        self.repository.add_dataset_snapshot(snapshot)

    def _judge(
        self, run: TrainingRun, name: str, model_dir: Path, test_items: list, spec: FinetuneSpec, device: str = "auto"
    ) -> ModelComparison:
        """Compare with the active model and promote a winner; judged again if the champion changes meanwhile."""
        for _ in range(JUDGE_ATTEMPTS):
            champion = self.repository.active_model()
            trained_on = self._trained_by(self.repository.get_model_version(name), champion)
            comparison = compare(
                model_dir, name, Path(champion.path) if champion else None, champion.name if champion else None,
                test_items, spec.promotion, device=device, training_run_id=run.id, trained_on=trained_on,
            )
            promoted = comparison.promoted and spec.promotion.auto_promote
            if promoted:
                previous = champion.name if champion else None
                event = promotion_event(name, previous, f"worker:{self.name}", f"run {run.id}: {comparison.reason}")
                try:
                    self.repository.promote(name, audit=event, expected_active=previous)
                except ActiveModelChangedError as exc:
                    logger.warning("%s; %s is judged again", exc, name)
                    continue  # another worker promoted its candidate meanwhile: judge against that one
            reason = comparison.reason
            if comparison.promoted and not promoted:
                reason = f"{reason}; auto_promote is off, so it waits for a person"
            stored = ModelComparison(
                candidate=comparison.candidate, champion=comparison.champion, promoted=promoted, reason=reason,
                details=comparison.details, training_run_id=run.id, created_at=self.clock(),
            )
            self.repository.add_comparison(stored)
            return stored
        raise RunStateError(f"the active model kept changing while judging {name}; it stays a candidate")


def _as_utc(moment: datetime | str) -> datetime:
    """A stored time (ISO text or datetime; SQLite gives naive UTC) as an aware UTC datetime."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _Heartbeat:
    """Background heartbeats for one run, plus the cancel/lost flags the training loop checks at every step."""

    def __init__(self, queue: RunQueue, run_id: int, worker: str, every_s: float, clock: Clock) -> None:
        self.queue = queue
        self.run_id = run_id
        self.worker = worker
        self.every_s = every_s
        self.clock = clock
        self.progress: dict[str, Any] = {}
        self.cancelled = False
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-run-{run_id}", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start beating (the first beat is immediate)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; idempotent."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    def beat(self) -> None:
        """One heartbeat with the latest progress; sets ``cancelled`` or ``lost``."""
        with self._lock:
            progress = dict(self.progress)
        try:
            if self.queue.heartbeat(self.run_id, self.worker, progress, self.clock()):
                self.cancelled = True
        except RunStateError as exc:
            logger.error("%s", exc)
            self.lost = True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.beat()
            self._stop.wait(self.every_s)

    def report(self, event: dict[str, Any]) -> None:
        """Progress callback for ``fit``: keep the newest event and stop the loop when cancelled or lost."""
        with self._lock:
            self.progress = {k: v for k, v in event.items() if isinstance(v, (int, float, str))}
            self.progress["at"] = time.time()
        self.check()

    def check(self) -> None:
        """Raise ``RunCancelledError`` when a cancel was requested or the run was taken away."""
        if self.lost:
            raise RunCancelledError(f"training run {self.run_id} is no longer held by worker {self.worker!r}")
        if self.cancelled:
            raise RunCancelledError(f"training run {self.run_id} was cancelled on request")
