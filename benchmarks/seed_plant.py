"""Fill a plant database with synthetic inspections (through ``Repository.add_inspections``, so the hourly rollups
are exact), model versions with validation scores, users, reviews, a training run and a schedule.

Used by ``overview_1m.py`` (1,000,000 rows) and ``dashboard_screenshots.py``. Run alone:
``python benchmarks/seed_plant.py --db sqlite:////tmp/plant.db --rows 100000``.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

from inspect_app.app import users
from inspect_app.records import Decision, Inspection, ModelStatus, ModelVersion, RunStatus, TrainingRun
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore

STATIONS = {"press-1": "line-A", "press-2": "line-A", "weld-1": "line-A", "paint-1": "line-B", "paint-2": "line-B",
            "final-1": "line-B"}
DEFECTS = ("scratch", "dent", "crack", "stain", "porosity")
DEFECT_WEIGHTS = (0.42, 0.25, 0.15, 0.12, 0.06)
CHUNK = 50_000
PASSWORD = "plant-floor-demo"


def _rows(offset: int, count: int, total: int, days: int, rng: random.Random, now: datetime) -> list[Inspection]:
    """Rows ``offset .. offset+count`` of ``total`` inspections spread evenly over the last ``days`` days.

    paint-2 gets worse on the last two days (NG rate and score spread), so the p-chart and the drift page show it.
    """
    stations = list(STATIONS)
    span = days * 86_400
    # Seeding a million rows spends its time here and in the insert: the loop's invariants are hoisted out of it.
    late_from = now - timedelta(days=2)
    base_rate = {s: 0.02 + (0.01 if s == "weld-1" else 0.0) for s in stations}
    uniform, random_, gauss, choices = rng.uniform, rng.random, rng.gauss, rng.choices
    rows = []
    for i in range(offset, offset + count):
        station = stations[i % len(stations)]
        at = now - timedelta(seconds=span * (1 - i / total) + 1)
        drifting = station == "paint-2" and at > late_from
        ng_rate = base_rate[station] + (0.05 if drifting else 0.0)
        u = random_()
        defect_class = error = None
        content_hash: str | None = f"{i:016x}"
        if u < ng_rate:
            decision, score = Decision.NG, uniform(0.6, 1.0)
        elif u < ng_rate + 0.03:
            decision, score = Decision.REVIEW, uniform(0.4, 0.6)
        elif u < ng_rate + 0.031:
            decision, score, content_hash, error = Decision.ERROR, None, None, "truncated image"
        else:
            decision, score = Decision.OK, min(abs(gauss(0.08, 0.14 if drifting else 0.07)), 0.39)
        if decision == Decision.NG:
            defect_class = choices(DEFECTS, DEFECT_WEIGHTS)[0]
        rows.append(Inspection(
            station=station, line=STATIONS[station], source=f"cam-{station}", image_path=f"/data/{station}/{i}.png",
            decision=decision, created_at=at, content_hash=content_hash, model_version="efnet-v2",
            defect_class=defect_class, score=score, threshold=0.5, latency_ms=uniform(8, 25), error=error,
        ))
    return rows


def _metrics(rng: random.Random) -> dict:
    good = sorted(round(min(abs(rng.gauss(0.08, 0.07)), 0.99), 4) for _ in range(400))
    defect = sorted(round(min(max(rng.gauss(0.75, 0.15), 0.01), 0.999), 4) for _ in range(120))
    return {
        "accuracy": 0.951, "macro_recall": 0.912, "auroc_good_vs_defect": 0.987, "images": 520,
        "classes": ["good", *DEFECTS],
        "confusion_matrix": [[392, 3, 2, 1, 2, 0], [2, 36, 1, 0, 1, 0], [1, 2, 25, 1, 0, 1], [0, 1, 1, 17, 1, 0],
                             [1, 0, 0, 1, 13, 0], [0, 0, 1, 0, 0, 9]],
        "score_samples": {"good": good, "defect": defect},
    }


def seed(url: str, rows: int, days: int = 30, seed_value: int = 0, now: datetime | None = None) -> dict[str, float]:
    """Fill ``url``; returns the seconds spent inserting inspections and the rows inserted.

    ``now`` (default: the current time) is the end of the seeded period, so that a test can pin the days.
    """
    rng = random.Random(seed_value)
    now = now or datetime.now(UTC)
    with Database.open(url) as db:
        repo = Repository(db)
        start = time.perf_counter()
        inserted = 0
        for offset in range(0, rows, CHUNK):
            inserted += repo.add_inspections(_rows(offset, min(CHUNK, rows - offset), rows, days, rng, now))
        insert_s = time.perf_counter() - start
        for name, status, age in (("efnet-v1", ModelStatus.RETIRED, 40), ("efnet-v2", ModelStatus.ACTIVE, 20)):
            repo.add_model_version(ModelVersion(
                name=name, kind="classifier", backbone="efficientnet_lite0", path=f"/models/{name}",
                classes=("good", *DEFECTS), metrics=_metrics(rng), status=status, threshold=0.5,
                created_at=now - timedelta(days=age)))
        for role in ("operator", "engineer", "admin"):
            users.create_user(db, role, role, PASSWORD)
        RunQueue(db).add(TrainingRun(config={"epochs": 8}, data_dir="/data/train", status=RunStatus.RUNNING,
                                     model_name="efnet-v3", metrics={"epoch": 3, "epochs": 8}))
        ScheduleStore(db).add("nightly-finetune", "0 2 * * *", {})
    return {"insert_s": insert_s, "rows": inserted}


def main() -> None:
    """Command line: seed one database and print the insert figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database URL, e.g. sqlite:////tmp/plant.db")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    figures = seed(args.db, args.rows, args.days)
    print(f"inserted {figures['rows']:,} inspections in {figures['insert_s']:.1f} s "
          f"({figures['rows'] / figures['insert_s']:,.0f} rows/s)")


if __name__ == "__main__":
    main()
