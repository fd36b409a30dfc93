"""Insert benchmark: N inspections (default 1,000,000) over 90 days and 10 stations, rows/s per backend.

Writes through ``Repository.add_inspections`` exactly as a station does (idempotent insert + rollup upserts in one
transaction per call). The database it fills is what ``storage_queries.py`` measures.

    flock /tmp/inspect_cpu.lock python benchmarks/storage_insert.py --url sqlite:////tmp/inspect_bench.db
    flock /tmp/inspect_cpu.lock python benchmarks/storage_insert.py --url postgresql+psycopg://u:pw@host:5432/bench
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from inspect_app.records import Decision, Inspection, utcnow
from inspect_app.storage import Database, Repository, mask_url

STATIONS = tuple(f"station-{k:02d}" for k in range(10))
CLASSES = ("scratch", "dent", "stain", "crack", "porosity")
DAYS = 90


def generate(total: int, end: datetime, seed: int = 0) -> Iterator[Inspection]:
    """Inspections in time order over the ``DAYS`` before ``end``: 90 % OK, 4 % REVIEW, 5 % NG, 1 % ERROR."""
    rng = random.Random(seed)
    start = end - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / total
    for i in range(total):
        station = STATIONS[i % len(STATIONS)]
        draw = rng.random()
        decision = (
            Decision.OK if draw < 0.90 else Decision.REVIEW if draw < 0.94 else Decision.NG if draw < 0.99
            else Decision.ERROR
        )
        error = decision == Decision.ERROR
        score = None if error else min(1.0, max(0.0, rng.gauss(0.85 if decision == Decision.NG else 0.1, 0.1)))
        yield Inspection(
            station=station,
            line=f"line-{int(station[-2:]) // 5 + 1}",
            source=f"/cameras/{station}",
            image_path=f"/images/{station}/{i:08d}.png",
            decision=decision,
            created_at=start + step * i,
            content_hash=None if error else f"{i:064x}",
            model_version="effnet-lite0-v3",
            defect_class=rng.choice(CLASSES) if decision == Decision.NG else None,
            score=score,
            threshold=0.5,
            latency_ms=rng.uniform(8, 30),
            heatmap_path=f"/var/ng/{i:016x}_overlay.png" if decision != Decision.OK and not error else None,
            error="truncated file" if error else None,
        )


def fill(db: Database, total: int, chunk: int, end: datetime | None = None) -> tuple[float, float]:
    """Insert ``total`` generated rows in calls of ``chunk``; return (seconds inside add_inspections, wall seconds)."""
    repo = Repository(db)
    inside = 0.0
    wall = time.perf_counter()
    rows: list[Inspection] = []
    done = 0
    for row in generate(total, end or utcnow()):
        rows.append(row)
        if len(rows) == chunk:
            t = time.perf_counter()
            done += repo.add_inspections(rows)
            inside += time.perf_counter() - t
            rows = []
    if rows:
        t = time.perf_counter()
        done += repo.add_inspections(rows)
        inside += time.perf_counter() - t
    assert done == total, f"inserted {done} of {total}"
    return inside, time.perf_counter() - wall


def main() -> None:
    """Parse arguments, fill the database, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="an EMPTY database (its rows are counted)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=5000, help="inspections per add_inspections call")
    args = parser.parse_args()
    db = Database.open(args.url)
    try:
        inside, wall = fill(db, args.rows, args.chunk)
    finally:
        db.dispose()
    print(f"backend {db.dialect} ({mask_url(args.url)})")
    print(f"inserted {args.rows:,} inspections in calls of {args.chunk}: {inside:.1f} s in add_inspections, "
          f"{args.rows / inside:,.0f} rows/s")
    print(f"wall time including generating the records: {wall:.1f} s, {args.rows / wall:,.0f} rows/s")


if __name__ == "__main__":
    main()
