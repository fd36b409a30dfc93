"""The plant's loop on real data (issue 18): two stations inspect Magnetic Tile parts on PostgreSQL, people review
the doubtful ones, the verdicts are exported, a scheduled good-only run trains, champion/challenger decides, and the
running pipelines switch model and threshold, with every part giving one row, one evidence set and one reject signal
through a database outage at one station and a kill -9 of the other after the promotion."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from inspect_app.app.reviews import review_inspection
from inspect_app.app.schedules import add_schedule
from inspect_app.app.versions import promote_model, set_model_threshold
from inspect_app.cli import main
from inspect_app.config.policy import FinetuneSpec, PromotionPolicy
from inspect_app.config.settings import Settings
from inspect_app.lifecycle.promotion import judge_challenger
from inspect_app.lifecycle.scheduler import Scheduler
from inspect_app.lifecycle.worker import Worker
from inspect_app.records import Decision, Inspection, RunStatus, User, utcnow
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository
from inspect_app.storage.tables import InspectionRow
from tests.conftest import SHARED_DATASETS
from tests.e2e.pg_relay import RelayedDatabase

MT = SHARED_DATASETS / "magnetic-tile"
pytestmark = [
    pytest.mark.slow, pytest.mark.postgres, pytest.mark.datasets,
    pytest.mark.skipif(not MT.is_dir(), reason=f"Magnetic Tile not found at {MT} (set INSPECT_DATASETS)"),
]

STATIONS = ("st-A", "st-B")
FIRST, SECOND = 12, 14  # parts per station before and after the promotion
DEFECTS = ("Blowhole", "Break", "Crack", "Uneven")
RECIPE = {"backbone": "efficientnet_lite0", "input_size": 128, "resize": "square", "device": "cpu"}
OPERATOR = User(username="op-anna", role="operator")
ENGINEER = User(username="eng-ben", role="engineer")


def _mt_files() -> tuple[list[Path], list[Path], dict[str, list[Path]]]:
    """(the DifferNet training goods, the other goods, defects by class), each in a fixed order."""
    listed = {line.strip() for line in (MT / "differnet_train_good.txt").read_text().splitlines() if line.strip()}
    free = sorted((MT / "MT_Free" / "Imgs").glob("*.jpg"))
    defects = {name: sorted((MT / f"MT_{name}" / "Imgs").glob("*.jpg")) for name in DEFECTS}
    return [p for p in free if p.name in listed], [p for p in free if p.name not in listed], defects


def _copy(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy(path, folder / path.name)


def _layout(root: Path) -> dict[str, object]:
    """Training goods, a frozen test set, and the parts each station sees before and after the promotion.

    ``truth`` maps each station part's file name to what it is (``good`` or a defect class): the reviewers' eyes.
    """
    train_good, other_good, defects = _mt_files()
    _copy(train_good[:40], root / "train" / "good")
    _copy(train_good[40:50], root / "champion" / "good")  # a weaker champion: 10 good images
    _copy(other_good[:12], root / "test" / "good")
    for name, files in defects.items():
        _copy(files[:3], root / "test" / name.lower())
    parts: dict[str, list[list[tuple[Path, str]]]] = {}
    goods, bad = iter(train_good[50:]), {name: iter(files[3:]) for name, files in defects.items()}
    for station in STATIONS:
        phases = []
        for count in (FIRST, SECOND):
            chosen: list[tuple[Path, str]] = []
            for i in range(count):
                if i % 3 == 2:
                    name = DEFECTS[(len(chosen) + len(phases)) % len(DEFECTS)]
                    chosen.append((next(bad[name]), name.lower()))
                else:
                    chosen.append((next(goods), "good"))
            phases.append(chosen)
        parts[station] = phases
    truth = {path.name: label for phases in parts.values() for phase in phases for path, label in phase}
    return {"parts": parts, "truth": truth}


def _deliver(parts: list[tuple[Path, str]], inbox: Path) -> None:
    """Parts arrive as a camera gateway writes them: a hidden temporary file renamed into place."""
    for path, _ in parts:
        tmp = inbox / f".{path.name}.tmp"
        shutil.copy(path, tmp)
        tmp.rename(inbox / path.name)


def _station_spec(root: Path, station: str, model: Path, db_url: str) -> Path:
    folder = root / station
    for sub in ("inbox", "evidence", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # The line's reject gateway: records each signal; it takes a moment, so a kill lands in the middle of a batch.
    hook = folder / "gateway.py"
    hook.write_text(f"import sys, time\nline = sys.stdin.read()\nopen({str(folder / 'signals.jsonl')!r}, 'a')"
                    ".write(line + chr(10))\ntime.sleep(0.3)\n")
    spec = folder / "line.yaml"
    spec.write_text(
        f"name: line-{station}\nstation: {{name: {station}, line: L1}}\n"
        f"source: {{kind: watch, path: {folder / 'inbox'}, poll_s: 0.2, settle_s: 0.2}}\n"
        f"model: {{path: {model}, follow_active: true}}\n"
        "inference: {device: cpu, batch_size: 2, max_wait_ms: 200}\n"
        f"sinks: {{database: '{db_url}', csv: {folder / 'out.csv'}, ng_dir: {folder / 'evidence'}, "
        f"spool_dir: {folder / 'spool'}, reject: {{command: '{sys.executable} {hook}', decisions: [NG]}}}}\n"
    )
    return spec


class Station:
    """One ``inspect-app run`` process of a station's pipeline, its log in a file."""

    def __init__(self, root: Path, station: str, spec: Path, repo_root: Path) -> None:
        self.folder = root / station
        self.station = station
        self.spec = spec
        self.repo_root = repo_root
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.repo_root), "HF_HUB_OFFLINE": "1"}
        env.pop("INSPECT_DATABASE_URL", None)
        self.starts += 1
        log = open(self.folder / f"run-{self.starts}.log", "wb")  # noqa: SIM115 - the child holds it open
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inspect_app", "-v", "--home", str(self.folder / "home"), "run", str(self.spec)],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("run-*.log")))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.station} exited:\n{self.log()[-3000:]}"


def _rows(db: Database, station: str) -> list[Inspection]:
    return Repository(db).list_inspections(limit=1000, station=station)


def _wait_rows(db: Database, station: Station, count: int, timeout: float = 180.0) -> list[Inspection]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        station.alive()
        rows = _rows(db, station.station)
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    pytest.fail(f"{station.station} wrote {len(_rows(db, station.station))} of {count} rows:\n{station.log()[-3000:]}")


def _wait_file(path: Path, station: Station, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not path.exists():
        station.alive()
        time.sleep(0.2)
    assert path.exists(), f"{station.station} wrote no {path.name}:\n{station.log()[-3000:]}"


def _wait_log(station: Station, text: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in station.log():
            return
        station.alive()
        time.sleep(0.2)
    pytest.fail(f"{station.station} never logged {text!r}:\n{station.log()[-3000:]}")


def _deliver_until(db: Database, station: Station, parts: list[tuple[Path, str]], line: str) -> int:
    """Deliver parts one at a time, each once the one before is decided, until the log has ``line``; how many."""
    done = len(_rows(db, station.station))
    for count, part in enumerate(parts, start=1):
        _deliver([part], station.folder / "inbox")
        _wait_rows(db, station, done + count)
        if line in station.log():
            return count
        time.sleep(3)  # the model-following inspector reads the database at most every 10 s, then loads
    pytest.fail(f"{station.station} never logged {line!r}:\n{station.log()[-3000:]}")


def _review_flagged(db: Database, truth: dict[str, str]) -> list[str]:
    """Every NG and REVIEW part gets the verdict a person looking at it would give (through ``app.reviews``)."""
    with db.session() as session:
        flagged = session.execute(
            select(InspectionRow.id, InspectionRow.image_path)
            .where(InspectionRow.decision.in_([Decision.NG.value, Decision.REVIEW.value]))
            .order_by(InspectionRow.id)
        ).all()
    for inspection_id, image_path in flagged:
        label = truth[Path(image_path).name]
        if label == "good":
            review_inspection(db, OPERATOR, inspection_id, "OK", comment="no defect on the tile")
        else:
            review_inspection(db, OPERATOR, inspection_id, "NG", defect_class=label)
    return [Path(image_path).name for _, image_path in flagged]


def _check_exactly_once(db: Database, station: Station, parts: int, *, duplicate_signals_allowed: int) -> None:
    rows = _rows(db, station.station)
    assert len(rows) == parts and len({r.content_hash for r in rows}) == parts, "one row per part"
    flagged = [r for r in rows if r.decision in (Decision.NG, Decision.REVIEW)]
    evidence = [p for p in (station.folder / "evidence").rglob("*") if p.is_file()]
    assert len(evidence) == 2 * len(flagged), "one picture and one heatmap per NG/REVIEW part"
    csv_lines = (station.folder / "out.csv").read_text().splitlines()[1:]
    assert len(csv_lines) == parts, "one CSV line per part"
    ng = {r.content_hash for r in rows if r.decision is Decision.NG}
    signals = station.folder / "signals.jsonl"
    lines = signals.read_text().splitlines() if signals.exists() else []
    sent = Counter(json.loads(line)["content_hash"] for line in lines if line.strip())
    assert set(sent) == ng, "a reject signal for every NG part and for nothing else"
    # A kill between the gateway taking a signal and its record may repeat that one signal (same content hash).
    assert sum(sent.values()) - len(sent) <= duplicate_signals_allowed
    assert not list((station.folder / "spool").glob("*.jsonl")), "nothing left waiting in a spool"


def test_the_plant_loop_on_magnetic_tile(tmp_path: Path, repo_root: Path, relayed_postgres: RelayedDatabase) -> None:
    layout = _layout(tmp_path / "data")
    parts: dict[str, list[list[tuple[Path, str]]]] = layout["parts"]  # type: ignore[assignment]
    truth: dict[str, str] = layout["truth"]  # type: ignore[assignment]
    data = tmp_path / "data"
    (tmp_path / "recipe.yaml").write_text("".join(f"{k}: {v}\n" for k, v in RECIPE.items()))
    plant = relayed_postgres
    db_url = plant.direct_url
    common = ["--home", str(tmp_path / "plant"), "--db", db_url]
    champion = tmp_path / "plant" / "models" / "mt-v1"
    assert main([*common, "train", str(data / "champion"), "--kind", "anomaly", "--recipe",
                 str(tmp_path / "recipe.yaml"), "--out", str(champion), "--name", "mt-v1"]) == 0
    db = Database.open(db_url)
    repo = Repository(db)
    stations: dict[str, Station] = {}
    try:
        assert repo.active_model().name == "mt-v1", "the first model is the active one"
        # Station A reaches the database through the relay that the outage cuts.
        urls = {"st-A": plant.url, "st-B": db_url}
        stations |= {s: Station(tmp_path, s, _station_spec(tmp_path, s, champion, urls[s]), repo_root)
                     for s in STATIONS}
        for station in stations.values():
            station.start()

        # 1. Both stations inspect their first parts with the champion. Station A loses the database on the way:
        # its decided parts wait in its spool, and a model poll that lands in the outage keeps the line running.
        a, b = stations["st-A"], stations["st-B"]
        _deliver(parts["st-B"][0], b.folder / "inbox")
        first_a = parts["st-A"][0]
        _deliver(first_a[:4], a.folder / "inbox")
        _wait_rows(db, a, 4)
        plant.relay.pause()
        _deliver(first_a[4:6], a.folder / "inbox")
        _wait_file(a.folder / "spool" / "st-A.jsonl", a)
        time.sleep(10.5)  # past the model-following inspector's 10 s between database reads
        _deliver(first_a[6:8], a.folder / "inbox")
        time.sleep(2)
        a.alive()
        assert len(_rows(db, "st-A")) == 4, "nothing reached the database during the outage"
        plant.relay.resume()
        _deliver(first_a[8:], a.folder / "inbox")
        for station in stations.values():
            rows = _wait_rows(db, station, FIRST)
            assert {r.model_version for r in rows} == {"mt-v1"}
        assert "database unreachable, spooling" in a.log()

        # 2. People review the doubtful and rejected parts; the verdicts are exported as a training manifest.
        reviewed_names = _review_flagged(db, truth)
        reviewed = len(reviewed_names)
        assert reviewed >= 1, "some parts were flagged"
        manifest = tmp_path / "reviewed.csv"
        assert main([*common, "reviews", "export", "--out", str(manifest)]) == 0
        assert len(manifest.read_text().splitlines()) == reviewed + 1
        assert main(["--home", str(tmp_path / "plant"), "data", "check", str(manifest)]) == 0

        # 3. The nightly schedule fires, the worker fits a good-only challenger with the reviewed good parts.
        policy = PromotionPolicy(false_reject_rate=0.1, class_tolerance=0.34)
        spec = FinetuneSpec(kind="anomaly", anomaly=RECIPE, test_dir=str(data / "test"), use_reviews=True,
                            model_prefix="mt", promotion=policy)
        add_schedule(db, ENGINEER, "nightly-mt", "0 2 * * *", str(data / "train"), spec,
                     now=utcnow() - timedelta(days=1))
        queued = Scheduler(db).tick(now=utcnow())
        assert len(queued) == 1
        run = Worker(db, Settings(home=tmp_path / "worker", device="cpu")).run_once()
        assert run is not None and run.id == queued[0] and run.status is RunStatus.SUCCEEDED, run
        metrics = run.metrics
        challenger = metrics["model"]
        # Reviewed good parts join the good-only training data; defect verdicts have no class folder there.
        good_reviews = sum(1 for name in reviewed_names if truth[name] == "good")
        assert metrics["snapshot"]["counts"].get("train/review", 0) == good_reviews
        assert sum(metrics["snapshot"]["reviews_skipped"].values()) == len(reviewed_names) - good_reviews

        # 4. Champion/challenger: the stored decision is the rule's on the stored figures, and it was carried out.
        wins, reason, _ = judge_challenger(metrics["test"], metrics["champion_test"], policy)
        assert (metrics["promoted"], metrics["decision"]) == (wins, reason)
        assert repo.active_model().name == (challenger if wins else "mt-v1")
        if not wins:  # the kept candidate is promoted by a person, the other way onto the line
            promote_model(db, ENGINEER, challenger, reason="reviewed the comparison")
        # The dashboard's threshold for the new model reaches the line with it.
        threshold = round(repo.get_model_version(challenger).threshold * 0.9, 4)
        set_model_threshold(db, ENGINEER, challenger, threshold)

        # 5. The running pipelines swap model and threshold between batches, without a restart: a batch after the
        # promotion starts loading the new model in the background, a later one is decided by it.
        swap_line = f"active model changed: mt-v1 → {challenger}"
        for name, station in stations.items():
            delivered = _deliver_until(db, station, parts[name][1], swap_line)
            _deliver(parts[name][1][delivered:], station.folder / "inbox")
        # Station B is killed with SIGKILL in the middle of its parts and restarted: it starts on the new model
        # and must decide none of the parts the old one decided again.
        _wait_rows(db, b, len(_rows(db, "st-B")) + 1)
        assert b.stop(signal.SIGKILL) == -signal.SIGKILL
        assert len(_rows(db, "st-B")) < FIRST + SECOND, "the kill landed before station B was done"
        b.start()
        for station in stations.values():
            rows = _wait_rows(db, station, FIRST + SECOND)
            after = [r.model_version for r in sorted(rows, key=lambda r: r.created_at)[FIRST:]]
            # Swapped once, between batches: the old model's last parts, then only the new one's.
            assert after[-1] == challenger and after == sorted(after, key=lambda v: v == challenger), after
            assert {r.threshold for r in rows if r.model_version == challenger} == {threshold}
        time.sleep(2)  # a part decided twice after the restart would show now
        for station in stations.values():
            assert station.stop() in (0, 130, 143), station.log()[-3000:]

        # 6. Exactly once per part, through the outage and the kill.
        for name, station in stations.items():
            _check_exactly_once(db, station, FIRST + SECOND, duplicate_signals_allowed=1 if name == "st-B" else 0)
    finally:
        for station in stations.values():
            if station.proc is not None and station.proc.poll() is None:
                station.proc.kill()
                station.proc.wait(timeout=30)
        db.dispose()
