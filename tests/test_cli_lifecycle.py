"""The lifecycle commands of ``inspect-app``: queue, runs, schedules, scheduler, worker, rollback (real SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspect_app.cli import main
from inspect_app.records import ModelVersion, RunStatus
from inspect_app.storage import Database, Repository
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore


@pytest.fixture
def db_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Global options pointing at a fresh SQLite file under a temporary home."""
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    return ["--home", str(tmp_path / "home"), "--db", f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"]


def _db(args: list[str]) -> Database:
    return Database.open(args[3])


def test_train_queue_runs_list_show_cancel(db_args: list[str], tmp_path: Path, capsys) -> None:
    assert main([*db_args, "train", str(tmp_path), "--queue", "--epochs", "2", "--name", "m9"]) == 0
    assert "queued training run 1" in capsys.readouterr().out
    with _db(db_args) as db:
        run = RunQueue(db).get(1)
    assert (run.status, run.model_name, run.config["train"]["epochs"]) == (RunStatus.QUEUED, "m9", 2)
    assert main([*db_args, "runs", "list"]) == 0
    assert "queued" in capsys.readouterr().out
    assert main([*db_args, "runs", "show", "1"]) == 0
    assert '"model_name": "m9"' in capsys.readouterr().out
    assert main([*db_args, "runs", "cancel", "1"]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main([*db_args, "runs", "cancel", "1"]) == 2
    assert "'cancelled'" in capsys.readouterr().err
    assert main([*db_args, "runs", "show", "42"]) == 2
    assert "training run 42 not found" in capsys.readouterr().err
    assert main([*db_args, "train", str(tmp_path / "nope"), "--queue"]) == 2
    assert "data folder" in capsys.readouterr().err


def test_schedules_add_list_toggle_remove_and_bad_cron(db_args: list[str], tmp_path: Path, capsys) -> None:
    add = [*db_args, "schedules", "add", "nightly", "--cron", "0 2 * * *", "--data-dir", str(tmp_path),
           "--only-if-new-data", "--epochs", "3"]
    assert main(add) == 0
    assert "next run" in capsys.readouterr().out
    assert main([*db_args, "schedules", "disable", "nightly"]) == 0
    assert main([*db_args, "schedules", "list"]) == 0
    listing = capsys.readouterr().out
    assert "nightly" in listing and "off" in listing and "only-if-new-data" in listing
    with _db(db_args) as db:
        schedule = ScheduleStore(db).get("nightly")
    assert schedule.enabled is False and schedule.config["train"]["epochs"] == 3
    assert main([*db_args, "schedules", "enable", "nightly"]) == 0
    assert main([*db_args, "schedules", "remove", "nightly"]) == 0
    assert main([*db_args, "schedules", "add", "x", "--cron", "0 25 * * *", "--data-dir", str(tmp_path)]) == 2
    assert "'0 25 * * *' is not valid" in capsys.readouterr().err


def test_run_registers_the_nightly_pipeline_and_scheduler_once_ticks(
    db_args: list[str], repo_root: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(repo_root)
    assert main([*db_args, "run", "pipelines/nightly_finetune.yaml"]) == 0
    assert "schedule nightly-finetune (0 2 * * *) registered" in capsys.readouterr().out
    assert main([*db_args, "run", "pipelines/nightly_finetune.yaml"]) == 0  # again: updated, not duplicated
    with _db(db_args) as db:
        assert [s.name for s in ScheduleStore(db).list()] == ["nightly-finetune"]
    assert main([*db_args, "run", "pipelines/nightly_good_only.yaml"]) == 0  # the good-only refresh example
    with _db(db_args) as db:
        refresh = ScheduleStore(db).get("nightly-good-only").config
    assert (refresh["kind"], refresh["update"], refresh["anomaly"]["input_size"]) == ("anomaly", True, 224)
    assert main([*db_args, "scheduler", "--once"]) == 0
    assert "no schedule due" in capsys.readouterr().out
    assert main([*db_args, "worker", "--once"]) == 0
    assert "queue empty" in capsys.readouterr().out


def test_good_only_runs_queue_and_schedule_from_flags_recipes_and_pipeline_files(
    db_args: list[str], tmp_path: Path, capsys
) -> None:
    recipe = tmp_path / "good_only.yaml"
    recipe.write_text("coreset_ratio: 0.2\ninput_size: 128\n", encoding="utf-8")
    queued = [*db_args, "train", str(tmp_path), "--queue", "--kind", "anomaly", "--recipe", str(recipe)]
    assert main([*queued, "--input-size", "64"]) == 0
    assert "queued good-only training run 1" in capsys.readouterr().out
    add = [*db_args, "schedules", "add", "good", "--cron", "0 3 * * *", "--data-dir", str(tmp_path), "--kind",
           "anomaly", "--update"]
    assert main(add) == 0
    pipeline = tmp_path / "nightly_good.yaml"
    pipeline.write_text(f"name: good-file\nkind: finetune\nschedule: {{cron: '0 4 * * *'}}\n"
                        f"data: {{dir: {tmp_path}, update: true}}\ntrain: {{kind: anomaly, input_size: 96}}\n",
                        encoding="utf-8")
    assert main([*db_args, "run", str(pipeline)]) == 0
    with _db(db_args) as db:
        run = RunQueue(db).get(1)
        by_name = {s.name: s.config for s in ScheduleStore(db).list()}
    assert (run.config["kind"], run.config["update"]) == ("anomaly", False)
    assert (run.config["anomaly"]["input_size"], run.config["anomaly"]["coreset_ratio"]) == (64, 0.2)  # flag > file
    assert (by_name["good"]["kind"], by_name["good"]["update"]) == ("anomaly", True)
    assert (by_name["good-file"]["kind"], by_name["good-file"]["update"]) == ("anomaly", True)
    assert by_name["good-file"]["anomaly"]["input_size"] == 96

    capsys.readouterr()
    recipe.write_text("epochs: 3\n", encoding="utf-8")  # a classifier option in a good-only recipe
    assert main(queued) == 2
    err = capsys.readouterr().err
    assert "epochs" in err and len(err.strip().splitlines()) == 1
    assert main([*db_args, "train", str(tmp_path), "--queue", "--kind", "anomaly", "--update", "m1"]) == 2
    assert "schedules add NAME --kind anomaly --update" in capsys.readouterr().err
    assert main([*db_args, "schedules", "add", "x", "--cron", "0 3 * * *", "--data-dir", str(tmp_path),
                 "--update"]) == 2
    assert "--kind anomaly" in capsys.readouterr().err


def test_queued_runs_and_registered_pipelines_are_audited_as_the_shell_user(
    db_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("USER", "alice")
    assert main([*db_args, "train", str(tmp_path), "--queue", "--epochs", "2"]) == 0
    assert main([*db_args, "train", str(tmp_path), "--queue", "--kind", "anomaly", "--input-size", "64"]) == 0
    pipeline = tmp_path / "nightly.yaml"
    pipeline.write_text(f"name: nightly\nkind: finetune\nschedule: {{cron: '0 2 * * *'}}\ndata: {{dir: {tmp_path}}}\n",
                        encoding="utf-8")
    assert main([*db_args, "run", str(pipeline)]) == 0
    pipeline.write_text(pipeline.read_text(encoding="utf-8").replace("0 2 * * *", "0 3 * * *"), encoding="utf-8")
    assert main([*db_args, "run", str(pipeline)]) == 0  # the second registration updates the schedule
    with _db(db_args) as db:
        repo = Repository(db)
        enqueued = repo.list_audit(action="training.enqueue")
        added, updated = repo.list_audit(action="schedule.add"), repo.list_audit(action="schedule.update")
        runs = {run.id: run for run in RunQueue(db).list()}
        schedule = ScheduleStore(db).get("nightly")
    assert sorted((e.actor, e.target, e.details["kind"]) for e in enqueued) == [
        ("cli:alice", "training_run:1", "classifier"), ("cli:alice", "training_run:2", "anomaly")]
    assert runs[2].config["kind"] == "anomaly" and runs[2].config["anomaly"]["input_size"] == 64
    assert runs[1].config["train"]["extra"]["requested_by"] == "cli:alice"
    assert [(e.actor, e.target, e.details["cron"]) for e in added] == [("cli:alice", "schedule:nightly", "0 2 * * *")]
    assert [(e.actor, e.target, e.details["cron"]) for e in updated] == [
        ("cli:alice", "schedule:nightly", "0 3 * * *")]
    assert schedule.cron == "0 3 * * *"


def test_models_promote_and_rollback(db_args: list[str], capsys) -> None:
    with _db(db_args) as db:
        repo = Repository(db)
        for name in ("a", "b"):
            repo.add_model_version(ModelVersion(name=name, kind="classifier", backbone="x", path=f"/m/{name}",
                                                classes=("good", "scratch")))
    assert main([*db_args, "models", "rollback"]) == 2
    assert "no active model" in capsys.readouterr().err
    assert main([*db_args, "models", "promote", "a"]) == 0
    assert main([*db_args, "models", "promote", "b"]) == 0
    assert main([*db_args, "models", "rollback"]) == 0
    assert "model a is now active" in capsys.readouterr().out


def test_reviews_export_writes_a_manifest_that_training_reads(db_args: list[str], tmp_path: Path, capsys) -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np
    from PIL import Image

    from inspect_app.data.layouts import load_dataset
    from inspect_app.records import Decision, Inspection, Review

    out = tmp_path / "export" / "reviewed.csv"
    assert main([*db_args, "reviews", "export", "--out", str(out)]) == 2
    assert "no reviewed parts" in capsys.readouterr().err
    now = datetime.now(UTC)
    paths = []
    for i in range(3):
        paths.append(tmp_path / "parts" / f"p{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(paths[-1])
    with _db(db_args) as db:
        repo = Repository(db)
        repo.add_inspections([
            Inspection(station="s1", line="l1", source="cam", image_path=str(p), decision=Decision.NG,
                       created_at=now, defect_class="scratch", score=0.9, model_version="m1")
            for p in paths
        ])
        repo.add_review(Review(inspection_id=1, verdict=Decision.OK, reviewer="op",
                               created_at=now - timedelta(days=3)))
        repo.add_review(Review(inspection_id=2, verdict=Decision.NG, reviewer="op", defect_class="dent",
                               created_at=now))
    assert main([*db_args, "reviews", "export", "--out", str(out)]) == 0
    assert f"wrote 2 reviewed parts to {out}" in capsys.readouterr().out
    manifest = load_dataset(out)
    assert manifest.layout == "csv"
    named = sorted((Path(path).name, label) for path, label in manifest.items)
    assert named == [("p0.png", "good"), ("p1.png", "dent")]
    since = (now - timedelta(days=1)).date().isoformat()
    assert main([*db_args, "reviews", "export", "--out", str(out), "--since", since]) == 0
    assert "wrote 1 reviewed parts" in capsys.readouterr().out
    assert main([*db_args, "reviews", "export", "--out", str(out), "--since", "yesterday"]) == 2
    assert "--since 'yesterday' is not an ISO date" in capsys.readouterr().err


def test_cli_actions_are_audited_with_the_operating_system_user(
    db_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("USER", "quality-eng")
    with _db(db_args) as db:
        repo = Repository(db)
        for name in ("a", "b"):
            repo.add_model_version(ModelVersion(name=name, kind="classifier", backbone="x", path=f"/m/{name}",
                                                classes=("good", "scratch")))
    commands = [
        ["train", str(tmp_path), "--queue", "--epochs", "1"],
        ["runs", "cancel", "1"],
        ["schedules", "add", "nightly", "--cron", "0 2 * * *", "--data-dir", str(tmp_path)],
        ["schedules", "disable", "nightly"],
        ["schedules", "enable", "nightly"],
        ["schedules", "remove", "nightly"],
        ["models", "promote", "a"],
        ["models", "promote", "b"],
        ["models", "rollback"],
        ["db", "purge", "--older-than", "30d"],
    ]
    for command in commands:
        assert main([*db_args, *command]) == 0, (command, capsys.readouterr().err)
    with _db(db_args) as db:
        events = list(reversed(Repository(db).list_audit(limit=50)))
    actions = [(e.action, e.actor) for e in events]
    expected = ["training.enqueue", "training.cancel", "schedule.add", "schedule.disable", "schedule.enable",
                "schedule.remove", "model.promote", "model.promote", "model.promote", "db.purge"]
    assert [a for a, _ in actions] == expected
    assert {actor for _, actor in actions} == {"cli:quality-eng"}
    assert events[-2].details["reason"] == "rollback from b"


def test_inspect_decides_with_the_threshold_stored_for_its_model_unless_given_one(
    db_args: list[str], tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    import cv2
    import numpy as np

    from inspect_app.app.access import shell_user
    from inspect_app.app.versions import set_model_threshold

    rng = np.random.default_rng(3)
    folders = []
    for name in ("first", "second", "third"):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(3):
            cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        folders.append(folder)
    inspect = [*db_args, "inspect", "--model", str(tiny_checkpoint), "--device", "cpu", "--station", "s1"]
    assert main([*inspect, str(folders[0])]) == 0  # registers the model with its card's threshold
    with _db(db_args) as db:
        set_model_threshold(db, shell_user("tester"), "tiny-pipe", 0.77)  # as the dashboard's Models page does
    assert main([*inspect, str(folders[1])]) == 0
    assert main([*inspect, str(folders[2]), "--threshold", "0.3"]) == 0  # a pinned threshold wins
    with _db(db_args) as db:
        rows = Repository(db).list_inspections(limit=20)
    by_folder = {folder.name: {r.threshold for r in rows if Path(r.image_path).parent.name == folder.name}
                 for folder in folders}
    card_threshold = json.loads((tiny_checkpoint / "model_card.json").read_text())["threshold"]
    assert by_folder == {"first": {card_threshold}, "second": {0.77}, "third": {0.3}}
