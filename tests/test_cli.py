"""The ``inspect-app`` command: parsing, summary table, errors as exit code 2 with the bad value named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inspect_app.cli import build_parser, main
from inspect_app.cli_inspect import format_summary
from inspect_app.records import InspectionSummary


def test_help_lists_the_commands() -> None:
    text = build_parser().format_help()
    for command in ("sample-data", "train", "inspect", "run", "dashboard", "demo", "db", "models"):
        assert command in text


def test_console_script_help_runs_without_torch() -> None:
    code = "import sys; from inspect_app.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_summary_table() -> None:
    text = format_summary(InspectionSummary(total=10, ok=6, review=1, ng=2, errors=1, per_class={"crack": 2}))
    assert "images" in text and "10" in text
    assert "22.2 %" in text  # 2 NG of 9 decided
    assert "NG crack" in text


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    code = main(["--home", str(tmp_path), "inspect", str(tmp_path / "in"), "--model", str(tmp_path / "nope")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "model_card.json" in err


def test_bad_pipeline_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("source: {kind: folder, path: x}\nmodel: {path: m}\ninference: {device: tpu}\n")
    assert main(["--home", str(tmp_path), "run", str(path)]) == 2
    assert "'tpu'" in capsys.readouterr().err


def test_db_commands_upgrade_downgrade_current_purge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from inspect_app.records import Decision, Inspection, utcnow
    from inspect_app.storage import Database, Repository, current_revision, head_revision

    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    url = f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}"
    home = ["--home", str(tmp_path)]
    assert main([*home, "db", "upgrade"]) == 0
    assert current_revision(url) == head_revision()
    assert main([*home, "db", "downgrade", "0001"]) == 0
    assert current_revision(url) == "0001"
    assert main([*home, "db", "current"]) == 0
    assert f"revision 0001 (newest {head_revision()})" in capsys.readouterr().out

    heatmap = tmp_path / "old_overlay.png"
    heatmap.write_bytes(b"png")
    with Database.open(url) as db:  # upgrades again
        rows = [
            Inspection(station="s", line="l", source="/in", image_path=f"/in/{i}.png", decision=Decision.NG,
                       created_at=utcnow() - timedelta(days=age), content_hash=f"h{i}", model_version="m",
                       heatmap_path=str(heatmap) if age > 90 else None)
            for i, age in enumerate([100, 95, 3])
        ]
        Repository(db).add_inspections(rows)
    assert main([*home, "db", "purge", "--older-than", "90d", "--dry-run"]) == 0
    assert "would delete 2 inspection(s)" in capsys.readouterr().out
    assert main([*home, "db", "purge", "--older-than", "90d"]) == 0
    out = capsys.readouterr().out
    assert "deleted 2 inspection(s)" in out and "files: 1 deleted" in out
    assert not heatmap.exists()
    with Database.open(url) as db:
        assert len(Repository(db).list_inspections()) == 1


def test_db_purge_bad_age_names_value_and_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "db", "purge", "--older-than", "3 months"]) == 2
    err = capsys.readouterr().err
    assert "'3 months'" in err and "m, h, d, w" in err


def test_users_add_stores_a_hashed_password(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from inspect_app.app import access
    from inspect_app.storage import Database

    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main(["--home", str(tmp_path), "users", "add", "eve", "--role", "engineer", "--password-stdin"]) == 0
    assert "user eve created with role engineer" in capsys.readouterr().out
    with Database.open(f"sqlite:///{(tmp_path / 'inspect.db').as_posix()}") as db:
        assert access.sign_in(db, "eve", "a-long-password").role == "engineer"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--home", str(tmp_path), "users", "add", "bob", "--role", "operator", "--password-stdin"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["--home", str(tmp_path), "users", "list"]) == 0
    assert capsys.readouterr().out.split() == ["eve", "engineer", "active"]
def test_data_check_command_reports_counts_and_duplicates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import shutil

    import cv2
    import numpy as np

    for label in ("good", "dent"):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(2):
            image = np.full((8, 8, 3), 40 * i + (100 if label == "dent" else 0), np.uint8)
            cv2.imwrite(str(tmp_path / "d" / label / f"{i}.png"), image)
    shutil.copy(tmp_path / "d" / "good" / "0.png", tmp_path / "d" / "good" / "again.png")
    assert main(["data", "check", str(tmp_path / "d"), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "3" in out and "exact duplicate groups: 1" in out
    assert json.loads((tmp_path / "r.json").read_text())["counts"] == {"good": 3, "dent": 2}
    assert main(["data", "check", str(tmp_path / "missing")]) == 2


def _ok_ng_parts(root: Path, names: tuple[str, str], per_class: int = 14) -> Path:
    """Plain grey parts in ``names[0]``, the same with a bright scratch in ``names[1]``."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(3)
    for label in names:
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = np.full((64, 64, 3), 110, np.uint8) + rng.integers(0, 20, (64, 64, 1), dtype=np.uint8)
            if label == names[1]:
                y = int(rng.integers(8, 56))
                cv2.line(image, (4, y), (60, y + int(rng.integers(-6, 6))), (250, 250, 250), 3)
            cv2.imwrite(str(root / label / f"{label}_{i:03d}.png"), image)
    return root


@pytest.mark.slow
def test_a_class_folder_set_named_ok_and_ng_trains_and_inspects_correctly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    data = _ok_ng_parts(tmp_path / "data", ("ok", "ng"))
    home = ["--home", str(tmp_path / "home")]
    assert main([*home, "train", str(data), "--out", str(tmp_path / "m"), "--epochs", "3", "--input-size", "64",
                 "--lr", "3e-3", "--device", "cpu", "--no-register"]) == 0
    out = capsys.readouterr().out
    assert "AUROC ok-vs-defect" in out
    assert json.loads((tmp_path / "m" / "model_card.json").read_text())["good_class"] == "ok"
    csv_path = tmp_path / "results.csv"
    assert main([*home, "inspect", str(data), "--model", str(tmp_path / "m"), "--csv", str(csv_path),
                 "--device", "cpu"]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    called = {(Path(r["image_path"]).parent.name, r["decision"]) for r in rows}
    ok_right = sum(1 for r in rows if Path(r["image_path"]).parent.name == "ok" and r["decision"] == "OK")
    ng_right = sum(1 for r in rows if Path(r["image_path"]).parent.name == "ng" and r["decision"] == "NG")
    assert len(rows) == 28 and ok_right >= 12 and ng_right >= 12, called


def test_training_without_a_recognisable_good_class_stops_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _ok_ng_parts(tmp_path / "data", ("front", "back"), per_class=2)
    code = main(["--home", str(tmp_path / "home"), "train", str(data), "--out", str(tmp_path / "m"),
                 "--epochs", "1", "--device", "cpu", "--no-register"])
    err = capsys.readouterr().err
    assert code == 2
    assert "['back', 'front']" in err and "--good-class" in err and "Traceback" not in err
    assert not (tmp_path / "m" / "model_card.json").exists()
