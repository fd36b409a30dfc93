"""The Live page shows the figures that running pipelines write under ``<home>/stats`` (dropped frames included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspect_app.ui import app


@pytest.fixture(autouse=True)
def open_viewing(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read pages anonymously; sign-in being required by default is tested in tests/security."""
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "true")


def test_pipeline_table_appears_with_its_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = tmp_path / "stats"
    stats.mkdir()
    snapshot = {
        "name": "camera-station", "updated_at": "2026-01-01T00:00:00+00:00", "frames": 321, "errors": 0,
        "fps_recent": 9.8, "queue_depth": 1, "dropped": {"camera:0": 7}, "gaps": {}, "final": False,
        "latency_ms": {"end_to_end": {"p50": 95.0, "p95": 130.0, "p99": 170.0}},
    }
    (stats / "camera-station.json").write_text(json.dumps(snapshot))
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    monkeypatch.setenv("INSPECT_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    at = AppTest.from_file(str(Path(app.__file__).resolve()), default_timeout=60).run()
    at.switch_page("views/live.py").run()
    assert not at.exception
    assert "Pipelines" in [h.value for h in at.subheader]
    table = at.dataframe[0].value
    row = table.iloc[0]
    assert (row["Pipeline"], row["Frames"], row["Dropped"], row["Latency p99 ms"]) == ("camera-station", 321, 7, 170.0)
