"""The Live page shows every pipeline's figures from the database (dropped frames, host, silent pipelines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspect_app.storage import Database
from inspect_app.storage.live_stats import record_pipeline_status
from inspect_app.ui import app


@pytest.fixture(autouse=True)
def open_viewing(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read pages anonymously; sign-in being required by default is tested in tests/security."""
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "true")


def test_pipeline_table_shows_every_station_from_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    now = datetime.now(UTC)
    snapshot = {
        "frames": 321, "errors": 0, "fps_recent": 9.8, "queue_depth": 1, "dropped": {"camera:0": 7}, "gaps": {},
        "elapsed_s": 30, "latency_ms": {"end_to_end": {"p50": 95.0, "p95": 130.0, "p99": 170.0}},
    }
    with Database.open(url) as db:
        record_pipeline_status(db, "camera-station", "cell-a", "line-1", snapshot, host="st-a", now=now)
        record_pipeline_status(db, "camera-station", "cell-b", "line-1", {**snapshot, "frames": 5}, host="st-b",
                               now=now - timedelta(minutes=30))
    # Another home than the pipelines': the figures come from the database, not from files.
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    at = AppTest.from_file(str(Path(app.__file__).resolve()), default_timeout=60).run()
    at.switch_page("views/live.py").run()
    assert not at.exception
    assert "Pipelines" in [h.value for h in at.subheader]
    table = at.dataframe[0].value
    rows = {r["Station"]: r for _, r in table.iterrows()}
    a, b = rows["cell-a"], rows["cell-b"]
    assert (a["Pipeline"], a["Host"], a["Frames"], a["Dropped"], a["Latency p99 ms"], a["State"]) == (
        "camera-station", "st-a", "321", "7", "170.0", "running")
    assert (b["Host"], b["State"]) == ("st-b", "silent")
    assert a["Last seen"].endswith("UTC")
