"""Exactly once through the real CLI process: every part gives one row, one CSV and one JSONL line, one evidence set
and one reject signal, through a kill -9 in the middle of a run and through a graceful SIGTERM."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import make_url

from inspect_app.cli import main
from inspect_app.data.image_io import write_image
from inspect_app.errors import StorageError
from inspect_app.records import Decision
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository

pytestmark = pytest.mark.slow

PARTS = 24


def _parts(folder: Path) -> None:
    """Bright parts (OK for the tiny model), dark ones (NG) and one file that is no image (ERROR)."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(PARTS):
        level = 230 if i % 3 else 20
        write_image(folder / f"part-{i:03d}.png", np.clip(rng.normal(level, 8, (64, 64, 3)), 0, 255).astype(np.uint8))
    (folder / "part-999.png").write_bytes(b"not an image")


def _pipeline(tmp_path: Path, model: Path) -> tuple[Path, str]:
    signals = tmp_path / "signals.jsonl"
    # The line's reject gateway: records each signal, and takes a while, so that a kill lands in the middle of a run.
    hook = tmp_path / "gateway.py"
    hook.write_text(f"import sys, time\nline = sys.stdin.read()\nopen({str(signals)!r}, 'a').write(line + chr(10))\n"
                    "time.sleep(0.15)\n")
    db_url = f"sqlite:///{tmp_path / 'plant.db'}"
    spec = tmp_path / "line.yaml"
    spec.write_text(
        f"name: line\nstation: {{name: st-X, line: L1}}\nsource: {{kind: folder, path: {tmp_path / 'parts'}}}\n"
        f"model: {{path: {model}}}\ninference: {{device: cpu, batch_size: 2, max_wait_ms: 5}}\n"
        f"sinks: {{database: '{db_url}', csv: {tmp_path / 'out.csv'}, jsonl: {tmp_path / 'out.jsonl'}, "
        f"ng_dir: {tmp_path / 'evidence'}, spool_dir: {tmp_path / 'spool'}, "
        f"reject: {{command: '{sys.executable} {hook}', decisions: [NG]}}}}\n"
    )
    return spec, db_url


def _start(tmp_path: Path, spec: Path, repo_root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(repo_root), "HF_HUB_OFFLINE": "1"}
    env.pop("INSPECT_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "inspect_app", "--home", str(tmp_path), "run", str(spec)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows_when(db_url: str, proc: subprocess.Popen[str], at_least: int) -> int:
    """Wait until ``at_least`` rows are committed (the run is past its first batches), then say how many."""
    deadline = time.time() + 120
    database_file = Path(make_url(db_url).database or "")
    while not database_file.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if database_file.exists():
        # Opened once and only read (the run migrates it), disposed on leaving.
        with Database.open(db_url, migrate=False) as db:
            repo = Repository(db)
            while time.time() < deadline and proc.poll() is None:
                try:
                    count = len(repo.list_inspections(limit=1000))
                except StorageError:  # the run may still be creating the schema
                    count = 0
                if count >= at_least:
                    return count
                time.sleep(0.05)
    pytest.fail(f"the run committed fewer than {at_least} rows (exit {proc.poll()})")


def _check_exactly_once(tmp_path: Path, db_url: str, *, duplicate_signals_allowed: int) -> None:
    with Database.open(db_url) as db:
        rows = Repository(db).list_inspections(limit=1000)
    images = sorted(r.image_path for r in rows)
    assert len(rows) == PARTS + 1 and len(set(images)) == PARTS + 1, "one row per part"
    decisions = Counter(r.decision for r in rows)
    assert decisions[Decision.ERROR] == 1 and decisions[Decision.NG] >= 1 and decisions[Decision.OK] >= 1
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as fh:
        csv_images = sorted(row["image_path"] for row in csv.DictReader(fh))
    assert csv_images == images, "one CSV line per part"
    jsonl_images = sorted(json.loads(line)["image_path"] for line in (tmp_path / "out.jsonl").read_text().splitlines())
    assert jsonl_images == images, "one JSONL line per part"
    flagged = [r for r in rows if r.decision in (Decision.NG, Decision.REVIEW)]
    evidence = sorted(p for p in (tmp_path / "evidence").rglob("*") if p.is_file())
    assert len(evidence) == 2 * len(flagged), "one picture and one heatmap per NG/REVIEW part"
    assert all(r.heatmap_path for r in flagged)
    ng_hashes = {r.content_hash for r in rows if r.decision is Decision.NG}
    sent = Counter(json.loads(line)["content_hash"] for line in (tmp_path / "signals.jsonl").read_text().splitlines())
    assert set(sent) == ng_hashes, "a reject signal for every NG part and for nothing else"
    # A signal is recorded as sent once the gateway took it; a kill between the two can repeat that one signal,
    # which carries the part's content hash so the gateway drops it.
    assert sum(sent.values()) - len(sent) <= duplicate_signals_allowed
    assert not list((tmp_path / "spool").glob("*.jsonl")), "nothing left waiting in a spool"


def test_kill_9_in_the_middle_of_a_run_then_a_rerun_gives_every_part_once(
    tiny_checkpoint: Path, tmp_path: Path, repo_root: Path
) -> None:
    _parts(tmp_path / "parts")
    spec, db_url = _pipeline(tmp_path, tiny_checkpoint)
    proc = _start(tmp_path, spec, repo_root)
    committed = _rows_when(db_url, proc, 6)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert committed < PARTS + 1, "the kill landed before the end of the run"
    assert main(["--home", str(tmp_path), "run", str(spec)]) == 0
    _check_exactly_once(tmp_path, db_url, duplicate_signals_allowed=1)
    # A third run finds everything done and adds nothing.
    assert main(["--home", str(tmp_path), "run", str(spec)]) == 0
    _check_exactly_once(tmp_path, db_url, duplicate_signals_allowed=1)


def test_sigterm_drains_and_a_rerun_gives_every_part_once(
    tiny_checkpoint: Path, tmp_path: Path, repo_root: Path
) -> None:
    _parts(tmp_path / "parts")
    spec, db_url = _pipeline(tmp_path, tiny_checkpoint)
    proc = _start(tmp_path, spec, repo_root)
    _rows_when(db_url, proc, 4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130, 143), err
    assert main(["--home", str(tmp_path), "run", str(spec)]) == 0
    _check_exactly_once(tmp_path, db_url, duplicate_signals_allowed=0)
