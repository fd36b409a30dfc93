"""``inspect-app inspect`` records its live figures in ``pipeline_status``; ``alarms check|list|ack`` end to end."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspect_app.cli import main
from inspect_app.records import Alarm, utcnow
from inspect_app.storage import Database, Repository
from inspect_app.storage.alarms import ACKNOWLEDGE_ACTION, AlarmStore
from inspect_app.storage.live_stats import list_pipeline_status, record_pipeline_status


def test_inspect_records_the_pipelines_figures(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        level = 20 if i % 2 else 230
        Image.fromarray(np.clip(rng.normal(level, 8, (64, 64, 3)), 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    assert main(["--home", str(tmp_path), "inspect", str(folder), "--model", str(tiny_checkpoint),
                 "--station", "cell-7", "--line", "line-2"]) == 0
    with Database.open(f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}") as db:
        (status,) = list_pipeline_status(db)
    assert (status.station, status.line, status.final, status.frames) == ("cell-7", "line-2", True, 4)


def test_alarms_check_list_and_ack(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home = ["--home", str(tmp_path)]
    url = f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}"
    with Database.open(url) as db:
        record_pipeline_status(db, "cam", "cell-a", "line-1", {"frames": 3, "elapsed_s": 1}, host="st-a",
                               now=utcnow() - timedelta(minutes=20))
    monkeypatch.setenv("USER", "olga")
    assert main([*home, "alarms", "check"]) == 0
    assert "raised:" in capsys.readouterr().out
    assert main([*home, "alarms", "check", "--pipeline-down-minutes", "5"]) == 0
    assert capsys.readouterr().out == "checked 0 station(s): no new alarms\n"  # once per episode
    assert main([*home, "alarms", "list"]) == 0
    listed = capsys.readouterr().out
    assert "pipeline_down" in listed and "pipeline cam at cell-a" in listed
    with Database.open(url) as db:
        (alarm,) = AlarmStore(db).recent()
    assert isinstance(alarm, Alarm)
    assert main([*home, "alarms", "ack", str(alarm.id)]) == 0
    assert main([*home, "alarms", "ack", str(alarm.id)]) == 2
    assert "acknowledged already" in capsys.readouterr().err
    with Database.open(url) as db:
        (event,) = Repository(db).list_audit(action=ACKNOWLEDGE_ACTION)
    assert event.actor.startswith("cli:")
    assert main([*home, "alarms", "list"]) == 0
    assert capsys.readouterr().out == "no open alarms\n"
    assert main([*home, "alarms", "list", "--all"]) == 0
    assert "pipeline_down" in capsys.readouterr().out
