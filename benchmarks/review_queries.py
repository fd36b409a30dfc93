"""Review page query latency: p50/p95 of the filtered, paged review queue on a seeded plant database.

Seed first with ``seed_plant.py`` (1,000,000 rows over 30 days: ~30,000 REVIEW parts waiting), then::

    flock /tmp/inspect_cpu.lock python benchmarks/review_queries.py --url sqlite:////tmp/plant_1m.db --repeat 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from inspect_app.records import utcnow
from inspect_app.storage import Database, mask_url, review_queries
from inspect_app.storage.review_queries import ReviewFilters
from inspect_app.storage.tables import UNCLASSIFIED


def cases(db: Database) -> dict[str, Callable[[], Any]]:
    """What the Review page asks for: a page of cards and the matching count, unfiltered and with each filter."""
    now = utcnow().replace(second=0, microsecond=0)
    filters = {
        "no filter": ReviewFilters(),
        "station": ReviewFilters(station="paint-2"),
        "class": ReviewFilters(defect_class=UNCLASSIFIED),
        "score 0.45-0.5": ReviewFilters(min_score=0.45, max_score=0.5),
        "last 7 days": ReviewFilters(since=now - timedelta(days=7)),
        "all four": ReviewFilters(station="paint-2", defect_class=UNCLASSIFIED, min_score=0.45, max_score=0.5,
                                  since=now - timedelta(days=7)),
    }
    out: dict[str, Callable[[], Any]] = {}
    for name, chosen in filters.items():
        out[f"page 1 of 24, {name}"] = lambda f=chosen: review_queries.review_queue_page(db, f, 1, 24)
        out[f"count, {name}"] = lambda f=chosen: review_queries.review_queue_count(db, f)
    out["page 100 of 24, no filter"] = lambda: review_queries.review_queue_page(db, ReviewFilters(), 100, 24)
    out["last page of 48, no filter"] = lambda: review_queries.review_queue_page(
        db, ReviewFilters(), max(1, -(-review_queries.review_queue_count(db, ReviewFilters()) // 48)), 48)
    return out


def main() -> None:
    """Time every case ``--repeat`` times after one warm-up; print a Markdown table in milliseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with Database.open(args.url) as db:
        print(f"database {mask_url(args.url)}, {args.repeat} calls each after one warm-up\n")
        print("| query | rows | p50 ms | p95 ms |\n|---|---:|---:|---:|")
        for name, call in cases(db).items():
            result = call()
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                call()
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            rows = result if isinstance(result, int) else len(result)
            print(f"| {name} | {rows:,} | {statistics.median(times):.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
