"""Database outages: a real PostgreSQL server is stopped in the middle of a run and started again.

The server is this module's own (Debian's ``initdb``/``pg_ctl``, a few seconds to start), so stopping it disturbs no
other test; the module is skipped where the PostgreSQL server binaries are not installed. Also here: several writers
at once on one database, which is what a plant with many stations does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspect_app.errors import StorageError
from inspect_app.records import Decision, Inspection
from inspect_app.storage import Database, Repository, SpoolingRepository, is_unreachable, queries
from inspect_app.storage.spool import inspection_from_json, inspection_to_json

T0 = datetime(2024, 6, 3, 6, 0, tzinfo=UTC)
PG_ROOT = Path("/usr/lib/postgresql")


def _pg_bin() -> Path | None:
    versions = sorted(PG_ROOT.glob("*/bin/pg_ctl"), key=lambda p: [int(x) for x in p.parent.parent.name.split(".")])
    return versions[-1].parent if versions else None


def _as_postgres(command: list[str]) -> None:
    """Run a server command; PostgreSQL refuses to run as root, so switch to the ``postgres`` user when root."""
    if os.geteuid() == 0:
        command = ["su", "postgres", "-c", " ".join(command)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr + done.stdout)


class PgServer:
    """A throwaway PostgreSQL cluster on a free loopback port."""

    def __init__(self, bin_dir: Path, data: Path) -> None:
        self.bin_dir, self.data = bin_dir, data
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"'-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off'"
        _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                      str(self.data / "log"), "-w", "start"])

    def stop(self) -> None:
        _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    """A server of this module's own; pytest's temporary folders are private to root, so it lives in /tmp."""
    bin_dir = _pg_bin()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("su") is None):
        pytest.skip("PostgreSQL server binaries (Debian package postgresql) are not installed")
    data = Path(tempfile.mkdtemp(prefix="inspect-test-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
        server = PgServer(bin_dir, data)
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped by a failing test
                server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _rows(start: int, count: int, station: str = "press-1") -> list[Inspection]:
    rows = []
    for i in range(start, start + count):
        broken = i % 10 == 9  # unreadable files: no content hash, so only the spool's own check prevents duplicates
        rows.append(
            Inspection(
                station=station, line="line-1", source="/in", image_path=f"/in/{station}/{i}.png",
                decision=Decision.ERROR if broken else (Decision.NG if i % 3 == 0 else Decision.OK),
                created_at=T0 + timedelta(seconds=37 * i), content_hash=None if broken else f"{station}-{i}",
                model_version="m1", defect_class="dent" if i % 3 == 0 and not broken else None,
                score=None if broken else (i % 7) / 7, error="truncated" if broken else None,
            )
        )
    return rows


def _stored(db: Database) -> list[Inspection]:
    return sorted(Repository(db).list_inspections(limit=100_000), key=lambda r: (r.station, r.image_path))


def test_spool_line_round_trips() -> None:
    for row in _rows(0, 10):
        assert inspection_from_json(inspection_to_json(row)) == row
    with pytest.raises(ValueError, match="fields"):
        inspection_from_json('{"station": "x"}')


def test_postgres_stopped_mid_run_loses_and_duplicates_nothing(pg_server: PgServer, tmp_path: Path) -> None:
    db = Database.open(pg_server.url)
    spool_file = tmp_path / "spool" / "press-1.jsonl"
    writer = SpoolingRepository(Repository(db, batch_size=16), spool_file)
    batches = [_rows(40 * k, 40) for k in range(7)]
    try:
        assert writer.add_inspections(batches[0]) == 40
        assert writer.add_inspections(batches[1]) == 40

        pg_server.stop()
        assert writer.add_inspections(batches[2]) == 0  # no exception: the run goes on
        assert writer.add_inspections(batches[3]) == 0
        assert writer.pending == 80 and writer.spooled == 80
        # A crash-safe copy of the spool, to replay it twice below as if the process died right after committing.
        replay_again = spool_file.read_bytes()

        pg_server.start()
        assert writer.add_inspections(batches[4]) == 120  # 80 replayed + 40 new
        assert not spool_file.exists() and writer.replayed == 80

        spool_file.write_bytes(replay_again)
        assert writer.add_inspections(batches[5]) == 40  # the replayed rows are all recognised
        assert writer.add_inspections(batches[6]) == 40
        assert writer.flush() == 0

        everything = [row for batch in batches for row in batch]
        assert _stored(db) == sorted(everything, key=lambda r: (r.station, r.image_path))
        assert queries.summary(db).total == len(everything)  # the rollups count each row once too
    finally:
        db.dispose()


def test_refused_rows_raise_instead_of_spooling(pg_server: PgServer, tmp_path: Path) -> None:
    db = Database.open(pg_server.url)
    writer = SpoolingRepository(Repository(db), tmp_path / "spool.jsonl")
    try:
        too_long = _rows(0, 1, station="s" * 500)  # longer than the station column allows: a refusal, not an outage
        with pytest.raises(StorageError) as info:
            writer.add_inspections(too_long)
        assert not is_unreachable(info.value)
        assert writer.pending == 0
    finally:
        db.dispose()


def test_unreachable_server_is_recognised() -> None:
    with pytest.raises(StorageError) as info:
        Database.open("postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    assert is_unreachable(info.value)


def test_several_stations_write_at_once(db_url: str) -> None:
    """Four writers (own engines, like four station processes) with overlapping retries on one database."""
    errors: list[BaseException] = []
    Database.open(db_url).dispose()  # migrate once, before the writers race

    def station(k: int) -> None:
        try:
            with Database.open(db_url, migrate=False) as db:
                repo = Repository(db, batch_size=25)
                rows = _rows(0, 200, station=f"st-{k}")
                for start in range(0, 200, 40):
                    repo.add_inspections(rows[max(0, start - 10) : start + 40])  # 10 rows retried each time
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=station, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with Database.open(db_url) as db:
        errors_per_station = sum(r.content_hash is None for r in _rows(0, 200))
        # Hashless rows are not deduplicated by the database: each retried one is there twice.
        retried_errors = sum(
            r.content_hash is None for start in range(40, 200, 40) for r in _rows(0, 200)[start - 10 : start]
        )
        per_station = 200 + retried_errors
        assert queries.summary(db).total == 4 * per_station
        assert queries.stations(db) == [f"st-{k}" for k in range(4)]
        for k in range(4):
            assert queries.summary(db, station=f"st-{k}").errors == errors_per_station + retried_errors
            assert len(Repository(db).list_inspections(limit=1000, station=f"st-{k}")) == per_station




def test_pending_hashes_lists_spooled_content_hashes(tmp_path) -> None:
    from inspect_app.records import Decision, Inspection, utcnow
    from inspect_app.storage.spool import SpoolingRepository, inspection_to_json

    path = tmp_path / "spool" / "st.jsonl"
    path.parent.mkdir()
    rows = [Inspection(station="st", line="l", source="s", image_path=f"{i}.png", decision=Decision.OK,
                       created_at=utcnow(), content_hash=h, model_version="m") for i, h in enumerate(["a1", None])]
    path.write_text("".join(inspection_to_json(r) + "\n" for r in rows), encoding="utf-8")
    spool = SpoolingRepository(repository=None, path=path)  # type: ignore[arg-type]
    assert spool.pending_hashes() == {"a1"}
    assert SpoolingRepository(None, tmp_path / "none.jsonl").pending_hashes() == set()  # type: ignore[arg-type]
