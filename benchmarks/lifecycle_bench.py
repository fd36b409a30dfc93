"""Lifecycle figures: queue claim throughput with concurrent workers, one run's overhead around fit, hot-swap stall.

Usage (from the repository root; wrap in the machine's CPU lock)::

    flock /tmp/inspect_cpu.lock python benchmarks/lifecycle_bench.py [--postgres URL] [--runs 400] [--workers 4]

Prints:
  1. claims/s and duplicate claims with N threads, each with its own engine, on SQLite (and PostgreSQL if given);
  2. a real fine-tuning run through the worker on a small synthetic set: fit time vs. the whole run (snapshot,
     registration, champion/challenger evaluation, bookkeeping);
  3. inspection of a folder while the active model changes: per-batch wall times with the background reload, the
     worst batch against the median, and the number of frames recorded (must equal the images).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from inspect_app.config.policy import FinetuneSpec, PromotionPolicy
from inspect_app.config.recipes import TrainConfig
from inspect_app.config.settings import Settings
from inspect_app.data.synthetic import generate_sample_data
from inspect_app.engine.hot_swap import HotSwapInspector, inspector_loader
from inspect_app.engine.pipeline import inspect_folder
from inspect_app.engine.sinks import DatabaseSink
from inspect_app.lifecycle.worker import Worker
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue


def claim_throughput(url: str, runs: int, workers: int) -> tuple[float, int, int]:
    """(claims per second, duplicates, runs claimed) with ``workers`` threads draining ``runs`` queued runs."""
    with Database.open(url) as db:
        queue = RunQueue(db)
        for i in range(runs):
            queue.enqueue({}, f"/d/{i}")
    taken: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(workers + 1)

    def work(name: str) -> None:
        with Database.open(url, migrate=False) as db:
            queue = RunQueue(db)
            barrier.wait()
            while (run := queue.claim(name)) is not None:
                with lock:
                    taken.append(run.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(workers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return len(taken) / seconds, len(taken) - len(set(taken)), len(set(taken))


def postgres_schema(server: str) -> tuple[str, callable]:
    """A fresh schema on ``server``: (URL confined to it, drop function)."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), drop


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("INSPECT_TEST_POSTGRES_URL"))
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="lifecycle_bench_"))

    print(f"1. queue claims: {args.runs} queued runs, {args.workers} concurrent workers")
    rate, dup, n = claim_throughput(f"sqlite:///{tmp / 'claims.db'}", args.runs, args.workers)
    print(f"   sqlite     {rate:8.0f} claims/s  claimed {n}/{args.runs}  duplicates {dup}")
    if args.postgres:
        url, drop = postgres_schema(args.postgres)
        try:
            rate, dup, n = claim_throughput(url, args.runs, args.workers)
        finally:
            drop()
        print(f"   postgresql {rate:8.0f} claims/s  claimed {n}/{args.runs}  duplicates {dup}")

    generate_sample_data(tmp / "a", seed=1, per_class={"good": 40, "scratch": 20, "crack": 20}, incoming=96, size=128)
    generate_sample_data(tmp / "b", seed=2, per_class={"good": 20, "scratch": 10, "crack": 10}, incoming=0, size=128)
    train = TrainConfig(epochs=2, input_size=128, batch_size=16, device="cpu")
    spec = FinetuneSpec(train=train, test_dir=str(tmp / "b" / "train"), promotion=PromotionPolicy())
    with Database.open(f"sqlite:///{tmp / 'plant.db'}") as db:
        queue, repo = RunQueue(db), Repository(db)
        worker = Worker(db, Settings(home=tmp / "home", device="cpu"), name="bench", heartbeat_s=2.0,
                        stale_after=timedelta(minutes=5))
        names = []
        for seed in (0, 1):
            queue.enqueue(FinetuneSpec.from_dict({**spec.to_dict(), "train": {**train.to_dict(), "seed": seed}})
                          .to_dict(), str(tmp / "a" / "train"))
            start = time.perf_counter()
            run = worker.run_once()
            total = time.perf_counter() - start
            fit_s = run.metrics["train_seconds"]
            names.append(run.model_name)
            print(f"2. run {run.id} ({run.status.value}, promoted {run.metrics['promoted']}): fit {fit_s:.1f} s, "
                  f"whole run {total:.1f} s, overhead {total - fit_s:.1f} s ({(total - fit_s) / total:.0%}) "
                  f"[{sum(run.metrics['snapshot']['counts'].values())} images, test 40, "
                  f"{'with' if run.metrics['champion_test'] else 'no'} champion evaluated]")

        repo.promote(names[0])
        hot = HotSwapInspector(repo, inspector_loader(device="cpu"), poll_s=0.0, background=True)
        times: list[float] = []
        last = [time.perf_counter()]

        def between(done: int, total: int) -> None:
            now = time.perf_counter()
            times.append(now - last[0])
            if len(times) == 3:
                repo.promote(names[1])
            hot.poll()
            last[0] = time.perf_counter()

        result = inspect_folder(tmp / "a" / "incoming", hot, [DatabaseSink(repo)], station="s", line="l",
                                batch_size=8, progress=between)
        rows = repo.list_inspections(limit=1000)
        median = statistics.median(times)
        print(f"3. hot swap: {result.total} images in {len(times)} batches of 8, median batch {median * 1000:.0f} ms, "
              f"worst {max(times) * 1000:.0f} ms ({max(times) / median:.2f}x median), swaps {hot.swaps}, "
              f"rows recorded {len(rows)}, per model "
              f"{ {n: sum(r.model_version == n for r in rows) for n in names} }")


if __name__ == "__main__":
    main()
