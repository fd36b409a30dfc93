"""Bad input to the CLI ends in one line on stderr naming the key and the value, exit code 2, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inspect_app.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    (tmp_path / "data" / "good").mkdir(parents=True)
    (tmp_path / "data" / "scratch").mkdir()
    monkeypatch.chdir(tmp_path)
    return ["--home", str(tmp_path / "home")]


# Progress the command logged before it failed (INFO/WARNING records) is not part of the error.
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING) ")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not LOG_RECORD.match(line)]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("recipe", "named"),
    [
        ("batch_size: lots", ["batch_size", "'lots'", "whole number"]),
        ("lr: fast", ["lr", "'fast'", "number"]),
        ("optimizer: rmsprop", ["optimizer", "'rmsprop'", "adamw", "sgd"]),
        ("epochz: 2", ["epochz", "did you mean 'epochs'"]),
        ("epochs: [1, 2]", ["epochs"]),
    ],
)
def test_bad_recipe_values_are_one_line(home: list[str], tmp_path: Path, capsys, recipe: str,
                                        named: list[str]) -> None:
    (tmp_path / "r.yaml").write_text(recipe + "\n")
    assert main([*home, "train", "data", "--recipe", "r.yaml"]) == 2
    line = _one_error_line(capsys)
    assert "r.yaml" in line
    for part in named:
        assert part in line, line


def test_yaml_1_1_float_is_read_as_a_number(tmp_path: Path) -> None:
    from inspect_app.config.recipes import load_recipe

    (tmp_path / "r.yaml").write_text("lr: 1e-3\nepochs: 2\n")
    config = load_recipe(tmp_path / "r.yaml")
    assert config.lr == pytest.approx(0.001) and isinstance(config.lr, float)


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("threshold: 0.5 ", "threshold: high", ["model.threshold", "'high'"]),
        ("batch_size: 16", "batch_size: lots", ["inference.batch_size", "'lots'"]),
        ("queue_size: 64", "queue_size: 64\n  colour: red", ["colour"]),
    ],
)
def test_bad_pipeline_values_are_one_line(home: list[str], tmp_path: Path, capsys, old: str, new: str,
                                          named: list[str]) -> None:
    text = (REPO_ROOT / "pipelines" / "batch_folder.yaml").read_text()
    assert old in text
    (tmp_path / "p.yaml").write_text(text.replace(old, new, 1))
    assert main([*home, "run", "p.yaml"]) == 2
    line = _one_error_line(capsys)
    for part in named:
        assert part in line, line


def test_bad_flag_value_is_one_line(home: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([*home, "inspect", "--model", "m", "--threshold", "high", "data"])
    assert stopped.value.code == 2
    line = _one_error_line(capsys)
    assert "--threshold" in line and "'high'" in line


@pytest.mark.slow
def test_output_that_cannot_be_written_is_one_line(home: list[str], tmp_path: Path, capsys) -> None:
    assert main([*home, "sample-data", "samples", "--seed", "0"]) == 0
    capsys.readouterr()
    (tmp_path / "a-file").write_text("not a folder")
    assert main([*home, "data", "check", "samples/train", "--json", "a-file/report.json"]) == 2
    line = _one_error_line(capsys)
    assert "a-file" in line, line
