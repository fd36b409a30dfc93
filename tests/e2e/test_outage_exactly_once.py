"""Exactly once through a database outage: a real ``inspect-app run`` on PostgreSQL loses its database in the middle
of the run (a relay cut, for longer than the run), spools what it decides, says so in its exit code and summary, and
the run after the outage replays the spool: every part gives one row, one CSV and one JSONL line, one evidence set
and one reject signal, with no repeat at all (nothing was killed)."""

from __future__ import annotations

import pytest

from inspect_app.cli import main
from inspect_app.cli_inspect import EXIT_UNDELIVERED
from tests.e2e.pg_relay import RelayedDatabase
from tests.e2e.test_exactly_once import _check_exactly_once, _parts, _pipeline, _rows_when, _start

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_a_database_outage_longer_than_the_run_then_a_rerun_gives_every_part_once(
    tiny_checkpoint, tmp_path, repo_root, relayed_postgres: RelayedDatabase
) -> None:
    relay, url, direct_url = relayed_postgres
    _parts(tmp_path / "parts")
    spec, sqlite_url = _pipeline(tmp_path, tiny_checkpoint)
    spec.write_text(spec.read_text().replace(sqlite_url, url))  # the plant's PostgreSQL, reached through the relay
    proc = _start(tmp_path, spec, repo_root)
    committed = _rows_when(direct_url, proc, 6)
    relay.pause()  # the database is gone until after the run ends
    out, err = proc.communicate(timeout=90)
    assert committed < 25, "the outage began before the end of the run"
    assert proc.returncode == EXIT_UNDELIVERED, err[-2000:]
    waiting = [line for line in out.splitlines() if line.startswith("not delivered")]
    assert len(waiting) == 1 and "database:" in waiting[0] and "wait in" in waiting[0], out
    assert list((tmp_path / "spool").glob("*.jsonl")), "the rows decided during the outage wait in the spool"

    relay.resume()
    assert main(["--home", str(tmp_path), "run", str(spec)]) == 0
    _check_exactly_once(tmp_path, direct_url, duplicate_signals_allowed=0)
