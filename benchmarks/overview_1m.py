"""Overview render time with 1,000,000 inspections in the database (issue 7's target: under 2 s).

Seeds a SQLite file in /tmp through ``seed_plant.seed`` (skipped with ``--reuse`` when the file exists), then renders
the Overview page headless with ``streamlit.testing.v1.AppTest`` with cold caches, for three periods, and prints the
wall time of each render. Run under the shared CPU lock:
``flock /tmp/inspect_cpu.lock python benchmarks/overview_1m.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seed_plant import seed  # noqa: E402

from inspect_app.storage import Database, queries  # noqa: E402

APP = ROOT / "inspect_app" / "ui" / "app.py"
PERIODS = ("Last 24 hours", "Last 7 days", "Last 30 days", "All time")


def render_once(period: str) -> tuple[float, dict[str, str]]:
    """Render Overview with cold caches on ``period``; return (seconds, KPI values)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=120)
    if period != "Last 24 hours":
        # Selecting a period needs one run to create the widget; that run is not timed.
        at.run()
        at.sidebar.selectbox(key="period").select(period)
        st.cache_data.clear()
        st.cache_resource.clear()
    start = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - start
    if at.exception:
        raise RuntimeError([e.value for e in at.exception])
    return seconds, {m.label: m.value for m in at.metric}


def main() -> None:
    """Seed (or reuse) the database and print the render figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/inspect_overview_1m.db")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep an existing database file")
    args = parser.parse_args()
    path = Path(args.db)
    url = f"sqlite:///{path.as_posix()}"
    if not (args.reuse and path.exists()):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        figures = seed(url, args.rows)
        print(f"seeded {figures['rows']:,} inspections in {figures['insert_s']:.1f} s "
              f"({figures['rows'] / figures['insert_s']:,.0f} rows/s)")
    os.environ["INSPECT_DATABASE_URL"] = url
    with Database.open(url) as db:
        total = queries.summary(db).total
    print(f"database {path}: {total:,} inspections")
    render_once("Last 24 hours")  # warms imports (altair, pandas) so the first figure is not import time
    for period in PERIODS:
        times = []
        for _ in range(3):
            seconds, kpis = render_once(period)
            times.append(seconds)
        print(f"Overview, {period:<14} cold-cache render: best {min(times):.2f} s, worst {max(times):.2f} s "
              f"(Inspected {kpis['Inspected']}, NG {kpis['NG']})")


if __name__ == "__main__":
    main()
