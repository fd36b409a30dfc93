"""Dashboard query latency: p50/p95 of each query in ``inspect_app.storage.queries`` on a filled database.

Fill the database first with ``storage_insert.py`` (1,000,000 rows, 90 days, 10 stations). Each query runs with the
arguments the dashboard passes (``since`` = now floored to the minute minus the period, so windows start inside an
hour, like real use), ``--repeat`` times after one warm-up.

    flock /tmp/inspect_cpu.lock python benchmarks/storage_queries.py --url sqlite:////tmp/inspect_bench.db
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, literal_column, select

from inspect_app.records import utcnow
from inspect_app.storage import Database, mask_url, queries, review_queries
from inspect_app.storage.tables import InspectionRow


def cases(db: Database) -> dict[str, Callable[[], Any]]:
    """The dashboard's queries with realistic arguments."""
    now = utcnow().replace(second=0, microsecond=0)
    day, week, month, quarter = (now - timedelta(days=d) for d in (1, 7, 30, 90))
    return {
        "stations": lambda: queries.stations(db),
        "summary 24h": lambda: queries.summary(db, since=day),
        "summary 24h one station": lambda: queries.summary(db, since=day, station="station-03"),
        "summary all time": lambda: queries.summary(db),
        "defect rate per hour 24h": lambda: queries.defect_rate_over_time(db, "hour", since=day),
        "defect rate per shift 7d by station": lambda: queries.defect_rate_over_time(db, "shift", since=week,
                                                                                     by="station"),
        "defect rate per day 90d by line": lambda: queries.defect_rate_over_time(db, "day", since=quarter, by="line"),
        "pareto 30d": lambda: queries.pareto(db, since=month),
        "p-chart per day 90d": lambda: queries.p_chart(db, "day", since=quarter),
        "score distribution per day 90d": lambda: queries.score_distribution(db, "day", since=quarter),
        "latest NG 20": lambda: queries.latest_ng(db, limit=20, since=day),
        "latest NG 20 one station": lambda: queries.latest_ng(db, limit=20, station="station-07"),
        "review queue 50": lambda: review_queries.review_queue(db, limit=50),
        "review queue size": lambda: review_queries.review_queue_size(db),
    }


def raw_baseline(db: Database) -> dict[str, Callable[[], Any]]:
    """The same 90-day aggregations computed straight from the raw rows (the skeleton's way), for the ratio."""
    since = utcnow().replace(second=0, microsecond=0) - timedelta(days=90)
    ng = func.sum(case((InspectionRow.decision == "NG", 1), else_=0))
    if db.dialect == "sqlite":
        day = func.strftime(literal_column("'%Y-%m-%d'"), InspectionRow.created_at)
    else:
        day = func.date_trunc(literal_column("'day'"), func.timezone(literal_column("'UTC'"), InspectionRow.created_at))

    def run(stmt: Any) -> Callable[[], Any]:
        def go() -> Any:
            with db.session() as session:
                return session.execute(stmt).all()

        return go

    return {
        "RAW summary 90d": run(select(func.count(), ng).where(InspectionRow.created_at >= since)),
        "RAW defect rate per day 90d by line": run(
            select(day.label("d"), InspectionRow.line, func.count(), ng)
            .where(InspectionRow.created_at >= since)
            .group_by(literal_column("d"), InspectionRow.line)
        ),
    }


def main() -> None:
    """Time every query and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--baseline", action="store_true", help="also time raw-row versions of two 90-day queries")
    args = parser.parse_args()
    db = Database.open(args.url)
    try:
        total = queries.summary(db).total
        print(f"backend {db.dialect} ({mask_url(args.url)}), {total:,} inspections, {args.repeat} runs per query")
        print(f"{'query':<40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        worst = 0.0
        timed = cases(db)
        if args.baseline:
            timed.update(raw_baseline(db))
        for name, run in timed.items():
            run()  # warm-up: plan caches, page cache
            times = []
            for _ in range(args.repeat if not name.startswith("RAW") else min(args.repeat, 5)):
                t = time.perf_counter()
                run()
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p95 = times[max(0, round(0.95 * len(times)) - 1)]
            worst = max(worst, p95)
            print(f"{name:<40} {statistics.median(times):>8.1f} {p95:>8.1f} {times[-1]:>8.1f}")
        print(f"slowest p95: {worst:.1f} ms")
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
