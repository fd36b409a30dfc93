"""Two workers on one PostgreSQL database execute every queued run exactly once, with real training."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from inspect_app.config.settings import Settings
from inspect_app.lifecycle.worker import Worker
from inspect_app.records import ModelStatus, RunStatus
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


# PostgreSQL only: this is about SKIP LOCKED claims between processes' connections (SQLite: tests/storage).
@pytest.mark.parametrize("lifecycle_db_url", ["postgresql"], indirect=True)
def test_two_workers_share_the_queue_without_taking_a_run_twice(
    lifecycle_db_url: str, tiny_sets: dict[str, Path], tmp_path: Path, spec_factory
) -> None:
    with Database.open(lifecycle_db_url) as db:
        queue = RunQueue(db)
        ids = [queue.enqueue(spec_factory(tiny_sets["test"], epochs=1).to_dict(), str(tiny_sets["train"]))
               for _ in range(4)]
    executed: dict[str, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(name: str) -> None:
        try:
            with Database.open(lifecycle_db_url, migrate=False) as db:
                worker = Worker(db, Settings(home=tmp_path / name, device="cpu"), name=name, heartbeat_s=0.5,
                                stale_after=timedelta(minutes=5))
                start.wait()
                executed[name] = worker.run_forever(drain=True)
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"pg-w{i}",)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    with Database.open(lifecycle_db_url, migrate=False) as db:
        runs = [RunQueue(db).get(run_id) for run_id in ids]
        versions = Repository(db).list_model_versions()
    assert sum(executed.values()) == 4
    assert all(run.status is RunStatus.SUCCEEDED and run.attempts == 1 for run in runs), [r.error for r in runs]
    assert {run.worker for run in runs} <= {"pg-w1", "pg-w2"}
    assert sorted(v.training_run_id for v in versions) == sorted(ids)  # one model per run, none twice
    assert sum(v.status is ModelStatus.ACTIVE for v in versions) == 1
