"""Drift alarms on the seeded plant: per station, the days the calibrated alarm is raised, against the old rule
(the model's validation *good* scores as reference, PSI > 0.25 on any day).

Seeds a SQLite file in /tmp through ``seed_plant.seed`` (30 days, paint-2 shifted on its last two; skipped with
``--reuse`` when the file exists), then prints one line per station. Run under the shared CPU lock:
``flock /tmp/inspect_cpu.lock python benchmarks/drift_alarms.py --rows 1000000 --zone Europe/Berlin``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from seed_plant import seed  # noqa: E402

from inspect_app.app import drift  # noqa: E402
from inspect_app.storage import Database, Repository, queries  # noqa: E402
from inspect_app.storage.inspections import score_bin  # noqa: E402
from inspect_app.storage.tables import SCORE_BINS  # noqa: E402

OLD_LIMIT = 0.25


def old_rule_days(db: Database, station: str) -> int:
    """Days the previous rule flagged: UTC days whose PSI against the active model's validation good scores > 0.25."""
    model = next(m for m in Repository(db).list_model_versions() if m.status.value == "active")
    reference = [0] * SCORE_BINS
    for score in model.metrics["score_samples"]["good"]:
        reference[score_bin(score)] += 1
    days = queries.score_distribution(db, bucket="day", station=station)
    return sum(drift.population_stability(reference, d["bins"]) > OLD_LIMIT for d in days)


def main() -> None:
    """Seed (or reuse) the plant and print per-station alarm days, old and new."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--zone", default="UTC", help="plant time zone (IANA name)")
    parser.add_argument("--reuse", action="store_true", help="reuse /tmp/drift_<rows>.db when it exists")
    args = parser.parse_args()
    path = Path(f"/tmp/drift_{args.rows}.db")
    url = f"sqlite:///{path.as_posix()}"
    if not (args.reuse and path.exists()):
        path.unlink(missing_ok=True)
        figures = seed(url, args.rows, days=30, now=datetime.now(UTC))
        print(f"seeded {figures['rows']:,} inspections in {figures['insert_s']:.1f} s")
    zone = ZoneInfo(args.zone)
    with Database.open(url) as db:
        start = time.perf_counter()
        results, skipped = drift.plant_drift(db, zone)
        elapsed = time.perf_counter() - start
        header = f"{'station':<10} {'days':>4} {'old flagged':>11} {'new alarms':>10}  highest PSI/limit"
        print(f"{header}  alarm days ({zone.key})")
        for result in results:
            ratio = max(d.psi / d.limit for d in result.days)
            days = ", ".join(d.isoformat() for d in result.alarm_days) or "-"
            print(f"{result.station:<10} {len(result.days):>4} {old_rule_days(db, result.station):>11} "
                  f"{len(result.alarm_days):>10}  {ratio:>17.2f}  {days}")
        for station, reason in skipped.items():
            print(f"{station:<10} skipped: {reason}")
        print(f"drift of {len(results)} stations computed in {elapsed * 1000:.0f} ms")


if __name__ == "__main__":
    main()
